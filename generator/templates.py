"""The templates: Jinja files beside this module turned into chat messages.

Variations, T(x, k, R):
``system.j2`` frames the task and says that the source text is data; ``<relation>.j2`` asks for k variations
under the relation R; ``follow_up.j2`` asks for the rest when too few survived validation, after an assistant turn
that holds only the variations accepted so far (a refusal or junk is never put back before the model, and the
conversation, hence its cache key, is the same on a re-run). The template id
(``<relation>@<hash of the files>``) goes into every variation's provenance, so a changed prompt is visible.

The teacher of a generative project (:class:`TeacherPrompt`): ``teacher_system.j2`` says that the input is data
(a post that may be hateful or offensive), never instructions; ``teacher.j2`` gives the input in the same
neutralised ``<source>`` block, the required attribute H and its hint, and asks for one output as JSON
(``{"output": "..."}``); after a screened draft, the same file writes a follow-up turn that says why, and never
shows the model its rejected draft. Its id is ``teacher@<hash of the files>``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources

from jinja2 import Environment, StrictUndefined

from alvar.errors import AlvarError

RELATIONS = ("same_label", "contrast")
# Anything a model could read as opening or closing the <source> block: any case, spaces inside the brackets,
# fullwidth brackets, HTML-escaped brackets ("</SOURCE>", "< / source >", "＜source＞", "&lt;/source&gt;").
_SOURCE_TAG = re.compile(r"(<|＜|&lt;)(\s*/?\s*source\b[^<>＜＞&\n]{0,40})(>|＞|&gt;)?", re.IGNORECASE)

# max_tokens = ANSWER_OVERHEAD_TOKENS + n * (ceil(max_chars / CHARS_PER_TOKEN) + ITEM_OVERHEAD_TOKENS).
# English runs about 4 characters a token; 2 leaves room for texts dense in digits, emoji or non-Latin scripts,
# so a variation of the full allowed length is never cut off. Each item adds its quotes, comma and escapes;
# the answer adds '{"variations": [', ']}' and whitespace.
CHARS_PER_TOKEN = 2
ITEM_OVERHEAD_TOKENS = 8
ANSWER_OVERHEAD_TOKENS = 16

Message = dict[str, str]


class TemplateError(AlvarError, ValueError):
    """A relation or template variables that cannot make a prompt; the message says which."""


def _neutralize_delimiters(text: str) -> str:
    """A source text cannot close or reopen its own ``<source>`` block: the brackets of anything that reads as
    the tag become ‹ ›."""
    return _SOURCE_TAG.sub(lambda tag: f"‹{tag.group(2)}{'›' if tag.group(3) else ''}", text)


@cache
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

    def max_tokens(self, count: int | None = None) -> int:
        """The completion budget for an answer of ``count`` variations (k by default) of up to ``max_chars``."""
        variations = self.k if count is None else count
        per_variation = math.ceil(self.max_chars / CHARS_PER_TOKEN) + ITEM_OVERHEAD_TOKENS
        return ANSWER_OVERHEAD_TOKENS + variations * per_variation

    def follow_up(self, kept: Sequence[str], missing: int) -> list[Message]:
        """The request, the variations accepted so far as the assistant's turn, and a request for ``missing``
        more."""
        accepted = json.dumps({"variations": list(kept)}, ensure_ascii=False)
        return [*self.messages(), {"role": "assistant", "content": accepted},
                {"role": "user", "content": self._render("follow_up", kept=len(kept), missing=missing)}]


TEACHER_TEMPLATES = ("teacher_system", "teacher")


@dataclass(frozen=True)
class TeacherPrompt:
    """What to ask the teacher for: one output for ``text`` that has the attribute value ``attribute`` (H)."""

    text: str
    attribute: str
    description: str = ""
    max_chars: int = 1000

    def __post_init__(self) -> None:
        if not self.text.strip():
            raise TemplateError("the input is empty")
        if not self.attribute.strip():
            raise TemplateError("the required attribute is empty")

    @property
    def template_id(self) -> str:
        files = "\0".join(_source(name) for name in TEACHER_TEMPLATES)
        return f"teacher@{hashlib.sha256(files.encode()).hexdigest()[:10]}"

    def _render(self, name: str, reason: str = "") -> str:
        variables = {"text": _neutralize_delimiters(self.text.strip()), "attribute": self.attribute,
                     "description": self.description, "max_chars": self.max_chars, "reason": reason}
        return _environment().from_string(_source(name)).render(**variables).strip()

    def messages(self) -> list[Message]:
        return [{"role": "system", "content": self._render("teacher_system")},
                {"role": "user", "content": self._render("teacher")}]

    def follow_up(self, reason: str) -> list[Message]:
        """The request and a second user turn saying why the last draft could not be used: the draft itself is
        never put back before the model, so the conversation (and its cache key) is the same on a re-run."""
        return [*self.messages(), {"role": "user", "content": self._render("teacher", reason=reason)}]

    def max_tokens(self) -> int:
        """The completion budget for one output of up to ``max_chars`` characters."""
        return ANSWER_OVERHEAD_TOKENS + math.ceil(self.max_chars / CHARS_PER_TOKEN) + ITEM_OVERHEAD_TOKENS
