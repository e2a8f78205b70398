"""Fast stand-ins for the generative loop's models, on cached sentence embeddings, so that a multi-seed
`alvar simulate --task generation` takes minutes (as the embedding logistic regression does for classification):

- :class:`NearestNeighbourGenerator`, the fast student G: the output of the most similar training input;
- :class:`PairAttributeClassifier`, a fast auxiliary model R: logistic regression on the standardized
  ``[e(input), e(output), e(input) * e(output)]``, so it can judge whether an output fits its input (for example
  "the output counters this input"; 84 % accuracy on held-out Multitarget-CONAN pairs against mismatched ones,
  where the raw features reach 44-69 %).

Both take precomputed vectors too (``*_vectors``): the simulation embeds its pool once.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from alvar.classifiers import require_two_classes
from alvar.embedder import Embedder


class NearestNeighbourGenerator:
    """G as retrieval: ``generate(x)`` is the training output whose input is most similar (cosine) to ``x``."""

    def __init__(self, embedding_model: str, cache_path: str | Path | None = None) -> None:
        self.embedding_model = embedding_model
        self.cache_path = cache_path

    @cached_property
    def embedder(self) -> Embedder:
        return Embedder(self.embedding_model, cache_path=self.cache_path)

    def fit(self, inputs: Sequence[str], outputs: Sequence[str]) -> NearestNeighbourGenerator:
        return self.fit_vectors(self.embedder.embed(inputs), outputs)

    def fit_vectors(self, vectors: np.ndarray, outputs: Sequence[str]) -> NearestNeighbourGenerator:
        if len(vectors) != len(outputs) or not len(outputs):
            raise ValueError(f"need one output per input and at least one pair; got {len(vectors)} inputs and "
                             f"{len(outputs)} outputs")
        self.vectors_ = np.asarray(vectors, dtype=np.float32)
        self.outputs_ = list(outputs)
        return self

    def neighbours(self, vectors: np.ndarray) -> np.ndarray:
        """The index of each row's most similar training input (unit vectors: dot product = cosine)."""
        return np.argmax(np.asarray(vectors, dtype=np.float32) @ self.vectors_.T, axis=1)

    def generate_vectors(self, vectors: np.ndarray) -> list[str]:
        return [self.outputs_[index] for index in self.neighbours(vectors)]

    def generate(self, inputs: Sequence[str]) -> list[str]:
        return self.generate_vectors(self.embedder.embed(inputs))


def pair_features(input_vectors: np.ndarray, output_vectors: np.ndarray) -> np.ndarray:
    """``[e(input), e(output), e(input) * e(output)]``: the product lets a linear model see how well they fit."""
    return np.hstack([input_vectors, output_vectors, input_vectors * output_vectors])


class PairAttributeClassifier:
    """R as a logistic regression on an (input, output) pair's embeddings; ``predict_proba(outputs, inputs)``."""

    def __init__(self, embedding_model: str, cache_path: str | Path | None = None, C: float = 0.01,  # noqa: N803
                 max_iter: int = 2000, random_state: int = 0) -> None:
        self.embedding_model = embedding_model
        self.cache_path = cache_path
        self.C = C
        self.max_iter = max_iter
        self.random_state = random_state

    @cached_property
    def embedder(self) -> Embedder:
        return Embedder(self.embedding_model, cache_path=self.cache_path)

    def fit(self, outputs: Sequence[str], inputs: Sequence[str], labels: Sequence[str]) -> PairAttributeClassifier:
        return self.fit_vectors(self.embedder.embed(outputs), self.embedder.embed(inputs), labels)

    def fit_vectors(self, output_vectors: np.ndarray, input_vectors: np.ndarray,
                    labels: Sequence[str]) -> PairAttributeClassifier:
        require_two_classes(labels)
        model: Pipeline = make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=self.max_iter,
                                                                             random_state=self.random_state))
        self.model_ = model.fit(pair_features(input_vectors, output_vectors), list(labels))
        self.classes_ = [str(label) for label in model.classes_]
        return self

    def predict_proba_vectors(self, output_vectors: np.ndarray, input_vectors: np.ndarray) -> np.ndarray:
        return self.model_.predict_proba(pair_features(input_vectors, output_vectors))

    def predict_proba(self, outputs: Sequence[str], inputs: Sequence[str]) -> np.ndarray:
        return self.predict_proba_vectors(self.embedder.embed(outputs), self.embedder.embed(inputs))
