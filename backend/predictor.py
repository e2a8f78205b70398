"""Scoring Label Studio tasks with the learner version that serves their project."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

import numpy as np

from alvar.backend.learner import TransformerClassifier
from alvar.backend.model_store import Model, load_model, serving_kind, shared_store
from alvar.classifiers import likeliest
from alvar.entropy import confidence_score, entropy
from alvar.labelstudio.choices_control import ChoicesControl
from alvar.labelstudio.generation_config import CLASSIFICATION
from alvar.labelstudio.training_data import prelabel
from alvar.settings import Settings

# Loaded versions a backend process holds at once (each is about 90 MB of weights plus the tokenizer).
LOADED_MODELS = 4

Held = TypeVar("Held")


@dataclass(frozen=True)
class TaskText:
    """The text of one task, or the reason it has none."""

    text: str | None
    error: str | None = None


def task_texts(tasks: Sequence[Any], data_key: str) -> list[TaskText]:
    """Each task's text under the label config's data key, or a per-task error."""
    found: list[TaskText] = []
    for position, task in enumerate(tasks):
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            found.append(TaskText(None, f"task #{position} is not an object with a 'data' object"))
            continue
        value = task["data"].get(data_key)
        if value is None:
            found.append(TaskText(None, f"task {task.get('id', '#' + str(position))} has no data.{data_key}"))
        else:
            found.append(TaskText(str(value)))
    return found


class LoadedModels(Generic[Held]):
    """The few model versions held in memory, the least recently used dropped first.

    A backend serving many projects must not hold every project's model: at most ``capacity`` stay loaded, and
    a store's new version replaces its older one (the pointer moved: the old one serves nobody). Looking up a
    loaded version never waits; loads happen one at a time, so a burst of requests right after a version
    switch loads that version once.
    """

    def __init__(self, capacity: int, load: Callable[[Path], Held]) -> None:
        if capacity < 1:
            raise ValueError(f"hold at least one model, not {capacity}")
        self.capacity = capacity
        self._load = load
        self._held: OrderedDict[Path, Held] = OrderedDict()
        self._lock = threading.Lock()
        self._loading = threading.Lock()

    def _lookup(self, path: Path) -> Held | None:
        with self._lock:
            learner = self._held.get(path)
            if learner is not None:
                self._held.move_to_end(path)
            return learner

    def get(self, path: Path) -> Held:
        """The model saved at ``path``, loaded unless it is held already."""
        if (learner := self._lookup(path)) is not None:
            return learner
        with self._loading:
            if (learner := self._lookup(path)) is not None:
                return learner
            learner = self._load(path)
            with self._lock:
                for replaced in [held for held in self._held if held.parent == path.parent]:
                    del self._held[replaced]
                self._held[path] = learner
                while len(self._held) > self.capacity:
                    self._held.popitem(last=False)
            return learner

    def held(self) -> list[Path]:
        """The loaded versions' directories, least recently used first."""
        with self._lock:
            return list(self._held)


class Predictor:
    """Serves each project its current version (:func:`serving`), following each store's pointer as it moves.

    Classifiers and students share the bounded :class:`LoadedModels`; each saved version loads as its kind.
    """

    def __init__(self, settings: Settings, capacity: int = LOADED_MODELS) -> None:
        self.settings = settings
        self.store = shared_store(settings.model_dir)
        self.models: LoadedModels[Model] = LoadedModels(capacity, self._load)

    def _load(self, path: Path) -> Model:
        return load_model(path, precision=self.settings.inference_precision,
                          inference_batch_size=self.settings.inference_batch_size,
                          num_threads=self.settings.torch_threads)

    def current(self, project_id: int | None = None, kind: str | None = None) -> tuple[str, Model] | None:
        """The version serving the project and its model; None when no model (of ``kind``, when given) serves it.

        A version can be pruned between reading its pointer and loading it (a training switched and pruned
        meanwhile): the pointer is then read again.
        """
        attempts = 3
        while True:
            found = None
            try:
                found = serving_kind(self.settings.model_dir, project_id, kind)
                if found is None:
                    return None
                return found.version, self.models.get(found.store.path(found.version))
            except OSError:
                attempts -= 1
                if attempts == 0 or (found is not None and found.store.path(found.version).exists()):
                    raise

    def predict_tasks(self, tasks: Sequence[Any], control: ChoicesControl,
                      project_id: int | None = None) -> list[dict[str, Any]]:
        """Predictions of the version serving the project; none when no classifier serves it."""
        loaded = self.current(project_id, CLASSIFICATION)
        if loaded is None:
            return []
        version, learner = loaded  # a version of the classification kind loads as a classifier (MODEL_CLASSES)
        return predict_tasks(cast(TransformerClassifier, learner), version, tasks, control)


def predict_tasks(learner: TransformerClassifier, version: str, tasks: Sequence[Any],
                  control: ChoicesControl) -> list[dict[str, Any]]:
    """One Label Studio prediction per task, in order: the likeliest Choice and score = its probability.

    The entropy and class probabilities ride along in the result's ``meta`` text, which Label Studio shows.
    A generated variation keeps its pre-label (the person's label) as the prediction's choice, so reviewers see
    it whatever version the project shows; its score and meta are still the learner's.
    """
    texts = task_texts(tasks, control.data_key)
    scorable = [index for index, found in enumerate(texts) if found.text is not None]
    probabilities = learner.predict_proba([found.text for found in texts if found.text is not None])
    predictions: list[dict[str, Any]] = [
        {"result": [], "score": 0.0, "model_version": version, "error": found.error} for found in texts
    ]
    scores = confidence_score(probabilities)
    entropies = entropy(probabilities)
    best = likeliest(learner.classes_, probabilities)
    for row, index in enumerate(scorable):
        described = _describe(learner.classes_, probabilities[row], float(entropies[row]))
        kept_label = prelabel(tasks[index], control)
        result = control.choice_result(kept_label or best[row])
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
