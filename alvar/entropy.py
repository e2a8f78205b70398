"""Predictive entropy: how unsure the learner is about a text."""

from __future__ import annotations

import numpy as np


def entropy(probabilities: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each row of class probabilities."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    safe = np.clip(probabilities, 1e-12, 1.0)
    return -(probabilities * np.log(safe)).sum(axis=-1)


def confidence_score(probabilities: np.ndarray) -> np.ndarray:
    """The probability of the likeliest class: Label Studio's prediction score. An ascending sort (Label Studio's
    "Uncertainty sampling") serves the least confident first, and the number reads as it is (0.21: the learner
    gives its label 21 %), where 1 - normalized entropy of a nearly uniform first model shows 0.000."""
    return np.asarray(probabilities, dtype=np.float64).max(axis=-1)
