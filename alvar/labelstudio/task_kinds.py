"""The kinds of project alvar serves, behind one protocol: classification (a ``<Choices>`` over a ``<Text>``) and
generation (a ``<TextArea>`` bound to a ``<Text>``: input → output).

An entry point looks the kind up once from the project's label config (:func:`task_kind`) and asks it what it
needs; it does not branch on the kind's name. What a kind answers here belongs to Label Studio's domain (its
controls, what counts as a new human label, how Label Studio samples its tasks); layers above key their own parts
(the trainer, the predictor) by :attr:`TaskKind.name`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from alvar.labelstudio.choices_control import ChoicesControl, parse_choices_control
from alvar.labelstudio.generation_config import (
    CLASSIFICATION,
    GENERATION,
    GenerationControl,
    parse_generation_control,
    project_kind,
)
from alvar.labelstudio.task_data import DraftFields, data_of
from alvar.labelstudio.webhook import human_labels, verified_reviews

Control = ChoicesControl | GenerationControl
ControlT = TypeVar("ControlT", ChoicesControl, GenerationControl)
AnnotatedTasks = Iterable[tuple[Any, Mapping[str, Any]]]


@dataclass(frozen=True)
class ControlNames:
    """The names and values a project's control declares, which the backend bounds before it trusts them."""

    names: dict[str, str]
    values: Sequence[str]
    values_owner: str


class TaskKind(Protocol[ControlT]):
    """What alvar needs to know about one kind of project, in Label Studio's terms."""

    name: str
    """``classification`` or ``generation``: the key layers above file their own parts under."""
    sampling: str
    """How Label Studio serves the project's tasks to annotators."""
    served_by: str | None
    """The kind of saved model that may answer the project's predictions; None: whichever version serves it
    (a classification project without a model of its own is served the shared classifier)."""
    no_new_label: str
    """Why an annotation event did not count toward retraining."""
    no_variations: str | None
    """Why the project's labels never become LLM variations; None: each human label does."""
    no_drafts: str | None
    """Why the project's tasks never get a teacher's draft; None: each batched input does."""
    next_step: str
    """What a person does in Label Studio once a batch is out (the tabs they work in)."""

    def control(self, label_config: str | None) -> ControlT:
        """The project's control, parsed (:class:`~alvar.labelstudio.choices_control.LabelConfigError` says what is
        missing)."""

    def serving_control(self, label_config: str | None, attribute_value: str | None) -> ControlT:
        """The control, checked for what serving predictions needs (a generative one: that H is a value of it)."""

    def control_names(self, control: ControlT) -> ControlNames:
        """The control's names and values, for the backend's bounds."""

    def new_labels(self, annotations: AnnotatedTasks, control: ControlT) -> int:
        """How many of the event's annotations are new human labels that count toward retraining."""

    def bounded_texts(self, task: Mapping[str, Any], control: ControlT) -> dict[str, Any]:
        """The texts of a task sent for prediction that the backend bounds in length, by what each is."""


class Classification:
    """A ``<Choices>`` over a ``<Text>``: people label, variations multiply the labels, the learner classifies."""

    name = CLASSIFICATION
    sampling = "Uncertainty sampling"
    served_by: str | None = None
    no_new_label = "no new human label of a source task"
    no_variations: str | None = None
    no_drafts: str | None = "not a generative project"
    next_step = ("open the project's [bold]Batch[/] tab and label its tasks; review the variations in the "
                 "[bold]Verify variations[/] tab")

    def control(self, label_config: str | None) -> ChoicesControl:
        return parse_choices_control(label_config)

    def serving_control(self, label_config: str | None, attribute_value: str | None) -> ChoicesControl:
        return self.control(label_config)

    def control_names(self, control: ChoicesControl) -> ControlNames:
        return ControlNames({"Choices name": control.from_name, "Choices toName": control.to_name,
                             "Text value": control.data_key}, control.labels, control.from_name)

    def new_labels(self, annotations: AnnotatedTasks, control: ChoicesControl) -> int:
        return len(human_labels(annotations, control))

    def bounded_texts(self, task: Mapping[str, Any], control: ChoicesControl) -> dict[str, Any]:
        return {"text": data_of(task).get(control.data_key)}


class Generation:
    """A ``<TextArea>`` bound to a ``<Text>``: the teacher drafts, people verify, the student G learns the pairs."""

    name = GENERATION
    sampling = "Sequential sampling"
    served_by: str | None = GENERATION
    no_new_label = "no new verified output (accept or edit)"
    no_variations: str | None = "a generative project never gets variations"
    no_drafts: str | None = None
    next_step = ("open the project's [bold]Review drafts[/] tab and accept, edit or reject each pre-filled output "
                 "(the teacher's draft)")

    def control(self, label_config: str | None) -> GenerationControl:
        return parse_generation_control(label_config)

    def serving_control(self, label_config: str | None, attribute_value: str | None) -> GenerationControl:
        control = self.control(label_config)
        control.required_attribute(attribute_value)
        return control

    def control_names(self, control: GenerationControl) -> ControlNames:
        return ControlNames({"Text name": control.input_name, "Text value": control.data_key,
                             "TextArea name": control.output_name, "Choices name": control.attribute_name,
                             "verdict Choices name": control.verdict_name},
                            control.attributes, control.attribute_name)

    def new_labels(self, annotations: AnnotatedTasks, control: GenerationControl) -> int:
        return len(verified_reviews(annotations, control))

    def bounded_texts(self, task: Mapping[str, Any], control: GenerationControl) -> dict[str, Any]:
        """The input, and the teacher's draft: it comes back as the prediction."""
        return {"text": data_of(task).get(control.data_key), "draft": DraftFields.of(task).draft}


KINDS: dict[str, TaskKind[Any]] = {kind.name: kind for kind in (Classification(), Generation())}


def task_kind(label_config: str | None) -> TaskKind[Any]:
    """The kind of the project whose label config this is (a config that is empty or broken reads as
    classification, whose control then says what is wrong with it)."""
    return KINDS[project_kind(label_config)]
