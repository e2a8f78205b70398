"""Reading labeled or unlabeled text files: TSV, CSV and JSONL.

The released safety dataset is read as it is: its TSV fields are never quoted (titles may start with a
quote character), one file names its text column with a leftover prompt, and some labels carry trailing
spaces. Such dirt is repaired and reported; a row that cannot be read names its file and line.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from alvar.tabular import ID_COLUMNS, DataFileError, as_record, pick_column, read_header

log = logging.getLogger(__name__)

TEXT_COLUMNS = ("text", "title", "input")
LABEL_COLUMNS = ("label", "category")


@dataclass(frozen=True)
class Example:
    """One row: its id (the id column, else the row number), its text and its label (None when unlabeled)."""

    id: str
    text: str
    label: str | None


@dataclass
class Dataset:
    """The rows of one file and how its columns were understood."""

    path: Path
    examples: list[Example]
    text_column: str
    label_column: str | None
    notes: list[str] = field(default_factory=list)

    @property
    def texts(self) -> list[str]:
        return [example.text for example in self.examples]

    @property
    def labels(self) -> list[str]:
        """The labels; raises when the file has none."""
        if self.label_column is None:
            raise DataFileError(f"{self.path}: no label column (looked for {', '.join(LABEL_COLUMNS)})")
        return [example.label for example in self.examples]  # type: ignore[misc]

    def __len__(self) -> int:
        return len(self.examples)


def _text_column(columns: Sequence[str], wanted: str | None, path: Path, notes: list[str]) -> str:
    chosen = pick_column(columns, wanted, TEXT_COLUMNS, "text", path)
    if chosen is not None:
        return chosen
    if len(columns) >= 2 and columns[0].strip().lower() in ID_COLUMNS:
        notes.append(f"no text column named {'/'.join(TEXT_COLUMNS)}; using the second column {columns[1]!r}")
        return columns[1]
    raise DataFileError(
        f"{path}: no text column (looked for {', '.join(TEXT_COLUMNS)}; columns are {list(columns)}); "
        "name one with --text-col"
    )


def read_dataset(
    path: str | Path,
    text_col: str | None = None,
    label_col: str | None = None,
    require_labels: bool = False,
) -> Dataset:
    """Read a TSV/CSV/JSONL file of texts, with labels when it has a label column."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{path}: no such file")
    columns, records, header_line = read_header(path)
    notes: list[str] = []
    text_column = _text_column(columns, text_col, path, notes)
    label_column = pick_column(columns, label_col, LABEL_COLUMNS, "label", path)
    if require_labels and label_column is None:
        raise DataFileError(f"{path}: no label column (looked for {', '.join(LABEL_COLUMNS)}); "
                            "name one with --label-col")
    id_column = pick_column(columns, None, ID_COLUMNS, "id", path)

    examples: list[Example] = []
    stripped = 0
    empty_lines: list[int] = []
    for number, row in records:
        record = as_record(row, columns, path, number)
        text = str(record.get(text_column) or "").strip()
        if not text:
            empty_lines.append(number)
            continue
        label: str | None = None
        if label_column is not None:
            raw_label = record.get(label_column)
            label = str(raw_label).strip() if raw_label is not None else ""
            if not label:
                raise DataFileError(f"{path}:{number}: empty label in column {label_column!r}")
            stripped += label != raw_label
        given_id = record.get(id_column) if id_column else None
        example_id = str(given_id) if given_id not in (None, "") else str(len(examples))
        examples.append(Example(id=example_id, text=text, label=label))
    if not examples:
        raise DataFileError(f"{path}: no rows after the header (line {header_line})")
    if empty_lines:
        lines = ", ".join(map(str, empty_lines))
        notes.append(f"skipped {len(empty_lines)} row(s) with an empty text (line(s) {lines})")
    if stripped:
        notes.append(f"stripped surrounding whitespace from {stripped} label(s)")
    for note in notes:
        log.warning("%s: %s", path, note)
    return Dataset(path=path, examples=examples, text_column=text_column, label_column=label_column, notes=notes)


def read_labeled(paths: Sequence[str | Path], text_col: str | None = None, label_col: str | None = None) -> Dataset:
    """Several labeled files as one dataset (rows in file order)."""
    datasets = [read_dataset(path, text_col, label_col, require_labels=True) for path in paths]
    merged = datasets[0]
    return Dataset(
        path=merged.path,
        examples=[example for dataset in datasets for example in dataset.examples],
        text_column=merged.text_column,
        label_column=merged.label_column,
        notes=[note for dataset in datasets for note in dataset.notes],
    )
