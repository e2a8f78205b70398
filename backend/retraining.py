"""Catching up on training: a project whose human labels outnumber its current model's by ``retrain_every``.

The reconciliation sweep (:mod:`alvar.scripts.reconcile`) asks here after reading the project; the webhook's
:class:`~alvar.backend.dispatcher.TrainingReaction` is the fast path, this is what makes up for a lost event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis import Redis
from rq.registry import StartedJobRegistry

from alvar.backend.dispatcher import TrainingReaction, training_job_prefix
from alvar.backend.model_store import project_store
from alvar.queues import training_queue
from alvar.settings import Settings


@dataclass(frozen=True)
class TrainingCheck:
    """How many human labels the current model was trained on (None: no model yet) and the training queued."""

    trained_on: int | None
    training: dict[str, Any] | None


def trained_human_labels(settings: Settings, project_id: int) -> int | None:
    """How many human labels the project's current model version was trained on; None without a version."""
    store = project_store(settings.model_dir, project_id)
    version = store.current_version()
    if version is None:
        return None
    return int(store.metadata(version).get("human", 0))


def check_training(settings: Settings, connection: Redis, project_id: int, human_labels: int) -> TrainingCheck:
    """Queue a training when the project has ``human_labels`` and its model is ``retrain_every`` or more behind."""
    trained_on = trained_human_labels(settings, project_id)
    behind = human_labels - (trained_on or 0)
    if human_labels == 0 or behind < settings.retrain_every:
        return TrainingCheck(trained_on, None)
    # Once per count of human labels: a training that fails on these labels (one class only, say) is not
    # queued again by every sweep; it waits in the failed registry (`alvar jobs`) until new labels arrive.
    asked = f"alvar:reconcile:training-asked:{project_id}"
    if connection.get(asked) == str(human_labels).encode() or training_running(connection, project_id):
        return TrainingCheck(trained_on, None)
    reaction = TrainingReaction(connection, training_queue(connection), settings.retrain_every)
    training = reaction.enqueue(project_id, reason=f"sweep: {behind} human labels since the current model")
    connection.set(asked, human_labels, ex=30 * 24 * 3600)
    return TrainingCheck(trained_on, training)


def training_running(connection: Redis, project_id: int) -> bool:
    """A training of the project has started (its model is not saved yet, so the counts above look behind)."""
    started = StartedJobRegistry(queue=training_queue(connection)).get_job_ids()
    return any(job_id.startswith(training_job_prefix(project_id)) for job_id in started)
