"""The one shape every text classifier has, in scikit-learn's spirit: the transformer learner, the logistic
regressions of :mod:`alvar.text_classifiers` and the simulation's learner all meet :class:`TextClassifier`,
and take ``predict`` from :class:`ClassifierMixin`.

The conventions they keep: parameters are stored by ``__init__`` and nothing is fitted there; fitted attributes
end in ``_`` and exist only once ``fit`` (or a load) has set them; randomness comes from ``random_state``
through local generators, never by seeding the process-wide ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, Self, runtime_checkable

import numpy as np


@runtime_checkable
class TextClassifier(Protocol):
    """Texts in, one label each out; ``classes_`` names ``predict_proba``'s columns (set by ``fit``)."""

    classes_: list[str]

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> Self: ...

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray: ...

    def predict(self, texts: Sequence[str]) -> list[str]: ...


def require_two_classes(labels: Sequence[str]) -> None:
    """A classifier learns to tell classes apart: one class alone is a ValueError."""
    if len(set(labels)) < 2:
        raise ValueError(f"need at least two classes to train, got {sorted(set(labels))}")


def likeliest(classes: Sequence[str], probabilities: np.ndarray) -> list[str]:
    """The class of each row's highest probability (the first of a tie, as ``argmax``)."""
    return [classes[index] for index in probabilities.argmax(axis=1)]


class ClassifierMixin:
    """``predict`` for a classifier that has ``predict_proba`` and ``classes_`` (mypy's protocol-typed mixin)."""

    def predict(self: TextClassifier, texts: Sequence[str]) -> list[str]:
        """The likeliest class of each text."""
        return likeliest(self.classes_, self.predict_proba(texts))
