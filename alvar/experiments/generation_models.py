"""The student G and the auxiliary model R as the generation simulation and evaluation use them: the ``fast``
ones on the simulation's cached embeddings (a nearest-neighbour G, a logistic-regression R on pair embeddings) and
the loop's own (the transformer G of ``backend/student.py``, a trained R from ``--attribute-model``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from alvar.datafiles import DataFileError, read_dataset
from alvar.errors import AlvarError
from alvar.pairfiles import read_pairs
from alvar.settings import Settings
from alvar.text_generators import NearestNeighbourGenerator, PairAttributeClassifier


class GenerationSimulationError(AlvarError, ValueError):
    """A generation simulation that cannot run; the message says why."""


class Judge(Protocol):
    """R as the simulation uses it: class probabilities of outputs, given the inputs they answer."""

    @property
    def classes_(self) -> list[str]: ...

    def predict_proba(self, outputs: Sequence[str], inputs: Sequence[str]) -> np.ndarray: ...


class Student(Protocol):
    def fit(self, inputs: Sequence[str], outputs: Sequence[str]) -> Any: ...

    def generate(self, inputs: Sequence[str]) -> list[str]: ...


@dataclass
class FastJudge:
    """The fast R (:class:`PairAttributeClassifier`) fed from the simulation's embedder."""

    model: PairAttributeClassifier
    embed: Any

    @property
    def classes_(self) -> list[str]:
        return self.model.classes_

    def predict_proba(self, outputs: Sequence[str], inputs: Sequence[str]) -> np.ndarray:
        return self.model.predict_proba_vectors(self.embed(outputs), self.embed(inputs))


@dataclass
class ModelJudge:
    """A real R (``--attribute-model``: an :class:`alvar.attribute_model.AttributeJudge`); it reads the inputs too
    when it was trained on pairs."""

    judge: Any

    @property
    def classes_(self) -> list[str]:
        return list(self.judge.classes_)

    def predict_proba(self, outputs: Sequence[str], inputs: Sequence[str]) -> np.ndarray:
        return np.asarray(self.judge.predict_proba(list(outputs), list(inputs)))


@dataclass
class FastStudent:
    """The nearest-neighbour G fed from the simulation's embedder."""

    embed: Any

    def fit(self, inputs: Sequence[str], outputs: Sequence[str]) -> FastStudent:
        self.model_ = NearestNeighbourGenerator("").fit_vectors(self.embed(inputs), outputs)
        return self

    def generate(self, inputs: Sequence[str]) -> list[str]:
        return self.model_.generate_vectors(self.embed(inputs))


def make_student(kind: str, settings: Settings, seed: int, embed: Any) -> Student:
    """``fast`` (nearest neighbour) or ``transformer`` (the loop's student G with the settings' base)."""
    if kind == "fast":
        return FastStudent(embed)
    from alvar.backend.student import new_student

    return new_student(settings, seed=seed)


def load_judge(settings: Settings, attribute_file: Path | None, attribute_model: str | None,
               required: str | None, embed: Any) -> tuple[Judge, str, str]:
    """R, H and a line saying which R: a real R from ``attribute_model``, else the fast R trained on
    ``attribute_file``. H is ``required`` (ALVAR_ATTRIBUTE_VALUE), else the label of the attribute file's first
    row; a real R needs it named."""
    value = required or settings.attribute_value
    if attribute_model is not None:
        from alvar.attribute_model import AttributeJudge

        if not value:
            raise GenerationSimulationError("--attribute-model needs H: set --attribute-value (ALVAR_ATTRIBUTE_VALUE)"
                                            " to the class of R that outputs must have")
        judge = AttributeJudge(attribute_model, value, num_threads=settings.torch_threads).load()
        return ModelJudge(judge), value, f"R = {attribute_model}"
    if attribute_file is None:
        raise GenerationSimulationError("R is needed to score informativeness: give --attribute-file (input, output, "
                                        "label rows; `alvar datasets prepare` writes one) or --attribute-model")
    rows = read_dataset(attribute_file, text_col="output", label_col="label", require_labels=True)
    inputs = _column(attribute_file, "input", len(rows))
    outputs, given = embed(rows.texts), embed(inputs)
    accuracy = held_out_accuracy(settings, outputs, given, rows.labels)
    model = PairAttributeClassifier(settings.embedding_model, random_state=settings.seed)
    model.fit_vectors(outputs, given, rows.labels)
    value = value or rows.labels[0]
    if value not in model.classes_:
        raise GenerationSimulationError(f"the attribute value {value!r} is not one of R's classes "
                                        f"({', '.join(model.classes_)}); set --attribute-value to one of them")
    return (FastJudge(model, embed), value,
            f"R = logistic regression on pair embeddings, trained on {len(rows)} rows of {attribute_file.name} "
            f"({accuracy:.1%} accuracy on its last fifth when trained on the rest)")


def held_out_accuracy(settings: Settings, outputs: np.ndarray, inputs: np.ndarray, labels: Sequence[str]) -> float:
    """How often the fast R is right on the last fifth of its rows (kept together: a prepared file writes each
    input's true and false pair next to each other) when trained on the rest."""
    cut = int(0.8 * len(labels))
    if cut < 2 or len(set(labels[:cut])) < 2 or cut == len(labels):
        return float("nan")
    model = PairAttributeClassifier(settings.embedding_model, random_state=settings.seed)
    model.fit_vectors(outputs[:cut], inputs[:cut], labels[:cut])
    predicted = np.asarray(model.classes_)[model.predict_proba_vectors(outputs[cut:], inputs[cut:]).argmax(axis=1)]
    return float(np.mean(predicted == np.asarray(labels[cut:])))


def _column(path: Path, column: str, count: int) -> list[str]:
    """The ``column`` of an attribute file whose rows :func:`read_dataset` kept in full."""
    pairs = read_pairs(path, input_col=column)
    if len(pairs) != count:
        raise DataFileError(f"{path}: every row needs an input and an output")
    return pairs.inputs
