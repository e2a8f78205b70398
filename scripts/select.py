"""`alvar select`: the next annotation batch, from a file or in a Label Studio project.

In Label Studio a batch is a round: its tasks get ``data.batch``, ``data.round``, ``data.cluster``,
``data.entropy`` and ``data.strategy`` (merged into ``data``: an update replaces it whole), and a Data Manager
tab "Batch <n> · <strategy>" lists them, most uncertain first. The tab is written last: a batch with a tab is
complete. While the latest batch has unlabeled tasks, `select` leaves the project as it is (idempotent); a
batch without its tab was cut short and is completed with the same picks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from label_studio_sdk import LabelStudio

from alvar.datafiles import read_dataset
from alvar.labelstudio.client import COMPACT_COLUMNS, iter_tasks
from alvar.labelstudio.label_config import parse_choices_control
from alvar.labelstudio.training_data import is_variation
from alvar.scripts.selection import SelectionRun, select_batch
from alvar.settings import Settings
from alvar.vector_cache import text_key


def select_file(settings: Settings, pool_file: Path, out: Path, strategy: str, budget: int, seed: int,
                labeled_file: Path | None = None, n_clusters: int | None = None, per_cluster: int = 1,
                text_col: str | None = None, label_col: str | None = None) -> tuple[SelectionRun, list[dict]]:
    """Select from a pool file; texts also in the labeled file are never picked. Writes JSONL rows."""
    pool = read_dataset(pool_file, text_col, label_col)
    labeled = read_dataset(labeled_file, text_col, label_col).texts if labeled_file else []
    labeled_keys = {text_key(text) for text in labeled}
    eligible = np.array([text_key(text) not in labeled_keys for text in pool.texts])
    run = select_batch(settings, pool.texts, eligible, strategy, budget, seed, n_clusters, per_cluster, labeled)
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


def batch_tab_title(batch: int, strategy: str) -> str:
    return f"Batch {batch} · {strategy}"


def _is_labeled(task: dict[str, Any]) -> bool:
    return bool(task.get("total_annotations") or task.get("annotations"))


def batch_tabs(client: LabelStudio, project_id: int) -> set[int]:
    """Batches whose tab exists (the batch was written completely)."""
    batches = set()
    for view in client.views.list(project=project_id):
        title = (view.data or {}).get("title", "")
        if title.startswith("Batch ") and title.split(" ")[1].isdigit():
            batches.add(int(title.split(" ")[1]))
    return batches


def select_project(settings: Settings, client: LabelStudio, project_id: int, strategy: str, budget: int, seed: int,
                   n_clusters: int | None = None, per_cluster: int = 1, dry_run: bool = False) -> BatchOutcome:
    control = parse_choices_control(client.projects.get(id=project_id).label_config)
    tasks = list(iter_tasks(client, project_id, page_size=1000))
    if not tasks:
        raise ValueError(f"project {project_id} has no tasks: import a pool first")
    batch_of = [task["data"].get("batch") for task in tasks]
    latest = max((int(b) for b in batch_of if isinstance(b, (int, float))), default=0)
    complete = batch_tabs(client, project_id)
    if latest and latest in complete:
        members = [task for task, b in zip(tasks, batch_of) if b == latest]
        open_tasks = [task for task in members if not _is_labeled(task)]
        if open_tasks:
            return BatchOutcome(latest, [task["id"] for task in members], False,
                                f"batch {latest} is still open ({len(open_tasks)} of {len(members)} tasks unlabeled): "
                                "nothing changed")
    batch = latest if latest and latest not in complete else latest + 1
    texts = [str(task["data"].get(control.data_key, "")) for task in tasks]
    eligible = np.array([
        not _is_labeled(task) and not is_variation(task) and (b is None or b == batch) and bool(text.strip())
        for task, b, text in zip(tasks, batch_of, texts)
    ])
    run = select_batch(settings, texts, eligible, strategy, budget, seed, n_clusters, per_cluster,
                       [text for task, text in zip(tasks, texts) if _is_labeled(task)], project_id=project_id)
    picked = [tasks[index] for index in run.selection.indices]
    if dry_run:
        return BatchOutcome(batch, [task["id"] for task in picked], False, "dry run: nothing changed", run)
    for task, index, cluster in zip(picked, run.selection.indices, run.selection.clusters):
        fields = {"batch": batch, "round": batch, "cluster": int(cluster),
                  "entropy": round(float(run.entropy[index]), 6), "strategy": strategy}
        if any(task["data"].get(key) != value for key, value in fields.items()):
            client.tasks.update(id=task["id"], data={**task["data"], **fields})
    client.views.create(project=project_id, data={
        "title": batch_tab_title(batch, strategy),
        "filters": {"conjunction": "and", "items": [
            {"filter": "filter:tasks:data.batch", "operator": "equal", "type": "Number", "value": batch}]},
        "ordering": ["-tasks:data.entropy"],
        "hiddenColumns": COMPACT_COLUMNS,
    })
    return BatchOutcome(batch, [task["id"] for task in picked], True,
                        f"batch {batch}: {len(picked)} tasks by {strategy}", run)
