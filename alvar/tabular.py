"""The rows of a data file, whatever its format (TSV, CSV, JSONL), for the readers of labelled texts
(:mod:`alvar.datafiles`) and of input/output pairs (:mod:`alvar.pairfiles`): its header, its rows as records,
and the columns a reader looks for."""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

from alvar.errors import AlvarError

ID_COLUMNS = ("id",)
Row = dict[str, object] | list[str]


class DataFileError(AlvarError, ValueError):
    """A data file that cannot be read; the message names the file and, where known, the line."""


def rows(path: Path) -> Iterator[tuple[int, Row]]:
    """(line number, row) pairs; the first row of a delimited file is its header, as a list."""
    suffix = path.suffix.lower()
    with path.open(encoding="utf-8", newline="") as handle:
        if suffix in (".jsonl", ".ndjson"):
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise DataFileError(f"{path}:{number}: not valid JSON ({error.msg})") from None
                if not isinstance(record, dict):
                    raise DataFileError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
                yield number, record
        elif suffix in (".tsv", ".tab", ".txt"):
            reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
            for row in reader:
                yield reader.line_num, row
        elif suffix == ".csv":
            reader = csv.reader(handle)
            for row in reader:
                yield reader.line_num, row
        else:
            raise DataFileError(f"{path}: unknown file type {suffix!r} (use .tsv, .csv or .jsonl)")


def read_header(path: Path) -> tuple[list[str], Iterator[tuple[int, Row]], int]:
    """The file's columns, its rows after the header (a JSONL file's first record included) and the header's
    line number."""
    numbered = rows(path)
    first = next(numbered, None)
    if first is None:
        raise DataFileError(f"{path}: the file is empty")
    header_line, first_row = first
    if isinstance(first_row, dict):
        return list(first_row), itertools.chain([first], numbered), header_line
    return first_row, numbered, header_line


def pick_column(columns: Sequence[str], wanted: str | None, candidates: Sequence[str], role: str,
                path: Path) -> str | None:
    """The column named ``wanted`` (an error when the file lacks it), else the first of ``candidates`` present
    (case and surrounding spaces aside), else None."""
    if wanted is not None:
        if wanted not in columns:
            raise DataFileError(f"{path}: no {role} column {wanted!r}; columns are {list(columns)}")
        return wanted
    by_lower = {column.strip().lower(): column for column in columns}
    return next((by_lower[name] for name in candidates if name in by_lower), None)


def as_record(row: Row, columns: Sequence[str], path: Path, number: int) -> dict[str, object]:
    """A row as {column: value}; a delimited row with the wrong number of fields names its line."""
    if isinstance(row, dict):
        return row
    if len(row) != len(columns):
        raise DataFileError(f"{path}:{number}: expected {len(columns)} fields ({', '.join(columns)}), found {len(row)}")
    return dict(zip(columns, row))
