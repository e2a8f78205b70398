"""The one prompt builder: the job, `alvar generate` and `alvar simulate` all ask for variations through
:func:`variation_prompt`, so ALVAR_RELATION, ALVAR_CONTRAST_LABEL and the contrast rotation mean the same
everywhere."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from alvar.errors import AlvarError
from alvar.generator.templates import VariationPrompt
from alvar.settings import Settings


class ContrastLabelError(AlvarError, ValueError):
    """ALVAR_CONTRAST_LABEL names a class that is not a label of the project (a configuration error)."""


def check_contrast_label(settings: Settings, labels: Sequence[str]) -> None:
    """With relation=contrast, ALVAR_CONTRAST_LABEL (when set) must be one of the project's ``labels``."""
    if settings.relation == "contrast" and settings.contrast_label and settings.contrast_label not in labels:
        raise ContrastLabelError(f"ALVAR_CONTRAST_LABEL {settings.contrast_label!r} is not a label of the project "
                                 f"(labels: {', '.join(labels) or 'none'})")


def contrast_target(settings: Settings, labels: Sequence[str], label: str, task_id: int,
                    counts: Mapping[str, int] | None = None) -> str | None:
    """The class contrast variations should carry: ALVAR_CONTRAST_LABEL, else, given the dataset's class
    ``counts`` (the balance policy), the rarest other label (the first in config order on a tie), else the other
    labels in turn (by task id). None when the relation is same_label, or when the target is the person's label
    itself (then the variations are same_label ones)."""
    check_contrast_label(settings, labels)
    if settings.relation != "contrast":
        return None
    if settings.contrast_label:
        return settings.contrast_label if settings.contrast_label != label else None
    others = [other for other in labels if other != label]
    if others and counts is not None:
        return min(others, key=lambda other: counts.get(other, 0))
    return others[task_id % len(others)] if others else None


def variation_prompt(settings: Settings, descriptions: Mapping[str, str], text: str, label: str,
                     task_id: int = 0, counts: Mapping[str, int] | None = None) -> VariationPrompt:
    """The request for ``settings.variations`` variations of ``text``, labelled ``label`` by a person.

    ``descriptions`` maps each label of the project, in config order, to its description ("" when none); the
    order is the contrast rotation's. ``task_id`` picks the contrast target when ALVAR_CONTRAST_LABEL is unset,
    unless the dataset's class ``counts`` are given: then the rarest other class is the target.
    """
    target = contrast_target(settings, list(descriptions), label, task_id, counts)
    return VariationPrompt(text=text, label=label, k=settings.variations,
                           relation="contrast" if target is not None else "same_label",
                           description=descriptions.get(label, ""), target_label=target,
                           target_description=descriptions.get(target, "") if target else "",
                           max_chars=settings.max_variation_chars)
