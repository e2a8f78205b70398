"""What a teacher's draft must pass before a person sees it pre-filled: an output, not blank, not the assistant
speaking, not the input again, not too long, and not judged by a confident R to miss the attribute H.

A draft that fails is asked for again (:mod:`alvar.generator.teacher`); the reason goes into the follow-up turn
and, when every attempt failed, into the task's ``draft_status``.

The answer is read as JSON ``{"output": "..."}`` (the schema :data:`alvar.generator.llm.OUTPUT_SCHEMA` asks of
an endpoint with structured output), fenced or with prose around it. Anything else (no JSON, another shape, a
non-string output) counts as a screened answer, never as a draft.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from alvar.generator.refusals import is_assistant_speaking
from alvar.generator.validation import normal_form

UNREADABLE = "answer without an output"
BLANK = "blank"
REFUSAL = "refusal"
ECHO = "echo of the input"
_FENCE = re.compile(r"```[a-zA-Z0-9_-]*\s*\n?(.*?)```", re.DOTALL)


class Judge(Protocol):
    """R as screening uses it (:class:`alvar.attribute_model.AttributeJudge`; a pair-mode R reads the inputs)."""

    classes_: list[str]
    required: str

    def predict_proba(self, outputs: Sequence[str], inputs: Sequence[str] | None = None) -> np.ndarray: ...


def _output_of(value: Any) -> str | None:
    output = value.get("output") if isinstance(value, dict) else None
    return output if isinstance(output, str) else None


def read_draft(answer: str | None) -> str | None:
    """The output in a teacher's answer, whitespace collapsed, or None when the answer holds none."""
    if not answer:
        return None
    fenced = _FENCE.search(answer)
    text = fenced.group(1) if fenced else answer
    start, end = text.find("{"), text.rfind("}") + 1
    if start < 0 or end <= start:
        return None
    try:
        output = _output_of(json.loads(text[start:end]))
    except json.JSONDecodeError:
        return None
    return " ".join(output.split()) if output is not None else None


def attribute_failure(judge: Judge, draft: str, source: str, confidence: float) -> str | None:
    """Why R rejects the draft of ``source``: a value other than H with probability >= ``confidence``; None when
    it does not."""
    probabilities = judge.predict_proba([draft], [source])[0]
    best = int(np.argmax(probabilities))
    value, probability = judge.classes_[best], float(probabilities[best])
    if value == judge.required or probability < confidence:
        return None
    return f"fails the attribute: R judges it {value!r} ({probability:.2f}), not {judge.required!r}"


def screen_draft(answer: str | None, source: str, max_chars: int, judge: Judge | None = None,
                 confidence: float = 0.9) -> tuple[str | None, str | None]:
    """The draft in a teacher's answer and the reason it cannot be pre-filled (None when it passes; R is consulted
    last, when given). An answer without an output is a refusal when it is the assistant speaking."""
    draft = read_draft(answer)
    if draft is None:
        return None, REFUSAL if answer and is_assistant_speaking(answer) else UNREADABLE
    return draft, _reason(draft, source, max_chars, judge, confidence)


def _reason(draft: str, source: str, max_chars: int, judge: Judge | None, confidence: float) -> str | None:
    form, source_form = normal_form(draft), normal_form(source)
    if not form:
        return BLANK
    if is_assistant_speaking(draft):
        return REFUSAL
    if source_form and f" {source_form} " in f" {form} ":  # the input, whole words, or all of it
        return ECHO
    if len(draft) > max_chars:
        return f"longer than {max_chars} characters"
    return attribute_failure(judge, draft, source, confidence) if judge is not None else None
