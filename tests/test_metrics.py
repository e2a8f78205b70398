from pathlib import Path

import pytest

from alvar.datafiles import read_dataset
from alvar.metrics import class_count_std, class_counts

CLASSES = ["discard", "emergency-situation", "financial-advice", "legal-advice", "medical-advice", "self-harm"]


@pytest.mark.parametrize("split, paper_std", [("random-all.tsv", 57.6), ("topn-all.tsv", 47.6),
                                              ("coreset-all.tsv", 65.3), ("cluster-all.tsv", 41.4)])
def test_class_count_std_reproduces_the_papers_table_3(safety_dir: Path, split: str, paper_std: float) -> None:
    labels = read_dataset(safety_dir / split).labels
    assert class_count_std(labels, CLASSES) == pytest.approx(paper_std, abs=0.5)


def test_missing_classes_count_as_zero() -> None:
    assert class_counts(["a", "a", "c"], ["a", "b", "c"]) == [2, 0, 1]
    assert class_count_std(["a", "a", "c"], ["a", "b", "c"]) == pytest.approx(1.0)
