"""The reconciliation sweep: what a lost webhook would have queued, queued later.

Label Studio delivers each webhook once, with a 1 s timeout, and forgets it when the backend fails (Redis down,
backend restarting). The webhook is therefore only the fast path. The sweep reads each known project from Label
Studio itself, then hands what it read to each half:
- the generator queues missed generation jobs and restates variation statuses
  (:func:`alvar.generator.reconcile.catch_up_generation`);
- the backend queues a training job when the project's human labels outnumber those of its current model
  version by ``retrain_every`` or more (:func:`alvar.backend.retraining.check_training`).
A generative project has neither variations nor class labels: the generator queues the teacher's missed drafts
(:func:`alvar.generator.reconcile.catch_up_drafts`), and the backend queues the student's training when the
verified pairs outnumber those of its current version by ``retrain_every`` or more
(:func:`alvar.backend.retraining.check_generation_training`).
The worker queues one sweep every ``ALVAR_RECONCILE_INTERVAL`` seconds (:func:`enqueue_sweep`), and
`alvar reconcile` runs one at once.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError
from redis import Redis
from rq import get_current_job

from alvar.backend.retraining import check_generation_training, check_training
from alvar.generator.reconcile import catch_up_drafts, catch_up_generation
from alvar.generator.worker_resources import current_resources
from alvar.labelstudio.choices_control import LabelConfigError, parse_choices_control
from alvar.labelstudio.client import iter_tasks, label_studio_client
from alvar.labelstudio.generation_config import CLASSIFICATION, GENERATION, parse_generation_control
from alvar.labelstudio.generation_data import verified_pairs
from alvar.labelstudio.task_kinds import task_kind
from alvar.labelstudio.training_data import is_variation, training_set
from alvar.projects import known_projects, remember_project
from alvar.queues import generation_queue, training_queue, waiting_job
from alvar.settings import Settings, llm_configured

log = logging.getLogger(__name__)

SWEEP_PENDING_KEY = "alvar:reconcile:pending"


@dataclass
class Reconciliation:
    """What one sweep of one project found and did: the generator's catch-up
    (:class:`~alvar.generator.reconcile.GenerationCatchUp`, same field names) and the training check
    (:class:`~alvar.backend.retraining.TrainingCheck`, same field names), side by side."""

    project: int
    sources: int = 0
    queued: list[str] = field(default_factory=list)
    pending: int = 0
    restated: int = 0
    human_labels: int = 0
    verified_pairs: int | None = None
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
        if (pending := waiting_job(connection, SWEEP_PENDING_KEY)) is not None:
            return {"sweep": "already queued", "job_id": pending}
        # The generation queue's several workers take it at once; without an LLM only the training queue is served.
        queue = generation_queue(connection) if llm_configured(settings) else training_queue(connection)
        job = queue.enqueue(
            sweep_projects, job_id=f"alvar-reconcile-{uuid.uuid4().hex[:12]}",
            job_timeout=max(600, settings.reconcile_interval), result_ttl=3600, failure_ttl=7 * 24 * 3600,
            description="reconcile every known project (missed variations and retraining)")
        connection.set(SWEEP_PENDING_KEY, job.id, ex=7 * 24 * 3600)
    return {"sweep": "queued", "job_id": job.id}


def sweep_projects() -> dict[str, Any]:
    """The sweep job: reconcile every project this backend has heard of; one project's error spares the rest.

    On the generation queue it uses its worker's settings and Label Studio client
    (:func:`~alvar.generator.worker_resources.current_resources`); on the training queue, fresh ones.
    """
    job = get_current_job()
    connection = job.connection if job is not None else None
    if connection is None:
        raise RuntimeError("sweep_projects runs as an RQ job (use `alvar reconcile` to sweep at once)")
    resources = current_resources()
    return {str(project_id): reconcile_project(resources.settings, resources.label_studio, connection,
                                               project_id).as_dict()
            for project_id in known_projects(connection)}


def reconcile_project(settings: Settings, client: LabelStudio, connection: Redis,
                      project_id: int) -> Reconciliation:
    """Queue what is missing in one project (see the module docstring), by its kind's sweep (:data:`SWEEPS`);
    never raises for a project's state."""
    try:
        label_config = client.projects.get(id=project_id).label_config or ""
        return SWEEPS[task_kind(label_config).name](settings, client, connection, project_id, label_config)
    except (ApiError, LabelConfigError) as error:
        log.warning("reconcile project %s: %s: %s", project_id, type(error).__name__, error)
        return Reconciliation(project_id, error=f"{type(error).__name__}: {error}")


def reconcile_classification_project(settings: Settings, client: LabelStudio, connection: Redis, project_id: int,
                                     label_config: str) -> Reconciliation:
    """A classification project's sweep: the variations of human labels that have none, and due retraining."""
    control = parse_choices_control(label_config)
    annotated = [task for task in iter_tasks(client, project_id, only_annotated=True) if not is_variation(task)]
    generation = catch_up_generation(settings, client, connection, project_id, control, annotated)
    human_labels = training_set(annotated, control).human
    training = check_training(settings, connection, project_id, human_labels)
    return _logged(Reconciliation(project_id, human_labels=human_labels, **asdict(generation), **asdict(training)),
                   "generation jobs")


def reconcile_generative_project(settings: Settings, client: LabelStudio, connection: Redis, project_id: int,
                                 label_config: str) -> Reconciliation:
    """A generative project's sweep: the teacher's missed drafts, and the student's training when it is behind."""
    control = parse_generation_control(label_config)
    drafts = catch_up_drafts(settings, client, connection, project_id, control)
    pairs = len(verified_pairs(iter_tasks(client, project_id, only_annotated=True), control))
    training = check_generation_training(settings, connection, project_id, pairs)
    return _logged(Reconciliation(project_id, verified_pairs=pairs, **asdict(drafts), **asdict(training)),
                   "teacher drafts")


def _logged(found: Reconciliation, queued_what: str) -> Reconciliation:
    """``found``, logged when the sweep queued anything for its project."""
    if found.queued or found.training:
        log.info("reconcile project %s: queued %d %s, training %s", found.project, len(found.queued), queued_what,
                 found.training)
    return found


Sweep = Callable[[Settings, LabelStudio, Redis, int, str], Reconciliation]
# Each kind's catch-up (:func:`~alvar.labelstudio.task_kinds.task_kind`).
SWEEPS: dict[str, Sweep] = {CLASSIFICATION: reconcile_classification_project, GENERATION: reconcile_generative_project}


def reconcile_projects(settings: Settings, connection: Redis, projects: Iterable[int] | None = None,
                       client: LabelStudio | None = None) -> list[Reconciliation]:
    """`alvar reconcile`: sweep the given projects (default: every known one) now, in this process."""
    client = client or label_studio_client(settings)
    chosen = list(projects) if projects is not None else known_projects(connection)
    for project_id in chosen:
        remember_project(connection, project_id)
    return [reconcile_project(settings, client, connection, project_id) for project_id in chosen]
