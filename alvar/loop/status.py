"""`alvar status`: what runs in a data dir's stack and how far the current round has come.

Services are up when they answer (Label Studio's and the backend's ``/health``, Redis's PING), not merely
when a PID file exists; the workers are up when each queue that should be served (generation only with an
LLM) has a live RQ worker: a heartbeat under 90 s old and, on this machine, its process still there. Task
counts come from Label Studio's Data Manager filters (one small request each), so status stays quick on a
large pool. Counting the clusters that hold no label yet (:func:`alvar.loop.coverage.cached_label_cover`)
reads every task's text and clusters the pool: a few seconds on the 2,850-task demo pool, so it is asked for
(``label_cover=True``), never done by default. A generative project shows its teacher drafts and its review
counts (accepted, edited, rejected, emptied, unreviewed) instead of variations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from label_studio_sdk import LabelStudio
from redis import Redis

from alvar.attribute_model import attribute_model_path
from alvar.backend.model_store import serving
from alvar.labelstudio.batches import fetch_latest_batch
from alvar.labelstudio.client import ANNOTATED, count_tasks, dm_filter, iter_tasks
from alvar.labelstudio.generation_config import CLASSIFICATION, GENERATION, parse_generation_control
from alvar.labelstudio.generation_data import UNREVIEWED, review_counts
from alvar.labelstudio.task_data import CURRENT_VARIATIONS, DRAFTED, SCREENED_OUT_STATUS, VARIATIONS, in_batch
from alvar.labelstudio.task_kinds import task_kind
from alvar.loop import services
from alvar.loop.coverage import LabelCover, cached_label_cover
from alvar.loop.jobs import WorkerRow, jobs_report, unserved_queues, worker_rows
from alvar.loop.stack import StackState
from alvar.settings import GENERATION_QUEUE, SCORING_QUEUE, TRAINING_QUEUE, Settings, llm_configured


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
class GenerationStatus:
    """A generative project's round: tasks, teacher drafts, what reviewers did with them, and the models (the
    student serving the project, and R, the attribute model, or None when R is not trained yet)."""

    tasks: int
    drafted: int
    screened_out: int
    reviews: dict[str, int]
    student_version: str | None
    attribute_model: str | None


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
    kind: str | None = None
    generation: GenerationStatus | None = None

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
                 for queue in (TRAINING_QUEUE, GENERATION_QUEUE, SCORING_QUEUE)}
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
    project = client.projects.get(id=project_id)
    status.model_version = project.model_version or None
    latest = fetch_latest_batch(client, project_id)
    if latest is not None:
        status.batch = latest.number
        status.batch_progress = Progress(count_tasks(client, project_id, in_batch(latest.number), ANNOTATED),
                                         len(latest.tasks))
    status.kind = task_kind(project.label_config).name
    KIND_STATUS[status.kind](status, settings, client, project_id, label_cover)
    return status


def _classification_status(status: StackStatus, settings: Settings, client: LabelStudio, project_id: int,
                           label_cover: bool) -> None:
    """A classification project's lines: variations verified, and (asked for) the clusters without a label."""
    current = [VARIATIONS, CURRENT_VARIATIONS]
    status.verification = Progress(count_tasks(client, project_id, *current, ANNOTATED),
                                   count_tasks(client, project_id, *current))
    if label_cover:
        status.label_cover = cached_label_cover(settings, client, project_id)


def _generative_status(status: StackStatus, settings: Settings, client: LabelStudio, project_id: int,
                       label_cover: bool) -> None:
    """A generative project's lines: drafts and reviews (:func:`generation_status`); it has no label cover."""
    status.generation = generation_status(settings, client, project_id)


# What `alvar status` adds for each kind of project (:func:`~alvar.labelstudio.task_kinds.task_kind`).
KIND_STATUS: dict[str, Callable[[StackStatus, Settings, LabelStudio, int, bool], None]] = {
    CLASSIFICATION: _classification_status, GENERATION: _generative_status}


def generation_status(settings: Settings, client: LabelStudio, project_id: int) -> GenerationStatus:
    """Counts from Data Manager filters; the review counts read the annotated tasks only (the others are
    unreviewed)."""
    control = parse_generation_control(client.projects.get(id=project_id).label_config)
    total = count_tasks(client, project_id)
    annotated = list(iter_tasks(client, project_id, only_annotated=True))
    reviews = review_counts(annotated, control)
    reviews[UNREVIEWED] += total - len(annotated)
    student = serving(settings.model_dir, project_id)
    own = student.version if student is not None and student.own else None
    return GenerationStatus(
        tasks=total,
        drafted=count_tasks(client, project_id, DRAFTED),
        screened_out=count_tasks(client, project_id, dm_filter("data.draft_status", "contains", SCREENED_OUT_STATUS)),
        reviews=reviews,
        student_version=own,
        attribute_model=attribute_model_path(settings),
    )
