from pathlib import Path

import numpy as np
import pytest

from alvar.datafiles import read_dataset
from alvar.metrics import class_count_std, class_counts, classification_summary

CLASSES = ["discard", "emergency-situation", "financial-advice", "legal-advice", "medical-advice", "self-harm"]


@pytest.mark.parametrize("split, paper_std", [("random-all.tsv", 57.6), ("topn-all.tsv", 47.6),
                                              ("coreset-all.tsv", 65.3), ("cluster-all.tsv", 41.4)])
def test_class_count_std_reproduces_the_papers_table_3(safety_dir: Path, split: str, paper_std: float) -> None:
    labels = read_dataset(safety_dir / split).labels
    assert class_count_std(labels, CLASSES) == pytest.approx(paper_std, abs=0.5)


def test_missing_classes_count_as_zero() -> None:
    assert class_counts(["a", "a", "c"], ["a", "b", "c"]) == [2, 0, 1]
    assert class_count_std(["a", "a", "c"], ["a", "b", "c"]) == pytest.approx(1.0)


def test_classification_summary_by_hand() -> None:
    gold = ["a", "a", "a", "b", "b", "c"]
    predicted = ["a", "a", "b", "b", "b", "a"]
    summary = classification_summary(gold, predicted, ["a", "b", "c", "d"])
    assert summary["accuracy"] == pytest.approx(4 / 6)
    # F1: a = 2*(2/3*2/3)/(4/3) = 2/3, b = 2*(2/3*1)/(5/3) = 0.8, c = 0; d is in neither list: not averaged.
    assert summary["macro_f1"] == pytest.approx((2 / 3 + 0.8 + 0) / 3)
    assert summary["f1:d"] == 0 and "error_rate:d" not in summary
    assert [summary[f"error_rate:{label}"] for label in "abc"] == pytest.approx([1 / 3, 0, 1])
    assert summary["error_rate_std"] == pytest.approx(float(np.std([1 / 3, 0, 1], ddof=1)))
