"""The seam: a real Label Studio 1.23.2, our backend under waitress, a real Redis and real RQ workers."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
from label_studio_sdk import LabelStudio
from redis import Redis
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry

from alvar.backend.dispatcher import TrainingReaction
from alvar.backend.model_store import ModelStore, project_store
from alvar.datafiles import read_dataset
from alvar.entropy import confidence_score
from alvar.label_config import load
from alvar.labelstudio.choices_control import parse_choices_control
from alvar.loop import services
from alvar.loop.label_studio_server import LabelStudioServer
from alvar.loop.project import connect_backend, create_project, import_pool
from tests.conftest import alvar_command, copy_model_dir, free_port, wait_for

AUTH = ("label-studio", "backend-pass")
SECRET = "webhook-shared-secret"
CONFIG = load("annotate")
CONTROL = parse_choices_control(CONFIG)


class Stack:
    """The backend and a worker, as processes, sharing one model dir and the embedded Redis."""

    def __init__(self, root: Path, env: dict[str, str], url: str) -> None:
        self.root, self.env, self.url = root, env, url

    @property
    def store(self) -> ModelStore:
        """The shared model (the seed), served to projects without a model of their own."""
        return ModelStore(self.env["MODEL_DIR"])

    def project_store(self, project_id: int) -> ModelStore:
        return project_store(self.env["MODEL_DIR"], project_id)

    def metrics(self) -> str:
        return requests.get(f"{self.url}/metrics", auth=AUTH, timeout=5).text


@pytest.fixture(scope="module")
def stack(run_root: Path, seed_model_dir: Path, embedded_redis_url: str, label_studio: LabelStudioServer,
          ) -> Iterator[Stack]:
    root = run_root / "stack"
    env = {
        "MODEL_DIR": str(copy_model_dir(seed_model_dir, root / "models")),
        "REDIS_URL": embedded_redis_url,
        "LABEL_STUDIO_URL": label_studio.url,
        "LABEL_STUDIO_API_KEY": label_studio.token,
        "BASIC_AUTH_USER": AUTH[0],
        "BASIC_AUTH_PASS": AUTH[1],
        "ALVAR_RETRAIN_EVERY": "2",
        "ALVAR_EPOCHS": "1",
        "ALVAR_TORCH_THREADS": "1",
        "ALVAR_WEBHOOK_SECRET": SECRET,
        # Compared below with a float32 learner to the last digit; bfloat16's closeness is test_learner's.
        "ALVAR_INFERENCE_PRECISION": "float32",
    }
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    try:
        services.start_process(root, "worker", [*alvar_command(), "worker", "--name", f"test-worker-{port}"], env)
        services.start_process(root, "backend", [*alvar_command(), "backend", "--workers", "1", "--port", str(port)],
                               env)
        services.wait_until(lambda: services.healthy(url, AUTH), url, 120, log=services.log_path(root, "backend"))
        yield Stack(root, env, url)
    finally:
        for name in ("worker", "backend"):
            services.stop_process(root, name)


@pytest.fixture(scope="module")
def pool(safety_dir: Path) -> list:
    return read_dataset(safety_dir / "test_labeled.tsv").examples[:120]


@pytest.fixture(scope="module")
def project(ls: LabelStudio, stack: Stack, pool: list) -> tuple[int, list[int]]:
    project_id = create_project(ls, "alvar seam", CONFIG)
    task_ids = import_pool(ls, project_id, pool)
    connect_backend(ls, project_id, stack.url, basic_auth=AUTH, webhook_secret=SECRET)
    return project_id, task_ids


def task_predictions(ls: LabelStudio, project_id: int) -> dict[int, list]:
    return {task.id: task.predictions for task in ls.tasks.list(project=project_id, fields="all", page_size=500)}


def test_label_studio_stores_our_predictions_and_sorts_by_uncertainty(ls: LabelStudio, stack: Stack,
                                                                       project: tuple[int, list[int]],
                                                                       pool: list) -> None:
    project_id, task_ids = project
    version, learner = stack.store.load()

    ls.actions.create(id="retrieve_tasks_predictions", project=project_id,
                      selected_items={"all": False, "included": task_ids})
    ls.projects.update(id=project_id, model_version=version)

    predictions = task_predictions(ls, project_id)
    probabilities = learner.predict_proba([example.text for example in pool])
    expected_scores = confidence_score(probabilities)
    assert len(predictions) == len(pool) >= 100
    for task_id, row, score in zip(task_ids, probabilities, expected_scores):
        (prediction,) = predictions[task_id]
        prediction = prediction if isinstance(prediction, dict) else prediction.model_dump()
        assert prediction["model_version"] == version
        assert CONTROL.chosen_label(prediction["result"]) == learner.classes_[int(row.argmax())]
        assert prediction["score"] == pytest.approx(float(score), abs=1e-4)

    view = ls.views.create(project=project_id, data={"title": "by score", "ordering": ["tasks:predictions_score"]})
    ordered = [task.id for task in ls.tasks.list(project=project_id, view=view.id, page_size=500)]
    assert ordered[0] == task_ids[int(np.argmin(probabilities.max(axis=1)))], "the least confident first"
    assert len(ordered) == len(task_ids)


def annotate(ls: LabelStudio, task_id: int, label: str) -> None:
    """As an annotator would in the labeling UI: one annotation with the chosen label."""
    ls.annotations.create(id=task_id, result=CONTROL.choice_result(label), was_cancelled=False, lead_time=3.2)


def webhook_timings(metrics: str) -> tuple[float, float]:
    """(answered within 1 s, all) webhook requests seen by the backend."""
    within = re.search(r'alvar_request_seconds_bucket\{endpoint="webhook",le="1.0"\} (\S+)', metrics)
    count = re.search(r'alvar_request_seconds_count\{endpoint="webhook"\} (\S+)', metrics)
    return (float(within.group(1)) if within else 0.0, float(count.group(1)) if count else 0.0)


def test_annotations_trigger_training_by_a_real_worker(ls: LabelStudio, stack: Stack,
                                                       project: tuple[int, list[int]], pool: list) -> None:
    project_id, task_ids = project
    webhooks = ls.webhooks.list(project=project_id)
    assert any(hook.url == f"{stack.url}/webhook" for hook in webhooks)
    old_version = ls.projects.get(id=project_id).model_version
    shared_version = stack.store.current_version()
    first_label = pool[0].label
    second = next(i for i, example in enumerate(pool) if example.label != first_label)

    started = time.perf_counter()
    annotate(ls, task_ids[0], first_label)
    annotate(ls, task_ids[second], pool[second].label)
    assert time.perf_counter() - started < 10

    metrics = stack.metrics()
    within, seen = webhook_timings(metrics)
    assert seen >= 2 and within == seen, "every webhook must be answered in under 1 s"
    accepted = re.search(r'alvar_requests_total\{endpoint="webhook",status="201"\} (\S+)', metrics)
    assert accepted and float(accepted.group(1)) == seen

    new_version = wait_for(lambda: (v := ls.projects.get(id=project_id).model_version) != old_version and v,
                           300, "a new model version on the project")
    assert stack.project_store(project_id).current_version() == new_version
    metadata = stack.project_store(project_id).metadata(new_version)
    assert metadata["project"] == project_id and metadata["human"] == 2 and metadata["n_examples"] == 2
    # The project's training wrote only the project's store: the shared model (health's version) is unchanged.
    assert stack.store.current_version() == shared_version
    assert requests.get(f"{stack.url}/health", auth=AUTH, timeout=5).json()["model_version"] == shared_version


def test_a_failed_training_keeps_the_current_version(ls: LabelStudio, stack: Stack, pool: list,
                                                     embedded_redis_url: str) -> None:
    project_id = create_project(ls, "one class only", CONFIG)
    task_ids = import_pool(ls, project_id, pool[:3])
    backend = connect_backend(ls, project_id, stack.url, basic_auth=AUTH, webhook_secret=SECRET)
    annotate(ls, task_ids[0], "discard")
    serving = stack.store.current_version()
    project_version = ls.projects.get(id=project_id).model_version

    ls.ml.train(id=backend.id)
    registry = FailedJobRegistry("alvar-training", connection=Redis.from_url(embedded_redis_url))

    def failed_job() -> Job | None:
        jobs = Job.fetch_many(registry.get_job_ids(), connection=registry.connection)
        return next((job for job in jobs if job is not None and job.args == (project_id,)), None)

    job = wait_for(failed_job, 300, "the training job to fail")
    assert "need at least two classes" in job.latest_result().exc_string
    assert stack.store.current_version() == serving
    assert stack.project_store(project_id).current_version() is None
    assert requests.get(f"{stack.url}/health", auth=AUTH, timeout=5).json()["model_version"] == serving
    assert ls.projects.get(id=project_id).model_version == project_version


def test_a_real_worker_on_redis_url_trains(ls: LabelStudio, stack: Stack, project: tuple[int, list[int]],
                                           external_redis_url: str, run_root: Path) -> None:
    project_id, _ = project
    connection = Redis.from_url(external_redis_url)
    queue = Queue("alvar-training", connection=connection)
    outcome = TrainingReaction(connection, queue, retrain_every=1).enqueue(project_id, reason="test")
    env = {**os.environ, **stack.env, "REDIS_URL": external_redis_url,
           "MODEL_DIR": str(run_root / "redis-url-models")}
    subprocess.run([*alvar_command(), "worker", "--burst"], env=env, check=True, timeout=600,
                   capture_output=True)
    job = queue.fetch_job(outcome["job_id"])
    assert job.get_status() == "finished", job.latest_result().exc_string if job.latest_result() else job
    version = job.return_value()["version"]
    assert project_store(run_root / "redis-url-models", project_id).current_version() == version
    assert ls.projects.get(id=project_id).model_version == version
    assert job.meta["version"] == version and job.meta["project"] == project_id
