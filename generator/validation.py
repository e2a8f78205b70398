"""What an LLM wrote must pass before people see it: no blanks, echoes, duplicates, run-ons, refusals or
instructions.

A refusal is the assistant speaking as an assistant (``alvar.generator.refusals``): a variation that is one is
dropped, and an answer whose prose (the text around its variations, or all of it when it is neither JSON nor a
list) is one is dropped whole, since what it offers instead ("here are some safer texts") is not a variation.

Texts compare by a normal form (Unicode NFKC, case folded, punctuation dropped, whitespace collapsed), so
"Help me!" and "help me" are one text. With an embedder, texts whose cosine similarity to the source or to an
already kept variation reaches a threshold are dropped as near-duplicates.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from alvar.generator.parsing import Answer
from alvar.generator.refusals import is_assistant_speaking
from alvar.settings import Settings

# Text that addresses the labeller or the model instead of reading as a post: a steered LLM's tell.
_INSTRUCTION = re.compile(
    r"\b(ignore|disregard|forget)\b.{0,40}\b(instructions?|prompt|rules|above)\b"
    r"|\b(label|classify|categori[sz]e)\s+(this|it|the (text|post|message))\b"
    r"|\bhere (are|is) (the|your|\d+)\b.{0,20}\bvariations?\b",
    re.IGNORECASE,
)

Embed = Callable[[Sequence[str]], np.ndarray]
REFUSAL = "refusal"
UNREADABLE = "answer without variations"


def normal_form(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).casefold()
    kept = "".join(char if not unicodedata.category(char).startswith(("P", "S")) else " " for char in folded)
    return " ".join(kept.split())


@dataclass
class Screened:
    """Variations that passed, in the LLM's order, and how many were dropped for each reason."""

    kept: list[str] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)


def screen_variations(candidates: Sequence[str], source: str, max_chars: int, already_kept: Sequence[str] = (),
                      embed: Embed | None = None, near_duplicate_threshold: float | None = None) -> Screened:
    """Keep each candidate that is new, non-blank, not the source, short enough and not an instruction."""
    screened = Screened()
    seen = {normal_form(source)} | {normal_form(text) for text in already_kept}
    for candidate in candidates:
        text = " ".join(str(candidate).split())
        form = normal_form(text)
        if not form:
            screened.dropped["blank"] += 1
        elif form == normal_form(source):
            screened.dropped["echo of the source"] += 1
        elif form in seen:
            screened.dropped["duplicate"] += 1
        elif len(text) > max_chars:
            screened.dropped[f"longer than {max_chars} characters"] += 1
        elif is_assistant_speaking(text):
            screened.dropped[REFUSAL] += 1
        elif _INSTRUCTION.search(text):
            screened.dropped["instruction, not a text"] += 1
        else:
            seen.add(form)
            screened.kept.append(text)
    if embed is not None and near_duplicate_threshold is not None and screened.kept:
        _drop_near_duplicates(screened, source, list(already_kept), embed, near_duplicate_threshold)
    return screened


def screen_answer(answer: Answer, source: str, max_chars: int, already_kept: Sequence[str] = (),
                  embed: Embed | None = None, near_duplicate_threshold: float | None = None) -> Screened:
    """Screen an answer's variations; an answer that refuses in its prose has all of them dropped as refusals
    (at least one), and an answer with no variations at all counts once as such."""
    if answer.prose and is_assistant_speaking(answer.prose):
        return Screened(dropped=Counter({REFUSAL: max(1, len(answer.variations))}))
    if not answer.variations:
        return Screened(dropped=Counter({UNREADABLE: 1}))
    return screen_variations(answer.variations, source, max_chars, already_kept, embed, near_duplicate_threshold)


def _drop_near_duplicates(screened: Screened, source: str, already_kept: list[str], embed: Embed,
                          threshold: float) -> None:
    vectors = embed([source, *already_kept, *screened.kept])
    vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    reference = list(range(1 + len(already_kept)))
    kept = []
    for offset, text in enumerate(screened.kept):
        index = 1 + len(already_kept) + offset
        if float(np.max(vectors[reference] @ vectors[index])) >= threshold:
            screened.dropped[f"near-duplicate (cosine >= {threshold:g})"] += 1
            continue
        reference.append(index)
        kept.append(text)
    screened.kept = kept


def near_duplicate_embed(settings: Settings) -> Embed | None:
    """A new embedder for near-duplicate screening, its model loaded now; None when that screening is off.

    A worker keeps one in its :class:`WorkerResources`; `alvar generate` and `alvar simulate` build one for
    their run.
    """
    if settings.near_duplicate_threshold is None:
        return None
    from alvar.embedder import settings_embedder

    embedder = settings_embedder(settings)
    embedder.encoder  # noqa: B018 - load the model now (under the caller's lock, in a worker)
    return embedder.embed
