"""The template T(x, k, R): Jinja files beside this module turned into chat messages.

``system.j2`` frames the task and says that the source text is data; ``<relation>.j2`` asks for k variations
under the relation R; ``follow_up.j2`` asks for the rest when too few survived validation. The template id
(``<relation>@<hash of the files>``) goes into every variation's provenance, so a changed prompt is visible.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from jinja2 import Environment, StrictUndefined

RELATIONS = ("same_label", "contrast")
SOURCE_DELIMITERS = ("<source>", "</source>")

Message = dict[str, str]


class TemplateError(ValueError):
    """A relation or template variables that cannot make a prompt; the message says which."""


def _neutralize_delimiters(text: str) -> str:
    """A source text cannot close or reopen its own ``<source>`` block."""
    for tag in SOURCE_DELIMITERS:
        text = text.replace(tag, tag.replace("<", "‹").replace(">", "›"))
    return text


@lru_cache(maxsize=None)
def _source(name: str) -> str:
    return resources.files(__package__).joinpath("templates", f"{name}.j2").read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def _environment() -> Environment:
    return Environment(undefined=StrictUndefined, keep_trailing_newline=False, autoescape=False)


@dataclass(frozen=True)
class VariationPrompt:
    """What to ask for: k variations of ``text`` (labelled ``label`` by a person) under ``relation``."""

    text: str
    label: str
    k: int
    relation: str = "same_label"
    description: str = ""
    target_label: str | None = None
    target_description: str = ""
    max_chars: int = 400

    def __post_init__(self) -> None:
        if self.relation not in RELATIONS:
            raise TemplateError(f"unknown relation {self.relation!r}: use one of {', '.join(RELATIONS)}")
        if self.relation == "contrast" and not self.target_label:
            raise TemplateError("the contrast relation needs a target label (the class the variations should carry)")
        if self.k < 1:
            raise TemplateError("k must be at least 1")
        if not self.text.strip():
            raise TemplateError("the source text is empty")

    @property
    def template_id(self) -> str:
        files = "\0".join(_source(name) for name in ("system", self.relation, "follow_up"))
        return f"{self.relation}@{hashlib.sha256(files.encode()).hexdigest()[:10]}"

    @property
    def variation_label(self) -> str:
        """The label variations are pre-labelled with: the person's, or the contrast target."""
        return self.target_label if self.relation == "contrast" and self.target_label else self.label

    def _render(self, name: str, **extra: object) -> str:
        variables = {"text": _neutralize_delimiters(self.text.strip()), "label": self.label, "k": self.k,
                     "description": self.description, "target_label": self.target_label or "",
                     "target_description": self.target_description, "max_chars": self.max_chars, **extra}
        return _environment().from_string(_source(name)).render(**variables).strip()

    def messages(self) -> list[Message]:
        return [{"role": "system", "content": self._render("system")},
                {"role": "user", "content": self._render(self.relation)}]

    def follow_up(self, previous_answer: str, kept: int, missing: int) -> list[Message]:
        """The conversation so far plus a request for ``missing`` more variations."""
        return [*self.messages(), {"role": "assistant", "content": previous_answer},
                {"role": "user", "content": self._render("follow_up", kept=kept, missing=missing)}]
