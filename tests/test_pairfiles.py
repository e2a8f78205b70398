"""Pair files as a person writes them, and the generation measures against values worked out by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import sacrebleu

from alvar.datafiles import DataFileError
from alvar.generation_metrics import chrf, distinct_n, flat_scores, group_scores, satisfaction_rate, scores, spread
from alvar.pairfiles import Pair, read_pairs, write_pairs
from alvar.text_generators import NearestNeighbourGenerator, PairAttributeClassifier


def test_a_tsv_with_outputs_and_groups_is_read_with_ids(tmp_path: Path) -> None:
    path = tmp_path / "pairs.tsv"
    path.write_text("id\tinput\toutput\tgroup\na1\t Muslims are bad \tNo, they are not.\tMUSLIMS\n"
                    "a2\t   \tignored\tWOMEN\na3\tWomen are weak\t\tWOMEN\n", encoding="utf-8")
    pairs = read_pairs(path)
    assert pairs.pairs == [Pair("a1", "Muslims are bad", "No, they are not.", "MUSLIMS"),
                           Pair("a3", "Women are weak", None, "WOMEN")]
    assert pairs.notes == ["skipped 1 row(s) with a blank input (line(s) 3)"]
    assert pairs.has_groups and not pairs.has_outputs
    with pytest.raises(DataFileError, match="not every row has an output"):
        _ = pairs.outputs


def test_a_csv_with_a_text_column_and_quoted_commas(tmp_path: Path) -> None:
    path = tmp_path / "pool.csv"
    path.write_text('text,target\n"one, two",X\nthree,Y\n', encoding="utf-8")
    pairs = read_pairs(path, group_col="target")
    assert [(pair.id, pair.input, pair.group) for pair in pairs.pairs] == [("0", "one, two", "X"), ("1", "three", "Y")]
    assert pairs.has_groups and not pairs.has_outputs and pairs.output_column is None


def test_jsonl_with_named_columns(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    rows = [{"hs": "a", "cn": "b", "t": "G1"}, {"hs": "c", "cn": "d", "t": None}]
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n\n", encoding="utf-8")
    pairs = read_pairs(path, input_col="hs", output_col="cn", group_col="t")
    assert pairs.inputs == ["a", "c"] and pairs.outputs == ["b", "d"]
    assert [pair.group for pair in pairs.pairs] == ["G1", None] and not pairs.has_groups


def test_a_file_without_an_input_column_lists_its_columns(tmp_path: Path) -> None:
    path = tmp_path / "pairs.tsv"
    path.write_text("post\treply\nx\ty\n", encoding="utf-8")
    with pytest.raises(DataFileError, match=r"has no input column \(looked for input, text; columns are "
                                            r"\['post', 'reply'\]\); name one with --input-col"):
        read_pairs(path)
    with pytest.raises(DataFileError, match="no output column 'answer'"):
        read_pairs(path, input_col="post", output_col="answer")
    path.write_text("input\toutput\n \tx\n", encoding="utf-8")
    with pytest.raises(DataFileError, match="no rows with an input"):
        read_pairs(path)


def test_written_pairs_read_back(tmp_path: Path) -> None:
    pairs = [Pair("1", "in\tone", "out\none", "G"), Pair("2", "in two", None, None)]
    write_pairs(tmp_path / "p.tsv", pairs)
    assert read_pairs(tmp_path / "p.tsv").pairs == [Pair("1", "in one", "out one", "G"), Pair("2", "in two")]


def test_distinct_n_counts_unique_ngrams_over_all_outputs() -> None:
    outputs = ["the cat sat", "The cat ran", "a"]
    # unigrams: the cat sat the cat ran a -> 7 in all, 5 distinct; bigrams: the-cat cat-sat the-cat cat-ran -> 4, 3
    assert distinct_n(outputs, 1) == 5 / 7
    assert distinct_n(outputs, 2) == 3 / 4
    assert distinct_n(["a", "b"], 2) == 0.0


def test_chrf_and_bleu_are_sacrebleus_own_and_satisfaction_is_a_share() -> None:
    outputs = ["you are wrong about them", "people deserve respect"]
    references = ["you are wrong about migrants", "every person deserves respect"]
    assert chrf(outputs, references) == sacrebleu.corpus_chrf(outputs, [references]).score
    assert chrf(references, references) == 100.0
    result = scores(outputs, references, [True, False])
    assert result["satisfaction"] == 0.5
    assert result["bleu"] == sacrebleu.corpus_bleu(outputs, [references]).score
    assert satisfaction_rate(np.array([True, True, False, True])) == 0.75


def test_group_tables_and_their_spread() -> None:
    outputs = ["a b", "a b", "c d", "e f"]
    groups = ["X", "X", "Y", "Y"]
    table = group_scores(outputs, groups, satisfied=[True, True, True, False])
    assert table == {"X": {"satisfaction": 1.0, "distinct_1": 0.5, "distinct_2": 0.5},
                     "Y": {"satisfaction": 0.5, "distinct_1": 1.0, "distinct_2": 1.0}}
    assert spread(table)["satisfaction"] == {"std": 0.25, "range": 0.5}
    row = flat_scores(outputs, groups, references=outputs, satisfied=[True, True, True, False])
    assert row["chrf"] == 100.0 and row["chrf_std"] == 0.0 and row["distinct_2_range"] == 0.5


def test_the_nearest_neighbour_answers_with_the_closest_inputs_output() -> None:
    vectors = np.eye(3, dtype=np.float32)
    generator = NearestNeighbourGenerator("unused").fit_vectors(vectors, ["A", "B", "C"])
    queries = np.array([[0.1, 0.9, 0.0], [0.8, 0.0, 0.6]], dtype=np.float32)
    assert generator.generate_vectors(queries) == ["B", "A"]
    with pytest.raises(ValueError, match="one output per input"):
        NearestNeighbourGenerator("unused").fit_vectors(vectors, ["A"])


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_the_fast_judge_learns_whether_an_output_fits_its_input() -> None:
    """Outputs near their input are "fits", unrelated ones "other"; only the product features can tell them apart."""
    rng = np.random.default_rng(0)
    inputs = _unit(rng.normal(size=(120, 8)))
    fitting = _unit(inputs + rng.normal(scale=0.3, size=inputs.shape))
    unrelated = _unit(rng.normal(size=inputs.shape))
    judge = PairAttributeClassifier("unused").fit_vectors(np.vstack([fitting[:100], unrelated[:100]]),
                                                          np.vstack([inputs[:100], inputs[:100]]),
                                                          ["fits"] * 100 + ["other"] * 100)
    probabilities = judge.predict_proba_vectors(np.vstack([fitting[100:], unrelated[100:]]),
                                                np.vstack([inputs[100:], inputs[100:]]))
    assert judge.classes_ == ["fits", "other"]
    right = np.concatenate([probabilities[:20, 0] > 0.5, probabilities[20:, 1] > 0.5])
    assert right.mean() >= 0.9, right.mean()
