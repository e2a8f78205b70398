"""What the backend needs from a Label Studio labeling config: the first Choices bound to a Text."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from xml.etree import ElementTree

log = logging.getLogger(__name__)


class LabelConfigError(ValueError):
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


def parse_choices_control(label_config: str) -> ChoicesControl:
    """The first ``<Choices>`` whose ``toName`` is a ``<Text>``; raises :class:`LabelConfigError` otherwise."""
    if not isinstance(label_config, str) or not label_config.strip():
        raise LabelConfigError("the label config is empty")
    try:
        root = ElementTree.fromstring(label_config)
    except ElementTree.ParseError as error:
        raise LabelConfigError(f"the label config is not valid XML: {error}") from None
    texts = {
        element.get("name"): element.get("value", "")
        for element in root.iter()
        if element.tag.lower() in ("text", "hypertext") and element.get("name")
    }
    if not texts:
        raise LabelConfigError("the label config has no <Text> object to classify")
    for element in root.iter():
        if element.tag.lower() != "choices":
            continue
        to_name = element.get("toName", "")
        if to_name not in texts:
            continue
        choices = [choice for choice in element.iter() if choice.tag.lower() == "choice"]
        labels = tuple(choice.get("value") or choice.get("alias") or "" for choice in choices)
        hints = tuple(choice.get("hint") or "" for choice in choices)
        if not labels or not all(labels):
            raise LabelConfigError(f"<Choices name={element.get('name')!r}> has no or unnamed <Choice> values")
        data_key = texts[to_name].lstrip("$")
        if not data_key:
            raise LabelConfigError(f"<Text name={to_name!r}> has no value like $text")
        return ChoicesControl(from_name=element.get("name", ""), to_name=to_name, data_key=data_key, labels=labels,
                              hints=hints)
    raise LabelConfigError("the label config has no <Choices> bound to a <Text> (toName)")
