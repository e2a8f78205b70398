"""The ML backend's HTTP contract and its answers to bad input (a real Redis, a real trained model)."""

import base64
import json
import shutil
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from alvar.backend.model_store import ModelStore, project_store
from alvar.entropy import confidence_score
from alvar.label_config import load
from alvar.scripts.backend_app import backend_app
from alvar.settings import load_settings

CONFIG = load("annotate")
AUTH = {"Authorization": "Basic " + base64.b64encode(b"ls:secret-pass").decode()}


@pytest.fixture(scope="module")
def client(seed_model_dir: Path, embedded_redis_url: str) -> FlaskClient:
    settings = load_settings(model_dir=seed_model_dir, redis_url=f"{embedded_redis_url}?db=1", basic_auth_user="ls",
                             basic_auth_pass="secret-pass", webhook_secret="hook-secret", retrain_every=1000)
    return backend_app(settings).test_client()


def post(client: FlaskClient, path: str, body: object, headers: dict | None = None):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post(path, data=data, content_type="application/json", headers={**AUTH, **(headers or {})})


def test_health_setup_versions(client: FlaskClient, seed_model_dir: Path) -> None:
    version = ModelStore(seed_model_dir).current_version()
    health = client.get("/health", headers=AUTH)
    assert health.status_code == 200 and health.json["status"] == "UP" and health.json["model_version"] == version
    setup = post(client, "/setup", {"project": "1.1700000000", "schema": CONFIG, "hostname": "http://ls"})
    assert setup.status_code == 200 and setup.json == {"model_version": version}
    assert client.get("/versions", headers=AUTH).json == {"versions": [version], "current": version}


def test_predict_scores_every_task_in_order(client: FlaskClient, seed_model_dir: Path) -> None:
    texts = ["I want to end it all", "Can my landlord keep my deposit?", "Best budget tent?", "", "x" * 20_000]
    tasks = [{"id": i, "data": {"text": text}} for i, text in enumerate(texts)]
    response = post(client, "/predict", {"tasks": tasks, "label_config": CONFIG, "project": "1.1"})
    assert response.status_code == 200
    results = response.json["results"]
    _, learner = ModelStore(seed_model_dir).load(precision=load_settings().inference_precision)  # as the backend
    probabilities = learner.predict_proba(texts)
    assert len(results) == len(texts)
    for result, row in zip(results, probabilities):
        assert result["result"][0]["value"]["choices"] == [learner.classes_[row.argmax()]]
        assert result["result"][0]["from_name"] == "label" and result["result"][0]["to_name"] == "text"
        assert result["score"] == pytest.approx(float(confidence_score(row[None])[0]), abs=1e-5)
        assert set(result["probabilities"]) == set(learner.classes_)
        assert result["result"][0]["meta"]["text"][0].startswith("entropy ")


def test_one_bad_task_among_many_gets_its_own_error(client: FlaskClient) -> None:
    tasks = [{"id": 1, "data": {"text": "ok"}}, {"id": 2, "data": {"title": "wrong field"}}, "junk"]
    response = post(client, "/predict", {"tasks": tasks, "label_config": CONFIG})
    assert response.status_code == 200
    first, second, third = response.json["results"]
    assert first["result"] and "error" not in first
    assert second["result"] == [] and "task 2 has no data.text" in second["error"]
    assert third["result"] == [] and "not an object" in third["error"]


@pytest.mark.parametrize("path, body, status, reason", [
    ("/predict", b"{not json", 400, "not valid JSON"),
    ("/predict", [1, 2], 400, "JSON object"),
    ("/predict", {"label_config": CONFIG}, 400, "'tasks' must be a list"),
    ("/predict", {"tasks": {}, "label_config": CONFIG}, 400, "'tasks' must be a list"),
    ("/predict", {"tasks": []}, 400, "'label_config' is missing"),
    ("/predict", {"tasks": [], "label_config": "<View><oops"}, 400, "not valid XML"),
    ("/predict", {"tasks": [], "label_config": "<View><Text name='t' value='$text'/></View>"}, 400, "no <Choices>"),
    ("/setup", {"project": "1.1"}, 400, "'schema'"),
    ("/setup", {"schema": "<View/>"}, 400, "no <Text>"),
])
def test_malformed_requests_get_400_with_a_reason(client: FlaskClient, path: str, body: object, status: int,
                                                  reason: str) -> None:
    response = post(client, path, body)
    assert response.status_code == status
    assert reason in response.json["error"]
    assert client.get("/health", headers=AUTH).status_code == 200


def test_webhook_secret_action_and_auth(client: FlaskClient) -> None:
    secret = {"X-Alvar-Secret": "hook-secret"}
    ok = post(client, "/webhook", {"action": "TASKS_CREATED", "project": {"id": 1}}, secret)
    assert ok.status_code == 201 and ok.json["status"] == "ignored"
    assert post(client, "/webhook", {"action": "TASKS_CREATED", "project": {"id": 1}}).status_code == 403
    wrong = post(client, "/webhook", {"action": "TASKS_CREATED", "project": {"id": 1}}, {"X-Alvar-Secret": "nope"})
    assert wrong.status_code == 403
    unknown = post(client, "/webhook", {"action": "SOMETHING_ELSE", "project": {"id": 1}}, secret)
    assert unknown.status_code == 400 and "unknown webhook action" in unknown.json["error"]
    assert post(client, "/webhook", b"][", secret).status_code == 400
    start = post(client, "/webhook", {"action": "START_TRAINING", "project": {"id": 99}})
    assert start.status_code == 201 and start.json["jobs"][0]["training"] == "queued"

    assert client.get("/health").status_code == 401
    bad = {"Authorization": "Basic " + base64.b64encode(b"ls:wrong").decode()}
    assert client.post("/predict", json={"tasks": []}, headers=bad).status_code == 401
    assert client.get("/health", headers=AUTH).status_code == 200


def test_unknown_route_and_method_are_json_4xx(client: FlaskClient) -> None:
    assert client.get("/nowhere", headers=AUTH).status_code == 404
    response = client.get("/predict", headers=AUTH)
    assert response.status_code == 405 and "error" in response.json


def test_metrics_are_prometheus_text(client: FlaskClient, seed_model_dir: Path) -> None:
    post(client, "/predict", {"tasks": [{"id": 1, "data": {"text": "hi"}}], "label_config": CONFIG})
    text = client.get("/metrics", headers=AUTH).get_data(as_text=True)
    version = ModelStore(seed_model_dir).current_version()
    assert 'alvar_requests_total{endpoint="predict",status="200"}' in text
    assert "alvar_request_seconds_bucket" in text and "alvar_training_queue_depth" in text
    assert f'alvar_model_info{{version="{version}"}} 1.0' in text


def test_each_project_sees_its_own_versions(seed_model_dir: Path, embedded_redis_url: str, tmp_path: Path) -> None:
    """/versions and /predict's model_version follow the project Label Studio names (body or query string)."""
    model_dir = tmp_path / "models"
    shutil.copytree(seed_model_dir, model_dir)
    shared = ModelStore(model_dir).current_version()
    own = project_store(model_dir, 5)
    shutil.copytree(ModelStore(model_dir).path(shared), own.path(shared))
    own.switch(shared)
    settings = load_settings(model_dir=model_dir, redis_url=f"{embedded_redis_url}?db=1")
    client = backend_app(settings).test_client()
    shutil.rmtree(ModelStore(model_dir).path(shared))
    (model_dir / "CURRENT").unlink()  # only project 5 has a model now
    assert client.get("/versions", json={"project": "5.1700000000"}).json == {"versions": [shared], "current": shared}
    assert client.get("/versions?project=5").json == {"versions": [shared], "current": shared}
    assert client.get("/versions", json={"project": "6.1700000000"}).json == {"versions": [], "current": None}
    tasks = [{"id": 1, "data": {"text": "I need a lawyer"}}]
    answered = client.post("/predict", json={"tasks": tasks, "label_config": CONFIG, "project": "5.1"}).json
    assert answered["model_version"] == shared and answered["results"][0]["model_version"] == shared
    other = client.post("/predict", json={"tasks": tasks, "label_config": CONFIG, "project": "6.1"}).json
    assert other == {"results": [], "model_version": None}
