"""What alvar needs from a generative project's labeling config, and what one annotation of it says.

A generative project (input text → output text) is one whose config has a ``<TextArea>`` bound to a ``<Text>``
(``label_config/generate.xml``). Besides the output, the reviewer sets the regulated attribute (a ``<Choices>``:
the values of the auxiliary model R, the first being H unless ALVAR_ATTRIBUTE_VALUE says otherwise) and gives a
verdict (a ``<Choices>`` with accept / edit / reject). The config is read by the SDK's ``LabelInterface``, as
:mod:`alvar.labelstudio.choices_control` reads a classification config; each check says what is missing.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from alvar.label_config import load
from alvar.labelstudio.choices_control import LabelConfigError, interface, text_areas, text_objects

GENERATION = "generation"
CLASSIFICATION = "classification"
VERDICTS = ("accept", "edit", "reject")
ACCEPT, EDIT, REJECT = VERDICTS
ATTRIBUTE_NAME = "attribute"


def project_kind(label_config: str | None) -> str:
    """:data:`GENERATION` when the config has a ``<TextArea>`` bound to a ``<Text>``, else :data:`CLASSIFICATION`
    (an empty or broken config too: the classification path then says what is wrong with it)."""
    try:
        return GENERATION if text_areas(interface(label_config)) else CLASSIFICATION
    except Exception:  # the SDK may fail on configs it half-reads; a kind is always answered
        return CLASSIFICATION


@dataclass(frozen=True)
class Review:
    """What one annotation of a generative task says: the verdict, the output text (stripped; None when empty
    or missing) and the attribute value the reviewer chose, each None when the annotation has none."""

    verdict: str | None
    output: str | None
    attribute: str | None

    @property
    def verified(self) -> bool:
        """A pair people stand behind: accepted or edited, with an output left in the box."""
        return self.verdict in (ACCEPT, EDIT) and self.output is not None


def _regions(result: object, from_name: str, kind: str) -> list[Mapping[str, Any]]:
    """The result's regions of one control (``from_name``) and result type, garbage left out."""
    if not isinstance(result, list):
        return []
    return [region for region in result if isinstance(region, Mapping) and region.get("from_name") == from_name
            and region.get("type") == kind and isinstance(region.get("value"), Mapping)]


def _choice(result: object, from_name: str, allowed: Sequence[str]) -> str | None:
    for region in _regions(result, from_name, "choices"):
        choices = region["value"].get("choices")
        if isinstance(choices, list) and choices and choices[0] in allowed:
            return str(choices[0])
    return None


def _text(result: object, from_name: str) -> str | None:
    """The TextArea's text: its submissions joined by newlines, stripped; None when nothing is left."""
    for region in _regions(result, from_name, "textarea"):
        lines = region["value"].get("text")
        if isinstance(lines, str):
            lines = [lines]
        if isinstance(lines, list):
            text = "\n".join(line for line in lines if isinstance(line, str)).strip()
            return text or None
    return None


@dataclass(frozen=True)
class GenerationControl:
    """The controls of a generative config: the input ``<Text>`` (``input_name``, read from ``data[data_key]``),
    the output ``<TextArea>``, the attribute ``<Choices>`` (``attributes``, in config order) and the verdict
    ``<Choices>``."""

    input_name: str
    data_key: str
    output_name: str
    attribute_name: str
    attributes: tuple[str, ...]
    verdict_name: str

    def required_attribute(self, setting: str | None) -> str:
        """H: the setting (ALVAR_ATTRIBUTE_VALUE) when given, else the first attribute value of the config."""
        if setting is None:
            return self.attributes[0]
        if setting not in self.attributes:
            raise LabelConfigError(f"ALVAR_ATTRIBUTE_VALUE={setting!r} is not a value of <Choices name="
                                   f"{self.attribute_name!r}> ({', '.join(self.attributes)}): set one of them, or "
                                   "unset it to use the first")
        return setting

    def output_result(self, text: str) -> list[dict[str, Any]]:
        """A Label Studio result that fills the output box with ``text`` (a prediction's, or an annotation's)."""
        return [{"from_name": self.output_name, "to_name": self.input_name, "type": "textarea",
                 "value": {"text": [text]}}]

    def review(self, result: object) -> Review:
        """What an annotation's result says; a part of the wrong shape, or a value the config does not have,
        counts as missing."""
        return Review(verdict=_choice(result, self.verdict_name, VERDICTS), output=_text(result, self.output_name),
                      attribute=_choice(result, self.attribute_name, self.attributes))


def parse_generation_control(label_config: str | None) -> GenerationControl:
    """The controls of a generative config; :class:`LabelConfigError` saying what is missing otherwise."""
    read = interface(label_config)
    texts = text_objects(read)
    outputs = text_areas(read)
    if not outputs:
        raise LabelConfigError("the label config has no <TextArea> bound to a <Text> (toName): it is no generative "
                               "project's (see label_config/generate.xml)")
    output = outputs[0]
    input_name = next(name for name in output.to_name if name in texts)
    data_key = str(texts[input_name].value or "").lstrip("$")
    if not data_key:
        raise LabelConfigError(f"<Text name={input_name!r}> has no value like $input")
    choices = [control for control in read.controls or ()
               if control.tag.lower() == "choices" and input_name in (control.to_name or ())]
    verdict = next((control for control in choices if set(control.labels or ()) == set(VERDICTS)), None)
    if verdict is None:
        raise LabelConfigError(f"the label config has no verdict: a <Choices toName={input_name!r}> whose values are "
                               f"exactly {' / '.join(VERDICTS)}")
    attribute = next((control for control in choices if control is not verdict), None)
    if attribute is None:
        raise LabelConfigError(f"the label config has no regulated attribute: a second <Choices toName="
                               f"{input_name!r}> whose values are the attribute's (the first is H by default)")
    attributes = tuple(attribute.labels or ())
    if len(set(attributes)) < 2:
        raise LabelConfigError(f"<Choices name={attribute.name!r}> (the regulated attribute) needs at least two "
                               f"distinct <Choice> values; it has {', '.join(attributes) or 'none'}")
    return GenerationControl(input_name=input_name, data_key=data_key, output_name=output.name,
                             attribute_name=attribute.name, attributes=attributes, verdict_name=verdict.name)


def generation_label_config(attributes: Sequence[str]) -> str:
    """``label_config/generate.xml`` with the attribute's values replaced by ``attributes`` (the first is H by
    default). A value the shipped config has keeps its hint."""
    values = [str(value).strip() for value in attributes]
    if not all(values) or len(set(values)) != len(values) or len(values) < 2:
        raise LabelConfigError(f"the regulated attribute needs at least two distinct, non-empty values; got "
                               f"{', '.join(map(repr, attributes)) or 'none'}")
    root = ElementTree.fromstring(load("generate"),
                                  parser=ElementTree.XMLParser(target=ElementTree.TreeBuilder(insert_comments=True)))
    control = root.find(f".//Choices[@name='{ATTRIBUTE_NAME}']")
    if control is None:  # the shipped file is this module's contract; a test reads it
        raise LabelConfigError(f"label_config/generate.xml has no <Choices name={ATTRIBUTE_NAME!r}>")
    hints = {choice.get("value"): choice.get("hint") for choice in control}
    tail = control[-1].tail if len(control) else None
    for choice in list(control):
        control.remove(choice)
    for value in values:
        choice = ElementTree.SubElement(control, "Choice", {"value": value})
        if hints.get(value):
            choice.set("hint", str(hints[value]))
        choice.tail = control.text
    control[-1].tail = tail
    return ElementTree.tostring(root, encoding="unicode")
