"""The RQ queues, the Redis connection they share, and the job states alvar reads (rq's own lifecycle)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from redis import Redis
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from alvar.settings import GENERATION_QUEUE, TRAINING_QUEUE, Settings

# A job in one of these states has not started yet.
WAITING_STATUSES = frozenset({JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED})
# A job in one of these states will still run (or is running): the same key is not queued again.
PENDING_STATUSES = WAITING_STATUSES | {JobStatus.STARTED}


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
