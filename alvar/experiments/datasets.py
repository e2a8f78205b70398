"""`alvar datasets prepare`: a public data set as the two files `alvar simulate` reads.

``pool.tsv`` is the labelled pool (simulate halves it into pool and eval, differently per seed) and
``bootstrap.tsv`` a small stratified bootstrap (the same number per class), disjoint from the pool. Texts that
repeat (compared as simulate compares them) are kept once; a text given different labels is left out, since
neither label would be the truth. A large set is cut to a stratified ``max_pool`` so that a simulation stays
quick. The same seed writes the same files.

A pair data set (generative projects) becomes pair files instead (:func:`prepare_pairs`): a pool, a bootstrap, a
held-out test set and R's training file, each input in one of them only.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from alvar.errors import AlvarError
from alvar.generator.validation import normal_form
from alvar.pairfiles import Pair, write_pairs
from alvar.public_data import LabeledRow, PairRow, PublicDataset, load, one_line
from alvar.settings import Settings

POOL_FILE = "pool.tsv"
BOOTSTRAP_FILE = "bootstrap.tsv"
CARD_FILE = "prepared.json"
# simulate halves the pool stratified by label: every class needs two rows there.
MIN_POOL_PER_CLASS = 2


class PrepareError(AlvarError, ValueError):
    """Options that cannot make a pool and a bootstrap of this data set; the message says why."""


@dataclass(frozen=True)
class Distinct:
    rows: list[LabeledRow]
    repeats: int
    conflicting: int


@dataclass(frozen=True)
class Prepared:
    """What `prepare` wrote and how the rows were chosen."""

    name: str
    pool: Path
    bootstrap: Path
    card: Path
    pool_counts: dict[str, int]
    bootstrap_counts: dict[str, int]
    rows: int
    repeats: int
    conflicting: int
    seed: int


def distinct_rows(rows: Sequence[LabeledRow]) -> Distinct:
    """The first row of each text (in simulate's normal form); texts with more than one label and texts that are
    nothing but punctuation are left out."""
    labels_of: dict[str, set[str]] = {}
    first: dict[str, LabeledRow] = {}
    for text, label in rows:
        form = normal_form(text)
        labels_of.setdefault(form, set()).add(label)
        first.setdefault(form, (text, label))
    kept = [row for form, row in first.items() if form and len(labels_of[form]) == 1]
    conflicting = sum(1 for form, labels in labels_of.items() if form and len(labels) > 1)
    return Distinct(kept, repeats=len(rows) - len(first), conflicting=conflicting)


def pool_quotas(counts: dict[str, int], size: int) -> dict[str, int]:
    """Rows per class in a stratified sample of ``size``: proportional (largest remainders), at least
    MIN_POOL_PER_CLASS, never more than the class has."""
    total = sum(counts.values())
    if size >= total:
        return dict(counts)
    exact = {label: count * size / total for label, count in counts.items()}
    quotas = {label: max(MIN_POOL_PER_CLASS, math.floor(share)) for label, share in exact.items()}
    by_remainder = sorted(counts, key=lambda label: (-(exact[label] - math.floor(exact[label])), label))
    for label in by_remainder[:max(0, size - sum(quotas.values()))]:
        quotas[label] += 1
    return {label: min(quota, counts[label]) for label, quota in quotas.items()}


def split(rows: Sequence[LabeledRow], bootstrap_per_class: int, max_pool: int,
          seed: int) -> tuple[list[LabeledRow], list[LabeledRow]]:
    """(bootstrap, pool): ``bootstrap_per_class`` random rows of every class, and a stratified sample of at most
    ``max_pool`` of the rest (0: all of it); both in a random order fixed by ``seed``."""
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[int]] = {}
    for index, (_, label) in enumerate(rows):
        by_class.setdefault(label, []).append(index)
    needed = bootstrap_per_class + MIN_POOL_PER_CLASS
    small = {label: len(indices) for label, indices in by_class.items() if len(indices) < needed}
    if small:
        raise PrepareError(f"classes {small} have fewer than {needed} distinct rows "
                           f"({bootstrap_per_class} for the bootstrap, {MIN_POOL_PER_CLASS} for the pool)")
    bootstrap: list[int] = []
    rest: dict[str, list[int]] = {}
    for label in sorted(by_class):
        chosen = rng.permutation(by_class[label])
        bootstrap.extend(int(index) for index in chosen[:bootstrap_per_class])
        rest[label] = [int(index) for index in chosen[bootstrap_per_class:]]
    rest_size = sum(len(indices) for indices in rest.values())
    quotas = pool_quotas({label: len(indices) for label, indices in rest.items()}, max_pool or rest_size)
    pool = [index for label in sorted(rest) for index in rest[label][:quotas[label]]]
    return ([rows[index] for index in rng.permutation(bootstrap)],
            [rows[index] for index in rng.permutation(pool)])


def write_labeled_tsv(path: Path, rows: Sequence[LabeledRow]) -> None:
    """alvar's labelled TSV: a ``text``/``label`` header, one unquoted row per line."""
    lines = ["text\tlabel", *(f"{one_line(text)}\t{label}" for text, label in rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _counts(rows: Sequence[LabeledRow]) -> dict[str, int]:
    return dict(Counter(label for _, label in rows).most_common())


def prepare(dataset: PublicDataset[LabeledRow], settings: Settings, out: Path, bootstrap_per_class: int = 5,
            seed: int = 0, max_pool: int = 4000) -> Prepared:
    """Write ``out/pool.tsv``, ``out/bootstrap.tsv`` and ``out/prepared.json`` (where they came from)."""
    if bootstrap_per_class < 1:
        raise PrepareError("--bootstrap-per-class must be at least 1")
    if max_pool < 0:
        raise PrepareError("--max-pool must be 0 (all rows) or more")
    distinct = distinct_rows(load(dataset, settings))
    bootstrap, pool = split(distinct.rows, bootstrap_per_class, max_pool, seed)
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_labeled_tsv(out / POOL_FILE, pool)
        write_labeled_tsv(out / BOOTSTRAP_FILE, bootstrap)
    except OSError as error:
        raise PrepareError(f"cannot write to {out}: {error}") from error
    prepared = Prepared(dataset.name, out / POOL_FILE, out / BOOTSTRAP_FILE, out / CARD_FILE, _counts(pool),
                        _counts(bootstrap), len(distinct.rows), distinct.repeats, distinct.conflicting, seed)
    card = {
        **{key: str(value) if isinstance(value, Path) else value for key, value in asdict(prepared).items()},
        "bootstrap_per_class": bootstrap_per_class, "max_pool": max_pool, "source": dataset.source,
        "licence": dataset.licence, "citation": dataset.citation, "cleaning": dataset.cleaning,
    }
    (out / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return prepared


TEST_FILE = "test.tsv"
ATTRIBUTE_FILE = "attribute.tsv"
COUNTERS = "counter-narrative"
DOES_NOT_COUNTER = "not-counter-narrative"


@dataclass(frozen=True)
class PreparedPairs:
    """What `prepare` wrote for a pair data set: the pair files, R's training file, and their subgroup counts."""

    name: str
    pool: Path
    bootstrap: Path
    test: Path
    attribute: Path
    card: Path
    counts: dict[str, dict[str, int]]
    inputs: int
    repeats: int
    seed: int


def one_pair_per_input(rows: Sequence[PairRow], seed: int) -> tuple[list[PairRow], int]:
    """One random pair of each distinct input (compared in normal form; an input that is only punctuation is left
    out), so that no input is in two splits; and how many rows repeated an input."""
    by_input: dict[str, list[PairRow]] = {}
    for row in rows:
        form = normal_form(row[0])
        if form and normal_form(row[1]):
            by_input.setdefault(form, []).append(row)
    rng = np.random.default_rng(seed)
    kept = [pairs[int(rng.integers(len(pairs)))] for pairs in by_input.values()]
    return kept, len(rows) - len(kept)


def _stratified_take(rows: list[PairRow], size: int, seed: int) -> tuple[list[PairRow], list[PairRow]]:
    """(``size`` rows in proportion to their groups, the rest)."""
    if size >= len(rows):
        return list(rows), []
    groups = [group for _, _, group in rows]
    counts = Counter(groups)
    stratify = groups if min(counts.values()) >= 2 and len(counts) <= min(size, len(rows) - size) else None
    taken, rest = train_test_split(rows, train_size=size, random_state=seed, stratify=stratify)
    return list(taken), list(rest)


def attribute_rows(pairs: Sequence[PairRow], seed: int) -> list[tuple[str, str, str]]:
    """R's training rows (input, output, label): each true pair, then its input with the output of another pair,
    for half of them one of the same group (a hard negative) and for the other half one of another group. The
    first row is a true pair: its label is H unless one is named."""
    rng = np.random.default_rng(seed)
    by_group: dict[str, list[int]] = {}
    for index, (_, _, group) in enumerate(pairs):
        by_group.setdefault(group, []).append(index)
    rows = []
    for index, (text, output, group) in enumerate(pairs):
        rows.append((text, output, COUNTERS))
        same = [other for other in by_group[group] if other != index]
        different = [other for other in range(len(pairs)) if pairs[other][2] != group]
        choices = same if (index % 2 == 0 and same) or not different else different
        if choices:
            rows.append((text, pairs[int(rng.choice(choices))][1], DOES_NOT_COUNTER))
    return rows


def _write_pair_rows(path: Path, rows: Sequence[PairRow]) -> None:
    write_pairs(path, [Pair(str(index), text, output, group) for index, (text, output, group) in enumerate(rows)])


def _write_attribute(path: Path, rows: Sequence[tuple[str, str, str]]) -> None:
    lines = ["input\toutput\tlabel", *(f"{one_line(text)}\t{one_line(output)}\t{label}"
                                        for text, output, label in rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def prepare_pairs(dataset: PublicDataset[PairRow], settings: Settings, out: Path, bootstrap_size: int = 40,
                  test_size: int = 500, max_pool: int = 2000, attribute_size: int = 1000,
                  seed: int = 0) -> PreparedPairs:
    """Write ``out/{pool,bootstrap,test}.tsv`` (id, input, output, group), ``out/attribute.tsv`` (input, output,
    label: R's training file for "the output counters this input") and ``out/prepared.json``.

    One pair per distinct input; test, bootstrap and R's pairs are stratified by group and taken first, the pool
    is at most ``max_pool`` of the rest (0: all of it). No input is in two files."""
    if min(bootstrap_size, test_size, attribute_size) < 1 or max_pool < 0:
        raise PrepareError("--bootstrap-size, --test-size and --attribute-size must be at least 1; "
                           "--max-pool 0 or more")
    pairs, repeats = one_pair_per_input(load(dataset, settings), seed)
    needed = test_size + bootstrap_size + attribute_size + 1
    if len(pairs) < needed:
        raise PrepareError(f"{dataset.name} has {len(pairs)} distinct inputs; test, bootstrap, attribute and a pool "
                           f"need at least {needed}")
    test, rest = _stratified_take(pairs, test_size, seed)
    bootstrap, rest = _stratified_take(rest, bootstrap_size, seed)
    attribute, rest = _stratified_take(rest, attribute_size, seed)
    pool, _ = _stratified_take(rest, max_pool or len(rest), seed)
    files = {"pool": out / POOL_FILE, "bootstrap": out / BOOTSTRAP_FILE, "test": out / TEST_FILE}
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, rows in (("pool", pool), ("bootstrap", bootstrap), ("test", test)):
            _write_pair_rows(files[name], rows)
        _write_attribute(out / ATTRIBUTE_FILE, attribute_rows(attribute, seed))
    except OSError as error:
        raise PrepareError(f"cannot write to {out}: {error}") from error
    counts = {name: dict(Counter(group for _, _, group in rows).most_common())
              for name, rows in (("pool", pool), ("bootstrap", bootstrap), ("test", test), ("attribute", attribute))}
    prepared = PreparedPairs(dataset.name, files["pool"], files["bootstrap"], files["test"], out / ATTRIBUTE_FILE,
                             out / CARD_FILE, counts, len(pairs), repeats, seed)
    card = {
        **{key: str(value) if isinstance(value, Path) else value for key, value in asdict(prepared).items()},
        "bootstrap_size": bootstrap_size, "test_size": test_size, "max_pool": max_pool,
        "attribute_size": attribute_size, "attribute_labels": [COUNTERS, DOES_NOT_COUNTER],
        "source": dataset.source, "licence": dataset.licence, "citation": dataset.citation,
        "cleaning": dataset.cleaning,
    }
    (out / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return prepared
