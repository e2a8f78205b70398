"""A project's dataset by class, for the balance policy (:mod:`alvar.generator.budget`), cached in Redis.

The dataset is what export would release with ``--include-unverified``: every human label (bootstrap included)
and every variation that is current and not judged invalid, counted under the class its reviewer left, else its
pre-label (:func:`alvar.labelstudio.training_data.labelled_items`). Unreviewed variations count: they are on
their way into the dataset, and a class whose variations wait for review must not be topped up again.

Reading it lists the annotated tasks and the current variations nobody has reviewed (about 2 s on a 3,000-task
project, `bench/class_counts_read.py`), so a busy worker reads it at most once per project every
:data:`COUNTS_TTL` seconds: the counts live in a Redis hash shared by every
worker, and each import adds what it wrote, so jobs in between see each other's variations.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, cast

from label_studio_sdk import LabelStudio
from redis import Redis

from alvar.labelstudio.client import ANNOTATED, as_dict, dm_filter, dm_query
from alvar.labelstudio.label_config import ChoicesControl
from alvar.labelstudio.task_data import CURRENT_VARIATIONS, VARIATIONS, VariationFields
from alvar.labelstudio.training_data import LabelledItem, labelled_items

COUNTS_TTL = 60
UNREVIEWED = dm_filter("total_annotations", "equal", 0, "Number")


def _key(project_id: int) -> str:
    return f"alvar:class-counts:{project_id}"


def read_class_counts(client: LabelStudio, project_id: int, control: ChoicesControl) -> dict[str, int]:
    """The project's dataset by class, every label of the control included (zeros too), read from Label Studio."""
    counts = dict.fromkeys(control.labels, 0)
    # A Data Manager filter, not ``only_annotated``: Label Studio 1.23.2's task list ignores that parameter.
    annotated: Iterable[Any] = client.tasks.list(project=project_id, query=dm_query(ANNOTATED), fields="all",
                                                 page_size=500)
    for item in labelled_items((as_dict(task) for task in annotated), control):
        if isinstance(item, LabelledItem) and item.label in counts:
            counts[item.label] += 1
    query = dm_query(VARIATIONS, CURRENT_VARIATIONS, UNREVIEWED)
    task: Any  # the SDK's pager leaves its item type open
    for task in client.tasks.list(project=project_id, query=query, fields="task_only", page_size=500):
        prelabel = VariationFields.of(task).prelabel
        if prelabel in counts:
            counts[prelabel] += 1
    return counts


def class_counts(connection: Redis | None, client: LabelStudio, project_id: int,
                 control: ChoicesControl) -> dict[str, int]:
    """The counts from the cache; read from Label Studio (by one job at a time) when absent or expired."""
    if connection is None:
        return read_class_counts(client, project_id, control)
    key = _key(project_id)
    cached = cast(dict[bytes, bytes], connection.hgetall(key))  # a sync client's answer
    if not cached:
        with connection.lock(f"{key}:reading", timeout=120, blocking_timeout=120):
            cached = cast(dict[bytes, bytes], connection.hgetall(key))
            if not cached:
                counts = read_class_counts(client, project_id, control)
                with connection.pipeline() as pipe:
                    pipe.hset(key, mapping=dict(counts))
                    pipe.expire(key, COUNTS_TTL)
                    pipe.execute()
                return counts
    stored = {name.decode(): int(value) for name, value in cached.items()}
    return {label: stored.get(label, 0) for label in control.labels}


def add_written(connection: Redis | None, project_id: int, written: Mapping[str, int]) -> None:
    """Count an import's variations in the cached counts (when they are cached: else the next read sees them)."""
    if connection is None:
        return
    key = _key(project_id)
    script = "if redis.call('exists', KEYS[1]) == 1 then return redis.call('hincrby', KEYS[1], ARGV[1], ARGV[2]) end"
    for label, count in written.items():
        connection.eval(script, 1, key, label, str(count))
