"""`alvar select`: the next annotation batch, from a file or in a Label Studio project.

In Label Studio a batch is a round: its tasks get the batch fields
(:class:`~alvar.labelstudio.task_data.BatchFields`, merged into ``data``: an update replaces it whole), and a
Data Manager tab lists them, most uncertain first (:mod:`alvar.labelstudio.batches`). While the latest batch has
unlabeled tasks, `select` leaves the project as it is (idempotent); a batch cut short (fewer of its tasks carry
its number than its size says) is completed with the same picks.

A generative project's batch is picked on the informativeness of the student's outputs (cluster-then-random
until R and a student exist), and its tasks' teacher drafts are queued; a "Review drafts" tab lists the drafted
tasks nobody has reviewed yet.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from label_studio_sdk import LabelStudio
from redis import Redis
from redis.exceptions import RedisError

from alvar.datafiles import read_dataset
from alvar.generator.teacher import enqueue_drafts
from alvar.labelstudio.batches import Batch, ensure_batch_tab, has_batch_tab, latest_batch
from alvar.labelstudio.choices_control import ChoicesControl
from alvar.labelstudio.client import COMPACT_COLUMNS, dm_filter, is_labeled, pool_tasks
from alvar.labelstudio.generation_config import CLASSIFICATION, GENERATION, GenerationControl
from alvar.labelstudio.generation_data import verified_pairs
from alvar.labelstudio.task_data import DRAFTED, BatchFields
from alvar.labelstudio.task_kinds import task_kind
from alvar.labelstudio.training_data import LabelledItem, is_variation, labelled_items
from alvar.loop import services
from alvar.loop.generation_scores import select_generation_batch
from alvar.loop.selection import SelectionRun, select_batch
from alvar.queues import JobPolicy
from alvar.settings import Settings
from alvar.strategies import resolve_strategy
from alvar.vector_cache import text_key

log = logging.getLogger(__name__)

REVIEW_TAB = "Review drafts"


def select_file(settings: Settings, pool_file: Path, out: Path, strategy: str, budget: int, seed: int,
                labeled_file: Path | None = None, n_clusters: int | None = None, per_cluster: int = 1,
                text_col: str | None = None, label_col: str | None = None) -> tuple[SelectionRun, list[dict]]:
    """Select from a pool file; texts also in the labeled file are never picked, and its labels are the class
    counts so far. Writes JSONL rows."""
    strategy = resolve_strategy(strategy)
    pool = read_dataset(pool_file, text_col, label_col)
    labeled = read_dataset(labeled_file, text_col, label_col).examples if labeled_file else []
    labeled_keys = {text_key(example.text) for example in labeled}
    eligible = np.array([text_key(text) not in labeled_keys for text in pool.texts])
    run = select_batch(settings, pool.texts, eligible, strategy, budget, seed, n_clusters, per_cluster,
                       [example.text for example in labeled],
                       labeled_labels=[example.label for example in labeled if example.label is not None])
    rows = [
        {"id": pool.examples[index].id, "text": pool.examples[index].text, "cluster": int(cluster),
         "entropy": round(float(run.entropy[index]), 6), "strategy": strategy, "rank": rank}
        for rank, (index, cluster) in enumerate(zip(run.selection.indices, run.selection.clusters), start=1)
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return run, rows


@dataclass(frozen=True)
class BatchOutcome:
    """What `select` did in a project: the batch number, its tasks, and whether anything changed."""

    batch: int
    task_ids: list[int]
    created: bool
    message: str
    run: SelectionRun | None = None


def _still_open(client: LabelStudio, project_id: int, latest: Batch | None, dry_run: bool) -> BatchOutcome | None:
    """The outcome when the latest batch is complete and has unlabeled tasks: nothing changed (but for its tab,
    made if a run was cut short before it)."""
    if latest is None or not latest.complete:
        return None
    if not dry_run:
        ensure_batch_tab(client, project_id, latest.number, latest.strategy)
    open_tasks = [task for task in latest.tasks if not is_labeled(task)]
    if not open_tasks:
        return None
    return BatchOutcome(latest.number, [task["id"] for task in latest.tasks], False,
                        f"batch {latest.number} is still open ({len(open_tasks)} of {len(latest.tasks)} tasks "
                        "unlabeled): nothing changed")


def select_project(settings: Settings, client: LabelStudio, project_id: int, strategy: str, budget: int, seed: int,
                   n_clusters: int | None = None, per_cluster: int = 1, dry_run: bool = False,
                   connection: Redis | None = None) -> BatchOutcome:
    """The next batch in a project (``strategy`` may be ``default``). In a classification project the class counts
    so far are the human labels of its annotated tasks; in a generative one the batch is picked on the
    informativeness of G's outputs (:mod:`alvar.loop.generation_scores`) and the teacher's drafts of its tasks
    are queued (on ``connection``, else the stack's Redis)."""
    strategy = resolve_strategy(strategy)
    label_config = client.projects.get(id=project_id).label_config
    kind = task_kind(label_config)
    control = kind.control(label_config)
    selection = SELECTIONS[kind.name]
    tasks = pool_tasks(client, project_id)
    if not tasks:
        raise ValueError(f"project {project_id} has no tasks: import a pool first")
    latest = latest_batch(tasks)
    if latest is not None:
        latest = replace(latest, tabbed=has_batch_tab(client, project_id, latest.number))
    unchanged = _still_open(client, project_id, latest, dry_run)
    if unchanged is not None:
        return unchanged
    batch = 1 if latest is None else latest.number if not latest.complete else latest.number + 1
    batch_of = [BatchFields.of(task).batch for task in tasks]
    picking = Picking(settings, tasks, [not is_labeled(task) and not is_variation(task) and (b is None or b == batch)
                                        for task, b in zip(tasks, batch_of)], strategy, budget, seed, project_id,
                      n_clusters, per_cluster)
    run, note = selection.pick(picking, control)
    picked = [tasks[index] for index in run.selection.indices]
    if dry_run:
        return BatchOutcome(batch, [task["id"] for task in picked], False, "dry run: nothing changed", run)
    for task, index, cluster in zip(picked, run.selection.indices, run.selection.clusters):
        fields = BatchFields(batch=batch, round=batch, cluster=int(cluster), strategy=run.strategy,
                             entropy=round(float(run.entropy[index]), 6), batch_size=len(picked))
        if BatchFields.of(task) != fields:
            client.tasks.update(id=task["id"], data={**task["data"], **fields.data()})
    ensure_batch_tab(client, project_id, batch, run.strategy)
    message = f"batch {batch}: {len(picked)} tasks by {run.strategy}"
    if note is not None:
        log.warning("%s: batch %d is cluster-then-random", note, batch)
        message = f"{note}: batch {batch} is cluster-then-random ({len(picked)} tasks)"
    if (followed := selection.after_batch(client, settings, connection, project_id, [task["id"] for task in picked])):
        message += "; " + followed
    return BatchOutcome(batch, [task["id"] for task in picked], True, message, run)


@dataclass(frozen=True)
class Picking:
    """What one selection in a project works on: its tasks, which of them may be picked, and the strategy's
    arguments."""

    settings: Settings
    tasks: list[dict[str, Any]]
    open_tasks: list[bool]  # unlabeled, not a variation, in no batch or in the one being completed
    strategy: str
    budget: int
    seed: int
    project_id: int
    n_clusters: int | None
    per_cluster: int

    def texts(self, data_key: str) -> list[str]:
        return [str(task["data"].get(data_key, "")) for task in self.tasks]

    def eligible(self, texts: list[str]) -> np.ndarray:
        return np.array([still_open and bool(text.strip()) for still_open, text in zip(self.open_tasks, texts)],
                        dtype=bool)

    def labeled_texts(self, texts: list[str]) -> list[str]:
        return [text for task, text in zip(self.tasks, texts) if is_labeled(task)]


def _pick_classification(picking: Picking, control: ChoicesControl) -> tuple[SelectionRun, str | None]:
    texts = picking.texts(control.data_key)
    human_labels = [item.label for item in labelled_items(picking.tasks, control)
                    if isinstance(item, LabelledItem) and not item.is_variation]
    return select_batch(picking.settings, texts, picking.eligible(texts), picking.strategy, picking.budget,
                        picking.seed, picking.n_clusters, picking.per_cluster, picking.labeled_texts(texts),
                        project_id=picking.project_id, labeled_labels=human_labels), None


def _pick_generation(picking: Picking, control: GenerationControl) -> tuple[SelectionRun, str | None]:
    """The batch on the informativeness of G's outputs; the class counts are the verified pairs' attributes."""
    inputs = picking.texts(control.data_key)
    attributes = [pair.attribute for pair in verified_pairs(picking.tasks, control) if pair.attribute is not None]
    chosen = select_generation_batch(picking.settings, inputs, picking.eligible(inputs), picking.strategy,
                                     picking.budget, picking.seed, picking.project_id,
                                     control.required_attribute(picking.settings.attribute_value),
                                     picking.labeled_texts(inputs), attributes, picking.n_clusters,
                                     picking.per_cluster)
    return chosen.run, chosen.fallback


def ensure_review_tab(client: LabelStudio, project_id: int) -> None:
    """The Data Manager tab listing the tasks whose teacher draft waits for a person; created once."""
    if any((view.data or {}).get("title") == REVIEW_TAB for view in client.views.list(project=project_id)):
        return
    client.views.create(project=project_id, data={
        "title": REVIEW_TAB,
        "filters": {"conjunction": "and", "items": [DRAFTED, dm_filter("total_annotations", "equal", 0, "Number")]},
        "ordering": ["tasks:id"],
        "hiddenColumns": COMPACT_COLUMNS,
    })


def _queue_drafts(settings: Settings, connection: Redis | None, project_id: int, task_ids: list[int]) -> str:
    """Queue the teacher's drafts of the batch; the batch stands even when Redis is out of reach (the worker's
    sweep drafts every batched task without a draft)."""
    url = settings.redis_url or services.embedded_redis_url(settings.data_dir.resolve())
    try:
        queued = enqueue_drafts(connection or Redis.from_url(url, socket_connect_timeout=2), project_id, task_ids,
                                JobPolicy.from_settings(settings))
    except RedisError as error:
        log.warning("teacher drafts of project %d not queued (%s): the sweep will draft them", project_id, error)
        return f"Redis at {url} is unreachable ({error}): the worker's sweep will draft them"
    return f"teacher drafts queued for {len(queued)} of them"


def _nothing_after(client: LabelStudio, settings: Settings, connection: Redis | None, project_id: int,
                   task_ids: list[int]) -> str | None:
    """A classification batch waits for people; its variations follow their labels."""
    return None


def _draft_the_batch(client: LabelStudio, settings: Settings, connection: Redis | None, project_id: int,
                     task_ids: list[int]) -> str | None:
    """A generative batch gets its review tab and the teacher's drafts."""
    ensure_review_tab(client, project_id)
    return _queue_drafts(settings, connection, project_id, task_ids)


@dataclass(frozen=True)
class KindSelection:
    """How a kind of project picks its batch (the batch and, for a fallback, why) and what follows a new one."""

    pick: Callable[[Picking, Any], tuple[SelectionRun, str | None]]
    after_batch: Callable[[LabelStudio, Settings, Redis | None, int, list[int]], str | None]


# Each kind's selection (:func:`~alvar.labelstudio.task_kinds.task_kind`).
SELECTIONS: dict[str, KindSelection] = {CLASSIFICATION: KindSelection(_pick_classification, _nothing_after),
                                        GENERATION: KindSelection(_pick_generation, _draft_the_batch)}
