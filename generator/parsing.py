"""Reading variations out of an LLM answer: JSON when it is JSON, salvage when it is not.

Endpoints without structured output answer in many shapes: the JSON asked for, JSON in a code fence, JSON cut
off mid-way, a numbered or bulleted list, or prose around any of these. Only strings are ever taken from the
answer: a key such as ``"label"`` in it is ignored, so the label always stays the person's.
"""

from __future__ import annotations

import json
import re
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


def _unfenced(answer: str) -> str:
    stripped = answer.strip()
    match = _FENCE.match(stripped)
    if match:
        return match.group(1).strip()
    fenced = re.search(r"```[a-zA-Z0-9_-]*\s*\n(.*?)```", stripped, re.DOTALL)
    return fenced.group(1).strip() if fenced else stripped


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


def _from_json(text: str) -> list[str] | None:
    for candidate in (text, text[text.find("{"): text.rfind("}") + 1], text[text.find("["): text.rfind("]") + 1]):
        if not candidate:
            continue
        try:
            found = _strings(json.loads(candidate))
        except json.JSONDecodeError:
            continue
        if found is not None:
            return found
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


def _from_lines(text: str) -> list[str]:
    """A numbered or bulleted list; with no markers at all, one variation per line. Preambles are dropped."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    marked = [line for line in lines if _LIST_MARKER.match(line)]
    chosen = marked or [line for line in lines if not line.endswith(":")]
    return [_LIST_MARKER.sub("", line, count=1).strip().strip('"“”').strip() for line in chosen]


def parse_variations(answer: str | None) -> list[str]:
    """The candidate variations in an LLM answer, in order, before any validation."""
    if not answer or not answer.strip():
        return []
    text = _unfenced(answer)
    parsed = _from_json(text)
    if parsed is not None:
        return parsed
    if text.lstrip().startswith(("{", "[")):
        return _from_broken_json(text)
    return _from_lines(text)
