"""The RQ queues, the Redis connection they share, and the job states alvar reads (rq's own lifecycle)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from redis import Redis
from rq import Callback, Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry

from alvar.settings import GENERATION_QUEUE, TRAINING_QUEUE, Settings

# A job in one of these states has not started yet.
WAITING_STATUSES = frozenset({JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED})
# A job in one of these states will still run (or is running): the same key is not queued again.
PENDING_STATUSES = WAITING_STATUSES | {JobStatus.STARTED}
# How long a finished or failed keyed job (a variation set's, a draft's) stays readable: its history and cost.
KEYED_JOB_TTL = 30 * 24 * 3600


@dataclass(frozen=True)
class JobPolicy:
    """How long one run of a generation or draft job may take, and when a failed one runs again (three times by
    default; one that failed on a configuration error does not, see :func:`alvar.generator.jobs.record_failure`)."""

    timeout: int
    retry_intervals: tuple[int, ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> JobPolicy:
        return cls(settings.generation_timeout, settings.retry_intervals)

    def retry(self) -> Retry:
        return Retry(max=len(self.retry_intervals), interval=list(self.retry_intervals))


# Production's (the settings' defaults): what a job queued without settings at hand gets.
DEFAULT_JOB_POLICY = JobPolicy.from_settings(Settings.model_construct())


def redis_connection(settings: Settings) -> Redis:
    """Redis at REDIS_URL; `alvar up`, `alvar backend` and `alvar worker` set it to the embedded server otherwise."""
    if not settings.redis_url:
        raise RuntimeError("REDIS_URL is not set: start the stack with `alvar up`, or set REDIS_URL")
    return Redis.from_url(settings.redis_url)


def training_queue(connection: Redis) -> Queue:
    return Queue(TRAINING_QUEUE, connection=connection)


def generation_queue(connection: Redis) -> Queue:
    return Queue(GENERATION_QUEUE, connection=connection)


def waiting_job(connection: Redis, pending_key: str) -> str | None:
    """The id of the job recorded under ``pending_key`` when that job has not started yet, else None."""
    pending = cast(bytes | None, connection.get(pending_key))
    if pending is None:
        return None
    job_id = pending.decode()
    status = job_status(connection, job_id)
    return job_id if status is not None and status in WAITING_STATUSES else None


def job_status(connection: Redis, job_id: str) -> JobStatus | None:
    """The job's state, or None when Redis holds no such job (never queued, or its result expired)."""
    try:
        return Job.fetch(job_id, connection=connection).get_status()
    except NoSuchJobError:
        return None


@dataclass(frozen=True)
class KeyedJob:
    """What one run of a keyed job is: its function and arguments, its failure callback, what `alvar jobs` shows
    (``description``) and what its meta adds to the key's earlier runs'."""

    function: Callable[..., Any]
    args: tuple[Any, ...]
    on_failure: Callable[..., Any]
    description: str
    meta: dict[str, Any] = field(default_factory=dict)


def enqueue_once(connection: Redis, queue: Queue, job_id: str, plan: Callable[[JobStatus | None], KeyedJob],
                 policy: JobPolicy, lock_wait: float, rerun_finished: bool = True) -> dict[str, Any]:
    """Queue the job under ``job_id`` unless one is waiting or running (and, without ``rerun_finished``, unless
    one finished): the one queue-once sequence of variation and draft jobs.

    Under the key's lock (waited for ``lock_wait`` seconds; a webhook has about one), the key's state decides;
    a failed run leaves the failed registry (so `alvar jobs --requeue-failed` skips it), and the new run keeps
    the key's history in its meta. ``plan`` gets the state the key was in, and answers what to run.
    """
    with connection.lock(f"{job_id}:queueing", timeout=10, blocking_timeout=lock_wait):
        status = job_status(connection, job_id)
        if status in PENDING_STATUSES:
            return {"status": "already queued", "job_id": job_id}
        if status == JobStatus.FINISHED and not rerun_finished:
            return {"status": "already done", "job_id": job_id}
        if status == JobStatus.FAILED:
            FailedJobRegistry(queue=queue).remove(job_id)
        earlier = Job.fetch(job_id, connection=connection).meta if status is not None else {}
        planned = plan(status)
        queue.enqueue(planned.function, *planned.args, job_id=job_id, job_timeout=policy.timeout,
                      retry=policy.retry(), on_failure=Callback(planned.on_failure), result_ttl=KEYED_JOB_TTL,
                      failure_ttl=KEYED_JOB_TTL, description=planned.description, meta={**earlier, **planned.meta})
    return {"status": "queued", "job_id": job_id}
