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


def classification_summary(gold: Sequence[str], predicted: Sequence[str], classes: Sequence[str]) -> dict[str, float]:
    """Accuracy; macro precision/recall/F1 over the classes present in ``gold`` or ``predicted`` (scikit-learn's
    default); F1 per class of ``classes``; and each class's errors divided by its frequency in ``gold`` (that is,
    1 - its recall) with their standard deviation over classes (the paper's Table 8 measure: lower = errors
    spread more evenly). Classes absent from ``gold`` get no error rate."""
    from sklearn.metrics import (
        accuracy_score,
        f1_score,
        precision_recall_fscore_support,
    )

    precision, recall, f1, _ = precision_recall_fscore_support(gold, predicted, average="macro", zero_division=0)
    per_class = f1_score(gold, predicted, labels=list(classes), average=None, zero_division=0)
    summary = {"accuracy": float(accuracy_score(gold, predicted)), "macro_precision": float(precision),
               "macro_recall": float(recall), "macro_f1": float(f1)}
    rates = []
    for label, score in zip(classes, per_class):
        summary[f"f1:{label}"] = float(score)
        support = sum(1 for value in gold if value == label)
        if support:
            errors = sum(1 for truth, guess in zip(gold, predicted) if truth == label and guess != label)
            summary[f"error_rate:{label}"] = errors / support
            rates.append(errors / support)
    summary["error_rate_std"] = float(np.std(rates, ddof=1)) if len(rates) > 1 else 0.0
    return summary
