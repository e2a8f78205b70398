"""The batches of `alvar select` in a Label Studio project, read from task data, never from tab titles.

Each task a batch picks carries the batch's number and size (:class:`~alvar.labelstudio.task_data.BatchFields`).
They are written task by task, and the batch's tab last: a batch is written completely once as many picked tasks
carry its number as its size says, or once its tab exists (so deleting a picked task later does not reopen it);
one cut short is completed by the next `alvar select`. Its Data Manager tab, "Batch <n> ·
<strategy>", lists its tasks most uncertain first; people use it, and it is found by its filter on
``data.batch`` (renaming it makes no second one). The tab declares each numeric batch field's column a Number:
Label Studio otherwise shows it as text and, on PostgreSQL, sorts it as text when a person sorts by it (cluster
10 before cluster 9).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, get_args, get_type_hints

from label_studio_sdk import LabelStudio
from label_studio_sdk.types import View

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


def _number_columns() -> dict[str, str]:
    """The Data Manager display type ``Number`` for the column of each numeric batch field (batch, round, cluster,
    entropy, batch size)."""
    hints = get_type_hints(BatchFields)
    numeric = [field.name for field in fields(BatchFields) if {int, float} & set(get_args(hints[field.name]))]
    return {f"tasks:data.{name}": "Number" for name in numeric}


NUMBER_COLUMNS = _number_columns()


def batch_tab_title(batch: int, strategy: str) -> str:
    return f"Batch {batch} · {strategy}"


def _shows_batch(view: Any, batch: int) -> bool:
    shown = in_batch(batch).items()
    filters = (view.data or {}).get("filters") or {}
    return any(isinstance(item, dict) and shown <= item.items() for item in filters.get("items") or [])


def batch_tab(client: LabelStudio, project_id: int, batch: int) -> View | None:
    """The Data Manager tab of the project that filters on the batch (whatever its title), or None."""
    return next((view for view in client.views.list(project=project_id) if _shows_batch(view, batch)), None)


def has_batch_tab(client: LabelStudio, project_id: int, batch: int) -> bool:
    """Whether a Data Manager tab of the project filters on the batch (whatever its title)."""
    return batch_tab(client, project_id, batch) is not None


def ensure_batch_tab(client: LabelStudio, project_id: int, batch: int, strategy: str) -> bool:
    """The batch's tab, most uncertain first, made unless a tab filters on the batch already; True when made.

    A tab made before its numeric columns were declared Numbers gets the missing declarations (the display types
    a person set are kept).
    """
    view = batch_tab(client, project_id, batch)
    if view is not None:
        _declare_number_columns(client, view)
        return False
    order = dm_number_order(ENTROPY_COLUMN)
    client.views.create(project=project_id, data={
        "title": batch_tab_title(batch, strategy),
        "filters": {"conjunction": "and", "items": [in_batch(batch)]},
        **order,
        "columnsDisplayType": {**NUMBER_COLUMNS, **order["columnsDisplayType"]},
        "hiddenColumns": COMPACT_COLUMNS,
    })
    return True


def _declare_number_columns(client: LabelStudio, view: View) -> None:
    data = dict(view.data or {})
    declared = dict(data.get("columnsDisplayType") or {})
    if NUMBER_COLUMNS.keys() <= declared.keys():
        return
    client.views.update(id=str(view.id), project=view.project,
                        data={**data, "columnsDisplayType": {**NUMBER_COLUMNS, **declared}})
