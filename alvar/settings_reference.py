"""The settings reference: one Markdown table row per field of :class:`~alvar.settings.Settings`.

The docs site's settings page is this table (a MkDocs hook, ``docs/hooks/settings_page.py``, puts it in place at
build time), so the page cannot drift from the code.
"""

from __future__ import annotations

from typing import Any

from pydantic.fields import FieldInfo

from alvar.settings import Settings

PLACEHOLDER = "<!-- settings-table -->"
"""Where the settings page takes the table."""


def environment_variable(field: FieldInfo) -> str:
    return str(field.validation_alias.choices[0])  # type: ignore[union-attr]


def _cell(text: str) -> str:
    """Table-safe: a pipe would end the cell, a line break the row."""
    return text.replace("|", "\\|").replace("\n", " ")


def _text(text: str) -> str:
    """Prose in a cell: ``MODEL_DIR/<version>/`` must not read as an HTML tag."""
    return _cell(text).replace("<", "&lt;")


def _default(field: FieldInfo) -> str:
    value: Any = field.get_default(call_default_factory=True)
    if value is None or value == "":
        return "–"
    return f"`{_cell(str(value))}`"


def settings_table() -> str:
    """Environment variable, global flag, default and meaning of every setting, in the order Settings declares."""
    rows = ["| environment | flag | default | meaning |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        rows.append(f"| `{environment_variable(field)}` | `{flag}` | {_default(field)} | "
                    f"{_text(field.description or '')} |")
    return "\n".join(rows) + "\n"
