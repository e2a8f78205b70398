"""Text classifiers besides the transformer learner, with the learner's shape (:class:`alvar.classifiers.
TextClassifier`): ``fit(texts, labels)``, ``predict_proba(texts)``, ``predict(texts)``, ``classes_``.

- :class:`EmbeddingLogisticRegression`: sentence embeddings (cached on disk) + logistic regression; seconds
  to train, which is what `alvar simulate --learner fast` runs every round.
- :class:`TfidfLogisticRegression`: word and bigram TF-IDF + logistic regression; no neural network at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline

from alvar.classifiers import ClassifierMixin, require_two_classes
from alvar.embedder import Embedder


class EmbeddingLogisticRegression(ClassifierMixin):
    def __init__(self, embedding_model: str, cache_path: str | Path | None = None, C: float = 10.0,  # noqa: N803
                 max_iter: int = 2000, random_state: int = 0) -> None:
        self.embedding_model = embedding_model
        self.cache_path = cache_path
        self.C = C
        self.max_iter = max_iter
        self.random_state = random_state

    @cached_property
    def embedder(self) -> Embedder:
        """Made on first use (it loads its model lazily too), so construction stays parameters only."""
        return Embedder(self.embedding_model, cache_path=self.cache_path)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.embedder.embed(texts)

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> EmbeddingLogisticRegression:
        return self.fit_vectors(self.embed(texts), labels)

    def fit_vectors(self, vectors: np.ndarray, labels: Sequence[str]) -> EmbeddingLogisticRegression:
        """Fit on embeddings already computed (the simulation embeds its pool once)."""
        require_two_classes(labels)
        model = LogisticRegression(C=self.C, max_iter=self.max_iter, random_state=self.random_state)
        self.model_ = model.fit(vectors, list(labels))
        self.classes_ = [str(label) for label in model.classes_]
        return self

    def predict_proba_vectors(self, vectors: np.ndarray) -> np.ndarray:
        return self.model_.predict_proba(vectors)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return self.predict_proba_vectors(self.embed(texts))


class TfidfLogisticRegression(ClassifierMixin):
    def __init__(self, C: float = 10.0, max_iter: int = 2000, random_state: int = 0) -> None:  # noqa: N803
        self.C = C
        self.max_iter = max_iter
        self.random_state = random_state

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> TfidfLogisticRegression:
        require_two_classes(labels)
        model: Pipeline = make_pipeline(
            TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1),
            LogisticRegression(C=self.C, max_iter=self.max_iter, random_state=self.random_state),
        )
        self.model_ = model.fit(list(texts), list(labels))
        self.classes_ = [str(label) for label in model.classes_]
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return self.model_.predict_proba(list(texts))
