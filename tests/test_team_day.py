"""A team's ordinary day loses nothing: several annotators, lost webhooks, Redis restarts.

Against the real parts: the session's Label Studio 1.23.2, the backend and an `alvar worker` as processes, the
embedded Redis (stopped and started again here), and the loopback LLM. Every drill ends with exactly k current
variations per (task, current label) and the LLM asked once per distinct label.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from label_studio_sdk import LabelStudio
from rq.job import Job, JobStatus
from rq.registry import FinishedJobRegistry
from rq.utils import now

from alvar.backend.model_store import project_store
from alvar.datafiles import read_dataset
from alvar.generator.jobs import generation_key
from alvar.labelstudio.client import iter_tasks
from alvar.labelstudio.training_data import training_set
from alvar.loop.label_studio_server import LabelStudioServer
from alvar.queues import PENDING_STATUSES, job_status
from alvar.settings import GENERATION_QUEUE
from tests.chat_server import Reply
from tests.conftest import wait_for
from tests.generator_stack import (
    CONTROL,
    GeneratorStack,
    K,
    annotate,
    by_status,
    generator_stack,
    new_project,
    text_of,
    variations,
)

RETRAIN_EVERY = 4
SWEEP_SECONDS = 5
# The LLM's slow replies keep jobs running while Redis restarts: well under the LLM's timeout (no retry) and the
# jobs' own, and long enough that every slow job is still waiting on its reply when Redis goes away.
SLOW_REPLY_SECONDS = 6.0
LLM_TIMEOUT_SECONDS = 20
GENERATION_TIMEOUT_SECONDS = 60
# The id every sweep job gets (alvar/loop/reconcile.py, enqueue_sweep).
SWEEP_JOB_PREFIX = "alvar-reconcile-"


@pytest.fixture(scope="module")
def stack(run_root: Path, seed_model_dir: Path, label_studio: LabelStudioServer) -> Iterator[GeneratorStack]:
    with generator_stack(run_root / "team-day", seed_model_dir, label_studio,
                         ALVAR_RETRAIN_EVERY=str(RETRAIN_EVERY), ALVAR_RECONCILE_INTERVAL=str(SWEEP_SECONDS),
                         ALVAR_LLM_TIMEOUT=str(LLM_TIMEOUT_SECONDS),
                         ALVAR_GENERATION_TIMEOUT=str(GENERATION_TIMEOUT_SECONDS)) as built:
        yield built


@pytest.fixture(scope="module")
def second_annotator(ls: LabelStudio) -> int:
    user = ls.users.create(username="annotator-two", email="annotator-two@alvar.test", password="second-password-1")
    return int(user.id)


@pytest.fixture(scope="module")
def texts(safety_dir: Path) -> list:
    return read_dataset(safety_dir / "test_labeled.tsv").examples[100:160]


def exactly_k_current(ls: LabelStudio, project_id: int, task_id: int, labels: set[str]) -> bool:
    """k current variations for each of ``labels`` and none for any other label."""
    current = by_status(ls, project_id, task_id)["current"]
    per_label = {label: [task for task in current if task["data"]["source_label"] == label] for label in labels}
    return len(current) == K * len(labels) and all(len(tasks) == K for tasks in per_label.values())


def sweeps_started_since(stack: GeneratorStack, since: datetime) -> list[Job]:
    """The reconciliation sweeps that started at ``since`` or later and have finished."""
    registry = FinishedJobRegistry(GENERATION_QUEUE, connection=stack.redis)
    ids = [job_id for job_id in registry.get_job_ids(cleanup=False) if job_id.startswith(SWEEP_JOB_PREFIX)]
    return [job for job in Job.fetch_many(ids, connection=stack.redis)
            if job is not None and job.started_at is not None and job.started_at >= since]


def test_a_second_annotator_who_agrees_adds_nothing_and_stales_nothing(ls: LabelStudio, stack: GeneratorStack,
                                                                        texts: list, second_annotator: int) -> None:
    project_id, task_ids = new_project(ls, stack, "team day: agreement", texts[:4])
    task_id = task_ids[0]
    annotate(ls, task_id, "self-harm")
    key = generation_key(project_id, task_id, "self-harm")
    stack.finished(key)
    verified = variations(ls, project_id, task_id)[0]
    annotate(ls, verified["id"], "self-harm", validity="valid")

    annotate(ls, task_id, "self-harm", completed_by=second_annotator)
    assert stack.finished(key).return_value()["status"] == "already imported"
    assert exactly_k_current(ls, project_id, task_id, {"self-harm"})
    assert by_status(ls, project_id, task_id)["stale"] == []
    trained = training_set(iter_tasks(ls, project_id, only_annotated=True), CONTROL)
    assert verified["data"]["text"] in trained.texts
    assert len(stack.llm.requests_for(text_of(ls, task_id))) == 1


def test_annotators_who_disagree_get_a_set_each_until_one_changes_their_mind(
        ls: LabelStudio, stack: GeneratorStack, texts: list, second_annotator: int) -> None:
    project_id, task_ids = new_project(ls, stack, "team day: disagreement", texts[4:8])
    task_id = task_ids[0]
    annotate(ls, task_id, "medical-advice")
    stack.finished(generation_key(project_id, task_id, "medical-advice"))
    second = annotate(ls, task_id, "legal-advice", completed_by=second_annotator)
    stack.finished(generation_key(project_id, task_id, "legal-advice"))
    assert exactly_k_current(ls, project_id, task_id, {"medical-advice", "legal-advice"})

    ls.annotations.update(id=second, result=CONTROL.choice_result("medical-advice"))
    stack.finished(generation_key(project_id, task_id, "medical-advice"))
    assert exactly_k_current(ls, project_id, task_id, {"medical-advice"})
    stale = by_status(ls, project_id, task_id)["stale"]
    assert len(stale) == K and {task["data"]["source_label"] for task in stale} == {"legal-advice"}
    assert len(stack.llm.requests_for(text_of(ls, task_id))) == 2


def test_annotations_made_while_redis_is_down_get_variations_and_training_from_the_sweep(
        ls: LabelStudio, stack: GeneratorStack, texts: list) -> None:
    project_id, task_ids = new_project(ls, stack, "team day: lost webhooks", texts[8:16])
    labelled = dict(zip(task_ids[:RETRAIN_EVERY], ("discard", "self-harm", "medical-advice", "legal-advice")))
    stack.stop_redis()
    try:
        for task_id, label in labelled.items():
            annotate(ls, task_id, label)  # Label Studio's webhook fails and is never sent again
    finally:
        stack.start_redis()
    for task_id, label in labelled.items():
        wait_for(lambda task_id=task_id, label=label: exactly_k_current(ls, project_id, task_id, {label}), 120,
                 f"the sweep's variations of task {task_id}")
        assert len(stack.llm.requests_for(text_of(ls, task_id))) == 1
        assert stack.finished(generation_key(project_id, task_id, label)).meta["queued_by"] == "sweep"
    store = project_store(stack.env["MODEL_DIR"], project_id)
    version = wait_for(store.current_version, 300, "the training the sweep queued")
    assert store.metadata(version)["human"] == RETRAIN_EVERY


def test_generation_carries_on_through_a_redis_restart(ls: LabelStudio, stack: GeneratorStack, texts: list) -> None:
    project_id, task_ids = new_project(ls, stack, "team day: redis restart", texts[16:20])
    slow = {task_id: text_of(ls, task_id) for task_id in task_ids[:3]}
    for text in slow.values():
        stack.llm.script(text, Reply(delay=SLOW_REPLY_SECONDS))
    for task_id in slow:
        annotate(ls, task_id, "emergency-situation")
    wait_for(lambda: all(stack.llm.requests_for(text) for text in slow.values()), 60, "the jobs' LLM requests")
    keys = [generation_key(project_id, task_id, "emergency-situation") for task_id in slow]
    assert [job_status(stack.redis, key) for key in keys] == [JobStatus.STARTED] * len(keys)
    stack.stop_redis()
    time.sleep(2)
    stack.start_redis()
    for task_id in slow:
        wait_for(lambda task_id=task_id: exactly_k_current(ls, project_id, task_id, {"emergency-situation"}), 240,
                 f"variations of task {task_id} after the restart")
    settled = now()
    wait_for(lambda: len(sweeps_started_since(stack, settled)) >= 2, SWEEP_SECONDS * 24,
             "two sweeps that started after the variations were made")
    sweeps = sweeps_started_since(stack, settled)
    assert [sweep.return_value()[str(project_id)]["queued"] for sweep in sweeps] == [[]] * len(sweeps)
    assert all(exactly_k_current(ls, project_id, task_id, {"emergency-situation"}) for task_id in slow)


def test_a_quick_relabel_there_and_back_ends_with_one_set_and_one_llm_call_per_label(
        ls: LabelStudio, stack: GeneratorStack, texts: list) -> None:
    """A -> B -> A faster than the jobs run: whatever order the jobs meet the labels in, the task ends with k
    current variations for A, none current for B, and the LLM asked at most once per label."""
    project_id, task_ids = new_project(ls, stack, "team day: quick relabel", texts[20:22])
    task_id = task_ids[0]
    stack.llm.script(text_of(ls, task_id), Reply(delay=1.5))
    first = annotate(ls, task_id, "financial-advice")
    ls.annotations.update(id=first, result=CONTROL.choice_result("legal-advice"))
    ls.annotations.update(id=first, result=CONTROL.choice_result("financial-advice"))
    wait_for(lambda: exactly_k_current(ls, project_id, task_id, {"financial-advice"}), 180,
             "k current variations of the label that came back")
    keys = [generation_key(project_id, task_id, label) for label in ("financial-advice", "legal-advice")]
    wait_for(lambda: all(job_status(stack.redis, key) not in PENDING_STATUSES for key in keys), 120,
             "both labels' jobs to end")
    assert exactly_k_current(ls, project_id, task_id, {"financial-advice"})
    text = text_of(ls, task_id)
    assert len(stack.llm.requests_for(text)) <= 2
    assert len(stack.llm.requests_for(text, label="financial-advice")) == 1
    assert len(stack.llm.requests_for(text, label="legal-advice")) <= 1
