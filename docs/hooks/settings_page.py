"""MkDocs hook: the settings page gets its table from the code (alvar.settings_reference) at every build."""

from __future__ import annotations

from typing import Any

from alvar.settings_reference import PLACEHOLDER, settings_table


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    if page.file.src_uri != "settings.md":
        return markdown
    if PLACEHOLDER not in markdown:
        raise ValueError(f"docs/settings.md lost its {PLACEHOLDER} line: the settings table has nowhere to go")
    return markdown.replace(PLACEHOLDER, settings_table())
