"""One generation: prompt the LLM, parse, screen, ask once more when too few survived, keep k."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from alvar.generator.llm import ChatClient, Usage
from alvar.generator.parsing import parse_variations
from alvar.generator.templates import VariationPrompt
from alvar.generator.validation import Embed, screen_variations


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


def generate(prompt: VariationPrompt, client: ChatClient, embed: Embed | None = None,
             near_duplicate_threshold: float | None = None, into: Generation | None = None) -> Generation:
    """Ask for ``prompt.k`` variations; one follow-up request for the rest when too few pass screening.

    ``into`` is filled as the requests go, so a caller still knows what was spent when a request raises.
    """
    generation = into if into is not None else Generation([], prompt.k, prompt.template_id, client.model)
    answer = client.complete(prompt.messages())
    generation.usage += answer.usage
    screened = screen_variations(parse_variations(answer.content), prompt.text, prompt.max_chars,
                                 embed=embed, near_duplicate_threshold=near_duplicate_threshold)
    generation.dropped.update(screened.dropped)
    generation.variations = screened.kept[: prompt.k]
    if len(screened.kept) > prompt.k:
        generation.dropped["more than k"] += len(screened.kept) - prompt.k
    if generation.shortfall > 0:
        follow_up = client.complete(prompt.follow_up(answer.content, len(generation.variations), generation.shortfall))
        generation.usage += follow_up.usage
        more = screen_variations(parse_variations(follow_up.content), prompt.text, prompt.max_chars,
                                 already_kept=generation.variations, embed=embed,
                                 near_duplicate_threshold=near_duplicate_threshold)
        generation.dropped.update(more.dropped)
        missing = generation.shortfall
        generation.variations += more.kept[:missing]
        if len(more.kept) > missing:
            generation.dropped["more than k"] += len(more.kept) - missing
    return generation
