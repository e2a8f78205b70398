"""Redis locks around what a generation job changes in Label Studio.

Which labels of a source task call for variations is Label Studio's to say (each annotator's latest
annotation, see :func:`alvar.labelstudio.training_data.current_labels`); Redis only serializes the jobs that act
on one source task, and the imports into one project.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

from redis import Redis

LOCK_SECONDS = 120


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
