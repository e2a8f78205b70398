"""Predictive entropy: how unsure the learner is about a text."""

from __future__ import annotations

import numpy as np


def entropy(probabilities: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each row of class probabilities."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    safe = np.clip(probabilities, 1e-12, 1.0)
    return -(probabilities * np.log(safe)).sum(axis=-1)


def normalized_entropy(probabilities: np.ndarray) -> np.ndarray:
    """Entropy divided by its maximum, log(n_classes): 0 = certain, 1 = uniform."""
    n_classes = np.asarray(probabilities).shape[-1]
    if n_classes < 2:
        return np.zeros(np.asarray(probabilities).shape[:-1])
    return entropy(probabilities) / np.log(n_classes)


def certainty_score(probabilities: np.ndarray) -> np.ndarray:
    """1 - normalized entropy: Label Studio's prediction score, so an ascending sort serves the most uncertain first."""
    return 1.0 - normalized_entropy(probabilities)
