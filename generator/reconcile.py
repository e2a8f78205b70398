"""The reconciliation sweep: what a lost webhook would have queued, queued later.

Label Studio delivers each webhook once, with a 1 s timeout, and forgets it when the backend fails (Redis down,
backend restarting). The webhook is therefore only the fast path. The sweep reads each known project from Label
Studio itself and, per source task and current label (each annotator's latest annotation):
- queues the generation job when the task has no variations for that label, no job for it is waiting or
  running, and no finished job settled it (a finished job that imported nothing, e.g. every answer refused, is
  settled until its result expires after 30 days; a job that failed for good is queued again);
- brings variation statuses in line with the current labels (a deleted annotation leaves its set stale);
- queues a training job when the project's human labels outnumber those of its current model version by
  ``retrain_every`` or more.
The worker queues one sweep every ``ALVAR_RECONCILE_INTERVAL`` seconds (:func:`enqueue_sweep`), and
`alvar reconcile` runs one at once.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError
from redis import Redis
from rq import get_current_job
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry

from alvar.backend.dispatcher import (
    WAITING_STATUSES,
    HumanLabel,
    TrainingReaction,
    training_job_prefix,
    known_projects,
    remember_project,
)
from alvar.backend.label_config import ChoicesControl, LabelConfigError, parse_choices_control
from alvar.backend.label_studio import dm_filter, dm_query, iter_tasks, label_studio_client
from alvar.backend.model_store import project_store
from alvar.backend.queues import generation_queue, training_queue
from alvar.backend.training_data import (
    CURRENT_STATUS,
    LLM_ORIGIN,
    ORIGIN_FIELD,
    STALE_STATUS,
    STATUS_FIELD,
    current_labels,
    is_bootstrap,
    is_variation,
    training_set,
)
from alvar.generator.jobs import annotation_with, generation_key, resync_source
from alvar.generator.reaction import job_status, queue_generation
from alvar.generator.variation_tasks import SOURCE_TASK_FIELD, variation_source_label
from alvar.settings import Settings, llm_configured, load_settings

log = logging.getLogger(__name__)

SWEEP_PENDING_KEY = "alvar:reconcile:pending"
SETTLED_OUTCOMES = ("imported", "already imported", "skipped")


@dataclass
class Reconciliation:
    """What one sweep of one project found and did."""

    project: int
    sources: int = 0
    queued: list[str] = field(default_factory=list)
    pending: int = 0
    restated: int = 0
    human_labels: int = 0
    trained_on: int | None = None
    training: dict[str, Any] | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def enqueue_sweep(connection: Redis, settings: Settings) -> dict[str, Any]:
    """Queue one sweep of every known project unless one is still waiting: on the generation queue (its workers
    never wait behind a training), or on the training queue when no LLM is configured. A running sweep does not
    count: one whose worker died mid-run would otherwise block the next until RQ gives up on it, and two sweeps
    at once are harmless (queueing is deduplicated per job)."""
    with connection.lock(f"{SWEEP_PENDING_KEY}:queueing", timeout=10, blocking_timeout=5):
        pending = connection.get(SWEEP_PENDING_KEY)
        if pending is not None and job_status(connection, pending.decode()) in WAITING_STATUSES:
            return {"sweep": "already queued", "job_id": pending.decode()}
        # The generation queue's several workers take it at once; without an LLM only the training queue is served.
        queue = generation_queue(connection) if llm_configured(settings) else training_queue(connection)
        job = queue.enqueue(
            sweep_projects, job_id=f"alvar-reconcile-{uuid.uuid4().hex[:12]}",
            job_timeout=max(600, settings.reconcile_interval), result_ttl=3600, failure_ttl=7 * 24 * 3600,
            description="reconcile every known project (missed variations and retraining)")
        connection.set(SWEEP_PENDING_KEY, job.id, ex=7 * 24 * 3600)
    return {"sweep": "queued", "job_id": job.id}


def sweep_projects() -> dict[str, Any]:
    """The sweep job: reconcile every project this backend has heard of; one project's error spares the rest."""
    settings = load_settings()
    job = get_current_job()
    connection = job.connection if job is not None else None
    if connection is None:
        raise RuntimeError("sweep_projects runs as an RQ job (use `alvar reconcile` to sweep at once)")
    client = label_studio_client(settings)
    return {str(project_id): reconcile_project(settings, client, connection, project_id).as_dict()
            for project_id in known_projects(connection)}


def reconcile_project(settings: Settings, client: LabelStudio, connection: Redis,
                      project_id: int) -> Reconciliation:
    """Queue what is missing in one project (see the module docstring); never raises for a project's state."""
    found = Reconciliation(project_id)
    try:
        control = parse_choices_control(client.projects.get(id=project_id).label_config)
        annotated = [task for task in iter_tasks(client, project_id, only_annotated=True) if not is_variation(task)]
        by_source = _variations_by_source(client, project_id)
    except (ApiError, LabelConfigError) as error:
        found.error = f"{type(error).__name__}: {error}"
        log.warning("reconcile project %s: %s", project_id, found.error)
        return found
    queue = generation_queue(connection)
    labelled_sources: set[int] = set()
    found.human_labels = training_set(annotated, control).human
    for task in annotated:
        labels = current_labels(task, control)
        if is_bootstrap(task):
            continue
        labelled_sources.add(task["id"])
        found.sources += bool(labels)
        have = {variation_source_label(variation) for variation in by_source.get(task["id"], [])}
        for label in labels:
            if label in have:
                continue
            outcome = _queue_missing(settings, connection, queue, project_id, task, control, label)
            if outcome["status"] == "queued":
                found.queued.append(outcome["job_id"])
            elif outcome["status"] == "already queued":
                found.pending += 1
        if _out_of_line(by_source.get(task["id"], []), labels):
            found.restated += _resync(client, connection, project_id, task["id"], control, found)
    for source, variations in by_source.items():
        if source not in labelled_sources and _out_of_line(variations, []):  # its annotations were all deleted
            found.restated += _resync(client, connection, project_id, source, control, found)
    _check_training(settings, connection, project_id, found)
    if found.queued or found.training:
        log.info("reconcile project %s: queued %d generation jobs, training %s", project_id, len(found.queued),
                 found.training)
    return found


def _resync(client: LabelStudio, connection: Redis, project_id: int, task_id: int, control: ChoicesControl,
            found: Reconciliation) -> int:
    try:
        return resync_source(client, connection, project_id, task_id, control)
    except ApiError as error:  # the source task was deleted meanwhile, say; the next sweep looks again
        found.error = f"task {task_id}: {type(error).__name__}: {error}"
        return 0


def _out_of_line(variations: list[Any], labels: list[str]) -> bool:
    """Whether a status disagrees with the labels as this sweep read them (re-checked under the lock)."""
    return any((variation.data or {}).get(STATUS_FIELD) != (CURRENT_STATUS if variation_source_label(variation)
                                                             in labels else STALE_STATUS)
               for variation in variations)


def _variations_by_source(client: LabelStudio, project_id: int) -> dict[int, list[Any]]:
    query = dm_query(dm_filter(f"data.{ORIGIN_FIELD}", "equal", LLM_ORIGIN))
    grouped: dict[int, list[Any]] = defaultdict(list)
    for task in client.tasks.list(project=project_id, query=query, fields="task_only", page_size=500):
        source = (task.data or {}).get(SOURCE_TASK_FIELD)
        if isinstance(source, int):
            grouped[source].append(task)
    return grouped


def _settled(connection: Redis, job_id: str) -> bool:
    """A finished job whose outcome was an import (of k, or of none when every answer was screened out)."""
    if job_status(connection, job_id) != JobStatus.FINISHED:
        return False
    outcome = Job.fetch(job_id, connection=connection).return_value()
    return isinstance(outcome, dict) and str(outcome.get("status", "")).startswith(SETTLED_OUTCOMES)


def _queue_missing(settings: Settings, connection: Redis, queue: Any, project_id: int, task: dict[str, Any],
                   control: ChoicesControl, label: str) -> dict[str, Any]:
    job_id = generation_key(project_id, task["id"], label)
    if _settled(connection, job_id):
        return {"status": "settled", "job_id": job_id}
    human = HumanLabel(task["id"], annotation_with(task, control, label) or 0, label, None)
    return queue_generation(connection, queue, project_id, human, settings.generation_timeout, reason="sweep")


def _trained_human_labels(settings: Settings, project_id: int) -> int | None:
    """How many human labels the project's current model version was trained on; None without a version."""
    store = project_store(settings.model_dir, project_id)
    version = store.current_version()
    if version is None:
        return None
    return int(store.metadata(version).get("human", 0))


def _check_training(settings: Settings, connection: Redis, project_id: int, found: Reconciliation) -> None:
    found.trained_on = _trained_human_labels(settings, project_id)
    behind = found.human_labels - (found.trained_on or 0)
    if found.human_labels == 0 or behind < settings.retrain_every:
        return
    # Once per count of human labels: a training that fails on these labels (one class only, say) is not
    # queued again by every sweep; it waits in the failed registry (`alvar jobs`) until new labels arrive.
    asked = f"alvar:reconcile:training-asked:{project_id}"
    if connection.get(asked) == str(found.human_labels).encode() or _training_running(connection, project_id):
        return
    reaction = TrainingReaction(connection, training_queue(connection), settings.retrain_every)
    found.training = reaction.enqueue(project_id, reason=f"sweep: {behind} human labels since the current model")
    connection.set(asked, found.human_labels, ex=30 * 24 * 3600)


def _training_running(connection: Redis, project_id: int) -> bool:
    """A training of the project has started (its model is not saved yet, so the counts above look behind)."""
    started = StartedJobRegistry(queue=training_queue(connection)).get_job_ids()
    return any(job_id.startswith(training_job_prefix(project_id)) for job_id in started)


def reconcile_projects(settings: Settings, connection: Redis, projects: Iterable[int] | None = None,
                       client: LabelStudio | None = None) -> list[Reconciliation]:
    """`alvar reconcile`: sweep the given projects (default: every known one) now, in this process."""
    client = client or label_studio_client(settings)
    chosen = list(projects) if projects is not None else known_projects(connection)
    for project_id in chosen:
        remember_project(connection, project_id)
    return [reconcile_project(settings, client, connection, project_id) for project_id in chosen]
