"""`alvar select`: the next annotation batch, from a file or in a Label Studio project.

In Label Studio a batch is a round: its tasks get the batch fields
(:class:`~alvar.labelstudio.task_data.BatchFields`, merged into ``data``: an update replaces it whole), and a
Data Manager tab lists them, most uncertain first (:mod:`alvar.labelstudio.batches`). While the latest batch has
unlabeled tasks, `select` leaves the project as it is (idempotent); a batch cut short (fewer of its tasks carry
its number than its size says) is completed with the same picks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from label_studio_sdk import LabelStudio

from alvar.datafiles import read_dataset
from alvar.labelstudio.batches import Batch, ensure_batch_tab, has_batch_tab, latest_batch
from alvar.labelstudio.client import iter_tasks
from alvar.labelstudio.label_config import parse_choices_control
from alvar.labelstudio.task_data import BatchFields
from alvar.labelstudio.training_data import LabelledItem, is_variation, labelled_items
from alvar.scripts.selection import SelectionRun, select_batch
from alvar.settings import Settings
from alvar.strategies import resolve_strategy
from alvar.vector_cache import text_key


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


def _is_labeled(task: dict[str, Any]) -> bool:
    return bool(task.get("total_annotations") or task.get("annotations"))


def _still_open(client: LabelStudio, project_id: int, latest: Batch | None, dry_run: bool) -> BatchOutcome | None:
    """The outcome when the latest batch is complete and has unlabeled tasks: nothing changed (but for its tab,
    made if a run was cut short before it)."""
    if latest is None or not latest.complete:
        return None
    if not dry_run:
        ensure_batch_tab(client, project_id, latest.number, latest.strategy)
    open_tasks = [task for task in latest.tasks if not _is_labeled(task)]
    if not open_tasks:
        return None
    return BatchOutcome(latest.number, [task["id"] for task in latest.tasks], False,
                        f"batch {latest.number} is still open ({len(open_tasks)} of {len(latest.tasks)} tasks "
                        "unlabeled): nothing changed")


def select_project(settings: Settings, client: LabelStudio, project_id: int, strategy: str, budget: int, seed: int,
                   n_clusters: int | None = None, per_cluster: int = 1, dry_run: bool = False) -> BatchOutcome:
    """The next batch in a project (``strategy`` may be ``default``); the class counts so far are the human
    labels of its annotated tasks."""
    strategy = resolve_strategy(strategy)
    control = parse_choices_control(client.projects.get(id=project_id).label_config)
    tasks = list(iter_tasks(client, project_id, page_size=1000))
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
    texts = [str(task["data"].get(control.data_key, "")) for task in tasks]
    eligible = np.array([
        not _is_labeled(task) and not is_variation(task) and (b is None or b == batch) and bool(text.strip())
        for task, b, text in zip(tasks, batch_of, texts)
    ])
    human_labels = [item.label for item in labelled_items(tasks, control)
                    if isinstance(item, LabelledItem) and not item.is_variation]
    run = select_batch(settings, texts, eligible, strategy, budget, seed, n_clusters, per_cluster,
                       [text for task, text in zip(tasks, texts) if _is_labeled(task)], project_id=project_id,
                       labeled_labels=human_labels)
    picked = [tasks[index] for index in run.selection.indices]
    if dry_run:
        return BatchOutcome(batch, [task["id"] for task in picked], False, "dry run: nothing changed", run)
    for task, index, cluster in zip(picked, run.selection.indices, run.selection.clusters):
        fields = BatchFields(batch=batch, round=batch, cluster=int(cluster), strategy=strategy,
                             entropy=round(float(run.entropy[index]), 6), batch_size=len(picked))
        if BatchFields.of(task) != fields:
            client.tasks.update(id=task["id"], data={**task["data"], **fields.data()})
    ensure_batch_tab(client, project_id, batch, strategy)
    return BatchOutcome(batch, [task["id"] for task in picked], True,
                        f"batch {batch}: {len(picked)} tasks by {strategy}", run)
