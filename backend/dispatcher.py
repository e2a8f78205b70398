"""Turning Label Studio webhook events into queued jobs, at once (Label Studio waits 1 s at most).

A dispatcher holds reactions: each looks at an event and may enqueue a job. The backend knows none of them by
name: they are given to :func:`alvar.backend.app.create_app` as factories (:data:`ReactionFactory`), training's
:class:`TrainingReaction` and the generator's reaction among them (see :mod:`alvar.scripts.backend_app`). The
webhook only speeds things up: whatever a lost delivery would have queued, the reconciliation sweep
(:mod:`alvar.loop.reconcile`) queues later, so every project that sends an event is remembered
(:func:`alvar.projects.remember_project`) for the sweep.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, cast

from redis import Redis
from rq import Queue

from alvar.backend.training import pending_training_key, train_project
from alvar.labelstudio.choices_control import LabelConfigError
from alvar.labelstudio.task_kinds import task_kind
from alvar.labelstudio.webhook import (
    NEW_ANNOTATION_ACTIONS,
    TRAINING_ACTION,
    WebhookEvent,
    parse_event,
)
from alvar.projects import remember_project
from alvar.queues import training_queue, waiting_job
from alvar.settings import Settings

Reaction = Callable[[WebhookEvent], dict[str, Any] | None]
# What create_app is given: builds one reaction from the settings and the Redis connection the app shares.
ReactionFactory = Callable[[Settings, Redis], Reaction]


class TrainingReaction:
    """Queue a training job on START_TRAINING and after every ``retrain_every`` new human labels.

    Only new human labels of source tasks count: reviews of variations, edits and skips do not. In a generative
    project the new verified reviews count (accept or edit with an output); rejections and emptied outputs do not.

    At most one training job per project waits in the queue: its id sits under a Redis key that the job
    clears when it starts, so later annotations can queue the next one.
    """

    def __init__(self, connection: Redis, queue: Queue, retrain_every: int, job_timeout: int = 3600) -> None:
        self.connection = connection
        self.queue = queue
        self.retrain_every = retrain_every
        self.job_timeout = job_timeout

    @classmethod
    def from_settings(cls, settings: Settings, connection: Redis) -> TrainingReaction:
        return cls(connection, training_queue(connection), settings.retrain_every)

    def _counter_key(self, project_id: int) -> str:
        return f"alvar:training:annotations-since:{project_id}"

    def __call__(self, event: WebhookEvent) -> dict[str, Any] | None:
        if event.action == TRAINING_ACTION:
            return self.enqueue(event.project_id, reason="START_TRAINING")
        if event.action not in NEW_ANNOTATION_ACTIONS:
            return None
        kind = task_kind(event.label_config())
        try:
            new_labels = kind.new_labels(event.annotations(), kind.control(event.label_config()))
        except LabelConfigError:
            return {"training": "skipped", "reason": "no usable label config in the payload"}
        if new_labels == 0:
            return {"training": "not counted", "reason": kind.no_new_label}
        seen = cast(int, self.connection.incrby(self._counter_key(event.project_id), new_labels))
        if seen < self.retrain_every:
            return {"training": "waiting", "annotations_since_training": seen, "retrain_every": self.retrain_every}
        return self.enqueue(event.project_id, reason=f"{seen} new annotations")

    def enqueue(self, project_id: int, reason: str) -> dict[str, Any]:
        key = pending_training_key(project_id)
        with self.connection.lock(f"{key}:lock", timeout=10, blocking_timeout=5):
            self.connection.delete(self._counter_key(project_id))
            if (pending := waiting_job(self.connection, key)) is not None:
                return {"training": "already queued", "job_id": pending}
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
