"""The batches of `alvar select` in a Label Studio project, read from task data, never from tab titles.

Each task a batch picks carries the batch's number and size (:class:`~alvar.labelstudio.task_data.BatchFields`).
They are written task by task, and the batch's tab last: a batch is written completely once as many picked tasks
carry its number as its size says, or once its tab exists (so deleting a picked task later does not reopen it);
one cut short is completed by the next `alvar select`. Its Data Manager tab, "Batch <n> ·
<strategy>", lists its tasks most uncertain first; people use it, and it is found by its filter on
``data.batch`` (renaming it makes no second one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from label_studio_sdk import LabelStudio

from alvar.labelstudio.client import COMPACT_COLUMNS, as_dict, dm_number_order, dm_query
from alvar.labelstudio.task_data import BATCH_COLUMN, BATCHED, ENTROPY_COLUMN, BatchFields, in_batch
from alvar.labelstudio.training_data import is_variation


@dataclass(frozen=True)
class Batch:
    """A batch number and every task that carries it: the picked tasks and the variations written from them."""

    number: int
    tasks: list[dict[str, Any]]
    tabbed: bool = False  # a Data Manager tab filters on the batch

    @property
    def picked(self) -> list[dict[str, Any]]:
        return [task for task in self.tasks if not is_variation(task)]

    @property
    def complete(self) -> bool:
        """Whether the batch was written completely: its tab exists, or every task it picked carries its number.
        A batch whose tasks carry no size (written before sizes were recorded) counts as complete, and so does one
        with no picked task left."""
        if self.tabbed:
            return True
        sizes = [BatchFields.of(task).batch_size for task in self.picked]
        if not sizes or None in sizes:
            return True
        return len(sizes) >= max(size for size in sizes if size is not None)

    @property
    def strategy(self) -> str:
        """The strategy that picked the batch (its tasks' ``strategy``), or "" when none carries one."""
        return next((found for task in self.tasks if (found := BatchFields.of(task).strategy)), "")


def latest_batch(tasks: Sequence[Mapping[str, Any]]) -> Batch | None:
    """The highest-numbered batch among ``tasks`` (a project's every task), or None when none carries one; whether
    it has a tab is the caller's to add (:func:`has_batch_tab`)."""
    numbers = [BatchFields.of(task).batch for task in tasks]
    latest = max((number for number in numbers if number is not None and number > 0), default=None)
    if latest is None:
        return None
    return Batch(latest, [dict(task) for task, number in zip(tasks, numbers) if number == latest])


def fetch_latest_batch(client: LabelStudio, project_id: int) -> Batch | None:
    """The project's latest batch in two small requests (the task with the highest batch number, then the
    tasks carrying it), so a large pool is never read whole."""
    highest_first = dm_query(BATCHED, order=dm_number_order(BATCH_COLUMN))
    top = next(iter(client.tasks.list(project=project_id, query=highest_first, fields="task_only", page_size=1)),
               None)
    number = BatchFields.of(top).batch if top is not None else None
    if number is None:
        return None
    members = dm_query(in_batch(number))
    return Batch(number, [as_dict(task) for task in client.tasks.list(project=project_id, query=members,
                                                                       fields="task_only", page_size=500)],
                 has_batch_tab(client, project_id, number))


def batch_tab_title(batch: int, strategy: str) -> str:
    return f"Batch {batch} · {strategy}"


def _shows_batch(view: Any, batch: int) -> bool:
    shown = in_batch(batch).items()
    filters = (view.data or {}).get("filters") or {}
    return any(isinstance(item, dict) and shown <= item.items() for item in filters.get("items") or [])


def has_batch_tab(client: LabelStudio, project_id: int, batch: int) -> bool:
    """Whether a Data Manager tab of the project filters on the batch (whatever its title)."""
    return any(_shows_batch(view, batch) for view in client.views.list(project=project_id))


def ensure_batch_tab(client: LabelStudio, project_id: int, batch: int, strategy: str) -> bool:
    """The batch's tab, most uncertain first, made unless a tab filters on the batch already; True when made."""
    if has_batch_tab(client, project_id, batch):
        return False
    client.views.create(project=project_id, data={
        "title": batch_tab_title(batch, strategy),
        "filters": {"conjunction": "and", "items": [in_batch(batch)]},
        **dm_number_order(ENTROPY_COLUMN),
        "hiddenColumns": COMPACT_COLUMNS,
    })
    return True
