"""The parts of RQ that alvar's workers rely on beyond its documented API: the hooks that
generator/threaded_workers.py, alvar/reconnect.py and alvar/loop/worker.py override, the methods they call and the
attributes and Redis fields they read. rq is pinned to a minor version in pyproject.toml; an upgrade that changes
any of these fails here, loudly, instead of breaking the workers subtly. Signatures are compared as names and
defaults; what RQ must do with a hook is checked against a real Redis (REDIS_URL)."""

from __future__ import annotations

import inspect
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from redis import Redis
from rq import Queue, SimpleWorker, Worker, worker_registration
from rq.exceptions import StopRequested
from rq.job import Job
from rq.scheduler import RQScheduler
from rq.timeouts import BaseDeathPenalty, TimerDeathPenalty
from rq.utils import decode_redis_hash, now, utcformat

from alvar.generator.threaded_workers import POLL_SECONDS, ThreadWorker
from alvar.generator.worker_resources import WorkerResources, current_resources
from alvar.settings import load_settings

MARKER_URL = "http://rq-contract.invalid"


def parameters(function: Callable[..., Any]) -> list[str]:
    """A callable's parameters, each as its name or name=default: what a caller or an override must match."""
    return [name if parameter.default is inspect.Parameter.empty else f"{name}={parameter.default!r}"
            for name, parameter in inspect.signature(function).parameters.items()]


@pytest.mark.parametrize(("owner", "name", "expected"), [
    # generator/threaded_workers.py: ThreadWorker overrides these
    (SimpleWorker, "dequeue_job_and_maintain_ttl", ["self", "timeout", "max_idle_time=None"]),
    (SimpleWorker, "reorder_queues", ["self", "reference_queue"]),
    (SimpleWorker, "heartbeat", ["self", "timeout=None", "pipeline=None"]),
    (SimpleWorker, "clean_registries", ["self"]),
    (SimpleWorker, "_install_signal_handlers", ["self"]),
    (SimpleWorker, "perform_job", ["self", "job", "queue"]),
    (SimpleWorker, "execute_job", ["self", "job", "queue"]),
    # alvar/reconnect.py: ReconnectingWorker overrides or calls these
    (SimpleWorker, "register_birth", ["self"]),
    (SimpleWorker, "register_death", ["self"]),
    (SimpleWorker, "serialize", ["self"]),
    (SimpleWorker, "_pubsub_exception_handler", ["self", "exc", "pubsub", "pubsub_thread"]),
    (worker_registration, "register", ["worker", "pipeline=None"]),
    (decode_redis_hash, None, ["h", "decode_values=False"]),
    # alvar/loop/worker.py: TrainingWorker and the supervisor's scheduler turn
    (Worker, "request_stop", ["self", "signum", "frame"]),
    (Worker, "maintain_heartbeats", ["self", "job"]),
    (RQScheduler, "acquire_locks", ["self", "auto_start=False"]),
    (RQScheduler, "heartbeat", ["self"]),
    (RQScheduler, "enqueue_scheduled_jobs", ["self"]),
    (RQScheduler, "release_locks", ["self"]),
    # generator/jobs.py's failure callback is called as callback(job, connection, *exc_info)
    (Job, "execute_failure_callback", ["self", "death_penalty_class", "exc_info"]),
])
def test_the_signatures_alvar_overrides_or_calls(owner: Any, name: str | None, expected: list[str]) -> None:
    assert parameters(owner if name is None else getattr(owner, name)) == expected


def test_the_constructor_arguments_and_attributes_alvar_uses() -> None:
    worker_init = parameters(SimpleWorker.__init__)
    assert worker_init[:2] == ["self", "queues"]
    assert {"name=None", "connection=None", "worker_ttl=None", "maintenance_interval=600"} <= set(worker_init)
    assert parameters(RQScheduler.__init__)[:4] == ["self", "queues", "connection", "interval=1"]
    work = parameters(SimpleWorker.work)
    assert work[:3] == ["self", "burst=False", "logging_level=None"]
    # ThreadWorker overrides a property RQ's loop reads; ReconnectingWorker sets RQ's dequeue back-off ceiling.
    assert isinstance(inspect.getattr_static(SimpleWorker, "dequeue_timeout"), property)
    assert isinstance(SimpleWorker.max_connection_wait_time, float)
    assert isinstance(inspect.getattr_static(RQScheduler, "acquired_locks"), property)
    assert issubclass(TimerDeathPenalty, BaseDeathPenalty) and issubclass(StopRequested, Exception)
    assert worker_registration.REDIS_WORKER_KEYS == "rq:workers"


def resources_seen() -> str:
    """A job: which worker resources it reaches."""
    return current_resources().settings.label_studio_url


def thread_worker(connection: Redis, queue: Queue, name: str) -> ThreadWorker:
    resources = WorkerResources(load_settings(label_studio_url=MARKER_URL))
    return ThreadWorker([queue], connection=connection, name=f"{name}-{os.getpid()}", resources=resources)


def test_rq_calls_the_thread_workers_hooks_where_they_expect(external_redis_url: str) -> None:
    """Right after a dequeue RQ calls reorder_queues (the worker holds a job from then on), SimpleWorker runs the
    job through perform_job in the calling thread (where the worker's resources are served), and what the
    main thread writes as ``last_heartbeat`` is what RQ reads back."""
    connection = Redis.from_url(external_redis_url)
    connection.flushdb()
    queue = Queue("rq-contract", connection=connection)
    job = queue.enqueue(resources_seen)
    worker = thread_worker(connection, queue, "rq-contract-hooks")
    assert worker._stop_requested is False and worker.death_penalty_class is TimerDeathPenalty
    worker.register_birth()
    try:
        dequeued, _ = worker.dequeue_job_and_maintain_ttl(None)
        assert dequeued.id == job.id and worker._holding_job
        worker.execute_job(dequeued, queue)
        assert job.get_status(refresh=True) == "finished" and job.return_value() == MARKER_URL

        worker._holding_job = True
        worker.beat_if_busy()
        seen = Worker.find_by_key(worker.key, connection=connection)
        assert seen is not None and abs((now() - seen.last_heartbeat).total_seconds()) < 5
        assert utcformat(seen.last_heartbeat) == connection.hget(worker.key, "last_heartbeat").decode()

        worker.clean_registries()  # from the main thread: RQ's own cleanup, which sets last_cleaned_at
        assert worker.last_cleaned_at is not None
    finally:
        worker.register_death()


def test_a_stop_request_ends_an_idle_thread_worker_at_its_next_heartbeat(external_redis_url: str) -> None:
    """RQ's loop heartbeats between dequeue attempts (every ``dequeue_timeout``) and ends on StopRequested."""
    connection = Redis.from_url(external_redis_url)
    connection.flushdb()
    worker = thread_worker(connection, Queue("rq-contract", connection=connection), "rq-contract-stop")
    thread = threading.Thread(target=worker.work, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while connection.hget(worker.key, "state") != b"idle":  # set as the worker starts waiting on its queue
        assert time.monotonic() < deadline, "the worker never waited on its queue"
        thread.join(0.1)
    thread.join(1.0)  # past the heartbeat before the wait: the stop below is seen at the next one
    worker.stop()
    thread.join(POLL_SECONDS + 10)
    assert not thread.is_alive()
    assert not connection.sismember(worker_registration.REDIS_WORKER_KEYS, worker.key)


def test_the_registration_fields_and_hooks_reconnecting_workers_rely_on(external_redis_url: str) -> None:
    """A registration names its pid and hostname and a death marks it (a predecessor is retired by these); an
    idle heartbeat registers again; the commands channel's thread calls the worker's exception handler."""
    connection = Redis.from_url(external_redis_url)
    connection.flushdb()
    worker = thread_worker(connection, Queue("rq-contract", connection=connection), "rq-contract-registration")
    worker.register_birth()
    registered = decode_redis_hash(connection.hgetall(worker.key), decode_values=True)
    assert int(registered["pid"]) == os.getpid() and registered["hostname"] == socket.gethostname()
    assert "death" not in registered and set(worker.serialize()) >= {"pid", "hostname", "last_heartbeat"}
    assert worker.worker_ttl > 0

    connection.srem(worker_registration.REDIS_WORKER_KEYS, worker.key)
    worker.heartbeat()
    assert connection.sismember(worker_registration.REDIS_WORKER_KEYS, worker.key)

    worker.subscribe()
    try:
        assert worker.pubsub_thread.exception_handler == worker._pubsub_exception_handler
    finally:
        worker.unsubscribe()
    worker.register_death()
    assert "death" in decode_redis_hash(connection.hgetall(worker.key), decode_values=True)


def test_a_job_without_retries_left_is_not_retried(external_redis_url: str) -> None:
    """generator/jobs.py's failure callback ends the retries of a configuration error this way (RQ runs the
    callback before it decides: tests/test_generation_faults.py sees the job fail at once)."""
    job = Job.create(resources_seen, connection=Redis.from_url(external_redis_url))
    job.retries_left = 0
    assert not job.should_retry
    job.retries_left = 1
    assert job.should_retry
