"""`alvar evaluate`: does the dataset transfer to models outside the loop? Train each model on the training
files with several seeds, score the test file, write markdown + CSV + PNG plots."""

from __future__ import annotations

import csv
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.progress import track

from alvar.classifiers import TextClassifier
from alvar.datafiles import read_labeled
from alvar.embedder import VECTOR_CACHE_FILE
from alvar.errors import AlvarError
from alvar.metrics import classification_summary
from alvar.plots import save_figure
from alvar.settings import Settings
from alvar.text_classifiers import EmbeddingLogisticRegression, TfidfLogisticRegression

HEADLINE = ("accuracy", "macro_precision", "macro_recall", "macro_f1", "error_rate_std")


class EvaluationError(AlvarError, ValueError):
    """Training files or models that cannot be evaluated; the message says why."""


def make_model(name: str, settings: Settings, seed: int) -> TextClassifier:
    """``learner`` (the loop's transformer base), ``embedding-lr``, ``tfidf-lr``, or any transformer base (a
    model id or path) fine-tuned with the learner's settings."""
    if name == "embedding-lr":
        return EmbeddingLogisticRegression(settings.embedding_model, settings.cache_dir / VECTOR_CACHE_FILE,
                                           random_state=seed)
    if name == "tfidf-lr":
        return TfidfLogisticRegression(random_state=seed)
    from alvar.backend.training import new_learner

    return new_learner(settings, base_model=None if name == "learner" else name, seed=seed)


@dataclass
class Evaluation:
    classes: list[str]
    runs: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> list[dict[str, Any]]:
        """Mean and sd over seeds of every metric, per model."""
        rows = []
        for model in dict.fromkeys(run["model"] for run in self.runs):
            runs = [run for run in self.runs if run["model"] == model]
            row: dict[str, Any] = {"model": model, "seeds": len(runs)}
            for metric in [key for key in runs[0] if key not in ("model", "seed")]:
                values = [run[metric] for run in runs if metric in run]
                row[f"{metric}_mean"] = statistics.mean(values)
                row[f"{metric}_sd"] = statistics.stdev(values) if len(values) > 1 else 0.0
            rows.append(row)
        return rows


def evaluate(settings: Settings, train_files: Sequence[Path], test_file: Path, models: Sequence[str], seeds: int,
             text_col: str | None = None, label_col: str | None = None,
             factory: Callable[[str, Settings, int], TextClassifier] = make_model) -> Evaluation:
    train = read_labeled(train_files, text_col, label_col)
    test = read_labeled([test_file], text_col, label_col)
    train_classes, test_classes = set(train.labels), set(test.labels)
    if len(train_classes) < 2:
        raise EvaluationError(f"the training data has one class only ({', '.join(train_classes)}): "
                              "a classifier needs at least two")
    if seeds < 1:
        raise EvaluationError("--seeds must be at least 1")
    evaluation = Evaluation(classes=sorted(train_classes | test_classes), notes=[*train.notes, *test.notes])
    missing = sorted(test_classes - train_classes)
    if missing:
        evaluation.notes.append(f"the test set has classes the training data lacks ({', '.join(missing)}): no model "
                                "can predict them, so their F1 is 0")
    for model_name in models:
        for seed in track(range(seeds), description=f"{model_name}", transient=True):
            try:
                model = factory(model_name, settings, seed).fit(train.texts, train.labels)
            except OSError as error:
                raise EvaluationError(f"model {model_name!r} could not be loaded: {error}") from None
            summary = classification_summary(test.labels, model.predict(test.texts), evaluation.classes)
            evaluation.runs.append({"model": model_name, "seed": seed, **summary})
    return evaluation


def write_report(evaluation: Evaluation, out: Path, train_files: Sequence[Path], test_file: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    runs_csv, summary_csv = out / "runs.csv", out / "summary.csv"
    _write_csv(runs_csv, evaluation.runs)
    summary = evaluation.summary()
    _write_csv(summary_csv, summary)
    lines = ["# Evaluation", "", f"Trained on {', '.join(f'`{path}`' for path in train_files)}; tested on "
             f"`{test_file}`. Mean ± sd over seeds, in %.", "",
             "| model | seeds | " + " | ".join(HEADLINE) + " |", "|---|---|" + "---|" * len(HEADLINE)]
    for row in summary:
        lines.append(f"| {row['model']} | {row['seeds']} | " + " | ".join(
            f"{100 * row[f'{metric}_mean']:.1f} ± {100 * row[f'{metric}_sd']:.1f}" for metric in HEADLINE) + " |")
    lines += ["", "F1 per class (mean over seeds, %):", "",
              "| model | " + " | ".join(evaluation.classes) + " |", "|---|" + "---|" * len(evaluation.classes)]
    for row in summary:
        lines.append(f"| {row['model']} | " + " | ".join(f"{100 * row[f'f1:{label}_mean']:.1f}"
                                                         for label in evaluation.classes) + " |")
    lines += ["", "`error_rate_std`: the standard deviation over classes of each class's errors divided by its "
              "frequency in the test set (the paper's Table 8 measure; lower = errors spread evenly)."]
    if evaluation.notes:
        lines += ["", "Notes:", *[f"- {note}" for note in evaluation.notes]]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [report, runs_csv, summary_csv, *_plots(evaluation, summary, out)]


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else [])
        writer.writeheader()
        writer.writerows(rows)


def _plots(evaluation: Evaluation, summary: list[dict[str, Any]], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    models = [row["model"] for row in summary]
    figure, axis = plt.subplots(figsize=(max(4, 1.4 * len(models)), 3.5))
    axis.bar(models, [100 * row["macro_f1_mean"] for row in summary],
             yerr=[100 * row["macro_f1_sd"] for row in summary], capsize=4, color="#4c72b0")
    axis.set_ylabel("macro-F1 (%)")
    axis.set_title("macro-F1 on the test set (mean ± sd over seeds)")
    macro = save_figure(figure, out / "macro_f1.png")

    width = 0.8 / max(1, len(models))
    positions = np.arange(len(evaluation.classes))
    figure, axis = plt.subplots(figsize=(max(6, 1.3 * len(evaluation.classes)), 3.8))
    for offset, row in enumerate(summary):
        axis.bar(positions + offset * width, [100 * row[f"f1:{label}_mean"] for label in evaluation.classes],
                 width, label=row["model"])
    axis.set_xticks(positions + width * (len(models) - 1) / 2, evaluation.classes, rotation=20, ha="right")
    axis.set_ylabel("F1 (%)")
    axis.legend(fontsize=8)
    per_class = save_figure(figure, out / "per_class_f1.png")
    return [macro, per_class]
