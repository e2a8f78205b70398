"""One model per project: each project's own store and version, the shared fallback, bounded memory, pruning.

The store and predictor tests use the real seed learner; the stack test runs two projects in the session's real
Label Studio 1.23.2 with one `alvar backend` and one `alvar worker` process, a real Redis and the loopback LLM.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import requests
from label_studio_sdk import LabelStudio
from redis import Redis
from rq.job import Job
from rq.registry import FailedJobRegistry, FinishedJobRegistry

from alvar.backend.learner import TransformerClassifier
from alvar.backend.model import AlvarModel
from alvar.backend.model_store import ModelStore, project_ids, project_store, serving
from alvar.backend.predictor import Predictor
from alvar.backend.publishing import prediction_versions
from alvar.datafiles import read_dataset
from alvar.generator.jobs import generation_key
from alvar.generator.variation_tasks import llm_model_version
from alvar.loop.label_studio_server import LabelStudioServer
from alvar.loop.project import connect_backend, create_project, import_pool
from alvar.settings import TRAINING_QUEUE, load_settings
from tests.conftest import copy_model_dir, wait_for
from tests.generator_stack import (
    AUTH,
    CONFIG,
    MODEL,
    SECRET,
    GeneratorStack,
    annotate,
    generator_stack,
)

KEPT = 2
TEXTS = ["I want to end it all", "Can my landlord keep my deposit?", "Best budget tent?"]


@pytest.fixture(scope="module")
def seed(seed_model_dir: Path) -> tuple[str, TransformerClassifier]:
    return ModelStore(seed_model_dir).load(num_threads=1)


@pytest.fixture
def model_dir(tmp_path: Path, seed_model_dir: Path) -> Path:
    """A MODEL_DIR whose shared model is the seed."""
    return copy_model_dir(seed_model_dir, tmp_path / "models")


def test_a_project_is_served_its_own_version_else_the_shared_one(model_dir: Path, seed: tuple[str, Any],
                                                                 external_redis_url: str) -> None:
    shared_version, learner = seed
    own = project_store(model_dir, 7)
    seven = own.save(learner, ["a", "b"], ["discard", "self-harm"], extra={"project": 7})
    assert serving(model_dir, 7).version == shared_version, "a version counts only once it is switched to"
    own.switch(seven)

    model = AlvarModel(load_settings(model_dir=model_dir, torch_threads=1), Redis.from_url(external_redis_url))
    tasks = [{"id": index, "data": {"text": text}} for index, text in enumerate(TEXTS)]
    for project, expected in ((7, seven), ("7.1700000000", seven), (8, shared_version), ("8.1", shared_version),
                              (None, shared_version), ("not a project", shared_version)):
        predictions = model.predict(tasks, CONFIG, project)
        assert [p["model_version"] for p in predictions] == [expected] * len(TEXTS), project
        assert model.setup(CONFIG, project) == {"model_version": expected}
    assert model.versions("7.1700000000") == {"versions": [seven], "current": seven}
    assert model.versions(8) == {"versions": [shared_version], "current": shared_version}
    assert model.model_version == shared_version and project_ids(model_dir) == [7]

    (model_dir / "CURRENT").unlink()
    assert model.predict(tasks, CONFIG, 8) == [], "no own model and no shared one: no predictions"
    assert model.setup(CONFIG, 8) == {"model_version": None}
    assert model.versions(8) == {"versions": [shared_version], "current": None}
    assert [p["model_version"] for p in model.predict(tasks, CONFIG, 7)] == [seven] * len(TEXTS)


def test_the_predictor_holds_a_bounded_number_of_models(model_dir: Path, seed: tuple[str, Any]) -> None:
    _, learner = seed
    versions = {}
    for project_id in (1, 2, 3):
        store = project_store(model_dir, project_id)
        store.switch(versions.setdefault(project_id, store.save(learner, ["a", "b"], ["discard", "self-harm"])))
    predictor = Predictor(load_settings(model_dir=model_dir, torch_threads=1), capacity=2)
    for project_id in (1, 2, 3, 1):
        version, loaded = predictor.current(project_id)
        assert version == versions[project_id]
        assert loaded is predictor.models.get(project_store(model_dir, project_id).path(version))
        assert len(predictor.models.held()) <= 2
    assert predictor.models.held() == [project_store(model_dir, 3).path(versions[3]),
                                       project_store(model_dir, 1).path(versions[1])]

    store = project_store(model_dir, 1)
    newer = store.save(learner, ["c", "d"], ["discard", "self-harm"])
    store.switch(newer)
    assert store.prune(1) == [versions[1]]
    assert predictor.current(1)[0] == newer, "the predictor follows the pointer to the new version"
    assert predictor.models.held() == [project_store(model_dir, 3).path(versions[3]), store.path(newer)], \
        "the new version replaces the project's old one in memory"


def test_pruning_keeps_the_newest_versions_and_never_the_current_one(model_dir: Path, seed: tuple[str, Any]) -> None:
    _, learner = seed
    store = project_store(model_dir, 5)
    saved = [store.save(learner, ["a", "b", str(n)], ["discard", "self-harm", "discard"]) for n in range(4)]
    store.switch(saved[0])
    abandoned = model_dir / "5" / ".20000101-000000-000000-deadbeef-x"
    abandoned.mkdir()
    fresh = model_dir / "5" / ".20990101-000000-000000-deadbeef-y"
    fresh.mkdir()
    os.utime(abandoned, (0, 0))

    assert store.prune(2) == [saved[1]]
    assert store.versions() == [saved[0], saved[2], saved[3]] and store.current_version() == saved[0]
    assert not store.path(saved[1]).exists() and not abandoned.exists() and fresh.exists()
    store.switch(saved[3])
    assert store.prune(2) == [saved[0]] and store.versions() == saved[2:]
    shared = ModelStore(model_dir)
    assert shared.versions() == [shared.current_version()], "another store is never pruned"
    with pytest.raises(ValueError):
        store.prune(0)


# --- two projects in one Label Studio, one backend, one worker -----------------------------------------------


@pytest.fixture(scope="module")
def stack(run_root: Path, seed_model_dir: Path, label_studio: LabelStudioServer):
    with generator_stack(run_root / "project-models", seed_model_dir, label_studio,
                         ALVAR_MODELS_KEPT=str(KEPT)) as built:
        yield built


def _new_project(ls: LabelStudio, stack: GeneratorStack, title: str, examples: list) -> tuple[int, list[int], Any]:
    project_id = create_project(ls, title, CONFIG)
    task_ids = import_pool(ls, project_id, examples)
    backend = connect_backend(ls, project_id, stack.url, basic_auth=AUTH, webhook_secret=SECRET)
    return project_id, task_ids, backend


def _label_two_classes(ls: LabelStudio, stack: GeneratorStack, project_id: int, task_ids: list[int]) -> None:
    """Two human labels of different classes; the LLM answers each with variations (and their `llm:` pre-labels)."""
    for task_id, label in zip(task_ids, ("self-harm", "discard")):
        annotate(ls, task_id, label)
        stack.finished(generation_key(project_id, task_id, label))


def _finished_trainings(stack: GeneratorStack, project_id: int) -> list[Job]:
    def of_project(registry: Any) -> list[Job]:
        jobs = Job.fetch_many(registry.get_job_ids(), connection=stack.redis)
        return [job for job in jobs if job is not None and job.args == (project_id,)]

    failed = of_project(FailedJobRegistry(TRAINING_QUEUE, connection=stack.redis))
    assert not failed, failed[0].latest_result().exc_string
    return of_project(FinishedJobRegistry(TRAINING_QUEUE, connection=stack.redis))


def _train(ls: LabelStudio, stack: GeneratorStack, project_id: int, backend: Any) -> str:
    """Press "Start training" in Label Studio (START_TRAINING to the backend's webhook); return the new version."""
    done = len(_finished_trainings(stack, project_id))
    ls.ml.train(id=backend.id)
    jobs = wait_for(lambda: (found := _finished_trainings(stack, project_id)) and len(found) > done and found,
                    300, f"a training of project {project_id}")
    latest = max(jobs, key=lambda job: job.ended_at)
    return str(latest.return_value()["version"])


def _predictions(ls: LabelStudio, project_id: int) -> dict[int, list[tuple[int, str, float]]]:
    """Each task's predictions in Label Studio as (id, model_version, score), sorted."""
    return {task.id: sorted((p["id"], p["model_version"], p["score"]) for p in
                            (q if isinstance(q, dict) else q.model_dump() for q in task.predictions))
            for task in ls.tasks.list(project=project_id, fields="all", page_size=500)}


def _backend(stack: GeneratorStack, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = requests.post(f"{stack.url}{path}", json=body, auth=AUTH, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def _served(stack: GeneratorStack, project: str) -> set[str]:
    tasks = [{"id": index, "data": {"text": text}} for index, text in enumerate(TEXTS)]
    answer = _backend(stack, "/predict", {"tasks": tasks, "label_config": CONFIG, "project": project})
    assert len(answer["results"]) == len(TEXTS)
    return {result["model_version"] for result in answer["results"]}


def test_training_one_project_changes_neither_the_others_model_nor_its_predictions(
        ls: LabelStudio, stack: GeneratorStack, safety_dir: Path) -> None:
    pool = read_dataset(safety_dir / "test_labeled.tsv").examples
    a, a_tasks, a_backend = _new_project(ls, stack, "project models A", pool[:12])
    b, b_tasks, b_backend = _new_project(ls, stack, "project models B", pool[12:24])
    shared = ModelStore(stack.env["MODEL_DIR"]).current_version()
    assert _served(stack, f"{a}.1700000000") == _served(stack, str(b)) == {shared}
    _label_two_classes(ls, stack, a, a_tasks)
    _label_two_classes(ls, stack, b, b_tasks)

    b_version = _train(ls, stack, b, b_backend)
    b_store = project_store(stack.env["MODEL_DIR"], b)
    b_before = _predictions(ls, b)
    assert b_store.current_version() == b_version and ls.projects.get(id=b).model_version == b_version
    assert _served(stack, f"{b}.1700000000") == {b_version}

    a_versions = [_train(ls, stack, a, a_backend) for _ in range(KEPT + 1)]

    # Project A: served its newest version; only the last KEPT versions kept; one alvar prediction per task.
    a_store = project_store(stack.env["MODEL_DIR"], a)
    assert a_store.current_version() == a_versions[-1] and a_store.versions() == a_versions[-KEPT:]
    assert not a_store.path(a_versions[0]).exists()
    assert _served(stack, f"{a}.1700000000") == {a_versions[-1]}
    assert _backend(stack, "/setup", {"project": f"{a}.1700000000", "schema": CONFIG}) == \
        {"model_version": a_versions[-1]}
    assert ls.projects.get(id=a).model_version == a_versions[-1]
    llm = llm_model_version(MODEL)
    a_predictions = _predictions(ls, a)
    assert len(a_predictions) == 12 + 2 * 3
    for task_id, found in a_predictions.items():
        versions = sorted(version for _, version, _ in found)
        is_variation = task_id not in a_tasks
        assert versions == sorted([a_versions[-1]] + ([llm] if is_variation else [])), task_id
    assert prediction_versions(ls, a) == {a_versions[-1]: 18, llm: 6}

    # Project B: the same model, the same version served, the very same predictions in Label Studio.
    assert b_store.current_version() == b_version and b_store.versions() == [b_version]
    assert _served(stack, f"{b}.1700000000") == {b_version}
    assert _backend(stack, "/setup", {"project": f"{b}.1700000000", "schema": CONFIG}) == {"model_version": b_version}
    assert ls.projects.get(id=b).model_version == b_version
    assert _predictions(ls, b) == b_before

    # A project without a model of its own is still served the shared one; the shared one never changed.
    assert ModelStore(stack.env["MODEL_DIR"]).current_version() == shared
    assert _served(stack, "424242") == {shared}
    assert project_ids(stack.env["MODEL_DIR"]) == sorted([a, b])
