"""Measures of generated outputs, overall and per subgroup, with their spread across subgroups.

- chrF and BLEU (sacrebleu, corpus level, 0-100) against reference outputs;
- distinct-1/2: unique n-grams over all n-grams of the outputs (lexical diversity, 0-1);
- satisfaction: the share of outputs the auxiliary model R judges to have the regulated attribute H (0-1).

Evenness across subgroups is the spread of a measure over the subgroups' values: their (population) standard
deviation and their range (max - min); lower is more even.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import sacrebleu

MEASURES = ("satisfaction", "chrf", "bleu", "distinct_1", "distinct_2")


def chrf(outputs: Sequence[str], references: Sequence[str]) -> float:
    """sacrebleu's corpus chrF (character 6-grams, beta 2), 0-100."""
    return float(sacrebleu.corpus_chrf(list(outputs), [list(references)]).score)


def bleu(outputs: Sequence[str], references: Sequence[str]) -> float:
    """sacrebleu's corpus BLEU (13a tokenizer, exponential smoothing), 0-100."""
    return float(sacrebleu.corpus_bleu(list(outputs), [list(references)]).score)


def distinct_n(outputs: Sequence[str], n: int) -> float:
    """Unique n-grams / all n-grams over the outputs (lower-cased, split on whitespace); 0.0 without n-grams."""
    grams = [tuple(tokens[start:start + n]) for text in outputs
             for tokens in [text.lower().split()] for start in range(len(tokens) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def satisfaction_rate(satisfied: Sequence[bool] | np.ndarray) -> float:
    """The share of outputs R judges = H."""
    values = np.asarray(satisfied, dtype=bool)
    return float(values.mean()) if len(values) else 0.0


def scores(outputs: Sequence[str], references: Sequence[str] | None = None,
           satisfied: Sequence[bool] | np.ndarray | None = None) -> dict[str, float]:
    """Every measure the data allows: chrF and BLEU need references, satisfaction needs R's judgements."""
    if references is not None and len(references) != len(outputs):
        raise ValueError(f"{len(outputs)} outputs but {len(references)} references")
    if satisfied is not None and len(satisfied) != len(outputs):
        raise ValueError(f"{len(outputs)} outputs but {len(satisfied)} judgements")
    result: dict[str, float] = {}
    if satisfied is not None:
        result["satisfaction"] = satisfaction_rate(satisfied)
    if references is not None:
        result["chrf"] = chrf(outputs, references)
        result["bleu"] = bleu(outputs, references)
    result["distinct_1"] = distinct_n(outputs, 1)
    result["distinct_2"] = distinct_n(outputs, 2)
    return result


def group_scores(outputs: Sequence[str], groups: Sequence[str], references: Sequence[str] | None = None,
                 satisfied: Sequence[bool] | np.ndarray | None = None) -> dict[str, dict[str, float]]:
    """:func:`scores` of each subgroup's outputs, subgroups in sorted order."""
    if len(groups) != len(outputs):
        raise ValueError(f"{len(outputs)} outputs but {len(groups)} groups")
    judged = None if satisfied is None else np.asarray(satisfied, dtype=bool)
    table: dict[str, dict[str, float]] = {}
    for group in sorted(set(groups)):
        rows = [index for index, name in enumerate(groups) if name == group]
        table[group] = scores([outputs[i] for i in rows], None if references is None else [references[i] for i in rows],
                              None if judged is None else judged[rows])
    return table


def spread(table: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Per measure, the std and the range (max - min) of the subgroups' values."""
    measures = [measure for measure in MEASURES if all(measure in row for row in table.values())]
    result = {}
    for measure in measures:
        values = np.array([row[measure] for row in table.values()], dtype=np.float64)
        result[measure] = {"std": float(values.std()) if len(values) else 0.0,
                           "range": float(values.max() - values.min()) if len(values) else 0.0}
    return result


def flat_scores(outputs: Sequence[str], groups: Sequence[str], references: Sequence[str] | None = None,
                satisfied: Sequence[bool] | np.ndarray | None = None) -> dict[str, float]:
    """One row for a CSV: the overall measures, and ``<measure>_std`` / ``<measure>_range`` across subgroups."""
    row = scores(outputs, references, satisfied)
    for measure, values in spread(group_scores(outputs, groups, references, satisfied)).items():
        row[f"{measure}_std"] = values["std"]
        row[f"{measure}_range"] = values["range"]
    return row
