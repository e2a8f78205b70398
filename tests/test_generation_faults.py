"""Generation jobs when Label Studio is unreachable, and when no LLM is configured: real Redis, real workers."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from redis import Redis
from rq import Queue
from rq.registry import ScheduledJobRegistry

from alvar.generator.reaction import JOB_RETRY_INTERVALS, GenerationReaction
from alvar.label_config import load
from alvar.labelstudio.webhook import parse_event
from alvar.settings import GENERATION_QUEUE
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
    assert job.get_status() == "scheduled" and job.retries_left == len(JOB_RETRY_INTERVALS) - 1
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
