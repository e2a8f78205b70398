"""Which tasks of a generative project are verified pairs: what trains the student G and what `alvar export`
releases.

One task, one decision: its latest non-cancelled annotation (:func:`training_data.latest_annotation`, whoever
made it). A pair is verified when that annotation's verdict is accept or edit and it leaves a non-empty output.
A rejection never trains; an accept or edit whose output box was emptied is no pair either (counted
``"emptied"``); a task without its input text is not one of the project's inputs and is neither a pair nor
counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from alvar.labelstudio.generation_config import REJECT, VERDICTS, GenerationControl, Review
from alvar.labelstudio.task_data import BatchFields, DraftFields, PoolFields, data_of
from alvar.labelstudio.training_data import latest_annotation

EMPTIED = "emptied"
UNREVIEWED = "unreviewed"


@dataclass(frozen=True)
class VerifiedPair:
    """An (input, output) pair a person accepted or edited, with its provenance: who verified it and the attribute
    value they set, the teacher's draft and what wrote it, and the task's subgroup and selection."""

    task_id: int
    annotation_id: int
    input: str
    output: str
    verdict: str
    verifier: str
    attribute: str | None
    group: str | None
    draft: str | None
    teacher_model: str | None
    template: str | None
    student_version: str | None
    cluster: int | None
    batch: int | None
    strategy: str | None


def _identifier(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def verifier(annotation: Mapping[str, Any]) -> str:
    """Who made the annotation: the e-mail address when the task carries it (an export with users resolved, or
    ``completed_by`` as an object), else the user id."""
    author = annotation.get("completed_by")
    if isinstance(author, Mapping):
        author = author.get("email") or author.get("id")
    return "" if author is None else str(author)


def _review(task: Mapping[str, Any], control: GenerationControl) -> tuple[Mapping[str, Any], Review] | None:
    """The task's deciding annotation and what it says; None when the task has no annotation left."""
    annotation = latest_annotation(task)
    return None if annotation is None else (annotation, control.review(annotation.get("result")))


def _outcome(task: Mapping[str, Any], control: GenerationControl) -> str:
    """One of :data:`VERDICTS` (a verified pair, or a rejection), :data:`EMPTIED` (accepted or edited with the
    output box emptied) or :data:`UNREVIEWED` (no annotation, or one without a verdict)."""
    decided = _review(task, control)
    review = decided[1] if decided is not None else None
    if review is None or review.verdict is None:
        return UNREVIEWED
    return EMPTIED if review.verdict != REJECT and review.output is None else review.verdict


def _input(task: Mapping[str, Any], control: GenerationControl) -> str | None:
    text = data_of(task).get(control.data_key)
    return text if isinstance(text, str) and text.strip() else None


def verified_pairs(tasks: Iterable[Mapping[str, Any]], control: GenerationControl) -> list[VerifiedPair]:
    """One pair per task whose deciding annotation accepts or edits a non-empty output, in task order."""
    pairs = []
    for task in tasks:
        task_id, text, decided = _identifier(task.get("id")), _input(task, control), _review(task, control)
        if task_id is None or text is None or decided is None:
            continue
        annotation, review = decided
        if review.output is None or review.verdict is None or review.verdict == REJECT:
            continue
        draft, batch, pool = DraftFields.of(task), BatchFields.of(task), PoolFields.of(task)
        pairs.append(VerifiedPair(
            task_id=task_id, annotation_id=_identifier(annotation.get("id")) or 0, input=text, output=review.output,
            verdict=review.verdict, verifier=verifier(annotation), attribute=review.attribute, group=pool.group,
            draft=draft.draft, teacher_model=draft.teacher_model, template=draft.draft_template,
            student_version=draft.student_version, cluster=batch.cluster, batch=batch.batch, strategy=batch.strategy,
        ))
    return pairs


def review_counts(tasks: Iterable[Mapping[str, Any]], control: GenerationControl) -> dict[str, int]:
    """How the project's inputs stand: accepted, edited, rejected, emptied (accepted or edited with no output
    left) and unreviewed (no annotation, or one without a verdict)."""
    counts = Counter({outcome: 0 for outcome in (*VERDICTS, EMPTIED, UNREVIEWED)})
    counts.update(_outcome(task, control) for task in tasks if _input(task, control) is not None)
    return dict(counts)
