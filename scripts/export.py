"""`alvar export`: the released dataset, from a Label Studio project, with provenance.

Tasks come through the SDK's export API (JSON, every task). Which items are in it is the rule training uses
(:func:`alvar.labelstudio.training_data.labelled_items`): human-labelled tasks and variations reviewers marked
valid; stale and invalid variations never; unreviewed ones only with ``--include-unverified``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from label_studio_sdk import LabelStudio

from alvar.errors import AlvarError
from alvar.labelstudio.label_config import ChoicesControl, parse_choices_control
from alvar.labelstudio.task_data import LLM_ORIGIN, BatchFields, PoolFields, VariationFields
from alvar.labelstudio.training_data import LabelledItem, is_variation, labelled_items
from alvar.scripts.dataset_card import write_card

FORMATS = ("tsv", "jsonl", "hf")


class ExportError(AlvarError, ValueError):
    """An export that cannot be made; the message says why."""


@dataclass(frozen=True)
class DatasetRow:
    id: int
    source_id: str
    text: str
    label: str
    origin: str
    relation: str
    strategy: str
    round: str
    batch: str
    annotators: str
    verified: bool
    llm_model: str
    source_task: str
    variation_k: str
    variation_reason: str


def _annotator(annotation: Mapping[str, Any]) -> str:
    who = annotation.get("completed_by")
    if isinstance(who, Mapping):
        return str(who.get("email") or who.get("id") or "")
    return str(who or "")


def annotators(task: Mapping[str, Any], control: ChoicesControl) -> dict[str, str]:
    """Each annotator's label on the task (their latest non-skipped annotation with a label)."""
    labels: dict[str, str] = {}
    kept = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
    for annotation in sorted(kept, key=lambda a: (str(a.get("updated_at") or ""), a.get("id") or 0)):
        label = control.chosen_label(annotation.get("result") or [])
        if label is not None:
            labels[_annotator(annotation)] = label
    return labels


def _column(value: object) -> str:
    return "" if value is None else str(value)


def _row(item: LabelledItem, control: ChoicesControl) -> DatasetRow:
    batch, variation = BatchFields.of(item.task), VariationFields.of(item.task)
    return DatasetRow(
        id=int(item.task["id"]), source_id=PoolFields.of(item.task).source_id or str(item.task["id"]),
        text=item.text, label=item.label, origin=LLM_ORIGIN if item.is_variation else "human",
        relation=_column(variation.relation), strategy=_column(batch.strategy), round=_column(batch.round),
        batch=_column(batch.batch), annotators=",".join(annotators(item.task, control)), verified=item.verified,
        llm_model=_column(variation.llm_model), source_task=_column(variation.source_task),
        variation_k=_column(variation.variation_k), variation_reason=_column(variation.variation_reason),
    )


@dataclass
class Export:
    rows: list[DatasetRow]
    left_out: int
    classes: tuple[str, ...]
    annotations: dict[int, dict[str, str]]


def build_export(tasks: Iterable[Mapping[str, Any]], control: ChoicesControl,
                 include_unverified: bool = False) -> Export:
    tasks = list(tasks)
    rows: list[DatasetRow] = []
    left_out = 0
    for item in labelled_items(tasks, control, include_unverified=include_unverified):
        if isinstance(item, LabelledItem):
            rows.append(_row(item, control))
        else:
            left_out += 1
    by_task = {int(task["id"]): annotators(task, control) for task in tasks if "id" in task and not is_variation(task)}
    return Export(rows, left_out, control.labels, by_task)


def project_tasks(client: LabelStudio, project_id: int) -> tuple[list[dict[str, Any]], ChoicesControl]:
    """Every task of the project from the export API (annotators as e-mail addresses), and its labeling control."""
    control = parse_choices_control(client.projects.get(id=project_id).label_config)
    payload = b"".join(client.projects.exports.download_sync(project_id, export_type="JSON",
                                                            download_all_tasks=True))
    tasks = json.loads(payload or b"[]")
    if not isinstance(tasks, list):
        raise ExportError(f"Label Studio's export of project {project_id} is not a list of tasks")
    emails = {user.id: user.email for user in client.users.list() if user.email}
    for task in tasks:
        for annotation in task.get("annotations") or []:
            if isinstance(annotation.get("completed_by"), int):
                annotation["completed_by"] = emails.get(annotation["completed_by"], annotation["completed_by"])
    return tasks, control


def _write_tsv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t", quoting=csv.QUOTE_NONE, quotechar=None, lineterminator="\n")
        writer.writerow(header)
        for row in rows:
            writer.writerow([" ".join(str(value).split()) for value in row])


def check_formats(formats: Sequence[str]) -> None:
    unknown = [name for name in formats if name not in FORMATS]
    if unknown or not formats:
        raise ExportError(f"unknown format {', '.join(unknown) or '(none)'}: choose from {', '.join(FORMATS)}")


def write_export(export: Export, out: Path, formats: Sequence[str], project_id: int | None = None) -> list[Path]:
    """Write the chosen formats and the dataset card into ``out``; return the files and folders written."""
    check_formats(formats)
    out.mkdir(parents=True, exist_ok=True)
    columns = [item.name for item in fields(DatasetRow)]
    written: list[Path] = []
    if "tsv" in formats:
        _write_tsv(out / "dataset.tsv", ["id", "input", "category"],
                   ([row.source_id, row.text, row.label] for row in export.rows))
        _write_tsv(out / "dataset_full.tsv", columns, ([getattr(row, name) for name in columns]
                                                        for row in export.rows))
        written += [out / "dataset.tsv", out / "dataset_full.tsv"]
    if "jsonl" in formats:
        with (out / "dataset.jsonl").open("w", encoding="utf-8") as handle:
            for row in export.rows:
                handle.write(json.dumps(asdict(row), ensure_ascii=False) + "\n")
        written.append(out / "dataset.jsonl")
    if "hf" in formats:
        written += _write_hf(export, out)
    written.append(write_card(export.rows, export.classes, export.annotations, export.left_out, out, formats,
                              project_id))
    return written


def _write_hf(export: Export, out: Path) -> list[Path]:
    from datasets import ClassLabel, Dataset, Features, Value

    features = Features({
        **{item.name: Value("string") for item in fields(DatasetRow)},
        "id": Value("int64"), "verified": Value("bool"), "label": ClassLabel(names=list(export.classes)),
    })
    columns = {item.name: [getattr(row, item.name) for row in export.rows] for item in fields(DatasetRow)}
    dataset = Dataset.from_dict(columns, features=features)
    dataset.save_to_disk(str(out / "hf"))
    dataset.to_parquet(str(out / "dataset.parquet"))
    return [out / "hf", out / "dataset.parquet"]
