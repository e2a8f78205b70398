"""`alvar datasets prepare`: a public data set as the two files `alvar simulate` reads.

``pool.tsv`` is the labelled pool (simulate halves it into pool and eval, differently per seed) and
``bootstrap.tsv`` a small stratified bootstrap (the same number per class), disjoint from the pool. Texts that
repeat (compared as simulate compares them) are kept once; a text given different labels is left out, since
neither label would be the truth. A large set is cut to a stratified ``max_pool`` so that a simulation stays
quick. The same seed writes the same files.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from alvar.errors import AlvarError
from alvar.generator.validation import normal_form
from alvar.public_data import LabeledRow, PublicDataset, load, one_line
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


def prepare(dataset: PublicDataset, settings: Settings, out: Path, bootstrap_per_class: int = 5, seed: int = 0,
            max_pool: int = 4000) -> Prepared:
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
