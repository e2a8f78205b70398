"""Scoring Label Studio tasks with the current learner version."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from alvar.backend.entropy import certainty_score, entropy
from alvar.backend.label_config import ChoicesControl
from alvar.backend.learner import TransformerClassifier
from alvar.backend.model_store import ModelStore
from alvar.backend.training_data import prelabel
from alvar.settings import Settings


@dataclass(frozen=True)
class TaskText:
    """The text of one task, or the reason it has none."""

    text: str | None
    error: str | None = None


def task_texts(tasks: Sequence[Any], control: ChoicesControl) -> list[TaskText]:
    """Each task's text under the control's data key, or a per-task error."""
    found: list[TaskText] = []
    for position, task in enumerate(tasks):
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            found.append(TaskText(None, f"task #{position} is not an object with a 'data' object"))
            continue
        value = task["data"].get(control.data_key)
        if value is None:
            found.append(TaskText(None, f"task {task.get('id', '#' + str(position))} has no data.{control.data_key}"))
        else:
            found.append(TaskText(str(value)))
    return found


class Predictor:
    """Holds the current learner version, reloading it when the store's pointer moves."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = ModelStore(settings.model_dir)
        self._lock = threading.Lock()
        self._loaded: tuple[str, TransformerClassifier] | None = None

    def current(self) -> tuple[str, TransformerClassifier] | None:
        version = self.store.current_version()
        if version is None:
            return None
        with self._lock:
            if self._loaded is None or self._loaded[0] != version:
                self._loaded = self.store.load(
                    version,
                    inference_batch_size=self.settings.inference_batch_size,
                    num_threads=self.settings.torch_threads,
                )
            return self._loaded

    def predict_tasks(self, tasks: Sequence[Any], control: ChoicesControl) -> list[dict[str, Any]]:
        """Predictions of the current version; none when no version was trained yet."""
        loaded = self.current()
        if loaded is None:
            return []
        version, learner = loaded
        return predict_tasks(learner, version, tasks, control)


def predict_tasks(learner: TransformerClassifier, version: str, tasks: Sequence[Any],
                  control: ChoicesControl) -> list[dict[str, Any]]:
    """One Label Studio prediction per task, in order: the likeliest Choice and score = 1 - normalized entropy.

    The entropy and class probabilities ride along in the result's ``meta`` text, which Label Studio shows.
    A generated variation keeps its pre-label (the person's label) as the prediction's choice, so reviewers see
    it whatever version the project shows; its score and meta are still the learner's.
    """
    texts = task_texts(tasks, control)
    scorable = [index for index, found in enumerate(texts) if found.text is not None]
    probabilities = learner.predict_proba([texts[index].text for index in scorable])  # type: ignore[misc]
    predictions: list[dict[str, Any]] = [
        {"result": [], "score": 0.0, "model_version": version, "error": found.error} for found in texts
    ]
    scores = certainty_score(probabilities)
    entropies = entropy(probabilities)
    best = probabilities.argmax(axis=1)
    for row, index in enumerate(scorable):
        described = _describe(learner.classes_, probabilities[row], float(entropies[row]))
        kept_label = prelabel(tasks[index], control)
        result = control.choice_result(kept_label or learner.classes_[best[row]])
        if kept_label is not None:
            described = f"pre-label {kept_label} (generated variation) · learner: {described}"
        result[0]["meta"] = {"text": [described]}
        predictions[index] = {"result": result, "score": float(scores[row]), "model_version": version,
                              "entropy": float(entropies[row]),
                              "probabilities": dict(zip(learner.classes_, map(float, probabilities[row])))}
    return predictions


def _describe(classes: Sequence[str], probabilities: np.ndarray, entropy_value: float) -> str:
    ranked = sorted(zip(classes, probabilities), key=lambda pair: -pair[1])
    return f"entropy {entropy_value:.3f} · " + ", ".join(f"{label} {p:.2f}" for label, p in ranked)
