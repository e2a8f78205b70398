"""Talking to Label Studio through its SDK."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from label_studio_sdk import LabelStudio

from alvar.settings import Settings


def label_studio_client(settings: Settings) -> LabelStudio:
    if not settings.label_studio_api_key:
        raise RuntimeError("LABEL_STUDIO_API_KEY is not set: the backend needs a token to read Label Studio")
    return LabelStudio(base_url=settings.label_studio_url, api_key=settings.label_studio_api_key, timeout=120)


def as_dict(item: Any) -> dict[str, Any]:
    """An SDK object as the plain dict Label Studio's JSON would give."""
    return item if isinstance(item, dict) else item.model_dump()


def iter_tasks(client: LabelStudio, project_id: int, only_annotated: bool = False, page_size: int = 500,
               query: str | None = None, fields: str = "all") -> Iterator[dict[str, Any]]:
    """Every task of a project with its annotations and predictions, page by page; with ``only_annotated``, those
    with at least one annotation (a Data Manager filter: Label Studio 1.23.2's task list ignores its
    ``only_annotated``), with ``query`` (:func:`dm_query`) those it keeps. ``fields="task_only"`` leaves out
    annotations and predictions (their counts stay) and takes Label Studio about half the time."""
    query = dm_query(ANNOTATED) if only_annotated else query
    pager: Iterable[Any] = client.tasks.list(project=project_id, fields=fields, query=query, page_size=page_size)
    for task in pager:
        yield as_dict(task)


def pool_tasks(client: LabelStudio, project_id: int, page_size: int = 1000) -> list[dict[str, Any]]:
    """Every task of a project in Label Studio's order, those with an annotation or a skip with their annotations.

    A pool is mostly unannotated, and Label Studio 1.23.2 serves 11,000 tasks in 12.7 s without annotations and
    predictions against 23.7 s with them: so every task is read without, and the annotated or skipped ones again
    whole. A task annotated between the two reads comes whole; one annotated after both, as it was.
    """
    tasks = {task["id"]: task for task in iter_tasks(client, project_id, page_size=page_size, fields="task_only")}
    touched = dm_query(ANNOTATED, SKIPPED, conjunction="or")
    for task in iter_tasks(client, project_id, page_size=page_size, query=touched):
        tasks[task["id"]] = task
    return list(tasks.values())


def is_labeled(task: Mapping[str, Any]) -> bool:
    """Whether a person answered the task: annotated, or skipped (a skip comes as an annotation of a whole read;
    a ``task_only`` read keeps only the count of real annotations, which is why :func:`pool_tasks` reads skipped
    tasks whole)."""
    return bool(task.get("total_annotations") or task.get("annotations"))


def dm_filter(field: str, operator: str, value: Any, kind: str = "String") -> dict[str, Any]:
    """One Data Manager filter on a task field (``data.<key>``, ``total_annotations``, ...)."""
    return {"filter": f"filter:tasks:{field}", "operator": operator, "type": kind, "value": value}


def dm_number_order(field: str, descending: bool = True) -> dict[str, Any]:
    """A Data Manager ordering by a numeric task field (``data.<key>``), for a tab's data or :func:`dm_query`.

    Label Studio orders a ``data`` field as text ("10" before "9", "1e-05" after "1.2") unless the field's
    column is declared a Number.
    """
    column = f"tasks:{field}"
    return {"ordering": [("-" if descending else "") + column], "columnsDisplayType": {column: "Number"}}


def dm_query(*filters: dict[str, Any], order: Mapping[str, Any] | None = None, conjunction: str = "and") -> str:
    """The ``query`` parameter of a task list that keeps tasks passing all ``filters`` (any of them with
    ``conjunction="or"``), in ``order`` (:func:`dm_number_order`) when given."""
    return json.dumps({"filters": {"conjunction": conjunction, "items": list(filters)}, **(order or {})})


def count_tasks(client: LabelStudio, project_id: int, *filters: dict[str, Any]) -> int:
    """How many tasks of the project pass all the filters (one request for one task).

    Counted by Label Studio per task, so it is right at once; the project's own statistics
    (``num_tasks_with_annotations``) lag behind imported annotations.
    """
    return int(client.tasks.list(project=project_id, query=dm_query(*filters), fields="task_only",
                                 page_size=1).response.total)


ANNOTATED = dm_filter("total_annotations", "greater", 0, "Number")
SKIPPED = dm_filter("cancelled_annotations", "greater", 0, "Number")


_BOOKKEEPING_COLUMNS = ("inner_id", "completed_at", "cancelled_annotations", "annotators", "annotations_results",
                        "annotations_ids", "predictions_model_versions", "predictions_results", "file_upload",
                        "storage_filename", "created_at", "updated_at", "updated_by", "avg_lead_time", "draft_exists")
# A tab's ``hiddenColumns``: the Data Manager's bookkeeping columns hidden, so the text and alvar's fields show.
COMPACT_COLUMNS = {view: [f"tasks:{column}" for column in _BOOKKEEPING_COLUMNS] for view in ("explore", "labeling")}
