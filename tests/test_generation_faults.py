"""Generation jobs when Label Studio is unreachable, when no LLM is configured, and when the configuration cannot
make a prompt: real Redis, real workers."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue
from rq.registry import FailedJobRegistry, ScheduledJobRegistry

from alvar.generator.reaction import GenerationReaction
from alvar.generator.threaded_workers import ThreadWorker
from alvar.generator.worker_resources import WorkerResources
from alvar.label_config import load
from alvar.labelstudio.webhook import parse_event
from alvar.queues import DEFAULT_JOB_POLICY
from alvar.settings import GENERATION_QUEUE, load_settings
from tests.chat_server import ChatServer
from tests.conftest import alvar_command, free_port

CONFIG = load("annotate")


def annotation_event(task_id: int, label: str) -> dict:
    return {"action": "ANNOTATION_CREATED", "project": {"id": 3, "label_config": CONFIG},
            "annotation": {"id": 40 + task_id, "task": task_id, "was_cancelled": False,
                           "result": [{"from_name": "label", "to_name": "text", "type": "choices",
                                       "value": {"choices": [label]}}]},
            "task": {"id": task_id, "data": {"text": f"text of task {task_id}"}}}


def worker_env(redis_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("OPENAI_")}
    return {**env, "REDIS_URL": redis_url, "LABEL_STUDIO_URL": f"http://127.0.0.1:{free_port()}",
            "LABEL_STUDIO_API_KEY": "unused-token", "ALVAR_CACHE_DIR": str(tmp_path / "cache"), **extra}


@pytest.mark.slow  # `alvar` subprocesses that load models or start services
def test_label_studio_down_fails_the_job_with_its_reason_and_schedules_a_retry(redis_url: str,
                                                                               tmp_path: Path) -> None:
    connection = Redis.from_url(redis_url)
    connection.flushdb()
    queue = Queue(GENERATION_QUEUE, connection=connection)
    outcome = GenerationReaction(connection, queue)(parse_event(annotation_event(5, "legal-advice")))
    (queued,) = outcome["generation"]
    with ChatServer() as llm:
        env = worker_env(redis_url, tmp_path, OPENAI_BASE_URL=llm.base_url, OPENAI_API_KEY="test")
        subprocess.run([*alvar_command(), "worker", "--queues", "generation", "--burst"], env=env, check=True,
                       capture_output=True, timeout=120)
    job = queue.fetch_job(queued["job_id"])
    assert job.get_status() == "scheduled" and job.retries_left == len(DEFAULT_JOB_POLICY.retry_intervals) - 1
    assert job.id in ScheduledJobRegistry(queue=queue).get_job_ids()
    assert job.meta["failures"] == 1 and job.meta["last_error"].startswith("ConnectError")

    report = subprocess.run([*alvar_command(), "jobs", "--json"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert report.returncode == 0, report.stderr
    parsed = json.loads(report.stdout)
    assert parsed["counts"][GENERATION_QUEUE]["retrying"] == 1
    (row,) = [row for row in parsed["jobs"] if row["id"] == job.id]
    assert row["state"] == "retrying" and "Connect" in row["reason"] and row["retries_left"] == 2


def test_without_an_llm_generation_jobs_wait_and_the_worker_says_so(redis_url: str, tmp_path: Path) -> None:
    connection = Redis.from_url(redis_url)
    connection.flushdb()
    queue = Queue(GENERATION_QUEUE, connection=connection)
    GenerationReaction(connection, queue)(parse_event(annotation_event(6, "discard")))
    done = subprocess.run([*alvar_command(), "worker", "--queues", "generation", "--burst"],
                          env=worker_env(redis_url, tmp_path), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    assert "no LLM configured" in done.stderr and queue.count == 1


@contextmanager
def project_server(label_config: str) -> Iterator[str]:
    """A loopback stand-in for Label Studio that answers only ``GET /api/projects/<id>/``: a project with this
    label config. Yields its URL."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            body = json.dumps({"id": int(self.path.strip("/").split("/")[-1]), "label_config": label_config})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("label_config", "settings", "error"), [
    ("<View><Text name='text' value='$text'/></View>", {}, "LabelConfigError"),
    (CONFIG, {"relation": "contrast", "contrast_label": "not-a-label"}, "ContrastLabelError"),
], ids=["label-config", "contrast-label"])
@pytest.mark.slow  # `alvar` subprocesses that load models or start services
def test_a_configuration_error_fails_the_job_once_without_retries(redis_url: str, tmp_path: Path, label_config: str,
                                                                   settings: dict[str, str], error: str) -> None:
    """An unusable label config, or a prompt that cannot be built: no retry can fix it, so the job ends failed at
    its first attempt, with the reason, in the failed registry that `alvar jobs` shows."""
    connection = Redis.from_url(redis_url)
    connection.flushdb()
    queue = Queue(GENERATION_QUEUE, connection=connection)
    (queued,) = GenerationReaction(connection, queue)(parse_event(annotation_event(7, "legal-advice")))["generation"]
    with project_server(label_config) as url:
        resources = WorkerResources(load_settings(redis_url=redis_url, label_studio_url=url,
                                                  label_studio_api_key="unused-token", **settings))
        ThreadWorker([queue], connection=connection, name=f"config-errors-{os.getpid()}",
                     resources=resources).work(burst=True)
    job = queue.fetch_job(queued["job_id"])
    assert job.get_status() == "failed" and job.retries_left == 0
    assert FailedJobRegistry(queue=queue).get_job_ids() == [job.id] and ScheduledJobRegistry(queue=queue).count == 0
    assert job.meta["failures"] == 1 and job.meta["last_error"].startswith(error)

    report = subprocess.run([*alvar_command(), "jobs", "--json"], env=worker_env(redis_url, tmp_path),
                            capture_output=True, text=True, timeout=60)
    assert report.returncode == 0, report.stderr
    (row,) = [row for row in json.loads(report.stdout)["jobs"] if row["id"] == job.id]
    assert row["state"] == "failed" and error in row["reason"] and row["retries_left"] == 0
