"""`alvar evaluate --task generation`: does a pair dataset teach students, including one that never was in the
loop (transfer)? Train each student on the training pairs, generate for the held-out test inputs and report
R-satisfaction, chrF, BLEU and distinct-1/2, overall and per subgroup with their spread; markdown + CSV + PNG.

Students: ``student`` (the loop's G, ALVAR_STUDENT_MODEL), ``nearest-neighbour`` (retrieval on cached embeddings,
:class:`alvar.text_generators.NearestNeighbourGenerator`), or any other text-to-text base (a model id or path)
fine-tuned with G's settings.
"""

from __future__ import annotations

import csv
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.progress import track

from alvar.embedder import Embedder, settings_embedder
from alvar.errors import AlvarError
from alvar.experiments.generation_models import FastStudent, Judge, Student, load_judge
from alvar.experiments.generation_simulate import subgroups
from alvar.generation_metrics import MEASURES, group_scores, scores, spread
from alvar.pairfiles import PairFile, read_pairs
from alvar.plots import save_figure
from alvar.settings import Settings

NEAREST_NEIGHBOUR = "nearest-neighbour"
STUDENT = "student"
LABELS = {"satisfaction": "R-satisfaction %", "chrf": "chrF", "bleu": "BLEU", "distinct_1": "distinct-1 %",
          "distinct_2": "distinct-2 %"}
SCALES = {"satisfaction": 100.0, "chrf": 1.0, "bleu": 1.0, "distinct_1": 100.0, "distinct_2": 100.0}


class GenerationEvaluationError(AlvarError, ValueError):
    """Pair files or students that cannot be evaluated; the message says why."""


def make_student(name: str, settings: Settings, seed: int, embed: Any) -> Student:
    """``student`` (G with the settings' base), ``nearest-neighbour``, or G's recipe on another base."""
    if name == NEAREST_NEIGHBOUR:
        return FastStudent(embed)
    from alvar.backend.student import new_student

    if name == STUDENT:
        return new_student(settings, seed=seed)
    return new_student(settings.model_copy(update={"student_model": name}), seed=seed)


@dataclass
class GenerationEvaluation:
    groups: list[str]
    group_source: str
    judge: str | None
    required: str | None
    runs: list[dict[str, Any]] = field(default_factory=list)
    group_rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def measures(self) -> list[str]:
        return [measure for measure in MEASURES if self.runs and measure in self.runs[0]]

    def summary(self) -> list[dict[str, Any]]:
        """Mean and sd over seeds of every column, per student."""
        rows = []
        for model in dict.fromkeys(run["model"] for run in self.runs):
            runs = [run for run in self.runs if run["model"] == model]
            row: dict[str, Any] = {"model": model, "seeds": len(runs)}
            for key in [key for key in runs[0] if key not in ("model", "seed")]:
                values = [run[key] for run in runs]
                row[f"{key}_mean"] = statistics.mean(values)
                row[f"{key}_sd"] = statistics.stdev(values) if len(values) > 1 else 0.0
            rows.append(row)
        return rows


def _training_pairs(files: Sequence[Path], columns: tuple[str | None, str | None, str | None]) -> PairFile:
    read = [read_pairs(path, *columns) for path in files]
    for pairs in read:
        if not pairs.has_outputs:
            raise GenerationEvaluationError(f"{pairs.path}: every training row needs an output")
    return PairFile(read[0].path, [pair for pairs in read for pair in pairs.pairs], read[0].input_column,
                    read[0].output_column, read[0].group_column, [note for pairs in read for note in pairs.notes])


def evaluate_generation(settings: Settings, train_files: Sequence[Path], test_file: Path, models: Sequence[str],
                        seeds: int = 1, attribute_file: Path | None = None, attribute_model: str | None = None,
                        columns: tuple[str | None, str | None, str | None] = (None, None, None),
                        embedder: Embedder | None = None) -> GenerationEvaluation:
    if seeds < 1 or not models:
        raise GenerationEvaluationError("--seeds must be at least 1 and --models name at least one student")
    train = _training_pairs(train_files, columns)
    test = read_pairs(test_file, *columns)
    if not test.has_outputs:
        raise GenerationEvaluationError(f"{test.path}: every test row needs a reference output")
    embed = (embedder or settings_embedder(settings)).embed
    judge: Judge | None = None
    required = described = None
    if attribute_file is not None or attribute_model is not None:
        judge, required, described = load_judge(settings, attribute_file, attribute_model, None, embed)
    groups, group_source = subgroups(test, embed, settings.seed)
    evaluation = GenerationEvaluation(sorted(set(groups)), group_source, described, required,
                                      notes=[*train.notes, *test.notes])
    if judge is None:
        evaluation.notes.append("no R given (--attribute-file or --attribute-model): R-satisfaction is not measured")
    for model_name in models:
        for seed in track(range(seeds), description=model_name, transient=True):
            try:
                model = make_student(model_name, settings, seed, embed)
                model.fit(train.inputs, train.outputs)
            except OSError as error:
                raise GenerationEvaluationError(f"student {model_name!r} could not be loaded: {error}") from None
            _score(evaluation, judge, model_name, seed, model.generate(test.inputs), test, groups)
    return evaluation


def _score(evaluation: GenerationEvaluation, judge: Judge | None, model: str, seed: int, generated: list[str],
           test: PairFile, groups: Sequence[str]) -> None:
    satisfied = None
    if judge is not None:
        probabilities = judge.predict_proba(generated, test.inputs)
        satisfied = [judge.classes_[index] == evaluation.required for index in probabilities.argmax(axis=1)]
    run: dict[str, Any] = {"model": model, "seed": seed, **scores(generated, test.outputs, satisfied)}
    table = group_scores(generated, groups, test.outputs, satisfied)
    for measure, values in spread(table).items():
        run[f"{measure}_std"], run[f"{measure}_range"] = values["std"], values["range"]
    evaluation.runs.append(run)
    for group, values in table.items():
        evaluation.group_rows.append({"model": model, "seed": seed, "group": group, **values})


def write_report(evaluation: GenerationEvaluation, out: Path, train_files: Sequence[Path],
                 test_file: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / f"{name}.csv" for name in ("runs", "summary", "groups")}
    summary = evaluation.summary()
    for name, rows in (("runs", evaluation.runs), ("summary", summary), ("groups", evaluation.group_rows)):
        _write_csv(paths[name], rows)
    measures = evaluation.measures
    lines = ["# Generation evaluation", "",
             f"Trained on {', '.join(f'`{path}`' for path in train_files)}; tested on `{test_file}`. "
             f"{evaluation.judge or 'No R'}{f'; H = `{evaluation.required}`' if evaluation.required else ''}. "
             f"Subgroups: {evaluation.group_source} ({len(evaluation.groups)}). Mean ± sd over seeds; spread = "
             "std across subgroups (lower = more even).", "",
             "| student | seeds | " + " | ".join(f"{LABELS[m]} | spread" for m in measures) + " |",
             "|---|---|" + "---|---|" * len(measures)]
    for row in summary:
        lines.append(f"| {row['model']} | {row['seeds']} | " + " | ".join(
            f"{SCALES[m] * row[f'{m}_mean']:.1f} ± {SCALES[m] * row[f'{m}_sd']:.1f} | "
            f"{SCALES[m] * row[f'{m}_std_mean']:.2f}" for m in measures) + " |")
    for measure in [m for m in ("chrf", "satisfaction") if m in measures]:
        lines += ["", f"{LABELS[measure]} per subgroup (mean over seeds):", "",
                  "| student | " + " | ".join(evaluation.groups) + " |", "|---|" + "---|" * len(evaluation.groups)]
        for row in summary:
            lines.append(f"| {row['model']} | " + " | ".join(
                f"{_group_mean(evaluation, row['model'], group, measure):.1f}" for group in evaluation.groups) + " |")
    if evaluation.notes:
        lines += ["", "Notes:", *[f"- {note}" for note in evaluation.notes]]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [report, *paths.values(), _plot(evaluation, summary, out)]


def _group_mean(evaluation: GenerationEvaluation, model: str, group: str, measure: str) -> float:
    return SCALES[measure] * statistics.mean(row[measure] for row in evaluation.group_rows
                                             if row["model"] == model and row["group"] == group)


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else [])
        writer.writeheader()
        writer.writerows(rows)


def _plot(evaluation: GenerationEvaluation, summary: list[dict[str, Any]], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    shown = [m for m in ("chrf", "satisfaction") if m in evaluation.measures]
    figure, axes = plt.subplots(1, len(shown), figsize=(6.5 * len(shown), 4), squeeze=False)
    width = 0.8 / max(1, len(summary))
    positions = np.arange(len(evaluation.groups))
    for axis, measure in zip(axes[0], shown):
        for offset, row in enumerate(summary):
            axis.bar(positions + offset * width, [_group_mean(evaluation, row["model"], group, measure)
                                                  for group in evaluation.groups], width, label=row["model"])
        axis.set_xticks(positions + width * (len(summary) - 1) / 2, evaluation.groups, rotation=25, ha="right")
        axis.set_ylabel(LABELS[measure])
        axis.set_title(f"{LABELS[measure]} per subgroup")
        axis.legend(fontsize=8)
    path = save_figure(figure, out / "per_group.png")
    return path
