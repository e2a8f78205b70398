"""`alvar status`: what runs in a data dir's stack and how far the current round has come.

Services are up when they answer (Label Studio's and the backend's ``/health``, Redis's PING), not merely
when a PID file exists; the workers are up when each queue that should be served (generation only with an
LLM) has a live RQ worker: a heartbeat under 90 s old and, on this machine, its process still there. Task
counts come from Label Studio's Data Manager filters (one small request each), so status stays quick on a
large pool. Counting the clusters that hold no label yet (:func:`alvar.scripts.coverage.cached_label_cover`)
reads every task's text and clusters the pool: a few seconds on the 2,850-task demo pool, so it is asked for
(``label_cover=True``), never done by default.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from label_studio_sdk import LabelStudio
from redis import Redis

from alvar.backend.model_store import serving
from alvar.labelstudio.batches import fetch_latest_batch
from alvar.labelstudio.client import ANNOTATED, count_tasks
from alvar.labelstudio.task_data import CURRENT_VARIATIONS, VARIATIONS, in_batch
from alvar.scripts import services
from alvar.scripts.coverage import LabelCover, cached_label_cover
from alvar.scripts.jobs import WorkerRow, jobs_report, unserved_queues, worker_rows
from alvar.scripts.stack import StackState
from alvar.settings import GENERATION_QUEUE, TRAINING_QUEUE, Settings, llm_configured


@dataclass
class ServiceStatus:
    up: bool
    pid: int | None
    where: str


@dataclass
class Progress:
    """Done out of total, e.g. labeled tasks of the current batch or reviewed variations."""

    done: int
    total: int


@dataclass
class StackStatus:
    data_dir: str
    services: dict[str, ServiceStatus]
    project_id: int | None = None
    project_url: str | None = None
    model_version: str | None = None
    serving_version: str | None = None
    queues: dict[str, dict[str, int]] = field(default_factory=dict)
    failed_jobs: list[dict[str, str]] = field(default_factory=list)
    workers: list[WorkerRow] = field(default_factory=list)
    llm: dict[str, Any] = field(default_factory=dict)
    batch: int | None = None
    batch_progress: Progress | None = None
    verification: Progress | None = None
    label_cover: LabelCover | None = None

    @property
    def all_up(self) -> bool:
        return all(service.up for service in self.services.values())

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "all_up": self.all_up}


def _workers_where(workers: list[WorkerRow], unserved: list[str]) -> str:
    if unserved:
        return f"no live worker serves {', '.join(unserved)}"
    live = [worker for worker in workers if worker.live]
    per_queue = {queue: sum(queue in worker.queues for worker in live)
                 for queue in (TRAINING_QUEUE, GENERATION_QUEUE)}
    return f"{len(live)} live RQ workers ({', '.join(f'{queue} {count}' for queue, count in per_queue.items())})"


def _services(settings: Settings, state: StackState | None, connection: Redis | None,
              workers: list[WorkerRow]) -> dict[str, ServiceStatus]:
    """Each service up or down; the workers are up when a live worker serves each queue that should be served
    (generation only with an LLM configured)."""
    data_dir = settings.data_dir.resolve()
    pids = {name: services.running_pid(data_dir, name) for name in ("label-studio", "backend", "worker", "redis")}
    redis_url = settings.redis_url or services.embedded_redis_url(data_dir)
    required = [TRAINING_QUEUE, GENERATION_QUEUE] if llm_configured(settings) else [TRAINING_QUEUE]
    unserved = unserved_queues(workers, required) if connection is not None else required
    return {
        "label-studio": ServiceStatus(state is not None and services.healthy(state.label_studio_url),
                                      pids["label-studio"], state.label_studio_url if state else "-"),
        "backend": ServiceStatus(state is not None and services.healthy(
            state.backend_url, (state.backend_user, state.backend_password)), pids["backend"],
            state.backend_url if state else "-"),
        "redis": ServiceStatus(connection is not None, pids["redis"], redis_url),
        "worker": ServiceStatus(pids["worker"] is not None and not unserved, pids["worker"],
                                _workers_where(workers, unserved)),
    }


def _redis(settings: Settings) -> Redis | None:
    url = settings.redis_url or services.embedded_redis_url(settings.data_dir.resolve())
    return Redis.from_url(url, socket_connect_timeout=2) if services.redis_reachable(url) else None


def stack_status(settings: Settings, label_cover: bool = False) -> StackStatus:
    """Everything `alvar status` shows, gathered from the services themselves; with ``label_cover``, also how many
    of the pool's clusters hold no labelled task yet (from cached embeddings: status never embeds)."""
    state = StackState.load(settings.data_dir.resolve())
    connection = _redis(settings)
    workers = worker_rows(connection) if connection is not None else []
    status = StackStatus(str(settings.data_dir.resolve()), _services(settings, state, connection, workers),
                         workers=workers)
    serves = serving(settings.model_dir, state.project_id if state is not None else None)
    status.serving_version = serves.version if serves is not None else None
    status.llm = {"configured": llm_configured(settings), "model": settings.llm_model}
    if connection is not None:
        report = jobs_report(connection, limit=5)
        status.queues = report["counts"]
        status.failed_jobs = [{"queue": row["queue"], "id": row["id"], "reason": row["reason"]}
                              for row in report["jobs"] if row["state"] == "failed"]
        status.llm.update(report["llm_usage"])
    if state is None or state.project_id is None or not status.services["label-studio"].up:
        return status
    client = LabelStudio(base_url=state.label_studio_url, api_key=state.token, timeout=30)
    project_id = status.project_id = state.project_id
    status.project_url = f"{state.label_studio_url}/projects/{project_id}"
    status.model_version = client.projects.get(id=project_id).model_version or None
    latest = fetch_latest_batch(client, project_id)
    if latest is not None:
        status.batch = latest.number
        status.batch_progress = Progress(count_tasks(client, project_id, in_batch(latest.number), ANNOTATED),
                                         len(latest.tasks))
    current = [VARIATIONS, CURRENT_VARIATIONS]
    status.verification = Progress(count_tasks(client, project_id, *current, ANNOTATED),
                                   count_tasks(client, project_id, *current))
    if label_cover:
        status.label_cover = cached_label_cover(settings, client, project_id)
    return status
