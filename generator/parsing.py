"""Reading variations out of an LLM answer: JSON when it is JSON, salvage when it is not.

Endpoints without structured output answer in many shapes: the JSON asked for, JSON in a code fence, JSON cut
off mid-way, a numbered or bulleted list, or prose around any of these. Only strings are ever taken from the
answer: a key such as ``"label"`` in it is ignored, so the label always stays the person's. What is not a variation
(a preamble, an epilogue, or the whole of an answer with neither JSON nor a list) is kept apart as the answer's
prose, so screening can tell an answer that refuses the task from one that merely introduces its list.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_FENCE = re.compile(r"^```[a-zA-Z0-9_-]*\s*\n?(.*?)\n?```\s*$", re.DOTALL)
_STRING_LITERAL = re.compile(r'"((?:[^"\\\n]|\\.)*)"\s*(:)?')
_KEY_BEFORE_COLON = re.compile(r'"((?:[^"\\\n]|\\.)*)"\s*$')
_LIST_MARKER = re.compile(r"^\s*(?:[-*•‣–]|\(?\d{1,3}[.):]|\(?[a-zA-Z][.)])\s+")
_VARIATION_KEYS = ("variations", "texts", "items", "rewrites", "paraphrases", "results")
_TEXT_KEYS = ("text", "variation", "content")


def _item_text(item: Any) -> str | None:
    """A list item: a string, or an object's text field (``{"text": ..., "label": ...}`` gives the text only)."""
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        for key in _TEXT_KEYS:
            if isinstance(item.get(key), str):
                return item[key]
    return None


@dataclass(frozen=True)
class Answer:
    """An LLM answer read: its candidate variations, in order, and the prose around them."""

    variations: list[str]
    prose: str


def _unfenced(answer: str) -> tuple[str, str]:
    """The answer's code block (or the whole answer when it has none) and the text outside that block."""
    stripped = answer.strip()
    match = _FENCE.match(stripped)
    if match:
        return match.group(1).strip(), ""
    fenced = re.search(r"```[a-zA-Z0-9_-]*\s*\n(.*?)```", stripped, re.DOTALL)
    if fenced is None:
        return stripped, ""
    return fenced.group(1).strip(), f"{stripped[: fenced.start()]}\n{stripped[fenced.end():]}".strip()


def _strings(value: Any) -> list[str] | None:
    if isinstance(value, list):
        texts = [_item_text(item) for item in value]
        return [text for text in texts if text is not None] if any(text is not None for text in texts) else None
    if isinstance(value, dict):
        for key in _VARIATION_KEYS:
            if key in value:
                return _strings(value[key])
        lists = [item for item in value.values() if isinstance(item, list)]
        return _strings(lists[0]) if len(lists) == 1 else None
    return None


def _from_json(text: str) -> tuple[list[str], str] | None:
    """The strings of the JSON in ``text`` and the text around that JSON."""
    for start, end in ((0, len(text)), (text.find("{"), text.rfind("}") + 1), (text.find("["), text.rfind("]") + 1)):
        if start < 0 or end <= start:
            continue
        try:
            found = _strings(json.loads(text[start:end]))
        except json.JSONDecodeError:
            continue
        if found is not None:
            return found, f"{text[:start]}\n{text[end:]}".strip()
    return None


def _from_broken_json(text: str) -> list[str]:
    """JSON that does not parse (cut off, trailing commas): the complete strings of its first array, either
    elements or the text fields of element objects; keys and other fields (a ``"label"``) are left out."""
    start = text.find("[")
    values = []
    for match in _STRING_LITERAL.finditer(text, start + 1 if start >= 0 else len(text)):
        if match.group(2):
            continue
        before = text[: match.start()].rstrip()
        if before.endswith(":"):
            key = _KEY_BEFORE_COLON.search(before[:-1])
            if key is None or key.group(1) not in _TEXT_KEYS:
                continue
        try:
            values.append(json.loads(f'"{match.group(1)}"'))
        except json.JSONDecodeError:
            values.append(match.group(1))
    return values


def _from_lines(text: str) -> Answer:
    """A numbered or bulleted list, its unmarked lines (a preamble) being prose. With no markers at all, one
    variation per line, and the whole text is prose too: nothing marks it as a list rather than a reply."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    marked = [line for line in lines if _LIST_MARKER.match(line)]
    chosen = marked or [line for line in lines if not line.endswith(":")]
    variations = [_LIST_MARKER.sub("", line, count=1).strip().strip('"“”').strip() for line in chosen]
    prose = "\n".join(line for line in lines if line not in marked) if marked else "\n".join(lines)
    return Answer(variations, prose)


def read_answer(answer: str | None) -> Answer:
    """The candidate variations in an LLM answer, in order, before any validation, and the prose around them."""
    if not answer or not answer.strip():
        return Answer([], "")
    text, outside = _unfenced(answer)
    parsed = _from_json(text)
    if parsed is not None:
        return Answer(parsed[0], f"{outside}\n{parsed[1]}".strip())
    if text.lstrip().startswith(("{", "[")):
        return Answer(_from_broken_json(text), outside)
    lines = _from_lines(text)
    return Answer(lines.variations, f"{outside}\n{lines.prose}".strip())


def parse_variations(answer: str | None) -> list[str]:
    """The candidate variations in an LLM answer, in order, before any validation."""
    return read_answer(answer).variations
