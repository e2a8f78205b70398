"""`alvar jobs`: what is queued, running, waiting to retry, failed (and why) and finished, with LLM usage.

Read straight from RQ's queues and registries, so it shows what RQ itself knows. Reading a started-job
registry is also when RQ settles jobs whose worker died (it retries or fails them), as a worker's maintenance
does.
"""

from __future__ import annotations

import socket
from dataclasses import asdict, dataclass
from typing import Any

from redis import Redis
from rq import Queue, Worker
from rq.exceptions import InvalidJobOperation
from rq.job import Job, JobStatus
from rq.registry import (
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)
from rq.utils import now
from rq.worker import BaseWorker

from alvar.generator.usage import total_usage
from alvar.processes import process_alive
from alvar.settings import GENERATION_QUEUE, SCORING_QUEUE, TRAINING_QUEUE

STATES = ("queued", "running", "retrying", "failed", "finished")
QUEUES = (TRAINING_QUEUE, GENERATION_QUEUE, SCORING_QUEUE)
# A worker whose last heartbeat is older than this counts as gone. alvar's workers beat at least every 45 s:
# a generation thread every 5 s (its process's main thread beats for it during a job), the training worker
# every 45 s when idle and every 30 s during a job, a scoring worker every 15 s when idle and every 3 s during a
# chunk.
HEARTBEAT_STALE_SECONDS = 90


@dataclass
class JobRow:
    queue: str
    state: str
    id: str
    description: str
    reason: str
    tokens: int
    cost_usd: float
    retries_left: int | None


def _reason(job: Job, state: str) -> str:
    if state == "retrying" and job.meta.get("last_error"):
        return f"attempt {job.meta.get('failures', 1)} failed: {job.meta['last_error']}"
    if state == "failed":
        result = job.latest_result()
        text = (result.exc_string if result is not None and result.exc_string else "") or ""
        lines = [line for line in text.strip().splitlines() if line.strip()]
        return lines[-1].strip() if lines else "(no traceback recorded)"
    if state == "finished":
        return str(job.meta.get("status", ""))
    return ""


def _row(queue: str, state: str, job: Job) -> JobRow:
    meta = job.meta or {}
    return JobRow(queue=queue, state=state, id=job.id, description=job.description or "",
                  reason=_reason(job, state),
                  tokens=int(meta.get("prompt_tokens", 0)) + int(meta.get("completion_tokens", 0)),
                  cost_usd=float(meta.get("cost_usd", 0.0)), retries_left=job.retries_left)


def _job_ids(queue: Queue, state: str) -> list[str]:
    registries: dict[str, Any] = {
        "running": StartedJobRegistry, "retrying": ScheduledJobRegistry, "failed": FailedJobRegistry,
        "finished": FinishedJobRegistry,
    }
    if state == "queued":
        return queue.get_job_ids()
    return registries[state](queue=queue).get_job_ids()


def job_rows(connection: Redis, queue_names: tuple[str, ...] = QUEUES,
             limit: int = 20) -> tuple[list[JobRow], dict[str, dict[str, int]]]:
    """The newest ``limit`` jobs per queue and state, and the count of every state per queue."""
    rows: list[JobRow] = []
    counts: dict[str, dict[str, int]] = {}
    for name in queue_names:
        queue = Queue(name, connection=connection)
        counts[name] = {}
        for state in STATES:
            ids = _job_ids(queue, state)
            counts[name][state] = len(ids)
            for job in Job.fetch_many(ids[-limit:][::-1], connection=connection):
                if job is not None:
                    rows.append(_row(name, state, job))
    return rows, counts


@dataclass
class WorkerRow:
    """One RQ worker as its registration in Redis shows it."""

    name: str
    queues: list[str]
    state: str
    job: str | None
    last_heartbeat: str | None
    heartbeat_age_s: float | None
    hostname: str | None
    pid: int | None
    live: bool


def _live(worker: BaseWorker, age: float | None) -> bool:
    """A fresh heartbeat, and (for a worker of this machine or container) its process still there: a worker
    that was SIGKILLed stays registered until its key expires, which can take minutes."""
    if age is None or age > HEARTBEAT_STALE_SECONDS:
        return False
    same_machine = worker.hostname == socket.gethostname()
    return not same_machine or worker.pid is None or process_alive(worker.pid)


def worker_rows(connection: Redis) -> list[WorkerRow]:
    rows = []
    for worker in Worker.all(connection=connection):
        beat = worker.last_heartbeat
        age = (now() - beat).total_seconds() if beat is not None else None
        rows.append(WorkerRow(name=worker.name, queues=worker.queue_names(), state=str(worker.get_state()),
                              job=worker.get_current_job_id(), last_heartbeat=beat.isoformat() if beat else None,
                              heartbeat_age_s=None if age is None else round(age, 1), hostname=worker.hostname,
                              pid=worker.pid, live=_live(worker, age)))
    return sorted(rows, key=lambda row: row.name)


def unserved_queues(rows: list[WorkerRow], queue_names: list[str], hostname: str | None = None) -> list[str]:
    """The queues that no live worker serves (only workers of ``hostname`` count when it is given)."""
    serving = {queue for row in rows if row.live and hostname in (None, row.hostname) for queue in row.queues}
    return [queue for queue in queue_names if queue not in serving]


def workers_summary(connection: Redis) -> list[dict[str, Any]]:
    return [asdict(row) for row in worker_rows(connection)]


def requeue_failed(connection: Redis, queue_names: tuple[str, ...] = (TRAINING_QUEUE, GENERATION_QUEUE)
                   ) -> list[JobRow]:
    """Put every job of the queues' failed-job registries back in its queue (RQ's requeue: the job runs again
    from the start); the rows say what each had failed with. Not the scoring queue by default: a failed chunk's
    select has given up on it, and a re-run would compute what nobody collects."""
    requeued = []
    for name in queue_names:
        registry = FailedJobRegistry(queue=Queue(name, connection=connection))
        for job in Job.fetch_many(registry.get_job_ids(), connection=connection):
            if job is None:
                continue
            if job.get_status() != JobStatus.FAILED:  # queued again since (by the webhook or the sweep)
                registry.remove(job)
                continue
            row = _row(name, "failed", job)
            try:
                registry.requeue(job)
            except InvalidJobOperation:
                continue  # requeued meanwhile by someone else
            requeued.append(row)
    return requeued


def jobs_report(connection: Redis, limit: int = 20) -> dict[str, Any]:
    rows, counts = job_rows(connection, limit=limit)
    return {"counts": counts, "jobs": [asdict(row) for row in rows], "workers": workers_summary(connection),
            "llm_usage": total_usage(connection).as_dict()}
