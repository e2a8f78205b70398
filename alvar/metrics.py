"""Dataset measures shared by the reports."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np


def class_counts(labels: Iterable[str], classes: Sequence[str]) -> list[int]:
    """How many of ``labels`` fall in each class, zero included, in ``classes`` order."""
    counted = Counter(labels)
    return [counted.get(label, 0) for label in classes]


def class_count_std(labels: Iterable[str], classes: Sequence[str]) -> float:
    """Sample standard deviation (ddof=1) of the class counts: the paper's Table 3 measure (lower = more even)."""
    return float(np.std(class_counts(labels, classes), ddof=1))
