"""Catching up on training: a project whose human labels outnumber its current model's by ``retrain_every``
(in a generative project: its verified pairs, against the pairs its current student was trained on).

The reconciliation sweep (:mod:`alvar.loop.reconcile`) asks here after reading the project; the webhook's
:class:`~alvar.backend.dispatcher.TrainingReaction` is the fast path, this is what makes up for a lost event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis import Redis
from rq.registry import StartedJobRegistry

from alvar.backend.dispatcher import TrainingReaction, training_job_prefix
from alvar.backend.model_store import project_store, serving_kind
from alvar.labelstudio.generation_config import GENERATION
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
    return TrainingCheck(trained_on, _queue_once(settings, connection, project_id, human_labels,
                                                 f"sweep: {behind} human labels since the current model"))


def trained_pairs(settings: Settings, project_id: int) -> int | None:
    """How many verified pairs the project's current student was trained on; None without a student."""
    found = serving_kind(settings.model_dir, project_id, GENERATION)
    if found is None or not found.own:
        return None
    return int(found.store.metadata(found.version).get("n_examples", 0))


def check_generation_training(settings: Settings, connection: Redis, project_id: int,
                              verified_pairs: int) -> TrainingCheck:
    """Queue a generative project's training when it has ``verified_pairs`` and no student yet, or its student
    is ``retrain_every`` or more pairs behind."""
    trained_on = trained_pairs(settings, project_id)
    behind = verified_pairs - (trained_on or 0)
    if verified_pairs == 0 or (trained_on is not None and behind < settings.retrain_every):
        return TrainingCheck(trained_on, None)
    reason = f"sweep: {behind} verified pairs since the current student" if trained_on is not None else \
        f"sweep: {verified_pairs} verified pairs and no student yet"
    return TrainingCheck(trained_on, _queue_once(settings, connection, project_id, verified_pairs, reason))


def _queue_once(settings: Settings, connection: Redis, project_id: int, count: int,
                reason: str) -> dict[str, Any] | None:
    """Queue the project's training, once per ``count`` (of labels, or pairs): a training that fails on these
    (one class only, say) is not queued again by every sweep; it waits in the failed registry (`alvar jobs`)
    until new ones arrive. Nothing while a training of the project runs."""
    asked = f"alvar:reconcile:training-asked:{project_id}"
    if connection.get(asked) == str(count).encode() or training_running(connection, project_id):
        return None
    reaction = TrainingReaction(connection, training_queue(connection), settings.retrain_every)
    training = reaction.enqueue(project_id, reason=reason)
    connection.set(asked, count, ex=30 * 24 * 3600)
    return training


def training_running(connection: Redis, project_id: int) -> bool:
    """A training of the project has started (its model is not saved yet, so the counts above look behind)."""
    started = StartedJobRegistry(queue=training_queue(connection)).get_job_ids()
    return any(job_id.startswith(training_job_prefix(project_id)) for job_id in started)
