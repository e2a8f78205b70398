"""Label Studio labeling configs shipped with alvar (XML files beside this module)."""

from __future__ import annotations

from importlib import resources


def load(name: str) -> str:
    """The XML of a shipped config by name, e.g. ``load("annotate")``."""
    return resources.files(__package__).joinpath(f"{name}.xml").read_text(encoding="utf-8")
