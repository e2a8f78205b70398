"""Turning Label Studio webhook events into queued jobs, at once (Label Studio waits 1 s at most).

A dispatcher holds reactions: each looks at an event and may enqueue a job. Training is the first reaction;
the generator adds its own beside it with :meth:`Dispatcher.add`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from redis import Redis
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from alvar.backend.training import pending_training_key, train_project

ANNOTATION_ACTIONS = frozenset({"ANNOTATION_CREATED", "ANNOTATIONS_CREATED", "ANNOTATION_UPDATED"})
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


class WebhookError(ValueError):
    """A webhook body that cannot be acted on; the message is the reason sent back with a 400."""


@dataclass(frozen=True)
class WebhookEvent:
    action: str
    project_id: int
    payload: Mapping[str, Any]

    @property
    def annotation_count(self) -> int:
        """How many annotations the event carries (``ANNOTATIONS_CREATED`` sends a list)."""
        annotation = self.payload.get("annotation", self.payload.get("annotations"))
        return len(annotation) if isinstance(annotation, list) else 1


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
    if isinstance(project_id, str) and project_id.split(".")[0].isdigit():
        project_id = int(project_id.split(".")[0])
    if not isinstance(project_id, int) or isinstance(project_id, bool):
        raise WebhookError(f"the {action} body names no project id")
    return WebhookEvent(action=action, project_id=project_id, payload=payload)


def _waiting(job_id: str, connection: Redis) -> bool:
    try:
        return Job.fetch(job_id, connection=connection).get_status() in WAITING_STATUSES
    except NoSuchJobError:
        return False


Reaction = Callable[[WebhookEvent], dict[str, Any] | None]


class TrainingReaction:
    """Queue a training job on START_TRAINING and after every ``retrain_every`` new annotations.

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
        if event.action not in ANNOTATION_ACTIONS:
            return None
        seen = self.connection.incrby(self._counter_key(event.project_id), event.annotation_count)
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
                job_id=f"train-{project_id}-{uuid.uuid4().hex[:12]}",
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

    def __init__(self, reactions: list[Reaction] | None = None) -> None:
        self.reactions: list[Reaction] = list(reactions or [])

    def add(self, reaction: Reaction) -> None:
        self.reactions.append(reaction)

    def dispatch(self, payload: Any) -> dict[str, Any]:
        event = parse_event(payload)
        outcomes = [outcome for reaction in self.reactions if (outcome := reaction(event)) is not None]
        return {"action": event.action, "project": event.project_id, "jobs": outcomes,
                "status": "queued" if outcomes else "ignored"}
