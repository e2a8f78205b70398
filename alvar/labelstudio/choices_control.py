"""What alvar needs from a classification project's labeling config: the first Choices bound to a Text.

The config is read by the SDK's :class:`LabelInterface`, as Label Studio itself reads it (a ``<Choice>``'s
``alias``, when it has one, is the label its results carry). alvar adds its own checks, each with a message that
says what is missing, the ``hint`` of each choice, and the label an annotation's result picks.

A config with a ``<TextArea>`` bound to a ``<Text>`` is a generative project's
(:mod:`alvar.labelstudio.generation_config`): its Choices are the regulated attribute and the verdict, never
class labels, so :func:`parse_choices_control` refuses it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from label_studio_sdk.label_interface import LabelInterface

from alvar.errors import AlvarError

log = logging.getLogger(__name__)


class LabelConfigError(AlvarError, ValueError):
    """A labeling config the backend cannot work with; the message says why."""


@dataclass(frozen=True)
class ChoicesControl:
    """A ``<Choices>`` control and the ``<Text>`` object it labels."""

    from_name: str
    to_name: str
    data_key: str
    labels: tuple[str, ...]
    hints: tuple[str, ...] = ()

    def description(self, label: str) -> str:
        """The ``hint`` of a label's ``<Choice>`` (what the class means, for people and prompts), or ""."""
        return dict(zip(self.labels, self.hints)).get(label, "")

    def descriptions(self) -> dict[str, str]:
        """Each label, in config order, with its description: what the prompt builder takes."""
        return {label: self.description(label) for label in self.labels}

    def choice_result(self, label: str) -> list[dict[str, object]]:
        """A Label Studio result selecting ``label`` in this control."""
        return [
            {
                "from_name": self.from_name,
                "to_name": self.to_name,
                "type": "choices",
                "value": {"choices": [label]},
            }
        ]

    def chosen_label(self, result: object) -> str | None:
        """The label an annotation's result picks in this control, or None when it picks none.

        A label that is not one of the control's choices (a typo sent through the API, a class renamed in the
        config since) counts as no label: it is logged and never trained on, pre-labelled or sent to the LLM.
        A result of the wrong shape (not a list of objects) picks nothing either.
        """
        if not isinstance(result, list):
            return None
        for region in result:
            if not isinstance(region, dict) or region.get("from_name") != self.from_name \
                    or region.get("type") != "choices":
                continue
            value = region.get("value")
            choices = value.get("choices") if isinstance(value, dict) else None
            if not isinstance(choices, list) or not choices:
                continue
            label = choices[0]
            if isinstance(label, str) and label in self.labels:
                return label
            log.warning("ignored label %r: not a choice of <Choices name=%r> (%s)", label, self.from_name,
                        ", ".join(self.labels))
            return None
        return None


TEXT_OBJECTS = frozenset({"text", "hypertext"})


def interface(label_config: str | None) -> LabelInterface:
    """The SDK's reading of a config; :class:`LabelConfigError` when it is empty or not XML."""
    if not isinstance(label_config, str) or not label_config.strip():
        raise LabelConfigError("the label config is empty")
    try:
        return LabelInterface(label_config)
    except Exception as error:  # the SDK's XML syntax error, or lxml's ValueError (an encoding declaration, say)
        raise LabelConfigError(f"the label config is not valid XML: {error}") from None


def text_objects(read: LabelInterface) -> dict[str, Any]:
    """The config's ``<Text>`` (and ``<HyperText>``) objects by name."""
    return {tag.name: tag for tag in read.objects or () if tag.tag.lower() in TEXT_OBJECTS}


def text_areas(read: LabelInterface) -> list[Any]:
    """The ``<TextArea>`` controls bound to a ``<Text>``: what makes a config a generative project's."""
    texts = text_objects(read)
    return [control for control in read.controls or ()
            if control.tag.lower() == "textarea" and any(name in texts for name in control.to_name or ())]


def parse_choices_control(label_config: str | None) -> ChoicesControl:
    """The first ``<Choices>`` whose ``toName`` is a ``<Text>``; raises :class:`LabelConfigError` otherwise, and for
    a generative project's config (its Choices are no class labels)."""
    read = interface(label_config)
    texts = text_objects(read)
    if not texts:
        raise LabelConfigError("the label config has no <Text> object to classify")
    outputs = text_areas(read)
    if outputs:
        raise LabelConfigError(f"the label config is a generative project's label config (it has a <TextArea "
                               f"name={outputs[0].name!r}>): its Choices are no class labels, and this needs a "
                               "classification project's (one <Choices> of classes, as label_config/annotate.xml)")
    for control in read.controls or ():
        to_name = next((name for name in control.to_name or () if name in texts), None)
        if control.tag.lower() != "choices" or to_name is None:
            continue
        labels = tuple(control.labels or ())
        if not labels:
            raise LabelConfigError(f"<Choices name={control.name!r}> has no or unnamed <Choice> values")
        data_key = str(texts[to_name].value).lstrip("$")
        if not data_key:
            raise LabelConfigError(f"<Text name={to_name!r}> has no value like $text")
        hints = tuple(str(control.labels_attrs[label].attr.get("hint") or "") for label in labels)
        return ChoicesControl(from_name=control.name, to_name=to_name, data_key=data_key, labels=labels,
                              hints=hints)
    raise LabelConfigError("the label config has no <Choices> bound to a <Text> (toName)")
