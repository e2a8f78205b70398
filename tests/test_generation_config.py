"""A generative project's label config, its parser, the task fields it adds, and which tasks are verified pairs;
the config loading and taking annotations in a real Label Studio."""

from __future__ import annotations

import re
from typing import Any

import pytest
from label_studio_sdk import LabelStudio

from alvar.datafiles import Example
from alvar.label_config import load
from alvar.labelstudio.choices_control import LabelConfigError, parse_choices_control
from alvar.labelstudio.generation_config import (
    CLASSIFICATION,
    GENERATION,
    GenerationControl,
    Review,
    generation_label_config,
    parse_generation_control,
    project_kind,
)
from alvar.labelstudio.generation_data import VerifiedPair, review_counts, verified_pairs
from alvar.labelstudio.task_data import DRAFTED, DraftFields, PoolFields, pair_data, pool_data, screened_out
from alvar.labelstudio.task_kinds import KINDS, task_kind
from alvar.loop.project import create_project

CONFIG = load("generate")
CONTROL = parse_generation_control(CONFIG)


def result(output: str | None = None, verdict: str | None = None, attribute: str | None = None) -> list[dict]:
    regions = CONTROL.output_result(output) if output is not None else []
    for name, value in (("verdict", verdict), ("attribute", attribute)):
        if value is not None:
            regions.append({"from_name": name, "to_name": "input", "type": "choices", "value": {"choices": [value]}})
    return regions


def annotation(annotation_id: int, regions: Any, updated: str = "2026-01-01", cancelled: bool = False,
               by: Any = 1) -> dict:
    return {"id": annotation_id, "result": regions, "updated_at": updated, "was_cancelled": cancelled,
            "completed_by": by}


def task(task_id: int, *annotations: dict, text: str | None = "a hateful post", **data: Any) -> dict:
    return {"id": task_id, "data": {**({"input": text} if text is not None else {}), **data},
            "annotations": list(annotations)}


def import_tasks(client: LabelStudio, project_id: int, request: list[Any]) -> list[int]:
    """Import tasks; their ids. (The SDK types the request as its own models and the answer without task_ids.)"""
    response: Any = client.projects.import_tasks(id=project_id, request=request, return_task_ids=True)
    return list(response.task_ids)


def test_shipped_config_is_a_generation_config_with_h_first() -> None:
    assert CONTROL == GenerationControl(input_name="input", data_key="input", output_name="output",
                                        attribute_name="attribute",
                                        attributes=("counter-narrative", "not-counter-narrative"),
                                        verdict_name="verdict")
    assert CONTROL.required_attribute(None) == "counter-narrative"
    assert CONTROL.required_attribute("not-counter-narrative") == "not-counter-narrative"
    with pytest.raises(LabelConfigError, match="'polite' is not a value of <Choices name='attribute'>"):
        CONTROL.required_attribute("polite")
    assert CONTROL.output_result("no, they are people") == [
        {"from_name": "output", "to_name": "input", "type": "textarea", "value": {"text": ["no, they are people"]}}]


def test_project_kind_tells_the_configs_apart_and_never_raises() -> None:
    assert project_kind(CONFIG) == GENERATION
    assert project_kind(load("annotate")) == CLASSIFICATION
    for broken in (None, "", "<View", "<View><TextArea name='o'/></View>", "\x00", 42):
        assert project_kind(broken) == CLASSIFICATION  # type: ignore[arg-type]


def test_each_kind_reads_its_own_control_and_bounds_its_own_texts() -> None:
    generation, classification = task_kind(CONFIG), task_kind(load("annotate"))
    assert (generation.name, classification.name) == (GENERATION, CLASSIFICATION)
    assert set(KINDS) == {GENERATION, CLASSIFICATION} and task_kind(None) is classification
    control = generation.serving_control(CONFIG, None)
    assert generation.control_names(control).values == control.attributes
    with pytest.raises(LabelConfigError, match="ALVAR_ATTRIBUTE_VALUE"):
        generation.serving_control(CONFIG, "not-a-value")
    task = {"data": {control.data_key: "an input", "draft": "a draft"}}
    assert generation.bounded_texts(task, control) == {"text": "an input", "draft": "a draft"}
    choices = classification.control(load("annotate"))
    assert classification.bounded_texts({"data": {choices.data_key: "a text"}}, choices) == {"text": "a text"}
    assert (generation.served_by, classification.served_by) == (GENERATION, None)


def test_no_classification_path_reads_the_attribute_as_class_labels() -> None:
    with pytest.raises(LabelConfigError, match=r"generative project's label config \(it has a <TextArea name='out"):
        parse_choices_control(CONFIG)


def test_attribute_values_are_replaced_escaped_and_checked() -> None:
    config = generation_label_config(["polite", 'rude & "loud" <x>', "counter-narrative"])
    control = parse_generation_control(config)
    assert control.attributes == ("polite", 'rude & "loud" <x>', "counter-narrative")
    assert control.required_attribute(None) == "polite"
    assert 'hint="The output counters the input respectfully."' in config, "a shipped value keeps its hint"
    assert "Subgroup" in config and "$group" in config
    for bad in (["only-one"], ["same", "same"], ["fine", "  "], []):
        with pytest.raises(LabelConfigError, match="at least two distinct, non-empty values"):
            generation_label_config(bad)


@pytest.mark.parametrize("config, message", [
    ("<View><Text name='t' value='$text'/><Choices name='c' toName='t'><Choice value='a'/></Choices></View>",
     "no <TextArea> bound to a <Text>"),
    ("<View><Text name='t' value='$text'/><TextArea name='o' toName='t'/>"
     "<Choices name='a' toName='t'><Choice value='x'/><Choice value='y'/></Choices></View>",
     "no verdict: a <Choices toName='t'> whose values are exactly accept / edit / reject"),
    ("<View><Text name='t' value='$text'/><TextArea name='o' toName='t'/><Choices name='v' toName='t'>"
     "<Choice value='accept'/><Choice value='edit'/><Choice value='reject'/></Choices></View>",
     "no regulated attribute"),
    ("<View><Text name='t' value='$text'/><TextArea name='o' toName='t'/><Choices name='v' toName='t'>"
     "<Choice value='accept'/><Choice value='edit'/><Choice value='reject'/></Choices>"
     "<Choices name='a' toName='t'><Choice value='x'/></Choices></View>",
     "needs at least two distinct <Choice> values; it has x"),
    ("", "empty"),
    ("<View><TextArea", "not valid XML"),
])
def test_unusable_generation_configs_say_what_is_missing(config: str, message: str) -> None:
    with pytest.raises(LabelConfigError, match=re.escape(message)):
        parse_generation_control(config)


def test_a_review_reads_each_part_and_ignores_garbage() -> None:
    assert CONTROL.review(result("  a reply \n", "edit", "counter-narrative")) == \
        Review("edit", "a reply", "counter-narrative")
    assert CONTROL.review(result("", "accept")) == Review("accept", None, None)
    assert CONTROL.review(result("x", "maybe", "polite")) == Review(None, "x", None), "values not in the config"
    for garbage in (None, "text", [1, "a", None], [{"from_name": "output", "type": "textarea", "value": "x"}],
                    [{"from_name": "verdict", "type": "choices", "value": {"choices": []}}],
                    [{"from_name": "output", "type": "textarea", "value": {"text": [None, 3]}}]):
        assert CONTROL.review(garbage) == Review(None, None, None)
    assert Review("accept", "x", None).verified and Review("edit", "x", None).verified
    assert not Review("reject", "x", None).verified and not Review("accept", None, None).verified


def test_task_fields_of_a_generative_pool_and_its_drafts() -> None:
    class Pair:  # the shape of alvar.pairfiles.Pair
        def __init__(self, id: str, input: str, group: str | None) -> None:
            self.id, self.input, self.group, self.output = id, input, group, "the reference, never imported"

    assert pair_data("input", Pair("p1", "they are all thieves", "migrants")) == \
        {"input": "they are all thieves", "source_id": "p1", "group": "migrants"}
    assert pair_data("input", Pair("p2", "no group here", None)) == {"input": "no group here", "source_id": "p2"}
    assert pool_data("text", Example("e1", "a title", None)) == {"text": "a title", "source_id": "e1"}
    assert PoolFields.of({"data": {"group": "women"}}).group == "women"
    fields = DraftFields(draft="Not all of them.", draft_status="drafted", teacher_model="teacher-1",
                         draft_template="counter_narrative@3f2a", draft_key="draft-1-7", draft_attempts=2,
                         student_version="v0002")
    assert DraftFields.of({"data": {"input": "x", **fields.data()}}) == fields
    assert DraftFields.of({"data": {"draft_attempts": "two", "draft": None}}) == DraftFields()
    assert screened_out("echo of the input") == "screened out: echo of the input"
    assert DRAFTED == {"filter": "filter:tasks:data.draft_status", "operator": "equal", "type": "String",
                       "value": "drafted"}


def test_verified_pairs_are_the_latest_accepts_and_edits_with_an_output() -> None:
    draft = DraftFields(draft="Not all of them.", draft_status="drafted", teacher_model="teacher-1",
                        draft_template="cn@1", student_version="v0001").data()
    tasks = [
        task(1, annotation(11, result("Not all of them.", "accept", "counter-narrative"),
                           by={"id": 3, "email": "ann@x.org"}), group="migrants", cluster=2, batch=1,
             strategy="cluster", **draft),
        task(2, annotation(21, result("People differ.", "edit", "counter-narrative"), by="bob@x.org"), **draft),
        task(3, annotation(31, result("Not all of them.", "reject"))),
        task(4, annotation(41, result("", "edit"))),                       # the person emptied the output
        task(5, annotation(51, result("   ", "accept"))),                    # blanks only: emptied too
        task(6, annotation(61, result("skipped", "accept"), cancelled=True)),  # skipped: as if unannotated
        task(7),
        task(8, annotation(81, result("first", "accept"), updated="2026-01-01", by=1),  # two annotators: the
             annotation(82, result("second", "reject"), updated="2026-02-01", by=2)),  # later one rejects
        task(9, annotation(91, result("old", "reject"), updated="2026-01-01", by=1),
             annotation(92, result("kept", "edit"), updated="2026-03-01", by=2)),
        task(10, annotation(101, result("no verdict"))),
        task(11, annotation(111, [{"garbage": True}, "x", None])),
        task(12, annotation(121, result("an output", "accept")), text=None),  # the input is missing
        task(13, annotation(131, result("an output", "accept")), text="   "),
    ]
    pairs = verified_pairs(tasks, CONTROL)
    assert [(pair.task_id, pair.annotation_id, pair.output, pair.verdict, pair.verifier) for pair in pairs] == [
        (1, 11, "Not all of them.", "accept", "ann@x.org"), (2, 21, "People differ.", "edit", "bob@x.org"),
        (9, 92, "kept", "edit", "2")]
    assert pairs[0] == VerifiedPair(task_id=1, annotation_id=11, input="a hateful post", output="Not all of them.",
                                    verdict="accept", verifier="ann@x.org", attribute="counter-narrative",
                                    group="migrants", draft="Not all of them.", teacher_model="teacher-1",
                                    template="cn@1", student_version="v0001", cluster=2, batch=1,
                                    strategy="cluster")
    assert (pairs[2].attribute, pairs[2].group, pairs[2].draft) == (None, None, None)
    assert review_counts(tasks, CONTROL) == {"accept": 1, "edit": 2, "reject": 2, "emptied": 2, "unreviewed": 4}
    assert verified_pairs([], CONTROL) == [] and review_counts([], CONTROL)["unreviewed"] == 0


def test_the_config_loads_in_label_studio_and_takes_drafts_and_reviews(ls: LabelStudio) -> None:
    for config in (CONFIG, generation_label_config(["polite", "rude & <loud>", "neutral"])):
        control = parse_generation_control(config)
        project_id = create_project(ls, "alvar generation config", config)
        assert project_kind(ls.projects.get(id=project_id).label_config) == GENERATION
        with_group, without = import_tasks(ls, project_id, [
            {"data": {"input": "they are all criminals", "source_id": "p1", "group": "migrants"}},
            {"data": {"input": "women can't drive", "source_id": "p2"}}])
        ls.predictions.create(task=without, result=control.output_result("Plenty of them drive well."),
                              score=0.4, model_version="draft")
        regions = [*control.output_result("Most of them are not."),
                   {"from_name": "attribute", "to_name": "input", "type": "choices",
                    "value": {"choices": [control.attributes[-1]]}},
                   {"from_name": "verdict", "to_name": "input", "type": "choices", "value": {"choices": ["edit"]}}]
        ls.annotations.create(id=with_group, result=regions, was_cancelled=False)
        tasks = [ls.tasks.get(id=str(task_id)).model_dump() for task_id in (with_group, without)]
        assert PoolFields.of(tasks[0]).group == "migrants" and PoolFields.of(tasks[1]).group is None
        assert [prediction["result"] for prediction in tasks[1]["predictions"]] == \
            [control.output_result("Plenty of them drive well.")]
        stored = ls.annotations.list(id=with_group)[0].result
        assert control.review(stored) == Review("edit", "Most of them are not.", control.attributes[-1])
        assert [(pair.task_id, pair.output) for pair in verified_pairs(tasks, control)] == \
            [(with_group, "Most of them are not.")]
