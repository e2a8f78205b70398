"""What every selection strategy works on and returns: the pool (:class:`Pool`), the picks (:class:`Selection`), the
protocol, and the checks and orderings they share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from alvar.errors import AlvarError


class SelectionError(AlvarError, ValueError):
    """A selection that cannot be made; the message says why."""


@dataclass(frozen=True)
class Pool:
    """Everything a strategy may look at. ``eligible`` is False for labeled, batched and generated items.

    ``probabilities`` (n, C) are the learner's class probabilities, rows aligned with ``embeddings``;
    ``labeled_counts`` (C,) the human labels per class so far, in the same column order. Strategies that reason
    about classes need them (a :class:`SelectionError` says so when they are missing).
    """

    embeddings: np.ndarray
    entropy: np.ndarray
    eligible: np.ndarray
    labeled_embeddings: np.ndarray | None = None
    probabilities: np.ndarray | None = None
    labeled_counts: np.ndarray | None = None

    def eligible_indices(self) -> np.ndarray:
        return np.flatnonzero(self.eligible)

    def class_probabilities(self, strategy: str) -> np.ndarray:
        """The (n, C) probabilities, checked against the pool's size."""
        if self.probabilities is None:
            raise SelectionError(f"the {strategy} strategy needs the learner's class probabilities of the pool")
        probabilities = np.asarray(self.probabilities, dtype=np.float64)
        if probabilities.ndim != 2 or len(probabilities) != len(self.eligible) or probabilities.shape[1] < 1:
            raise SelectionError(f"the class probabilities have shape {probabilities.shape}; the {strategy} "
                                 f"strategy needs one row per pool item ({len(self.eligible)}) and a column per class")
        return probabilities

    def class_counts(self, strategy: str) -> np.ndarray:
        """The (C,) labels per class so far, checked against the probabilities' columns."""
        n_classes = self.class_probabilities(strategy).shape[1]
        if self.labeled_counts is None:
            raise SelectionError(f"the {strategy} strategy needs the labeled items' counts per class "
                                 "(zeros when nothing is labeled yet)")
        counts = np.asarray(self.labeled_counts, dtype=np.float64)
        if counts.shape != (n_classes,):
            raise SelectionError(f"the labeled counts have shape {counts.shape}; the {strategy} strategy needs "
                                 f"one count per class ({n_classes})")
        return counts


@dataclass(frozen=True)
class Selection:
    """Picked pool positions in rank order, the cluster of each pick (-1 without clusters), and for
    clustering strategies the cluster of every eligible item (-1 for the others)."""

    indices: np.ndarray
    clusters: np.ndarray
    pool_clusters: np.ndarray | None = None


class Strategy(Protocol):
    name: str

    def select(self, pool: Pool, budget: int) -> Selection: ...


def eligible_or_fail(pool: Pool, budget: int) -> np.ndarray:
    candidates = pool.eligible_indices()
    if budget < 1:
        raise SelectionError(f"the budget must be at least 1, got {budget}")
    if len(candidates) < budget:
        raise SelectionError(f"the budget ({budget}) is larger than the {len(candidates)} selectable items "
                             "(not labeled, not in a batch, not a generated variation)")
    return candidates


def by_uncertainty(candidates: np.ndarray, entropy: np.ndarray) -> np.ndarray:
    """Candidates from most to least uncertain; ties keep pool order."""
    return candidates[np.argsort(-entropy[candidates], kind="stable")]


def no_clusters(indices: np.ndarray) -> Selection:
    return Selection(indices=indices, clusters=np.full(len(indices), -1))


def predicted_class(probabilities: np.ndarray) -> np.ndarray:
    """The learner's likeliest class of each row (ties go to the first class)."""
    return np.argmax(probabilities, axis=1)
