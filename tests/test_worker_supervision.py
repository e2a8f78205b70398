"""`alvar worker` as a supervisor: its workers ride out a Redis restart, a killed worker process is started again,
`alvar status` judges each worker by its heartbeat and its process, and `alvar jobs --requeue-failed` re-runs a
failed job, and `alvar worker --processes N` runs N generation and N scoring processes beside one for training.
Against the real parts: the session's Label Studio, the backend and `alvar worker` as processes, the embedded
Redis (stopped and started again), and the loopback LLM.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from label_studio_sdk import LabelStudio
from redis import Redis
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry

from alvar.datafiles import read_dataset
from alvar.generator.jobs import generation_key
from alvar.generator.reaction import GenerationReaction
from alvar.labelstudio.webhook import parse_event
from alvar.loop import services
from alvar.loop.jobs import worker_rows
from alvar.loop.label_studio_server import LabelStudioServer
from alvar.loop.project import create_project, import_pool
from alvar.loop.worker import SCHEDULER_LOCK_RETRY_SECONDS, Supervisor
from alvar.settings import GENERATION_QUEUE, SCORING_QUEUE, TRAINING_QUEUE, load_settings
from tests.chat_server import ChatServer, Reply
from tests.conftest import alvar_command, wait_for
from tests.generator_stack import (
    CONFIG,
    CONTROL,
    GeneratorStack,
    K,
    annotate,
    by_status,
    generator_stack,
    new_project,
    text_of,
)

CONCURRENCY = 2


@pytest.fixture(scope="module")
def stack(run_root: Path, seed_model_dir: Path, label_studio: LabelStudioServer) -> Iterator[GeneratorStack]:
    with generator_stack(run_root / "supervision", seed_model_dir, label_studio,
                         ALVAR_GENERATION_CONCURRENCY=str(CONCURRENCY), ALVAR_LLM_TIMEOUT="30",
                         ALVAR_GENERATION_TIMEOUT="20") as built:
        wait_for(lambda: workers_up(status(built)), 120, "the worker's training and generation workers")
        yield built


@pytest.fixture(scope="module")
def texts(safety_dir: Path) -> list:
    return read_dataset(safety_dir / "test_labeled.tsv").examples[200:240]


def status(stack: GeneratorStack) -> dict[str, Any]:
    """`alvar status --json` of the stack's data dir (it exits 1 here: no `alvar up` state, so Label Studio and
    the backend count as down; the worker's entry is what these tests read)."""
    done = subprocess.run([*alvar_command(), "status", "--json"], env={**os.environ, **stack.env,
                          "ALVAR_DATA_DIR": str(stack.root)}, capture_output=True, text=True, timeout=60)
    return json.loads(done.stdout)


def workers_up(report: dict[str, Any]) -> bool:
    return bool(report["services"]["worker"]["up"])


def up_status(stack: GeneratorStack) -> dict[str, Any] | None:
    report = status(stack)
    return report if workers_up(report) else None


def generation_workers(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [worker for worker in report["workers"] if worker["queues"] == [GENERATION_QUEUE]]


def current_variations(ls: LabelStudio, project_id: int, task_id: int) -> int:
    return len(by_status(ls, project_id, task_id)["current"])


def test_the_workers_carry_on_through_a_redis_restart_and_status_shows_their_heartbeats(
        ls: LabelStudio, stack: GeneratorStack, texts: list) -> None:
    before = status(stack)
    pids = {worker["name"]: worker["pid"] for worker in before["workers"]}
    assert len(generation_workers(before)) == CONCURRENCY
    assert [worker["queues"] for worker in before["workers"] if worker["name"].endswith("-training")] == \
        [[TRAINING_QUEUE]]
    assert [worker["queues"] for worker in before["workers"] if worker["name"].endswith("-scoring")] == \
        [[SCORING_QUEUE]]
    project_id, task_ids = new_project(ls, stack, "supervision: redis restart", texts[:4])
    slow = task_ids[:CONCURRENCY]  # they hold every generation worker while Redis is away; the rest wait queued
    for task_id in slow:
        stack.llm.script(text_of(ls, task_id), Reply(delay=8.0))
    for task_id in task_ids:
        annotate(ls, task_id, "self-harm")
    wait_for(lambda: all(stack.llm.requests_for(text_of(ls, task_id)) for task_id in slow), 60,
             "the slow jobs' LLM requests")
    stack.stop_redis()
    wait_for(lambda: not services.redis_reachable(stack.env["REDIS_URL"]), 10, "Redis to stop")
    time.sleep(3)  # Redis stays away a few seconds, while the slow jobs wait on the LLM
    stack.start_redis()

    for task_id in task_ids:
        job = stack.finished(generation_key(project_id, task_id, "self-harm"), timeout=120)
        # First attempts: the running ones carried on.
        assert job.retries_left == len(stack.env["ALVAR_JOB_RETRY_INTERVALS"].split(","))
        assert current_variations(ls, project_id, task_id) == K
    after = wait_for(lambda: up_status(stack), 60, "status: workers up")
    assert {worker["name"]: worker["pid"] for worker in after["workers"]} == pids  # the same processes carried on
    for worker in generation_workers(after):
        assert worker["live"] and worker["heartbeat_age_s"] < 30 and worker["state"] in ("idle", "busy")
    log = services.log_path(stack.root, "worker").read_text()
    assert "Redis answers again" in log and "ended unexpectedly" not in log


def test_a_killed_generation_process_is_started_again_and_nothing_is_lost(
        ls: LabelStudio, stack: GeneratorStack, texts: list) -> None:
    supervisor = services.running_pid(stack.root, "worker")
    (killed_pid,) = {worker["pid"] for worker in generation_workers(status(stack))}
    project_id, task_ids = new_project(ls, stack, "supervision: killed process", texts[4:7])
    running = task_ids[0]
    stack.llm.script(text_of(ls, running), Reply(delay=8.0))
    annotate(ls, running, "legal-advice")
    wait_for(lambda: stack.llm.requests_for(text_of(ls, running)), 60, "the running job's LLM request")
    os.kill(killed_pid, signal.SIGKILL)
    for task_id in task_ids[1:]:
        annotate(ls, task_id, "legal-advice")  # queued while no generation process runs

    for task_id in task_ids[1:]:
        stack.finished(generation_key(project_id, task_id, "legal-advice"), timeout=120)
        assert current_variations(ls, project_id, task_id) == K
    report = status(stack)
    assert workers_up(report) and services.running_pid(stack.root, "worker") == supervisor
    (new_pid,) = {worker["pid"] for worker in generation_workers(report)}
    assert new_pid != killed_pid and all(worker["live"] for worker in generation_workers(report))
    assert f"generation worker process (PID {killed_pid}) ended unexpectedly (signal 9)" in \
        services.log_path(stack.root, "worker").read_text()
    # The killed execution is noticed once its heartbeat lapses (ALVAR_GENERATION_HEARTBEAT_TTL); RQ schedules its
    # retry and the supervisor's scheduler puts it back in the queue.
    job = stack.finished(generation_key(project_id, running, "legal-advice"), timeout=240)
    assert job.retries_left == 2  # one of its three retries
    assert current_variations(ls, project_id, running) == K


def test_status_counts_a_killed_worker_as_down_and_names_the_queue(stack: GeneratorStack) -> None:
    supervisor = services.running_pid(stack.root, "worker")
    assert supervisor is not None
    os.killpg(supervisor, signal.SIGKILL)  # nothing unregisters: the heartbeats are fresh, the processes gone
    wait_for(lambda: services.running_pid(stack.root, "worker") is None, 30, "the worker to die")
    report = status(stack)
    assert report["workers"] and not any(worker["live"] for worker in report["workers"])
    assert not workers_up(report)
    assert report["services"]["worker"]["where"] == f"no live worker serves {TRAINING_QUEUE}, {GENERATION_QUEUE}"
    stack.start_worker(f"supervision-again-{os.getpid()}")
    wait_for(lambda: workers_up(status(stack)), 120, "the workers of the worker started again")


def annotation_event(project_id: int, task_id: int, annotation_id: int, text: str, label: str) -> dict[str, Any]:
    return {"action": "ANNOTATION_CREATED", "project": {"id": project_id, "label_config": CONFIG},
            "annotation": {"id": annotation_id, "task": task_id, "was_cancelled": False,
                           "result": CONTROL.choice_result(label)},
            "task": {"id": task_id, "data": {"text": text}}}


def test_requeue_failed_runs_a_failed_job_again(ls: LabelStudio, label_studio: LabelStudioServer,
                                                run_root: Path, texts: list) -> None:
    """On a Redis of its own, with `alvar worker --burst` runs: a job fails on its last attempt (the LLM
    answers 500), `alvar jobs --requeue-failed` puts it back, the next run imports its k variations."""
    redis_dir = run_root / "requeue-redis"
    redis_url = services.ensure_redis(redis_dir, None)
    connection = Redis.from_url(redis_url)
    queue = Queue(GENERATION_QUEUE, connection=connection)
    project_id = create_project(ls, "supervision: requeue", CONFIG)
    (task_id,) = import_pool(ls, project_id, texts[10:11])
    text = text_of(ls, task_id)
    annotation_id = annotate(ls, task_id, "medical-advice")  # no backend connected: no webhook
    outcome = GenerationReaction(connection, queue)(parse_event(annotation_event(project_id, task_id, annotation_id,
                                                                                 text, "medical-advice")))
    (queued,) = outcome["generation"]
    job = Job.fetch(queued["job_id"], connection=connection)
    job.retries_left = 0  # its last attempt, as after earlier failures
    job.save()
    try:
        with ChatServer() as llm:
            llm.script(text, Reply(status=500, body={"error": {"message": "overloaded"}}))
            env = {**os.environ, "REDIS_URL": redis_url, "LABEL_STUDIO_URL": label_studio.url,
                   "LABEL_STUDIO_API_KEY": label_studio.token, "OPENAI_BASE_URL": llm.base_url,
                   "OPENAI_API_KEY": "test-key", "ALVAR_LLM_MAX_RETRIES": "0", "ALVAR_VARIATIONS": str(K),
                   "ALVAR_CACHE_DIR": str(redis_dir / "cache"), "ALVAR_RECONCILE_INTERVAL": "0"}
            burst = [*alvar_command(), "worker", "--queues", "generation", "--burst"]
            subprocess.run(burst, env=env, check=True, capture_output=True, timeout=180)
            assert job.get_status(refresh=True) == "failed"
            assert FailedJobRegistry(queue=queue).get_job_ids() == [job.id]

            requeued = subprocess.run([*alvar_command(), "jobs", "--requeue-failed", "--json"], env=env,
                                      capture_output=True, text=True, timeout=60)
            assert requeued.returncode == 0, requeued.stderr
            (row,) = json.loads(requeued.stdout)["requeued"]
            assert row["id"] == job.id and row["queue"] == GENERATION_QUEUE and "500" in row["reason"]
            assert job.get_status(refresh=True) == "queued" and FailedJobRegistry(queue=queue).count == 0
            printed = subprocess.run([*alvar_command(), "jobs", "--requeue-failed"], env=env, capture_output=True,
                                     text=True, timeout=60)
            assert "0 failed jobs requeued" in printed.stdout

            subprocess.run(burst, env=env, check=True, capture_output=True, timeout=180)
        assert job.get_status(refresh=True) == "finished" and job.return_value()["status"] == "imported"
        assert current_variations(ls, project_id, task_id) == K
    finally:
        services.stop_process(redis_dir, "redis")


@pytest.mark.slow
def test_processes_runs_n_generation_and_n_scoring_processes_beside_one_for_training(
        run_root: Path, llm: ChatServer) -> None:
    root = run_root / "processes"
    redis_url = services.ensure_redis(root / "redis", None)
    env = {"REDIS_URL": redis_url, "OPENAI_BASE_URL": llm.base_url, "OPENAI_API_KEY": "test-key",
           "ALVAR_GENERATION_CONCURRENCY": "1", "ALVAR_TORCH_THREADS": "1", "ALVAR_RECONCILE_INTERVAL": "0",
           "ALVAR_DATA_DIR": str(root), "MODEL_DIR": str(root / "models")}
    services.start_process(root, "worker", [*alvar_command(), "worker", "--processes", "2", "--name", "procs"], env)
    connection = Redis.from_url(redis_url)

    def live_by_queue() -> dict[str, dict[str, int]] | None:
        found: dict[str, dict[str, int]] = {TRAINING_QUEUE: {}, GENERATION_QUEUE: {}, SCORING_QUEUE: {}}
        for row in worker_rows(connection):
            if row.live and row.pid:
                (queue,) = row.queues
                found[queue][row.name] = row.pid
        return found if [len(found[queue]) for queue in found] == [1, 2, 2] else None

    try:
        found = wait_for(live_by_queue, 240, "1 training, 2 generation and 2 scoring workers")
        assert set(found[TRAINING_QUEUE]) == {"procs-training"}
        assert set(found[GENERATION_QUEUE]) == {"procs-generation-p0-0", "procs-generation-p1-0"}
        assert set(found[SCORING_QUEUE]) == {"procs-scoring-p0", "procs-scoring-p1"}
        pids = [pid for workers in found.values() for pid in workers.values()]
        assert len(set(pids)) == 5  # five processes: one per worker here (one generation thread each)
        supervisor = services.running_pid(root, "worker")
        assert supervisor is not None and supervisor not in pids
    finally:
        services.stop_process(root, "worker")
        services.stop_process(root / "redis", "redis")


def test_a_new_supervisor_takes_the_scheduler_over_soon_after_a_killed_ones_lock_lapses(
        external_redis_url: str) -> None:
    """A killed supervisor leaves its scheduler locks behind until they lapse (RQ gives them 61 s; 2 s here). The
    next supervisor takes them within SCHEDULER_LOCK_RETRY_SECONDS of that, not after RQ's 120 s fallback, and
    then enqueues a retry that was due, so the jobs the killed worker left behind run again."""
    connection = Redis.from_url(external_redis_url)
    queue_names = [TRAINING_QUEUE, GENERATION_QUEUE]
    for name in queue_names:
        connection.set(f"rq:scheduler-lock:{name}", "a-killed-supervisor", ex=2)
    queue = Queue(GENERATION_QUEUE, connection=connection)
    job = queue.enqueue_in(timedelta(seconds=1), "os.getpid", job_id="due-retry")
    supervisor = Supervisor(load_settings(redis_url=external_redis_url), [], queue_names, burst=False)

    def turn() -> bool:
        supervisor._maintain()
        return supervisor.scheduler.acquired_locks == set(queue_names)

    def due_job_queued() -> bool:
        supervisor._maintain()
        return job.id in queue.get_job_ids()

    assert not turn(), "the killed supervisor's locks were still held"
    # RQ's fallback alone would wait 120 s: the wait below fails long before that.
    wait_for(turn, 2 + SCHEDULER_LOCK_RETRY_SECONDS + 5, "the new supervisor to take the scheduler locks", 0.2)
    wait_for(due_job_queued, 10, "the due job back in its queue", 0.2)
    supervisor.scheduler.release_locks()
