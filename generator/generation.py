"""One generation: prompt the LLM, parse, screen, ask once more when too few survived, keep k.

Only what passed screening is cached, as the answer to the request that produced it: the accepted variations of
an answer (JSON, at most the number asked for). An answer from which nothing survived is not cached, so the next
run asks the LLM again. The follow-up request shows the model the variations accepted so far, never its raw
answer, so its cache key is the same on a re-run and a refusal is not put back in front of the model.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from alvar.generator.llm import ChatClient, Usage
from alvar.generator.parsing import read_answer
from alvar.generator.templates import Message, VariationPrompt
from alvar.generator.validation import Embed, screen_answer


@dataclass
class Generation:
    """The k (or fewer: ``shortfall``) variations that passed, and what it took to get them."""

    variations: list[str]
    requested: int
    template_id: str
    model: str
    usage: Usage = field(default_factory=Usage)
    dropped: Counter[str] = field(default_factory=Counter)

    @property
    def shortfall(self) -> int:
        return self.requested - len(self.variations)

    def summary(self) -> dict[str, Any]:
        return {"variations": len(self.variations), "requested": self.requested, "shortfall": self.shortfall,
                "dropped": dict(self.dropped), "template": self.template_id, "llm_model": self.model,
                **self.usage.as_dict()}


def _ask(generation: Generation, client: ChatClient, messages: list[Message], wanted: int, prompt: VariationPrompt,
         embed: Embed | None, near_duplicate_threshold: float | None) -> None:
    """One request for ``wanted`` variations: what passes joins ``generation`` and is cached as the answer."""
    answer = client.complete(messages, prompt.max_tokens(wanted))
    generation.usage += answer.usage
    screened = screen_answer(read_answer(answer.content), prompt.text, prompt.max_chars,
                             already_kept=generation.variations, embed=embed,
                             near_duplicate_threshold=near_duplicate_threshold)
    generation.dropped.update(screened.dropped)
    accepted = screened.kept[:wanted]
    if len(screened.kept) > wanted:
        generation.dropped["more than k"] += len(screened.kept) - wanted
    generation.variations += accepted
    if accepted and not answer.usage.cached:
        client.remember(messages, json.dumps({"variations": accepted}, ensure_ascii=False))


def generate(prompt: VariationPrompt, client: ChatClient, embed: Embed | None = None,
             near_duplicate_threshold: float | None = None, into: Generation | None = None) -> Generation:
    """Ask for ``prompt.k`` variations; one follow-up request for the rest when too few pass screening.

    ``into`` is filled as the requests go, so a caller still knows what was spent when a request raises.
    """
    generation = into if into is not None else Generation([], prompt.k, prompt.template_id, client.model)
    _ask(generation, client, prompt.messages(), prompt.k, prompt, embed, near_duplicate_threshold)
    if generation.shortfall > 0:
        _ask(generation, client, prompt.follow_up(generation.variations, generation.shortfall),
             generation.shortfall, prompt, embed, near_duplicate_threshold)
    return generation
