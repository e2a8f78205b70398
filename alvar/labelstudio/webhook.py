"""Label Studio's webhook events as alvar reads them: the event, its annotations, and the human labels they give.

Label Studio sends one POST per event (``ANNOTATION_CREATED``, ``START_TRAINING``...) with the project and its
label config; :func:`parse_event` checks the envelope and :func:`human_label` decides whether an annotation is
a person's label of a source task, the one thing that queues variations and counts toward retraining. In a
generative project (:meth:`WebhookEvent.kind`) what counts toward retraining is a verified review
(:func:`verified_reviews`): an annotation that accepts or edits the output and leaves text in the box.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from alvar.labelstudio.choices_control import ChoicesControl
from alvar.labelstudio.generation_config import GenerationControl
from alvar.labelstudio.task_data import data_of
from alvar.labelstudio.training_data import is_bootstrap, is_variation

NEW_ANNOTATION_ACTIONS = frozenset({"ANNOTATION_CREATED", "ANNOTATIONS_CREATED"})
ANNOTATION_ACTIONS = NEW_ANNOTATION_ACTIONS | {"ANNOTATION_UPDATED"}
TRAINING_ACTION = "START_TRAINING"
LABEL_STUDIO_ACTIONS = ANNOTATION_ACTIONS | {
    TRAINING_ACTION,
    "ANNOTATIONS_DELETED",
    "TASKS_CREATED",
    "TASKS_DELETED",
    "PROJECT_CREATED",
    "PROJECT_UPDATED",
    "PROJECT_DELETED",
    "LABEL_LINK_CREATED",
    "LABEL_LINK_UPDATED",
    "LABEL_LINK_DELETED",
    "REVIEW_CREATED",
    "REVIEW_UPDATED",
    "REVIEWS_DELETED",
}
_PROJECT_REF = re.compile(r"([0-9]{1,18})(?:\.[0-9]{0,20})?")


class WebhookError(ValueError):
    """A webhook body that cannot be acted on; the message is the reason sent back with a 400."""


@dataclass(frozen=True)
class WebhookEvent:
    action: str
    project_id: int
    payload: Mapping[str, Any]

    def label_config(self) -> str | None:
        """The project's label config as the payload carries it, or None."""
        project = self.payload.get("project")
        config = project.get("label_config") if isinstance(project, Mapping) else None
        return config if isinstance(config, str) else None

    def annotations(self) -> list[tuple[Any, Mapping[str, Any]]]:
        """Each annotation of the event with its task (``{}`` when the payload does not carry it)."""
        tasks = {task["id"]: task for task in _as_list(self.payload.get("task"))
                 if isinstance(task, Mapping) and _is_id(task.get("id"))}
        pairs = []
        for annotation in _as_list(self.payload.get("annotation", self.payload.get("annotations"))):
            task_ref = annotation.get("task") if isinstance(annotation, Mapping) else None
            task_id = task_ref.get("id") if isinstance(task_ref, Mapping) else task_ref
            fallback = task_ref if isinstance(task_ref, Mapping) else {}
            pairs.append((annotation, tasks.get(task_id, fallback) if _is_id(task_id) else fallback))
        return pairs


@dataclass(frozen=True)
class HumanLabel:
    """A person's label of a source task, the one thing that queues variations and counts toward retraining."""

    task_id: int
    annotation_id: int
    label: str
    text: str | None


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def human_label(annotation: Any, task: Mapping[str, Any], control: ChoicesControl) -> HumanLabel | str:
    """The human label an annotation gives its source task, or the reason it gives none."""
    if not isinstance(annotation, Mapping) or not _is_id(annotation.get("id")):
        return "the annotation has no id"
    task_ref = annotation.get("task")
    task_id: Any = task_ref.get("id") if isinstance(task_ref, Mapping) else task_ref
    if not _is_id(task_id):
        return "the annotation names no task"
    if is_variation(task):
        return "a variation's review generates nothing"
    if is_bootstrap(task):
        return "a bootstrap label generates nothing"
    if annotation.get("was_cancelled"):
        return "the annotation was skipped"
    label = control.chosen_label(annotation.get("result"))
    if label is None:
        return f"no choice of {control.from_name} given (labels outside the config are ignored)"
    text = data_of(task).get(control.data_key)
    return HumanLabel(task_id, annotation["id"], label, text if isinstance(text, str) else None)


def human_labels(pairs: Iterable[tuple[Any, Mapping[str, Any]]], control: ChoicesControl) -> list[HumanLabel]:
    return [found for annotation, task in pairs if isinstance(found := human_label(annotation, task, control),
                                                               HumanLabel)]


def verified_reviews(pairs: Iterable[tuple[Any, Mapping[str, Any]]], control: GenerationControl) -> list[int]:
    """The ids of the annotations that verify their task's output (accept or edit, text left in the box); a
    rejection, an emptied output and a skip verify nothing."""
    return [annotation["id"] for annotation, _ in pairs
            if isinstance(annotation, Mapping) and _is_id(annotation.get("id")) and not annotation.get("was_cancelled")
            and control.review(annotation.get("result")).verified]


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_event(payload: Any) -> WebhookEvent:
    if not isinstance(payload, dict):
        raise WebhookError("the webhook body must be a JSON object")
    action = payload.get("action")
    if not isinstance(action, str) or not action:
        raise WebhookError("the webhook body has no 'action'")
    if action not in LABEL_STUDIO_ACTIONS:
        raise WebhookError(f"unknown webhook action {action!r}")
    project = payload.get("project")
    project_id = project.get("id") if isinstance(project, dict) else project
    project_id = project_number(project_id)
    if project_id is None:
        raise WebhookError(f"the {action} body names no project id")
    return WebhookEvent(action=action, project_id=project_id, payload=payload)


def project_number(value: Any) -> int | None:
    """A project id as Label Studio sends it (7, or "7.1700000000" from /setup and /predict), else None."""
    if isinstance(value, str) and (match := _PROJECT_REF.fullmatch(value)):
        value = int(match.group(1))
    return value if _is_id(value) and 0 < value < 2**63 else None
