"""Turning Label Studio webhook events into queued jobs, at once (Label Studio waits 1 s at most).

A dispatcher holds reactions: each looks at an event and may enqueue a job. Training is the first reaction;
the generator adds its own beside it with :meth:`Dispatcher.add`. The webhook only speeds things up: whatever a
lost delivery would have queued, the reconciliation sweep (:mod:`alvar.generator.reconcile`) queues later, so
every project that sends an event is remembered in :data:`KNOWN_PROJECTS_KEY` for the sweep.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from redis import Redis
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from alvar.backend.label_config import ChoicesControl, LabelConfigError, parse_choices_control
from alvar.backend.training import pending_training_key, train_project
from alvar.backend.training_data import is_bootstrap, is_variation

NEW_ANNOTATION_ACTIONS = frozenset({"ANNOTATION_CREATED", "ANNOTATIONS_CREATED"})
ANNOTATION_ACTIONS = NEW_ANNOTATION_ACTIONS | {"ANNOTATION_UPDATED"}
TRAINING_ACTION = "START_TRAINING"
LABEL_STUDIO_ACTIONS = ANNOTATION_ACTIONS | {
    TRAINING_ACTION,
    "ANNOTATIONS_DELETED",
    "TASKS_CREATED",
    "TASKS_DELETED",
    "PROJECT_CREATED",
    "PROJECT_UPDATED",
    "PROJECT_DELETED",
    "LABEL_LINK_CREATED",
    "LABEL_LINK_UPDATED",
    "LABEL_LINK_DELETED",
    "REVIEW_CREATED",
    "REVIEW_UPDATED",
    "REVIEWS_DELETED",
}
WAITING_STATUSES = frozenset({JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED})
_PROJECT_REF = re.compile(r"([0-9]{1,18})(?:\.[0-9]{0,20})?")
# The projects that ever reached this backend (webhook, setup or `alvar init`): what the sweep reconciles.
KNOWN_PROJECTS_KEY = "alvar:projects"


class WebhookError(ValueError):
    """A webhook body that cannot be acted on; the message is the reason sent back with a 400."""


@dataclass(frozen=True)
class WebhookEvent:
    action: str
    project_id: int
    payload: Mapping[str, Any]

    def control(self) -> ChoicesControl:
        """The project's Choices control, from the label config the payload carries (LabelConfigError if none)."""
        project = self.payload.get("project")
        return parse_choices_control(project.get("label_config") if isinstance(project, Mapping) else None)

    def annotations(self) -> list[tuple[Any, Mapping[str, Any]]]:
        """Each annotation of the event with its task (``{}`` when the payload does not carry it)."""
        tasks = {task["id"]: task for task in _as_list(self.payload.get("task"))
                 if isinstance(task, Mapping) and _is_id(task.get("id"))}
        pairs = []
        for annotation in _as_list(self.payload.get("annotation", self.payload.get("annotations"))):
            task_ref = annotation.get("task") if isinstance(annotation, Mapping) else None
            task_id = task_ref.get("id") if isinstance(task_ref, Mapping) else task_ref
            fallback = task_ref if isinstance(task_ref, Mapping) else {}
            pairs.append((annotation, tasks.get(task_id, fallback) if _is_id(task_id) else fallback))
        return pairs


@dataclass(frozen=True)
class HumanLabel:
    """A person's label of a source task, the one thing that queues variations and counts toward retraining."""

    task_id: int
    annotation_id: int
    label: str
    text: str | None


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def human_label(annotation: Any, task: Mapping[str, Any], control: ChoicesControl) -> HumanLabel | str:
    """The human label an annotation gives its source task, or the reason it gives none."""
    if not isinstance(annotation, Mapping) or not _is_id(annotation.get("id")):
        return "the annotation has no id"
    task_ref = annotation.get("task")
    task_id = task_ref.get("id") if isinstance(task_ref, Mapping) else task_ref
    if not _is_id(task_id):
        return "the annotation names no task"
    if is_variation(task):
        return "a variation's review generates nothing"
    if is_bootstrap(task):
        return "a bootstrap label generates nothing"
    if annotation.get("was_cancelled"):
        return "the annotation was skipped"
    label = control.chosen_label(annotation.get("result"))
    if label is None:
        return f"no choice of {control.from_name} given (labels outside the config are ignored)"
    data = task.get("data")
    text = data.get(control.data_key) if isinstance(data, Mapping) else None
    return HumanLabel(task_id, annotation["id"], label, text if isinstance(text, str) else None)


def human_labels(pairs: Iterable[tuple[Any, Mapping[str, Any]]], control: ChoicesControl) -> list[HumanLabel]:
    return [found for annotation, task in pairs if isinstance(found := human_label(annotation, task, control),
                                                               HumanLabel)]


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_event(payload: Any) -> WebhookEvent:
    if not isinstance(payload, dict):
        raise WebhookError("the webhook body must be a JSON object")
    action = payload.get("action")
    if not isinstance(action, str) or not action:
        raise WebhookError("the webhook body has no 'action'")
    if action not in LABEL_STUDIO_ACTIONS:
        raise WebhookError(f"unknown webhook action {action!r}")
    project = payload.get("project")
    project_id = project.get("id") if isinstance(project, dict) else project
    project_id = project_number(project_id)
    if project_id is None:
        raise WebhookError(f"the {action} body names no project id")
    return WebhookEvent(action=action, project_id=project_id, payload=payload)


def project_number(value: Any) -> int | None:
    """A project id as Label Studio sends it (7, or "7.1700000000" from /setup and /predict), else None."""
    if isinstance(value, str) and (match := _PROJECT_REF.fullmatch(value)):
        value = int(match.group(1))
    return value if _is_id(value) and 0 < value < 2**63 else None


def _waiting(job_id: str, connection: Redis) -> bool:
    try:
        return Job.fetch(job_id, connection=connection).get_status() in WAITING_STATUSES
    except NoSuchJobError:
        return False


Reaction = Callable[[WebhookEvent], dict[str, Any] | None]


class TrainingReaction:
    """Queue a training job on START_TRAINING and after every ``retrain_every`` new human labels.

    Only new human labels of source tasks count: reviews of variations, edits and skips do not.

    At most one training job per project waits in the queue: its id sits under a Redis key that the job
    clears when it starts, so later annotations can queue the next one.
    """

    def __init__(self, connection: Redis, queue: Queue, retrain_every: int, job_timeout: int = 3600) -> None:
        self.connection = connection
        self.queue = queue
        self.retrain_every = retrain_every
        self.job_timeout = job_timeout

    def _counter_key(self, project_id: int) -> str:
        return f"alvar:training:annotations-since:{project_id}"

    def __call__(self, event: WebhookEvent) -> dict[str, Any] | None:
        if event.action == TRAINING_ACTION:
            return self.enqueue(event.project_id, reason="START_TRAINING")
        if event.action not in NEW_ANNOTATION_ACTIONS:
            return None
        try:
            new_labels = len(human_labels(event.annotations(), event.control()))
        except LabelConfigError:
            return {"training": "skipped", "reason": "no usable label config in the payload"}
        if new_labels == 0:
            return {"training": "not counted", "reason": "no new human label of a source task"}
        seen = self.connection.incrby(self._counter_key(event.project_id), new_labels)
        if seen < self.retrain_every:
            return {"training": "waiting", "annotations_since_training": seen, "retrain_every": self.retrain_every}
        return self.enqueue(event.project_id, reason=f"{seen} new annotations")

    def enqueue(self, project_id: int, reason: str) -> dict[str, Any]:
        key = pending_training_key(project_id)
        with self.connection.lock(f"{key}:lock", timeout=10, blocking_timeout=5):
            self.connection.delete(self._counter_key(project_id))
            pending = self.connection.get(key)
            if pending is not None and _waiting(pending.decode(), self.connection):
                return {"training": "already queued", "job_id": pending.decode()}
            job = self.queue.enqueue(
                train_project,
                project_id,
                job_id=f"{training_job_prefix(project_id)}{uuid.uuid4().hex[:12]}",
                job_timeout=self.job_timeout,
                result_ttl=7 * 24 * 3600,
                failure_ttl=30 * 24 * 3600,
                description=f"train project {project_id} ({reason})",
                meta={"project": project_id, "reason": reason},
            )
            self.connection.set(key, job.id, ex=7 * 24 * 3600)
        return {"training": "queued", "job_id": job.id}


class Dispatcher:
    """Routes each webhook event to every reaction and reports what they did."""

    def __init__(self, reactions: list[Reaction] | None = None, connection: Redis | None = None) -> None:
        self.reactions: list[Reaction] = list(reactions or [])
        self.connection = connection

    def add(self, reaction: Reaction) -> None:
        self.reactions.append(reaction)

    def dispatch(self, payload: Any) -> dict[str, Any]:
        event = parse_event(payload)
        if self.connection is not None:
            remember_project(self.connection, event.project_id)
        outcomes = [outcome for reaction in self.reactions if (outcome := reaction(event)) is not None]
        return {"action": event.action, "project": event.project_id, "jobs": outcomes,
                "status": "queued" if outcomes else "ignored"}


def training_job_prefix(project_id: int) -> str:
    """How the ids of a project's training jobs begin."""
    return f"train-{project_id}-"


def remember_project(connection: Redis, project_id: int) -> None:
    connection.sadd(KNOWN_PROJECTS_KEY, project_id)


def known_projects(connection: Redis) -> list[int]:
    return sorted(int(member) for member in connection.smembers(KNOWN_PROJECTS_KEY))
