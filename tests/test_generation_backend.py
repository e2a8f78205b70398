"""The backend of a generative project: /setup and /predict with the student G and the auxiliary model R, the
webhook's count of verified reviews, the sweep's check, and the training job against a real Label Studio.

G and R are real models built from the shipped MiniLM files and trained for one epoch on a few examples; Redis is
real (REDIS_URL), and the training job runs through a real RQ worker.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flask.testing import FlaskClient
from label_studio_sdk import LabelStudio
from redis import Redis
from rq import SimpleWorker

from alvar.attribute_model import AttributeJudge
from alvar.backend.app import create_app
from alvar.backend.dispatcher import TrainingReaction
from alvar.backend.learner import TransformerClassifier
from alvar.backend.model_store import ModelStore, data_hash, project_store
from alvar.backend.retraining import TrainingCheck, check_generation_training
from alvar.backend.student import TextToTextStudent
from alvar.backend.training import train_project
from alvar.entropy import entropy
from alvar.job_settings import jobs_use
from alvar.label_config import load
from alvar.labelstudio.client import iter_tasks
from alvar.labelstudio.generation_config import parse_generation_control
from alvar.loop.label_studio_server import LabelStudioServer
from alvar.loop.project import create_project
from alvar.queues import training_queue
from alvar.settings import Settings, load_settings

CONFIG = load("generate")
CONTROL = parse_generation_control(CONFIG)
H = CONTROL.attributes[0]
PROJECT = 3
INPUTS = ["They are all criminals.", "Those people ruin everything.", "Nobody wants them here.", "They never work."]
OUTPUTS = ["Most people from any group obey the law.", "Communities grow stronger with everyone in them.",
           "Many neighbours welcome them warmly.", "Employment figures show they work as hard as anyone."]
ATTRIBUTE_TEXTS = OUTPUTS + ["Yes, they are awful.", "I agree, get rid of them.", "Whatever.", "They are the worst."]
ATTRIBUTE_LABELS = [H] * 4 + [CONTROL.attributes[1]] * 4
OLD_VERSION = "20000101-000000-000000-deadbeef"


def small_settings(model_dir: Path, redis_url: str, **overrides: Any) -> Settings:
    return load_settings(model_dir=model_dir, redis_url=redis_url, torch_threads=1, max_length=16,
                         max_output_length=8, student_epochs=1, inference_batch_size=8, retrain_every=2, **overrides)


@pytest.fixture(scope="module")
def student() -> TextToTextStudent:
    return TextToTextStudent(load_settings().student_model, epochs=1, max_input_length=16, max_output_length=8,
                             num_threads=1).fit(INPUTS, OUTPUTS)


@pytest.fixture(scope="module")
def attribute_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """R: a one-epoch classifier of outputs, saved as a plain sequence-classification directory."""
    path = tmp_path_factory.mktemp("attribute") / "r"
    TransformerClassifier(load_settings().base_model, epochs=1, max_length=16, num_threads=1) \
        .fit(ATTRIBUTE_TEXTS, ATTRIBUTE_LABELS).save(path)
    return path


@pytest.fixture
def model_dir(tmp_path: Path, attribute_dir: Path) -> Path:
    """A MODEL_DIR whose shared model is a classifier (R's weights), which a generative project must not use."""
    shared = ModelStore(tmp_path / "models")
    classifier = TransformerClassifier.load(attribute_dir, num_threads=1)
    shared.switch(shared.save(classifier, ATTRIBUTE_TEXTS, ATTRIBUTE_LABELS))
    return shared.root


def post(client: FlaskClient, path: str, body: object) -> Any:
    return client.post(path, data=json.dumps(body), content_type="application/json")


def predict(client: FlaskClient, tasks: list[Any], config: str = CONFIG) -> Any:
    return post(client, "/predict", {"tasks": tasks, "label_config": config, "project": f"{PROJECT}.1700000000"})


def test_predict_serves_the_student_and_scores_with_r(model_dir: Path, student: TextToTextStudent,
                                                      attribute_dir: Path, external_redis_url: str) -> None:
    settings = small_settings(model_dir, external_redis_url, attribute_model=str(attribute_dir))
    client = create_app(settings).test_client()
    setup = post(client, "/setup", {"project": f"{PROJECT}.1", "schema": CONFIG})
    assert setup.status_code == 200 and setup.json == {"model_version": None}, "the shared classifier serves no G"
    tasks: list[Any] = [{"id": 1, "data": {"input": INPUTS[0]}},
                        {"id": 2, "data": {"input": INPUTS[1], "draft": "A teacher's counter-narrative."}},
                        {"id": 3, "data": {"text": "the wrong key"}}, "junk", {"id": 5, "data": {"input": 12345}}]
    before = predict(client, tasks)
    assert before.status_code == 200 and before.json == {"results": [], "model_version": None}

    store = project_store(model_dir, PROJECT)
    version = store.save(student, INPUTS, OUTPUTS, extra={"project": PROJECT})
    store.switch(version)
    assert post(client, "/setup", {"project": f"{PROJECT}.1", "schema": CONFIG}).json == {"model_version": version}
    answered = predict(client, tasks)
    assert answered.status_code == 200 and answered.json["model_version"] == version
    first, drafted, wrong_key, junk, number = answered.json["results"]
    outputs = student.generate([INPUTS[0], INPUTS[1], "12345"])
    judge = AttributeJudge(str(attribute_dir), H, num_threads=1).load()
    expected = entropy(judge.predict_proba(outputs))
    assert [first["result"][0]["value"]["text"], drafted["result"][0]["value"]["text"],
            number["result"][0]["value"]["text"]] == [[outputs[0]], ["A teacher's counter-narrative."], [outputs[2]]]
    for prediction, score, output in zip((first, drafted, number), expected, outputs):
        region = prediction["result"][0]
        assert (region["from_name"], region["to_name"], region["type"]) == ("output", "input", "textarea")
        assert prediction["score"] == pytest.approx(float(score), abs=1e-4) and prediction["model_version"] == version
        assert 0.0 < prediction["score"] <= np.log(2) + 1e-6 and set(prediction["probabilities"]) == set(judge.classes_)
        assert region["meta"]["text"][0].startswith(("G: ", "teacher draft kept · G: "))
        assert f"entropy {score:.2f}" in region["meta"]["text"][0] and output[:20] in region["meta"]["text"][0]
        assert "error" not in prediction
    assert drafted["result"][0]["meta"]["text"][0].startswith("teacher draft kept · G: ")
    assert wrong_key["result"] == [] and "task 3 has no data.input" in wrong_key["error"]
    assert junk["result"] == [] and "not an object" in junk["error"]


def test_without_r_every_score_is_zero_and_says_why(model_dir: Path, student: TextToTextStudent,
                                                    external_redis_url: str) -> None:
    store = project_store(model_dir, PROJECT)
    version = store.save(student, INPUTS, OUTPUTS)
    store.switch(version)
    client = create_app(small_settings(model_dir, external_redis_url)).test_client()
    answered = predict(client, [{"id": index, "data": {"input": text}} for index, text in enumerate(INPUTS)])
    results = answered.json["results"]
    assert [prediction["score"] for prediction in results] == [0.0] * len(INPUTS)
    assert [prediction["result"][0]["value"]["text"] for prediction in results] == [[out] for out in
                                                                                    student.generate(INPUTS)]
    assert all("R not trained yet" in prediction["result"][0]["meta"]["text"][0] for prediction in results)


def test_bad_generative_requests_are_4xx(model_dir: Path, student: TextToTextStudent, attribute_dir: Path,
                                         external_redis_url: str) -> None:
    store = project_store(model_dir, PROJECT)
    store.switch(store.save(student, INPUTS, OUTPUTS))
    settings = small_settings(model_dir, external_redis_url, attribute_model=str(attribute_dir), max_text_chars=100)
    client = create_app(settings).test_client()
    long_input = predict(client, [{"id": 1, "data": {"input": "x" * 101}}])
    assert long_input.status_code == 400 and "task #0 has a text of 101 characters" in long_input.json["error"]
    long_draft = predict(client, [{"id": 1, "data": {"input": "hi", "draft": "y" * 101}}])
    assert long_draft.status_code == 400 and "task #0 has a draft of 101 characters" in long_draft.json["error"]
    no_verdict = CONFIG.replace('name="verdict"', 'name="verdict" ').replace('value="reject"', 'value="skip"')
    refused = predict(client, [], no_verdict)
    assert refused.status_code == 400 and "no verdict" in refused.json["error"]
    unknown_h = CONFIG.replace(f'value="{H}"', 'value="polite"')
    judged = predict(client, [{"id": 1, "data": {"input": "hi"}}], unknown_h)
    assert judged.status_code == 400 and "polite" in judged.json["error"], "R does not know H: a clear 4xx"
    wrong_setting = create_app(small_settings(model_dir, external_redis_url, attribute_value="kind")).test_client()
    setup = post(wrong_setting, "/setup", {"project": 1, "schema": CONFIG})
    assert setup.status_code == 400 and "ALVAR_ATTRIBUTE_VALUE='kind'" in setup.json["error"]


def review(annotation_id: int, verdict: str, output: str | None) -> dict[str, Any]:
    result = [{"from_name": "verdict", "to_name": "input", "type": "choices", "value": {"choices": [verdict]}}]
    if output is not None:
        result += CONTROL.output_result(output)
    return {"id": annotation_id, "task": 100 + annotation_id, "result": result, "was_cancelled": False}


def test_the_webhook_counts_verified_reviews_only(model_dir: Path, external_redis_url: str) -> None:
    client = create_app(small_settings(model_dir, external_redis_url), (TrainingReaction.from_settings,)).test_client()

    def event(annotation: dict[str, Any]) -> dict[str, Any]:
        body = {"action": "ANNOTATION_CREATED", "project": {"id": 9, "label_config": CONFIG}, "annotation": annotation}
        response = post(client, "/webhook", body)
        assert response.status_code == 201
        return response.json["jobs"][0]

    assert event(review(1, "accept", "A good reply.")) == {"training": "waiting", "annotations_since_training": 1,
                                                           "retrain_every": 2}
    assert event(review(2, "reject", "A bad reply."))["training"] == "not counted"
    assert event(review(3, "edit", "   "))["training"] == "not counted", "an emptied output verifies nothing"
    assert event(review(4, "accept", None))["training"] == "not counted"
    assert event(review(5, "edit", "A corrected reply."))["training"] == "queued"


def test_the_sweep_queues_a_student_that_is_behind(model_dir: Path, student: TextToTextStudent,
                                                   external_redis_url: str) -> None:
    settings = small_settings(model_dir, external_redis_url)
    connection = Redis.from_url(external_redis_url)
    connection.flushdb()
    assert check_generation_training(settings, connection, 11, 0).training is None
    first = check_generation_training(settings, connection, 11, 1)
    assert first.trained_on is None and first.training is not None and first.training["training"] == "queued"
    store = project_store(model_dir, 12)
    store.switch(store.save(student, INPUTS, OUTPUTS))
    assert check_generation_training(settings, connection, 12, 5) == TrainingCheck(4, None)
    behind = check_generation_training(settings, connection, 12, 6)
    assert behind.trained_on == 4 and behind.training is not None and behind.training["training"] == "queued"


def test_training_job_learns_the_verified_pairs_only(ls: LabelStudio, label_studio: LabelStudioServer,
                                                     tmp_path: Path, external_redis_url: str) -> None:
    project_id = create_project(ls, "alvar generative backend", CONFIG)
    data = [{"input": INPUTS[0], "draft": "Drafted by the teacher."}, {"input": INPUTS[1]}, {"input": INPUTS[2]},
            {"input": INPUTS[3]}, {"input": "Not reviewed yet."}]
    tasks_request: Any = [{"data": item} for item in data]
    imported: Any = ls.projects.import_tasks(id=project_id, request=tasks_request, return_task_ids=True)
    task_ids = list(imported.task_ids)
    reviews = [("accept", "Drafted by the teacher."), ("edit", "An edited counter-narrative."),
               ("reject", "A reply people rejected."), ("accept", "")]
    for task_id, (verdict, output) in zip(task_ids, reviews):
        ls.annotations.create(id=task_id, result=review(0, verdict, output)["result"], was_cancelled=False)
    draft_prediction: Any = [{"task": task_ids[0], "result": CONTROL.output_result("Drafted by the teacher."),
                              "score": 0.0, "model_version": OLD_VERSION}]
    ls.projects.import_predictions(id=project_id, request=draft_prediction)

    settings = small_settings(tmp_path / "models", external_redis_url, label_studio_url=label_studio.url,
                              label_studio_api_key=label_studio.token)
    connection = Redis.from_url(external_redis_url)
    job = training_queue(connection).enqueue(train_project, project_id, job_timeout=600)
    with jobs_use(settings):
        SimpleWorker([training_queue(connection)], connection=connection).work(burst=True)
    job.refresh()
    assert job.is_finished, job.get_status()
    summary: Any = job.return_value()
    store = project_store(settings.model_dir, project_id)
    version = store.current_version()
    assert summary["version"] == version and summary["n_examples"] == 2
    metadata = store.metadata(version)
    assert metadata["kind"] == "generation" and metadata["n_examples"] == 2 and metadata["n_pairs"] == 2
    assert metadata["data_hash"] == data_hash([INPUTS[0], INPUTS[1]],
                                              ["Drafted by the teacher.", "An edited counter-narrative."])
    assert metadata["reviews"]["reject"] == 1 and metadata["reviews"]["emptied"] == 1
    assert ls.projects.get(id=project_id).model_version == version

    tasks = {task["id"]: task for task in iter_tasks(ls, project_id)}
    assert len(tasks) == len(data)
    student = TextToTextStudent.load(store.path(version), num_threads=1)
    written = dict(zip(task_ids, student.generate([item["input"] for item in data])))
    for task_id, task in tasks.items():
        (prediction,) = task["predictions"]
        assert prediction["model_version"] == version, "the older version's draft prediction is deleted"
        expected = "Drafted by the teacher." if task_id == task_ids[0] else written[task_id]
        assert prediction["result"][0]["value"]["text"] == [expected]
        assert prediction["score"] == 0.0, "R is not trained: every task scores 0.0"
