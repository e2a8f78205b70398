import pytest

from alvar.label_config import load
from alvar.labelstudio.choices_control import LabelConfigError, parse_choices_control


def test_annotate_config_has_the_six_safety_classes() -> None:
    control = parse_choices_control(load("annotate"))
    assert (control.from_name, control.to_name, control.data_key) == ("label", "text", "text")
    assert set(control.labels) == {"self-harm", "medical-advice", "legal-advice", "financial-advice",
                                   "emergency-situation", "discard"}


def test_first_choices_bound_to_a_text_wins() -> None:
    config = """<View><Image name="img" value="$image"/>
      <Choices name="img_class" toName="img"><Choice value="cat"/></Choices>
      <Text name="body" value="$title"/>
      <Choices name="topic" toName="body"><Choice value="a"/><Choice value="b"/></Choices></View>"""
    control = parse_choices_control(config)
    assert (control.from_name, control.data_key, control.labels) == ("topic", "title", ("a", "b"))
    assert control.chosen_label(control.choice_result("b")) == "b"
    assert control.chosen_label([]) is None


def test_labels_are_what_results_carry_and_hints_describe_them() -> None:
    config = """<View><Text name="t" value="$text"/><Choices name="c" toName="t">
      <Choice value="Yes, it is harmful" alias="harmful" hint="It could hurt someone."/><Choice value="fine"/>
    </Choices></View>"""
    control = parse_choices_control(config)
    assert control.labels == ("harmful", "fine"), "Label Studio's results carry a choice's alias"
    assert (control.description("harmful"), control.description("fine")) == ("It could hurt someone.", "")


LAUGHS = ('<?xml version="1.0"?><!DOCTYPE v [<!ENTITY a "aaaaaaaaaa">'
          + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(8))
          + ']><View><Text name="t" value="$text"/><Choices name="c" toName="t"><Choice value="&i;"/></Choices></View>')


@pytest.mark.parametrize("config, reason", [
    ("", "empty"),
    (None, "empty"),
    ('<?xml version="1.0" encoding="UTF-8"?><View/>', "not valid XML"),
    (LAUGHS, "not valid XML"),
    ("<View>\x00</View>", "not valid XML"),
    ("<View><Text name='t' value='$text'>", "not valid XML"),
    ("<View><Choices name='c' toName='t'><Choice value='a'/></Choices></View>", "no <Text>"),
    ("<View><Text name='t' value='$text'/></View>", "no <Choices>"),
    ("<View><Text name='t' value='$text'/><Choices name='c' toName='t'></Choices></View>", "no or unnamed"),
])
def test_unusable_configs_say_why(config: str, reason: str) -> None:
    with pytest.raises(LabelConfigError, match=reason):
        parse_choices_control(config)
