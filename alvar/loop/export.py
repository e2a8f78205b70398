"""`alvar export`: the released dataset, from a Label Studio project, with provenance.

Tasks come through the SDK's export API (JSON, every task). Which items are in it is the rule training uses.
A classification project (:func:`alvar.labelstudio.training_data.labelled_items`): human-labelled tasks and
variations reviewers marked valid; stale and invalid variations never; unreviewed ones only with
``--include-unverified``. A generative project (:func:`alvar.labelstudio.generation_data.verified_pairs`): the
pairs people accepted or edited, never a rejected, emptied or unreviewed one. The project's label config decides
which (:func:`alvar.labelstudio.task_kinds.task_kind`), so one command serves both.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from label_studio_sdk import LabelStudio

from alvar.errors import AlvarError
from alvar.labelstudio.choices_control import ChoicesControl
from alvar.labelstudio.generation_config import CLASSIFICATION, GENERATION, GenerationControl
from alvar.labelstudio.generation_data import VerifiedPair, review_counts, verified_pairs
from alvar.labelstudio.task_data import LLM_ORIGIN, BatchFields, PoolFields, VariationFields
from alvar.labelstudio.task_kinds import task_kind
from alvar.labelstudio.training_data import LabelledItem, is_variation, labelled_items
from alvar.loop.dataset_card import write_card, write_generation_card

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
    """A classification project's released rows, the labelled items left out, its classes and each source task's
    annotators' labels."""

    rows: list[DatasetRow]
    left_out: int
    classes: tuple[str, ...]
    annotations: dict[int, dict[str, str]]

    def summary(self) -> str:
        origins = {origin: sum(row.origin == origin for row in self.rows) for origin in ("human", "llm")}
        return (f"{len(self.rows)} rows ({origins['human']} human, {origins['llm']} variations; {self.left_out} "
                "variations left out)")

    def write(self, out: Path, formats: Sequence[str], project_id: int | None) -> list[Path]:
        """The rows as TSV (``dataset.tsv``: id, input, category; ``dataset_full.tsv``: every column), JSONL and
        HF datasets, and the dataset card."""
        columns = [item.name for item in fields(DatasetRow)]
        written: list[Path] = []
        if "tsv" in formats:
            _write_tsv(out / "dataset.tsv", ["id", "input", "category"],
                       ([row.source_id, row.text, row.label] for row in self.rows))
            _write_tsv(out / "dataset_full.tsv", columns, ([getattr(row, name) for name in columns]
                                                            for row in self.rows))
            written += [out / "dataset.tsv", out / "dataset_full.tsv"]
        if "jsonl" in formats:
            written.append(_write_jsonl(out / "dataset.jsonl", self.rows))
        if "hf" in formats:
            written += _write_hf(self, out)
        written.append(write_card(self.rows, self.classes, self.annotations, self.left_out, out, formats,
                                  project_id))
        return written


@dataclass(frozen=True)
class ClassificationProject:
    """What a classification project's export needs from the project: its ``<Choices>`` control."""

    control: ChoicesControl

    def build(self, tasks: Iterable[Mapping[str, Any]], include_unverified: bool = False) -> Export:
        """The labelled items (:func:`~alvar.labelstudio.training_data.labelled_items`), unreviewed variations
        only with ``include_unverified``."""
        tasks = list(tasks)
        rows: list[DatasetRow] = []
        left_out = 0
        for item in labelled_items(tasks, self.control, include_unverified=include_unverified):
            if isinstance(item, LabelledItem):
                rows.append(_row(item, self.control))
            else:
                left_out += 1
        by_task = {int(task["id"]): annotators(task, self.control)
                   for task in tasks if "id" in task and not is_variation(task)}
        return Export(rows, left_out, self.control.labels, by_task)


@dataclass(frozen=True)
class GenerationProject:
    """What a generative project's export needs from the project: its controls and the student version serving
    it now (``model_version``)."""

    control: GenerationControl
    model_version: str | None

    def build(self, tasks: Iterable[Mapping[str, Any]], include_unverified: bool = False) -> GenerationExport:
        """The verified pairs only: accepted or edited, with an output (see
        :mod:`alvar.labelstudio.generation_data`); unverified outputs are never released."""
        if include_unverified:
            raise ExportError("--include-unverified is for classification projects: a generative project exports "
                              "the pairs people accepted or edited, and nothing else")
        tasks = list(tasks)
        by_id = {task.get("id"): task for task in tasks}
        rows = [_pair_row(pair, by_id[pair.task_id], self.model_version)
                for pair in verified_pairs(tasks, self.control)]
        return GenerationExport(rows, review_counts(tasks, self.control), self.model_version)


@dataclass(frozen=True)
class PairRow:
    """One verified pair as released: the pair, how it was verified and by whom, the teacher's draft and what wrote
    it, the student version serving the project at export (``student_version``) and when the draft was written
    (``draft_student_version``), the input's subgroup and selection, and where it lives in Label Studio."""

    source_id: str
    input: str
    output: str
    verdict: str
    verifier: str
    attribute: str | None
    draft: str | None
    teacher_model: str | None
    template: str | None
    student_version: str | None
    draft_student_version: str | None
    group: str | None
    cluster: int | None
    batch: int | None
    strategy: str | None
    task_id: int
    annotation_id: int


# The verdict as a released column says what happened to the draft.
VERDICT_COLUMN = {"accept": "accepted", "edit": "edited"}


@dataclass
class GenerationExport:
    """The verified pairs of a generative project and how every input stands (:func:`review_counts`)."""

    rows: list[PairRow]
    counts: dict[str, int]
    model_version: str | None

    @property
    def left_out(self) -> int:
        """Inputs with no verified pair: rejected, emptied or unreviewed."""
        return sum(self.counts.values()) - len(self.rows)

    def summary(self) -> str:
        counts = self.counts
        return (f"{len(self.rows)} verified pairs ({counts['accept']} accepted, {counts['edit']} edited; "
                f"{self.left_out} left out: {counts['reject']} rejected, {counts['emptied']} emptied, "
                f"{counts['unreviewed']} unreviewed)")

    def write(self, out: Path, formats: Sequence[str], project_id: int | None) -> list[Path]:
        """The pairs as TSV (``dataset.tsv``: id, input, output and, when any pair has one, group, the layout
        ``alvar.pairfiles.read_pairs`` reads; ``dataset_full.tsv``: every column), JSONL and HF datasets, and the
        dataset card."""
        columns = [item.name for item in fields(PairRow)]
        written: list[Path] = []
        if "tsv" in formats:
            released = ["source_id", "input", "output"] + (["group"] if any(row.group for row in self.rows) else [])
            _write_tsv(out / "dataset.tsv", ["id", *released[1:]],
                       ([_cell(getattr(row, name)) for name in released] for row in self.rows))
            _write_tsv(out / "dataset_full.tsv", columns,
                       ([_cell(getattr(row, name)) for name in columns] for row in self.rows))
            written += [out / "dataset.tsv", out / "dataset_full.tsv"]
        if "jsonl" in formats:
            written.append(_write_jsonl(out / "dataset.jsonl", self.rows))
        if "hf" in formats:
            written += _write_generation_hf(self, out)
        written.append(write_generation_card(self.rows, self.counts, self.model_version, out, formats, project_id))
        return written


def _pair_row(pair: VerifiedPair, task: Mapping[str, Any], model_version: str | None) -> PairRow:
    return PairRow(
        source_id=PoolFields.of(task).source_id or str(pair.task_id), input=pair.input, output=pair.output,
        verdict=VERDICT_COLUMN[pair.verdict], verifier=pair.verifier, attribute=pair.attribute, draft=pair.draft,
        teacher_model=pair.teacher_model, template=pair.template, student_version=model_version,
        draft_student_version=pair.student_version, group=pair.group, cluster=pair.cluster, batch=pair.batch,
        strategy=pair.strategy, task_id=pair.task_id, annotation_id=pair.annotation_id,
    )


ExportedProject = ClassificationProject | GenerationProject


def build_export(tasks: Iterable[Mapping[str, Any]], project: ExportedProject,
                 include_unverified: bool = False) -> Export | GenerationExport:
    """The rows to release (:meth:`ClassificationProject.build`, :meth:`GenerationProject.build`)."""
    return project.build(tasks, include_unverified)


# What each kind's export needs from the project (:func:`~alvar.labelstudio.task_kinds.task_kind`), from its
# parsed control and the project.
EXPORTED_PROJECTS: dict[str, Callable[[Any, Any], ExportedProject]] = {
    CLASSIFICATION: lambda control, project: ClassificationProject(control),
    GENERATION: lambda control, project: GenerationProject(control, project.model_version or None),
}


def project_tasks(client: LabelStudio, project_id: int) -> tuple[list[dict[str, Any]], ExportedProject]:
    """Every task of the project from the export API (annotators as e-mail addresses), and what its export needs
    from the project (its control; for a generative project, also its model version)."""
    project = client.projects.get(id=project_id)
    kind = task_kind(project.label_config)
    exported = EXPORTED_PROJECTS[kind.name](kind.control(project.label_config), project)
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
    return tasks, exported


def _write_tsv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t", quoting=csv.QUOTE_NONE, quotechar=None, lineterminator="\n")
        writer.writerow(header)
        for row in rows:
            writer.writerow([" ".join(str(value).split()) for value in row])


def _write_jsonl(path: Path, rows: Iterable[Any]) -> Path:
    """One JSON object per row (a dataclass), every column."""
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(asdict(row), ensure_ascii=False) + "\n")
    return path


def check_formats(formats: Sequence[str]) -> None:
    unknown = [name for name in formats if name not in FORMATS]
    if unknown or not formats:
        raise ExportError(f"unknown format {', '.join(unknown) or '(none)'}: choose from {', '.join(FORMATS)}")


def write_export(export: Export | GenerationExport, out: Path, formats: Sequence[str],
                 project_id: int | None = None) -> list[Path]:
    """Write the chosen formats and the dataset card into ``out``; return the files and folders written."""
    check_formats(formats)
    out.mkdir(parents=True, exist_ok=True)
    return export.write(out, formats, project_id)


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


def _cell(value: object) -> str:
    return "" if value is None else str(value)


def _write_generation_hf(export: GenerationExport, out: Path) -> list[Path]:
    from datasets import ClassLabel, Dataset, Features, Value

    numbers = {"cluster", "batch", "task_id", "annotation_id"}
    features = Features({item.name: Value("int64") if item.name in numbers else Value("string")
                         for item in fields(PairRow)})
    features["verdict"] = ClassLabel(names=list(VERDICT_COLUMN.values()))
    columns = {item.name: [getattr(row, item.name) for row in export.rows] for item in fields(PairRow)}
    dataset = Dataset.from_dict(columns, features=features)
    dataset.save_to_disk(str(out / "hf"))
    dataset.to_parquet(str(out / "dataset.parquet"))
    return [out / "hf", out / "dataset.parquet"]
