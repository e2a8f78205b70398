"""A generation stack for tests: the backend (webhook) and an `alvar worker` as real processes, the embedded Redis
(which a test may stop and start again: its append-only file keeps the queues), the session's real Label Studio
and a real loopback chat-completions server. :func:`generative_stack` is the same stack set up for generative
projects: a small, fast student G, the given R at MODEL_DIR/attribute, the loopback LLM as the teacher."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
from label_studio_sdk import LabelStudio
from redis import Redis
from rq import Queue
from rq.job import Job
from rq.registry import StartedJobRegistry

from alvar.label_config import load
from alvar.labelstudio.choices_control import parse_choices_control
from alvar.labelstudio.client import iter_tasks
from alvar.loop import services
from alvar.loop.label_studio_server import LabelStudioServer
from alvar.loop.project import connect_backend, create_project, import_pool
from alvar.settings import GENERATION_QUEUE, WEBHOOK_SECRET_HEADER
from tests.chat_server import ChatServer
from tests.conftest import alvar_command, copy_model_dir, free_port, wait_for

K = 3
MODEL = "loopback-1"
AUTH = ("label-studio", "generator-pass")
SECRET = "generator-webhook-secret"
CONFIG = load("annotate")
CONTROL = parse_choices_control(CONFIG)


class GeneratorStack:
    def __init__(self, root: Path, env: dict[str, str], url: str, llm: ChatServer) -> None:
        self.root, self.env, self.url, self.llm = root, env, url, llm
        self.redis = Redis.from_url(env["REDIS_URL"])
        self.queue = Queue(GENERATION_QUEUE, connection=self.redis)

    @property
    def redis_dir(self) -> Path:
        return self.root / "redis"

    def start_worker(self, name: str) -> int:
        return services.start_process(self.root, "worker", [*alvar_command(), "worker", "--name", name], self.env)

    def stop_redis(self) -> None:
        services.stop_process(self.redis_dir, "redis")

    def start_redis(self) -> None:
        assert services.ensure_redis(self.redis_dir, None) == self.env["REDIS_URL"]

    def job(self, job_id: str) -> Job | None:
        return Job.fetch(job_id, connection=self.redis) if Job.exists(job_id, connection=self.redis) else None

    def finished(self, job_id: str, timeout: float = 120) -> Job:
        """Wait until the job finished (and fail the test if it failed)."""
        def done() -> Job | None:
            job = self.job(job_id)
            return job if job is not None and job.get_status() in ("finished", "failed") else None

        job = wait_for(done, timeout, f"job {job_id}")
        assert job.get_status() == "finished", job.latest_result().exc_string if job.latest_result() else job
        return job

    def idle(self) -> bool:
        registry = StartedJobRegistry(GENERATION_QUEUE, connection=self.redis)
        return self.queue.count == 0 and not registry.get_job_ids(cleanup=False)

    def webhook(self, payload: dict[str, Any]) -> dict[str, Any]:
        response = requests.post(f"{self.url}/webhook", json=payload, auth=AUTH, timeout=5,
                                 headers={WEBHOOK_SECRET_HEADER: SECRET})
        assert response.status_code == 201, response.text
        return response.json()


@contextmanager
def generator_stack(root: Path, seed_model_dir: Path, label_studio: LabelStudioServer,
                    **settings: str) -> Iterator[GeneratorStack]:
    """Start the stack in ``root``; ``settings`` (environment variables) override the test defaults."""
    redis_url = services.ensure_redis(root / "redis", None)
    with ChatServer() as llm:
        env = {
            "MODEL_DIR": str(copy_model_dir(seed_model_dir, root / "models")),
            "REDIS_URL": redis_url,
            "LABEL_STUDIO_URL": label_studio.url,
            "LABEL_STUDIO_API_KEY": label_studio.token,
            "BASIC_AUTH_USER": AUTH[0],
            "BASIC_AUTH_PASS": AUTH[1],
            "ALVAR_WEBHOOK_SECRET": SECRET,
            "OPENAI_BASE_URL": llm.base_url,
            "OPENAI_API_KEY": "test-key",
            "ALVAR_LLM_MODEL": MODEL,
            "ALVAR_LLM_TIMEOUT": "2",
            "ALVAR_VARIATIONS": str(K),
            "ALVAR_GENERATION_TIMEOUT": "10",
            # Production's waits, shortened: a killed worker's job is noticed after 15 s without a heartbeat (RQ's
            # default: 70 s here), and a failed job runs again after 1, 2 and 4 s (30, 120 and 600 s).
            "ALVAR_GENERATION_HEARTBEAT_TTL": "15",
            "ALVAR_JOB_RETRY_INTERVALS": "1,2,4",
            "ALVAR_GENERATION_CONCURRENCY": "4",
            "ALVAR_RETRAIN_EVERY": "100000",
            "ALVAR_RECONCILE_INTERVAL": "0",
            "ALVAR_EPOCHS": "1",
            "ALVAR_TORCH_THREADS": "1",
            "ALVAR_CACHE_DIR": str(root / "cache"),
            **settings,
        }
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        built = GeneratorStack(root, env, url, llm)
        try:
            built.start_worker(f"generator-test-{port}")
            services.start_process(root, "backend", [*alvar_command(), "backend", "--workers", "1", "--port",
                                                     str(port)], env)
            services.wait_until(lambda: services.healthy(url, AUTH), url, 120, log=services.log_path(root, "backend"))
            yield built
        finally:
            for name in ("worker", "backend"):
                services.stop_process(root, name)
            built.stop_redis()


# A student that trains in seconds on one thread: few epochs, short inputs and outputs; retraining after 2 reviews.
# A draft job (the teacher's answer judged by R) gets a minute: on two cores shared with the rest of the suite it
# took over 10 s, and a job cut short between writing its draft and its prediction shows the one without the other
# until its retry.
GENERATIVE_SETTINGS = {
    "ALVAR_GENERATION_TIMEOUT": "60",
    "ALVAR_STUDENT_EPOCHS": "2",
    "ALVAR_TORCH_THREADS": "1",
    "ALVAR_RETRAIN_EVERY": "2",
    "ALVAR_MAX_LENGTH": "32",
    "ALVAR_MAX_OUTPUT_LENGTH": "8",
    "ALVAR_TEACHER_MODEL": MODEL,
}


@contextmanager
def generative_stack(root: Path, attribute_model: Path, label_studio: LabelStudioServer,
                     **settings: str) -> Iterator[GeneratorStack]:
    """The stack for generative projects: MODEL_DIR holds R (a copy of ``attribute_model``) and no shared model."""
    seed = root / "seed-models"
    shutil.copytree(attribute_model, seed / "attribute")
    with generator_stack(root, seed, label_studio, **{**GENERATIVE_SETTINGS, **settings}) as stack:
        yield stack


def annotate(ls: LabelStudio, task_id: int, label: str, validity: str | None = None,
             completed_by: int | None = None) -> int:
    """Annotate as a person would, through Label Studio's API (its webhook reaches the backend at once)."""
    result = CONTROL.choice_result(label)
    if validity is not None:
        result.append({"from_name": "validity", "to_name": "text", "type": "choices",
                       "value": {"choices": [validity]}})
    extra = {"completed_by": completed_by} if completed_by is not None else {}
    return int(ls.annotations.create(id=task_id, result=result, was_cancelled=False, lead_time=2.0, **extra).id)


def new_project(ls: LabelStudio, stack: GeneratorStack, title: str, examples: list) -> tuple[int, list[int]]:
    """A project with the examples as its pool, connected to the stack's backend (webhook with the secret)."""
    project_id = create_project(ls, title, CONFIG)
    task_ids = import_pool(ls, project_id, examples)
    connect_backend(ls, project_id, stack.url, basic_auth=AUTH, webhook_secret=SECRET)
    return project_id, task_ids


def text_of(ls: LabelStudio, task_id: int) -> str:
    return ls.tasks.get(id=str(task_id)).data["text"]


def variations(ls: LabelStudio, project_id: int, source_task: int | None = None) -> list[dict[str, Any]]:
    found = [task for task in iter_tasks(ls, project_id) if task["data"].get("origin") == "llm"]
    return [task for task in found if source_task is None or task["data"]["source_task"] == source_task]


def by_status(ls: LabelStudio, project_id: int, source_task: int) -> dict[str, list[dict[str, Any]]]:
    made = variations(ls, project_id, source_task)
    return {status: [task for task in made if task["data"]["variation_status"] == status]
            for status in ("current", "stale")}
