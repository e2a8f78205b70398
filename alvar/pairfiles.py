"""Reading (input, output) pair files for generative projects: TSV, CSV and JSONL, read as :mod:`alvar.datafiles`
reads labelled files.

A pool file has inputs only; a training or test file has an output per input; either may have a group column
(the subgroup, such as the target of a hateful post, that evenness is measured over). Rows with a blank input are
dropped and counted; a blank output or group reads as missing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from alvar.tabular import ID_COLUMNS, DataFileError, as_record, pick_column, read_header

log = logging.getLogger(__name__)

INPUT_COLUMNS = ("input", "text")
OUTPUT_COLUMNS = ("output",)
GROUP_COLUMNS = ("group",)


@dataclass(frozen=True)
class Pair:
    """One row: its id (the id column, else the row number), its input, its output and its subgroup."""

    id: str
    input: str
    output: str | None = None
    group: str | None = None


@dataclass(frozen=True)
class PairFile:
    """The rows of one pair file, the columns they were read from, and what was repaired."""

    path: Path
    pairs: list[Pair]
    input_column: str = "input"
    output_column: str | None = None
    group_column: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def has_outputs(self) -> bool:
        """Every pair has an output (a reference, or a training target)."""
        return bool(self.pairs) and all(pair.output is not None for pair in self.pairs)

    @property
    def has_groups(self) -> bool:
        """Every pair has a subgroup."""
        return bool(self.pairs) and all(pair.group is not None for pair in self.pairs)

    @property
    def inputs(self) -> list[str]:
        return [pair.input for pair in self.pairs]

    @property
    def outputs(self) -> list[str]:
        """The outputs; raises when a pair has none."""
        if not self.has_outputs:
            raise DataFileError(f"{self.path}: not every row has an output (column "
                                f"{self.output_column or '/'.join(OUTPUT_COLUMNS)}); name it with --output-col")
        return [pair.output for pair in self.pairs]  # type: ignore[misc]

    @property
    def groups(self) -> list[str]:
        """The subgroups; raises when a pair has none."""
        if not self.has_groups:
            raise DataFileError(f"{self.path}: not every row has a group (column "
                                f"{self.group_column or '/'.join(GROUP_COLUMNS)}); name it with --group-col")
        return [pair.group for pair in self.pairs]  # type: ignore[misc]

    def __len__(self) -> int:
        return len(self.pairs)


def _optional(record: dict[str, object], column: str | None) -> str | None:
    if column is None:
        return None
    value = str(record.get(column) or "").strip()
    return value or None


def read_pairs(path: str | Path, input_col: str | None = None, output_col: str | None = None,
               group_col: str | None = None) -> PairFile:
    """Read a TSV/CSV/JSONL file of inputs, with outputs and groups when it has those columns."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{path}: no such file")
    columns, records, _ = read_header(path)
    input_column = pick_column(columns, input_col, INPUT_COLUMNS, "input", path)
    if input_column is None:
        raise DataFileError(f"{path} has no input column (looked for {', '.join(INPUT_COLUMNS)}; columns are "
                            f"{list(columns)}); name one with --input-col")
    output_column = pick_column(columns, output_col, OUTPUT_COLUMNS, "output", path)
    group_column = pick_column(columns, group_col, GROUP_COLUMNS, "group", path)
    id_column = pick_column(columns, None, ID_COLUMNS, "id", path)
    pairs: list[Pair] = []
    blank: list[int] = []
    for number, row in records:
        record = as_record(row, columns, path, number)
        text = str(record.get(input_column) or "").strip()
        if not text:
            blank.append(number)
            continue
        given_id = record.get(id_column) if id_column else None
        pairs.append(Pair(id=str(given_id) if given_id not in (None, "") else str(len(pairs)), input=text,
                          output=_optional(record, output_column), group=_optional(record, group_column)))
    if not pairs:
        raise DataFileError(f"{path}: no rows with an input (column {input_column!r})")
    notes = [f"skipped {len(blank)} row(s) with a blank input (line(s) {', '.join(map(str, blank))})"] if blank else []
    for note in notes:
        log.warning("%s: %s", path, note)
    return PairFile(path, pairs, input_column, output_column, group_column, notes)


def write_pairs(path: Path, pairs: Sequence[Pair]) -> None:
    """A pair TSV (unquoted, whitespace collapsed): ``id``, ``input``, and ``output``/``group`` when any pair has
    them."""
    with_output = any(pair.output is not None for pair in pairs)
    with_group = any(pair.group is not None for pair in pairs)
    header = ["id", "input", *(["output"] if with_output else []), *(["group"] if with_group else [])]
    lines = ["\t".join(header)]
    for pair in pairs:
        cells = [pair.id, pair.input, *([pair.output or ""] if with_output else []),
                 *([pair.group or ""] if with_group else [])]
        lines.append("\t".join(" ".join(cell.split()) for cell in cells))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@dataclass(frozen=True)
class PairColumns:
    """Which columns of a pair file hold the input, output and subgroup (None: the usual names)."""

    input_col: str | None = None
    output_col: str | None = None
    group_col: str | None = None

    @property
    def given(self) -> bool:
        """Whether a person named any of them (which makes a project generative)."""
        return any((self.input_col, self.output_col, self.group_col))

    def read(self, path: str | Path) -> PairFile:
        return read_pairs(path, self.input_col, self.output_col, self.group_col)
