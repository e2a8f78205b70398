"""How many variations one human label gets: the variation policy (ALVAR_VARIATION_POLICY).

``fixed`` gives every label k = ALVAR_VARIATIONS, as the paper does. ``balance`` aims the dataset (human labels
plus current variations) at equal class counts: a label gets k plus how far its class lies below the mean count
over the project's classes (fewer when above it), kept within ALVAR_VARIATIONS_MIN..ALVAR_VARIATIONS_MAX. A class
at the mean gets k, so on an even dataset balance spends what fixed spends; a class the selection rarely reaches
gets up to the maximum with each label, and one it over-samples as few as the minimum. With ALVAR_RELATION
contrast and no ALVAR_CONTRAST_LABEL, balance aims contrast variations at the rarest other class, and their k
is that class's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

from alvar.generator.prompts import variation_prompt
from alvar.generator.templates import VariationPrompt
from alvar.settings import Settings

FIXED = "fixed"
BALANCE = "balance"


@dataclass(frozen=True)
class VariationBudget:
    """The k one human label gets, and why (a variation's provenance)."""

    k: int
    reason: str


def balanced_k(counts: Mapping[str, int], label: str, k: int, minimum: int, maximum: int) -> VariationBudget:
    """k plus the label's deficit against the mean of ``counts`` (every class of the project, zeros included),
    rounded half up, within [minimum, maximum]."""
    if not counts:
        raise ValueError("balanced_k needs the count of at least one class")
    mean = sum(counts.values()) / len(counts)
    have = counts.get(label, 0)
    chosen = min(maximum, max(minimum, k + math.floor(mean - have + 0.5)))
    return VariationBudget(chosen, f"balance: {label} {have} vs mean {mean:.1f} → k {chosen}")


def fixed_budget(settings: Settings) -> VariationBudget:
    return VariationBudget(settings.variations, f"fixed: k {settings.variations}")


def variation_budget(settings: Settings, label: str, counts: Mapping[str, int] | None) -> VariationBudget:
    """The k for a human label of ``label`` under the settings' policy; ``counts`` (the dataset so far by class)
    is read only under ``balance``."""
    if settings.variation_policy == FIXED:
        return fixed_budget(settings)
    if counts is None:
        raise ValueError("the balance policy needs the class counts")
    return balanced_k(counts, label, settings.variations, settings.variations_min, settings.variations_max)


def budgeted_prompt(settings: Settings, descriptions: Mapping[str, str], text: str, label: str, task_id: int,
                    counts: Mapping[str, int] | None) -> tuple[VariationPrompt | None, VariationBudget]:
    """The request for ``text`` (labelled ``label`` by a person) with the k the policy gives the class its
    variations carry (the person's label, or the contrast target: under balance, with no ALVAR_CONTRAST_LABEL,
    the rarest other class); no request when that k is 0."""
    prompt = variation_prompt(settings, descriptions, text, label, task_id,
                              counts if settings.variation_policy == BALANCE else None)
    budget = variation_budget(settings, prompt.variation_label, counts)
    return (replace(prompt, k=budget.k) if budget.k else None), budget
