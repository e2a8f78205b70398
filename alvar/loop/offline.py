"""`alvar train` and `alvar predict` without Label Studio: files in, saved versions and JSONL out.

The learner (and torch with it) is imported once the input has been read: a file that does not parse, or a
model directory with nothing to load, is reported in a second or two rather than after the model libraries load.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alvar.backend.model_store import shared_store
from alvar.classifiers import likeliest
from alvar.datafiles import Dataset, read_dataset, read_labeled
from alvar.entropy import entropy
from alvar.settings import Settings


def classification_scores(gold: Sequence[str], predicted: Sequence[str]) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    return {
        "accuracy": float(accuracy_score(gold, predicted)),
        "macro_f1": float(f1_score(gold, predicted, average="macro", zero_division=0)),
    }


@dataclass(frozen=True)
class TrainOutcome:
    version: str
    n_examples: int
    class_counts: dict[str, int]
    training_loss: float | None
    metrics: dict[str, float]


def train_files(settings: Settings, data: Sequence[Path], eval_file: Path | None = None,
                text_col: str | None = None, label_col: str | None = None) -> TrainOutcome:
    """Train on the labeled files, save a version of the shared model (``MODEL_DIR/<version>/``), make it current.

    The shared model serves every project that has no model of its own yet; no project's own model changes.
    """
    train = read_labeled(data, text_col, label_col)
    from alvar.backend.training import new_learner

    learner = new_learner(settings, show_progress=True).fit(train.texts, train.labels)
    metrics: dict[str, float] = {}
    if eval_file is not None:
        held_out = read_dataset(eval_file, text_col, label_col, require_labels=True)
        metrics = classification_scores(held_out.labels, learner.predict(held_out.texts))
    store = shared_store(settings.model_dir)
    version = store.save(learner, train.texts, train.labels, metrics=metrics,
                         extra={"data_files": [str(path) for path in data]})
    store.switch(version)
    metadata = store.metadata(version)
    return TrainOutcome(version, len(train), metadata["class_counts"], learner.training_loss_, metrics)


def predict_file(settings: Settings, input_file: Path, out: Path | None, version: str | None = None,
                 text_col: str | None = None, label_col: str | None = None) -> tuple[str, Dataset, dict[str, float]]:
    """Score a file with a saved version of the shared model; write JSONL rows (id, text, label, probabilities,
    entropy[, gold]).

    Returns the version used, the input, and accuracy/macro-F1 when the input has labels.
    """
    dataset = read_dataset(input_file, text_col, label_col)
    version, learner = shared_store(settings.model_dir).load_classifier(
        version, inference_batch_size=settings.inference_batch_size, num_threads=settings.torch_threads,
        precision=settings.inference_precision)
    probabilities = learner.predict_proba(dataset.texts)
    predicted = likeliest(learner.classes_, probabilities)
    entropies = entropy(probabilities)
    rows: list[dict[str, Any]] = []
    for example, label, row, value in zip(dataset.examples, predicted, probabilities, entropies):
        record: dict[str, Any] = {"id": example.id, "text": example.text, "label": label,
                                  "probabilities": dict(zip(learner.classes_, map(float, row))),
                                  "entropy": float(value)}
        if example.label is not None:
            record["gold"] = example.label
        rows.append(record)
    lines = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in rows)
    if out is None:
        print(lines, end="")
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(lines, encoding="utf-8")
    scores = classification_scores(dataset.labels, predicted) if dataset.label_column else {}
    return version, dataset, scores
