"""The ML backend's bounds, against a real `alvar backend` process (waitress), a real model and a real Redis."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from alvar.backend.app import MAX_CHOICES, MAX_JSON_DEPTH, MAX_NAME_CHARS
from alvar.label_config import load
from alvar.scripts.backend_app import backend_app
from alvar.settings import load_settings
from tests.conftest import alvar_command, free_port, wait_for

pytestmark = pytest.mark.slow  # starts `alvar backend` processes and loads them with predictions

CONFIG = load("annotate")
AUTH = ("ls", "limits-pass")
HOOK = {"X-Alvar-Secret": "limits-secret", "Content-Type": "application/json"}
LIMITS = {"ALVAR_MAX_REQUEST_BYTES": "262144", "ALVAR_MAX_TASKS_PER_REQUEST": "1000", "ALVAR_MAX_TEXT_CHARS": "1000",
          "ALVAR_BACKEND_THREADS": "4", "ALVAR_MAX_CONCURRENT_PREDICTIONS": "1"}


class Backend:
    def __init__(self, url: str, log: Path) -> None:
        self.url = url
        self.log = log

    def post(self, path: str, body: object, **kwargs: object) -> requests.Response:
        data = body if isinstance(body, (bytes, Iterator)) else json.dumps(body).encode()
        return requests.post(self.url + path, data=data, auth=AUTH, headers=HOOK, timeout=60, **kwargs)

    def host_port(self) -> tuple[str, int]:
        host, port = self.url.removeprefix("http://").split(":")
        return host, int(port)


@pytest.fixture(scope="module")
def backend(seed_model_dir: Path, external_redis_url: str,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    work = tmp_path_factory.mktemp("limits")
    port = free_port()
    env = {**os.environ, **LIMITS, "MODEL_DIR": str(seed_model_dir), "REDIS_URL": external_redis_url,
           "BASIC_AUTH_USER": AUTH[0], "BASIC_AUTH_PASS": AUTH[1], "ALVAR_WEBHOOK_SECRET": "limits-secret",
           "ALVAR_DATA_DIR": str(work / "data"), "ALVAR_RETRAIN_EVERY": "100000"}
    log = work / "backend.log"
    with log.open("wb") as out:
        process = subprocess.Popen([*alvar_command(), "backend", "--port", str(port)], env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
    server = Backend(f"http://127.0.0.1:{port}", log)

    def healthy() -> bool:
        assert process.poll() is None, log.read_text()
        try:
            return requests.get(server.url + "/health", auth=AUTH, timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    wait_for(healthy, 120, "the backend")
    yield server
    process.terminate()
    process.wait(timeout=30)
    assert process.returncode == 0 or process.returncode < 0


def predict_body(count: int, text: str = "Can my landlord keep my deposit?") -> dict:
    return {"tasks": [{"id": i, "data": {"text": text}} for i in range(count)], "label_config": CONFIG,
            "project": "1.1700000000"}


def webhook_body(task_id: int, **changes: object) -> dict:
    annotation = {"id": task_id, "task": task_id, "completed_by": 1, "result": [
        {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["discard"]}}]}
    body = {"action": "ANNOTATION_CREATED", "annotation": annotation,
            "task": {"id": task_id, "data": {"text": "hello"}}, "project": {"id": 1, "label_config": CONFIG}}
    return {**body, **changes}


def raw(backend: Backend, data: bytes) -> bytes:
    with socket.create_connection(backend.host_port(), timeout=10) as sock:
        sock.sendall(data)
        return sock.recv(4096)


def test_body_size_is_bounded_by_the_server(backend: Backend) -> None:
    limit = int(LIMITS["ALVAR_MAX_REQUEST_BYTES"])
    at_limit = backend.post("/predict", b" " * (limit - 2) + b"{}")
    assert at_limit.status_code == 400 and "'tasks' must be a list" in at_limit.json()["error"]
    over = backend.post("/predict", b" " * (limit - 1) + b"{}")
    assert over.status_code == 413 and "max_body" in over.text
    chunked = backend.post("/predict", iter([b" " * 65536] * 5))
    assert chunked.status_code == 413


def test_tasks_and_text_limits_are_400_naming_the_setting(backend: Backend) -> None:
    assert backend.post("/predict", predict_body(3, "x" * 1000)).status_code == 200
    long_text = backend.post("/predict", predict_body(2, "x" * 1001))
    assert long_text.status_code == 400
    assert long_text.json()["error"] == "task #0 has a text of 1001 characters; ALVAR_MAX_TEXT_CHARS is 1000"
    many = backend.post("/predict", {**predict_body(0), "tasks": [1] * 1001})
    assert many.status_code == 400
    assert many.json()["error"] == "the request has 1001 tasks; ALVAR_MAX_TASKS_PER_REQUEST is 1000"
    junk = backend.post("/predict", {**predict_body(0), "tasks": [1] * 1000})
    assert junk.status_code == 200 and len(junk.json()["results"]) == 1000


def test_label_configs_that_would_multiply_the_answer_are_400(backend: Backend) -> None:
    choices = "".join(f'<Choice value="c{i}"/>' for i in range(MAX_CHOICES + 1))
    many = CONFIG.replace('<Choice value="discard"', choices + '<Choice value="discard"')
    long_name = CONFIG.replace('name="label"', f'name="{"n" * (MAX_NAME_CHARS + 1)}"')
    for path, key in (("/predict", "label_config"), ("/setup", "schema")):
        body = {**predict_body(1), "schema": CONFIG}
        response = backend.post(path, {**body, key: many})
        assert response.status_code == 400 and f"the most is {MAX_CHOICES}" in response.json()["error"]
        response = backend.post(path, {**body, key: long_name})
        assert response.status_code == 400 and f"the most is {MAX_NAME_CHARS}" in response.json()["error"]
    hook = backend.post("/webhook", webhook_body(5, project={"id": 1, "label_config": many}))
    assert hook.status_code == 400 and f"the most is {MAX_CHOICES}" in hook.json()["error"]


@pytest.mark.parametrize("path, body, reason", [
    ("/predict", b'{"tasks": ' + b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1) + b"}", "deeper than 64"),
    ("/webhook", b'{"action": "START_TRAINING", "project": ' + b"[" * 5000 + b"}", "depth limit exceeded"),
    ("/predict", b'{"tasks": [{"data": {"text": "\\ud800"}}], "label_config": "x"}', "surrogate"),
    ("/webhook", b'{"action": "START_TRAINING", "project": {"id": "\\udfff"}}', "surrogate"),
    ("/predict", b'{"tasks": [], "label_config": NaN}', "not valid JSON"),
    ("/predict", b'{"tasks": "\xc3\x28"}', "not valid JSON"),
    ("/setup", b'{"schema": ["<View/>"]}', "label config is empty"),
    ("/predict", b'{"tasks": [' + b",".join([b"[]"] * 64_001) + b'], "label_config": "x"}', "the most is 64000"),
    ("/webhook", json.dumps(webhook_body(3, action=["START_TRAINING"])).encode(), "no 'action'"),
    ("/webhook", json.dumps(webhook_body(3, project={"id": [1]})).encode(), "names no project"),
])
def test_malformed_bodies_are_400(backend: Backend, path: str, body: bytes, reason: str) -> None:
    response = backend.post(path, body)
    assert response.status_code == 400, response.text
    assert reason in response.json()["error"]


@pytest.mark.parametrize("annotation", [
    "not an object", [1, None], {"id": 7, "task": 7, "result": "x"}, {"id": 7, "task": 7, "result": [1, None, []]},
    {"id": 7, "task": {"id": []}, "result": []}, {"id": 7, "task": 7, "result": [{"value": "choices"}]},
])
def test_annotations_of_the_wrong_shape_are_never_a_5xx(backend: Backend, annotation: object) -> None:
    """The dispatcher skips (with a reason) what it cannot read in an annotation; the request itself is valid."""
    response = backend.post("/webhook", webhook_body(7, annotation=annotation))
    assert response.status_code in (201, 400), response.text


def test_unreadable_credentials_are_401(backend: Backend) -> None:
    for header in (b"Basic \xe9\xe9\xe9", b"Basic !!!", b"Digest username=ls, password=limits-pass", b"Basic"):
        answer = raw(backend, b"GET /health HTTP/1.1\r\nHost: x\r\nAuthorization: " + header + b"\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 401 "), answer


def test_metrics_need_the_basic_auth(backend: Backend, seed_model_dir: Path, external_redis_url: str) -> None:
    assert requests.get(backend.url + "/metrics", timeout=10).status_code == 401
    metrics = requests.get(backend.url + "/metrics", auth=AUTH, timeout=10)
    assert metrics.status_code == 200 and "alvar_requests_total" in metrics.text
    settings = load_settings(model_dir=seed_model_dir, redis_url=external_redis_url, basic_auth_user="ls",
                             basic_auth_pass="x", metrics_public=True)
    public = backend_app(settings).test_client()
    assert public.get("/metrics").status_code == 200 and public.get("/health").status_code == 401


def test_request_paths_are_escaped_in_the_log(backend: Backend) -> None:
    for path in ("/nowhere%0aFORGED line one", "/health%0d%0aFORGED line two", "/x%1b[31mFORGED"):
        assert requests.get(backend.url + path, auth=AUTH, timeout=10).status_code == 404
    text = wait_for(lambda: log if "\\x1b[31mFORGED" in (log := backend.log.read_text()) else None, 10, "the log")
    assert "/nowhere\\nFORGED line one" in text and "/health\\r\\nFORGED line two" in text
    assert not [line for line in text.splitlines() if line.startswith("FORGED")]


def test_half_open_connections_do_not_freeze_health(backend: Backend) -> None:
    sockets = []
    for index in range(40):
        sock = socket.create_connection(backend.host_port(), timeout=10)
        cut = b"GET /heal" if index % 2 else b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{"
        sock.sendall(cut)
        sockets.append(sock)
    try:
        for _ in range(5):
            started = time.perf_counter()
            assert requests.get(backend.url + "/health", auth=AUTH, timeout=10).status_code == 200
            assert time.perf_counter() - started < 1
    finally:
        for sock in sockets:
            sock.close()


def test_predictions_past_the_spare_threads_are_429(backend: Backend) -> None:
    """4 threads, 2 kept spare: 1 prediction scored, 1 waiting, the rest refused at once with Retry-After."""
    body = predict_body(1000, "I lost my job and cannot pay the rent this month, what can I do? " * 2)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: backend.post("/predict", body), range(8)))
    statuses = sorted(answer.status_code for answer in answers)
    assert set(statuses) == {200, 429} and statuses.count(200) >= 2, statuses
    refused = next(answer for answer in answers if answer.status_code == 429)
    assert refused.headers["Retry-After"] == "5" and "retry in 5 s" in refused.json()["error"]


def test_webhook_and_health_answer_within_1s_during_large_predictions(backend: Backend) -> None:
    body = predict_body(1000, "My chest hurts when I climb stairs, should I see a doctor? " * 2)
    stop = threading.Event()
    statuses: list[int] = []

    def predicting() -> None:
        while not stop.is_set():
            statuses.append(backend.post("/predict", body).status_code)

    clients = [threading.Thread(target=predicting) for _ in range(4)]
    for client in clients:
        client.start()
    worst = 0.0
    try:
        time.sleep(1)
        for index in range(30):
            started = time.perf_counter()
            assert backend.post("/webhook", webhook_body(100 + index)).status_code == 201
            assert requests.get(backend.url + "/health", auth=AUTH, timeout=10).status_code == 200
            worst = max(worst, time.perf_counter() - started)
            time.sleep(0.1)
    finally:
        stop.set()
        for client in clients:
            client.join()
    assert 200 in statuses and set(statuses) <= {200, 429}
    assert worst < 1, f"a webhook plus a health check took {worst:.2f} s"


def test_the_backend_process_can_cap_malloc_arenas_and_zero_leaves_them() -> None:
    """`alvar backend` caps glibc's malloc arenas (ALVAR_BACKEND_MALLOC_ARENAS, default 1); this machine's libc is
    glibc, so the cap takes; 0 changes nothing. The RSS it buys is the fuzzer's bound (test_backend_fuzz.py)."""
    assert load_settings().backend_malloc_arenas == 1
    probe = "from alvar.malloc_arenas import limit_arenas; print(limit_arenas(1), limit_arenas(0))"
    answered = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert answered.stdout.split() == ["True", "False"]
