import pytest

from alvar.label_config import load
from alvar.labelstudio.label_config import LabelConfigError, parse_choices_control


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


@pytest.mark.parametrize("config, reason", [
    ("", "empty"),
    ("<View><Text name='t' value='$text'>", "not valid XML"),
    ("<View><Choices name='c' toName='t'><Choice value='a'/></Choices></View>", "no <Text>"),
    ("<View><Text name='t' value='$text'/></View>", "no <Choices>"),
    ("<View><Text name='t' value='$text'/><Choices name='c' toName='t'></Choices></View>", "no or unnamed"),
])
def test_unusable_configs_say_why(config: str, reason: str) -> None:
    with pytest.raises(LabelConfigError, match=reason):
        parse_choices_control(config)
