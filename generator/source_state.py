"""What Redis knows about each source task: the label its variations should follow, and a lock.

The webhook reaction records, per source task, the latest (annotation, label) it queued a job for. A job
imports only while its own (annotation, label) is still the latest, under the task's lock, so a quick relabel
never leaves two sets of current variations, and a label that comes back (A, then B, then A again) is queued
again because it differs from the one before it.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

from redis import Redis

MARKER_TTL_SECONDS = 90 * 24 * 3600
LOCK_SECONDS = 120


def _latest_key(project_id: int, task_id: int) -> str:
    return f"alvar:generation:latest:{project_id}:{task_id}"


def _marker(annotation_id: int, label: str) -> str:
    return f"{annotation_id}\0{label}"


def record_latest(connection: Redis, project_id: int, task_id: int, annotation_id: int, label: str) -> bool:
    """Make (annotation, label) the task's latest; False when it already was (a repeated delivery)."""
    marker = _marker(annotation_id, label)
    previous = connection.set(_latest_key(project_id, task_id), marker, ex=MARKER_TTL_SECONDS, get=True)
    return previous is None or previous.decode() != marker


def is_latest(connection: Redis, project_id: int, task_id: int, annotation_id: int, label: str) -> bool:
    """True unless the reaction has since queued another label or annotation for this task."""
    stored = connection.get(_latest_key(project_id, task_id))
    return stored is None or stored.decode() == _marker(annotation_id, label)


def forget_latest(connection: Redis, project_id: int, task_id: int) -> None:
    connection.delete(_latest_key(project_id, task_id))


def source_lock(connection: Redis, project_id: int, task_id: int) -> AbstractContextManager[object]:
    """Held while a job compares, imports and retires the variations of one source task."""
    return connection.lock(f"alvar:generation:source:{project_id}:{task_id}", timeout=LOCK_SECONDS,
                           blocking_timeout=LOCK_SECONDS)


def import_lock(connection: Redis, project_id: int) -> AbstractContextManager[object]:
    """Held around one import of tasks into a project.

    Label Studio 1.23.2 on SQLite numbers imported tasks itself (latest id + 1): of two imports at once, one
    comes back with ``prediction_count`` 0 and its tasks without their pre-labels.
    """
    return connection.lock(f"alvar:label-studio:import:{project_id}", timeout=LOCK_SECONDS,
                           blocking_timeout=LOCK_SECONDS)
