"""Scoring generative tasks: the student G's interim output, and how informative it is to the auxiliary model R.

One prediction per task, as Label Studio imports it: a ``TextArea`` result (the output box pre-filled), a score
and the model version. The score is the informativeness of the task, the entropy of R's softmax over G's output
(0.0 while R is not trained yet: every task is then equally informative, and the selector falls back to the
clusters). A task the teacher has drafted keeps the draft as its pre-filled output, whatever version the project
shows, as a classification variation keeps its pre-label; its score is still G's and R's.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from alvar.attribute_model import AttributeJudge, attribute_model_path, load_judge
from alvar.backend.predictor import Predictor, task_texts
from alvar.backend.student import TextToTextStudent
from alvar.entropy import entropy
from alvar.labelstudio.generation_config import GENERATION, GenerationControl
from alvar.labelstudio.task_data import DraftFields
from alvar.settings import Settings

# Characters of G's output quoted in a prediction's meta text (Label Studio shows it beside the region).
QUOTED_CHARS = 80
NO_JUDGE = "R not trained yet (score 0.0)"


def kept_draft(task: Any) -> str | None:
    """The teacher's draft of a task (``data.draft``), when it holds text."""
    draft = DraftFields.of(task).draft
    return draft if draft is not None and draft.strip() else None


def _quoted(text: str) -> str:
    return text if len(text) <= QUOTED_CHARS else text[: QUOTED_CHARS - 1] + "…"


def _describe(output: str, classes: Sequence[str], probabilities: np.ndarray | None, informativeness: float) -> str:
    """``G: <output> · R: counter-narrative 0.62, … · entropy 0.66``."""
    if probabilities is None:
        return f"G: {_quoted(output)} · {NO_JUDGE}"
    ranked = sorted(zip(classes, probabilities), key=lambda pair: -pair[1])
    judged = ", ".join(f"{label} {p:.2f}" for label, p in ranked)
    return f"G: {_quoted(output)} · R: {judged} · entropy {informativeness:.2f}"


def generation_predictions(student: TextToTextStudent, version: str, tasks: Sequence[Any],
                           control: GenerationControl, judge: AttributeJudge | None) -> list[dict[str, Any]]:
    """One prediction per task, in order (a task without an input gets ``result: []`` and its ``error``).

    G writes every input's output in one batched call, R judges them in one more (a pair-mode R reads each
    output with its input); the result's text is the task's draft when it has one, else G's output.
    """
    inputs = task_texts(tasks, control.data_key)
    predictions: list[dict[str, Any]] = [
        {"result": [], "score": 0.0, "model_version": version, "error": found.error} for found in inputs
    ]
    scorable = [index for index, found in enumerate(inputs) if found.text is not None]
    if not scorable:
        return predictions
    texts = [found.text for found in inputs if found.text is not None]
    outputs = student.generate(texts)
    probabilities = judge.predict_proba(outputs, texts) if judge is not None else None
    scores = entropy(probabilities) if probabilities is not None else np.zeros(len(outputs))
    classes = judge.classes_ if judge is not None else []
    for row, index in enumerate(scorable):
        draft = kept_draft(tasks[index])
        described = _describe(outputs[row], classes, None if probabilities is None else probabilities[row],
                              float(scores[row]))
        if draft is not None:
            described = f"teacher draft kept · {described}"
        result = control.output_result(draft if draft is not None else outputs[row])
        result[0]["meta"] = {"text": [described]}
        prediction = {"result": result, "score": float(scores[row]), "model_version": version,
                      "output": outputs[row], "entropy": float(scores[row])}
        if probabilities is not None:
            prediction["probabilities"] = dict(zip(classes, map(float, probabilities[row])))
        predictions[index] = prediction
    return predictions


class GenerationPredictor:
    """Serves a generative project: its own student version (never the shared classifier) and R.

    Students are held in the classifier's bounded :class:`~alvar.backend.predictor.LoadedModels` (a student is
    a version like any other); R is loaded once per (path, H) and again when its files change (``alvar
    attribute train`` rewrote it); the settings name one R, so one is held per H of the projects served.
    """

    def __init__(self, settings: Settings, predictor: Predictor) -> None:
        self.settings = settings
        self.predictor = predictor
        self._judges: dict[tuple[str, str], tuple[float | None, AttributeJudge]] = {}
        self._lock = threading.Lock()

    def student(self, project_id: int | None) -> tuple[str, TextToTextStudent] | None:
        """The student version serving the project, or None when it has none yet."""
        loaded = self.predictor.current(project_id, GENERATION)
        if loaded is None:
            return None
        return loaded[0], cast(TextToTextStudent, loaded[1])  # a generation version loads as a student

    def judge(self, control_required: str) -> AttributeJudge | None:
        """R (:func:`~alvar.attribute_model.load_judge`) judging against H, the config's ``control_required``
        unless the settings or R's own card name another; None while R is not trained yet.

        :class:`~alvar.attribute_model.AttributeModelError` when R does not load or does not know H.
        """
        path = attribute_model_path(self.settings)
        if path is None:
            return None
        changed = _modified(path)
        with self._lock:
            held = self._judges.get((path, control_required))
            if held is not None and held[0] == changed:
                return held[1]
            judge = load_judge(self.settings, control_required)
            if judge is None:
                return None
            self._judges[(path, control_required)] = (changed, judge)
            return judge

    def predict_tasks(self, tasks: Sequence[Any], control: GenerationControl,
                      project_id: int | None) -> list[dict[str, Any]]:
        """The project's student's predictions; none (``[]``) before its first student."""
        loaded = self.student(project_id)
        if loaded is None:
            return []
        version, student = loaded
        judge = self.judge(control.required_attribute(self.settings.attribute_value))
        return generation_predictions(student, version, tasks, control, judge)


def _modified(path: str) -> float | None:
    """When a local model directory last changed (its newest file); None for a hub id."""
    directory = Path(path)
    if not directory.is_dir():
        return None
    return max((entry.stat().st_mtime for entry in directory.iterdir()), default=directory.stat().st_mtime)
