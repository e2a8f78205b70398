"""`alvar jobs`: what is queued, running, waiting to retry, failed (and why) and finished, with LLM usage.

Read straight from RQ's queues and registries, so it shows what RQ itself knows. Reading a started-job
registry is also when RQ settles jobs whose worker died (it retries or fails them), as a worker's maintenance
does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from redis import Redis
from rq import Queue, Worker
from rq.job import Job
from rq.registry import FailedJobRegistry, FinishedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from alvar.generator.usage import total_usage
from alvar.settings import GENERATION_QUEUE, TRAINING_QUEUE

STATES = ("queued", "running", "retrying", "failed", "finished")


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


def job_rows(connection: Redis, queue_names: tuple[str, ...] = (TRAINING_QUEUE, GENERATION_QUEUE),
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


def workers_summary(connection: Redis) -> list[dict[str, Any]]:
    return [{"name": worker.name, "state": str(worker.get_state()), "queues": worker.queue_names(),
             "job": worker.get_current_job_id()} for worker in Worker.all(connection=connection)]


def jobs_report(connection: Redis, limit: int = 20) -> dict[str, Any]:
    rows, counts = job_rows(connection, limit=limit)
    return {"counts": counts, "jobs": [asdict(row) for row in rows], "workers": workers_summary(connection),
            "llm_usage": total_usage(connection).as_dict()}
