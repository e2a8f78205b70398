"""The README and the docs site: what a newcomer reads points at pages that exist, and the settings page is the
code's own table. (`mkdocs build --strict` itself runs in .ci/lint.)"""

from __future__ import annotations

import re

import yaml

from alvar.settings import Settings
from alvar.settings_reference import PLACEHOLDER, environment_variable, settings_table
from tests.conftest import REPO

DOCS = REPO / "docs"


def nav_pages(entries: list) -> list[str]:
    pages: list[str] = []
    for entry in entries:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages.extend(nav_pages(value) if isinstance(value, list) else [value])
    return pages


def test_the_settings_table_has_one_row_per_setting_with_its_variable_flag_and_default() -> None:
    rows = settings_table().splitlines()[2:]
    assert len(rows) == len(Settings.model_fields)
    for row, (name, field) in zip(rows, Settings.model_fields.items()):
        variable, flag, default, meaning = (cell.strip() for cell in row.strip("|").split(" | "))
        assert variable == f"`{environment_variable(field)}`" and flag == f"`--{name.replace('_', '-')}`"
        assert meaning.rstrip(" |") == (field.description or "").replace("<", "&lt;").replace("|", "\\|")
        value = field.get_default(call_default_factory=True)
        assert default == ("–" if value in (None, "") else f"`{value}`".replace("|", "\\|"))
    assert "| `ALVAR_EPOCHS` | `--epochs` | `10` |" in settings_table()


def test_the_settings_page_takes_the_generated_table() -> None:
    assert (DOCS / "settings.md").read_text().count(PLACEHOLDER) == 1
    hooks = yaml.safe_load((REPO / "mkdocs.yml").read_text().replace("!!python/name:", ""))["hooks"]
    assert hooks == ["docs/hooks/settings_page.py"]


def test_the_readme_is_short_and_its_links_reach_pages_in_the_site() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 300
    linked = re.findall(r"\]\((docs/[^)#]+)", readme)
    assert linked and [path for path in linked if not (REPO / path).is_file()] == []
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text().replace("!!python/name:", ""))
    in_nav = set(nav_pages(config["nav"]))
    assert {path.removeprefix("docs/") for path in linked if path.endswith(".md")} <= in_nav
    pages = {str(page.relative_to(DOCS)) for page in DOCS.rglob("*.md")}
    assert pages == in_nav, "every page is in the nav, and the nav names no missing page"
