from alvar.label_config import load
from alvar.labelstudio.choices_control import parse_choices_control
from alvar.labelstudio.task_data import CURRENT_STATUS, BatchFields, PoolFields, VariationFields
from alvar.labelstudio.training_data import (
    LabelledItem,
    current_labels,
    is_stale,
    is_variation,
    labelled_items,
    training_set,
)

CONTROL = parse_choices_control(load("annotate"))


def annotation(label: str | None, validity: str | None = None, cancelled: bool = False, updated: str = "2026-01-01",
               annotation_id: int = 1) -> dict:
    result = CONTROL.choice_result(label) if label else []
    if validity:
        result.append({"from_name": "validity", "to_name": "text", "type": "choices", "value": {"choices": [validity]}})
    return {"id": annotation_id, "result": result, "was_cancelled": cancelled, "updated_at": updated}


def task(text: str, *annotations: dict, origin: str | None = None) -> dict:
    data = {"text": text, **({"origin": origin} if origin else {})}
    return {"data": data, "annotations": list(annotations)}


def test_human_labels_and_only_valid_variations_train() -> None:
    tasks = [
        task("human one", annotation("medical-advice")),
        task("human relabelled", annotation("discard", updated="2026-01-01"),
             annotation("legal-advice", updated="2026-02-01", annotation_id=2)),
        task("human skipped", annotation("self-harm", cancelled=True)),
        task("not annotated"),
        task("variation valid", annotation("financial-advice", "valid"), origin="llm"),
        task("variation corrected", annotation("self-harm", "valid"), origin="llm"),
        task("variation invalid", annotation("financial-advice", "invalid"), origin="llm"),
        task("variation unverified", annotation("financial-advice"), origin="llm"),
        task("variation pending", origin="llm"),
    ]
    chosen = training_set(tasks, CONTROL)
    assert list(zip(chosen.texts, chosen.labels)) == [
        ("human one", "medical-advice"),
        ("human relabelled", "legal-advice"),
        ("variation valid", "financial-advice"),
        ("variation corrected", "self-harm"),
    ]
    assert chosen.summary() == {"n_examples": 4, "human": 2, "variations": 2, "skipped_variations": 3}


def test_stale_variations_never_count_and_unverified_ones_only_when_asked() -> None:
    stale = task("variation stale", annotation("discard", "valid"), origin="llm")
    stale["data"]["variation_status"] = "stale"
    pending = task("variation pending", origin="llm")
    pending["data"]["prelabel"] = "legal-advice"
    judged_class_only = task("variation class only", annotation("medical-advice"), origin="llm")
    tasks = [stale, pending, judged_class_only, task("human", annotation("discard"))]
    default = [item for item in labelled_items(tasks, CONTROL) if isinstance(item, LabelledItem)]
    assert [(item.text, item.verified) for item in default] == [("human", True)]
    asked = [item for item in labelled_items(tasks, CONTROL, include_unverified=True) if isinstance(item, LabelledItem)]
    assert [(item.text, item.label, item.verified) for item in asked] == [
        ("variation pending", "legal-advice", False), ("variation class only", "medical-advice", False),
        ("human", "discard", True)]


def by(annotator: int, label: str | None, updated: str, annotation_id: int, cancelled: bool = False) -> dict:
    return {**annotation(label, updated=updated, annotation_id=annotation_id, cancelled=cancelled),
            "completed_by": annotator}


def test_current_labels_are_each_annotators_latest_label() -> None:
    agree = task("t", by(1, "self-harm", "2026-01-01", 1), by(2, "self-harm", "2026-01-02", 2))
    assert current_labels(agree, CONTROL) == ["self-harm"]
    disagree = task("t", by(1, "self-harm", "2026-01-01", 1), by(2, "medical-advice", "2026-01-02", 2))
    assert current_labels(disagree, CONTROL) == ["medical-advice", "self-harm"]
    # Annotator 1 changed their mind; their earlier label is no longer theirs. Skips and unknown labels count as none.
    changed = task("t", by(1, "self-harm", "2026-01-01", 1), by(1, "discard", "2026-01-03", 3),
                   by(2, "legal-advise", "2026-01-02", 2), by(3, "legal-advice", "2026-01-04", 4, cancelled=True))
    assert current_labels(changed, CONTROL) == ["discard"]
    # Annotator objects (as some Label Studio payloads give them) and odd shapes do not break it.
    odd = task("t", {**by(1, "discard", "2026-01-01", 1), "completed_by": {"id": 1}}, "junk", {"result": "x"})
    assert current_labels(odd, CONTROL) == ["discard"]


def test_labels_outside_the_config_never_train() -> None:
    chosen = training_set([task("typo", annotation("legal-advise")), task("fine", annotation("discard"))], CONTROL)
    assert chosen.texts == ["fine"] and chosen.labels == ["discard"]
    assert CONTROL.chosen_label([{"from_name": "label", "type": "choices", "value": {"choices": [["x"]]}}]) is None
    assert CONTROL.chosen_label("not a list") is None and CONTROL.chosen_label([None, 3]) is None


def test_task_data_fields_read_back_whatever_a_client_sent() -> None:
    written = VariationFields(prelabel="discard", source_task=7, source_label="discard")
    variation = {"data": {"text": "t", **written.data()}}
    assert VariationFields.of(variation) == written and written.variation_status == CURRENT_STATUS
    assert is_variation(variation) and not is_stale(variation) and "source_text" not in variation["data"]
    junk = {"data": {"batch": "two", "round": True, "entropy": "high", "batch_size": 2.5, "source_task": [1]}}
    assert BatchFields.of(junk) == BatchFields() and VariationFields.of(junk).source_task is None
    assert BatchFields.of({"data": {"batch": 3.0, "entropy": 1}}) == BatchFields(batch=3, entropy=1.0)
    assert PoolFields.of({"data": None}) == PoolFields() and PoolFields.of(object()) == PoolFields()
