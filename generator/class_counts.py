"""A project's dataset by class, for the balance policy (:mod:`alvar.generator.budget`), cached in Redis.

The dataset is what export would release with ``--include-unverified``: every human label (bootstrap included)
and every variation that is current and not judged invalid, counted under the class its reviewer left, else its
pre-label (:func:`alvar.labelstudio.training_data.labelled_items`). Unreviewed variations count: they are on
their way into the dataset, and a class whose variations wait for review must not be topped up again.

Reading it lists the annotated tasks and the current variations nobody has reviewed (about 2 s on a 3,000-task
project, `bench/class_counts_read.py`), so a busy worker reads it at most once per project every
:data:`COUNTS_TTL` seconds: the counts live in a Redis hash shared by every
worker; a job adds the k it chose when it chooses it and corrects that by what it imported, so jobs in between
budget against each other's sets. Human labels given since the read are seen at the next read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, cast

from label_studio_sdk import LabelStudio
from redis import Redis

from alvar.labelstudio.choices_control import ChoicesControl
from alvar.labelstudio.client import as_dict, dm_filter, dm_query, iter_tasks
from alvar.labelstudio.task_data import CURRENT_VARIATIONS, VARIATIONS
from alvar.labelstudio.training_data import LabelledItem, labelled_items

COUNTS_TTL = 60
UNANNOTATED = dm_filter("total_annotations", "equal", 0, "Number")


def _key(project_id: int) -> str:
    return f"alvar:class-counts:{project_id}"


def read_class_counts(client: LabelStudio, project_id: int, control: ChoicesControl) -> dict[str, int]:
    """The project's dataset by class, every label of the control included (zeros too), read from Label Studio:
    the annotated tasks and the current variations nobody has annotated, through export's own rule."""
    counts = dict.fromkeys(control.labels, 0)
    unannotated = dm_query(VARIATIONS, CURRENT_VARIATIONS, UNANNOTATED)
    unannotated_variations: Iterable[Any] = client.tasks.list(project=project_id, query=unannotated, page_size=500)
    tasks = chain(iter_tasks(client, project_id, only_annotated=True), map(as_dict, unannotated_variations))
    for item in labelled_items(tasks, control, include_unverified=True):
        if isinstance(item, LabelledItem) and item.label in counts:
            counts[item.label] += 1
    return counts


def project_class_counts(connection: Redis | None, client: LabelStudio, project_id: int,
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


_ADD_IF_CACHED = ("if redis.call('exists', KEYS[1]) == 1 then "
                  "return redis.call('hincrby', KEYS[1], ARGV[1], ARGV[2]) end")


def _add_if_cached(connection: Redis | None, project_id: int, label: str, count: int) -> bool:
    """Add to a label's cached count; False when nothing is cached (the next read sees Label Studio's count)."""
    if connection is None or not count:
        return False
    return connection.eval(_ADD_IF_CACHED, 1, _key(project_id), label, str(count)) is not None


@dataclass
class CountReservation:
    """The cached counts as one generation job changes them. The k the job chose is counted as soon as it is
    chosen (:meth:`reserve`), so jobs running at the same time budget against each other's sets as the
    simulation does; on exit it is replaced by what the job imported (:meth:`imported`), nothing when the job
    failed or imported nothing. Only a reservation the cache took is taken back."""

    connection: Redis | None
    project_id: int
    reserved: dict[str, int] = field(default_factory=dict)
    written: dict[str, int] = field(default_factory=dict)

    def reserve(self, label: str, k: int) -> None:
        if _add_if_cached(self.connection, self.project_id, label, k):
            self.reserved[label] = self.reserved.get(label, 0) + k

    def imported(self, label: str, count: int) -> None:
        self.written[label] = self.written.get(label, 0) + count

    def __enter__(self) -> CountReservation:
        return self

    def __exit__(self, *_: object) -> None:
        for label in self.reserved.keys() | self.written.keys():
            _add_if_cached(self.connection, self.project_id, label,
                           self.written.get(label, 0) - self.reserved.get(label, 0))
