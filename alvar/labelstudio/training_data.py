"""Which Label Studio tasks the learner trains on, and with which label.

The task fields these rules read are defined in :mod:`alvar.labelstudio.task_data`: a variation (``origin``
``"llm"``) carries its ``prelabel`` and a ``variation_status``; ``strategy="bootstrap"`` marks the seed labels
`alvar init` imports. Reviewers mark a variation ``valid`` or ``invalid`` in a ``<Choices name="validity">``
control of their annotation.

A human-origin task trains with the label of its latest non-cancelled annotation. A variation trains only when
its latest annotation marks it ``valid``, with the label that annotation confirms or corrects, and only while it
is not stale. Labels that are not choices of the project's config count as no label (see
:meth:`ChoicesControl.chosen_label`).

Several annotators: a task's *current labels* are the distinct labels of each annotator's latest non-cancelled
annotation. Variations exist per (task, current label): people who agree share one set, people who disagree each
get a set for their label, and a set goes stale only when no annotator's latest annotation carries its label.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from alvar.labelstudio.choices_control import ChoicesControl
from alvar.labelstudio.task_data import (
    BOOTSTRAP_STRATEGY,
    LLM_ORIGIN,
    STALE_STATUS,
    BatchFields,
    VariationFields,
    data_of,
)

VALIDITY_FROM_NAME = "validity"
VALID_CHOICE = "valid"


def is_variation(task: Mapping[str, Any]) -> bool:
    return VariationFields.of(task).origin == LLM_ORIGIN


def is_stale(task: Mapping[str, Any]) -> bool:
    return VariationFields.of(task).variation_status == STALE_STATUS


def prelabel(task: Mapping[str, Any], control: ChoicesControl) -> str | None:
    """A variation's pre-label when it is one of the control's labels, else None."""
    fields = VariationFields.of(task)
    return fields.prelabel if fields.origin == LLM_ORIGIN and fields.prelabel in control.labels else None


def is_bootstrap(task: Mapping[str, Any]) -> bool:
    """A seed label imported by `alvar init`: trained on, never turned into variations."""
    return BatchFields.of(task).strategy == BOOTSTRAP_STRATEGY


def _recency(annotation: Mapping[str, Any]) -> tuple[str, int]:
    identifier = annotation.get("id")
    return str(annotation.get("updated_at") or ""), identifier if isinstance(identifier, int) else 0


def _kept_annotations(task: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    annotations = task.get("annotations")
    return [a for a in annotations if isinstance(a, Mapping) and not a.get("was_cancelled")] \
        if isinstance(annotations, list) else []


def latest_annotation(task: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The most recently updated annotation that was not skipped, or None."""
    return max(_kept_annotations(task), key=_recency, default=None)


def _annotator(annotation: Mapping[str, Any]) -> Any:
    """Who made an annotation: Label Studio gives ``completed_by`` as a user id, or as an object with one."""
    author = annotation.get("completed_by")
    return author.get("id") if isinstance(author, Mapping) else author


def current_labels(task: Mapping[str, Any], control: ChoicesControl) -> list[str]:
    """The distinct labels of each annotator's latest non-skipped annotation, most recent first."""
    latest: dict[Any, Mapping[str, Any]] = {}
    for annotation in sorted(_kept_annotations(task), key=_recency):
        latest[_annotator(annotation)] = annotation
    labels: list[str] = []
    for annotation in sorted(latest.values(), key=_recency, reverse=True):
        label = control.chosen_label(annotation.get("result"))
        if label is not None and label not in labels:
            labels.append(label)
    return labels


def _validity(result: Any) -> str | None:
    for region in result if isinstance(result, list) else []:
        if isinstance(region, Mapping) and region.get("from_name") == VALIDITY_FROM_NAME:
            value = region.get("value")
            choices = value.get("choices") if isinstance(value, Mapping) else None
            return str(choices[0]) if isinstance(choices, list) and choices else None
    return None


@dataclass(frozen=True)
class LabelledItem:
    """A task that carries a label people stand behind (or, for an unreviewed variation, its pre-label)."""

    task: Mapping[str, Any]
    text: str
    label: str
    verified: bool

    @property
    def is_variation(self) -> bool:
        return is_variation(self.task)


def labelled_items(tasks: Iterable[Mapping[str, Any]], control: ChoicesControl,
                   include_unverified: bool = False) -> Iterator[LabelledItem | Mapping[str, Any]]:
    """The rule training and export share. Yields a :class:`LabelledItem` for every human-labelled task and
    every variation whose latest annotation marks it valid (not stale), with the label people left; with
    ``include_unverified``, also current variations nobody has judged valid or invalid yet (their reviewer's
    class, else their pre-label). Every other variation (stale, invalid, unjudged) is yielded as the bare
    task, so callers can count what was left out."""
    for task in tasks:
        text = data_of(task).get(control.data_key)
        annotation = latest_annotation(task)
        label = control.chosen_label(annotation.get("result")) if annotation is not None else None
        if text is None:
            continue
        if not is_variation(task):
            if label is not None:
                yield LabelledItem(task, str(text), label, True)
            continue
        if is_stale(task):
            yield task
            continue
        validity = _validity(annotation.get("result")) if annotation is not None else None
        if annotation is not None and validity is not None:
            valid = label is not None and validity == VALID_CHOICE
            yield LabelledItem(task, str(text), label, True) if valid else task  # type: ignore[arg-type]
        elif include_unverified and (label or prelabel(task, control)) is not None:
            yield LabelledItem(task, str(text), label or prelabel(task, control), False)  # type: ignore[arg-type]
        else:
            yield task


@dataclass
class TrainingSet:
    """Texts and labels to train on, with counts of what was used and left out (``skipped_variations``: every
    variation not judged valid, unreviewed ones included)."""

    texts: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    human: int = 0
    variations: int = 0
    skipped_variations: int = 0

    def summary(self) -> dict[str, int]:
        return {"n_examples": len(self.texts), "human": self.human, "variations": self.variations,
                "skipped_variations": self.skipped_variations}


def training_set(tasks: Iterable[Mapping[str, Any]], control: ChoicesControl) -> TrainingSet:
    """Human-labelled tasks plus the variations that reviewers marked valid (see :func:`labelled_items`)."""
    chosen = TrainingSet()
    for item in labelled_items(tasks, control):
        if not isinstance(item, LabelledItem):
            chosen.skipped_variations += 1
            continue
        if item.is_variation:
            chosen.variations += 1
        else:
            chosen.human += 1
        chosen.texts.append(item.text)
        chosen.labels.append(item.label)
    return chosen
