"""`alvar export` of a generative project: exactly the verified pairs, with provenance, in every format; from
hand-made tasks and from a real Label Studio project reviewed through the API."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from label_studio_sdk import LabelStudio

from alvar.label_config import load
from alvar.labelstudio.generation_config import parse_generation_control
from alvar.labelstudio.task_data import BatchFields, DraftFields, PoolFields
from alvar.loop.export import (
    ExportError,
    GenerationExport,
    GenerationProject,
    build_export,
    project_tasks,
    write_export,
)
from alvar.loop.project import create_project
from tests.conftest import LS_USER

CONFIG = load("generate")
CONTROL = parse_generation_control(CONFIG)
TEACHER = DraftFields(draft_status="drafted", teacher_model="teacher-1", draft_template="teacher@ab12",
                      draft_key="draft-1-1", draft_attempts=1, student_version="v0001")


def review(output: str | None, verdict: str | None, attribute: str | None = "counter-narrative") -> list[dict]:
    regions = CONTROL.output_result(output) if output is not None else []
    for name, value in (("verdict", verdict), ("attribute", attribute)):
        if value is not None:
            regions.append({"from_name": name, "to_name": "input", "type": "choices", "value": {"choices": [value]}})
    return regions


def pool(source_id: str, text: str, draft: str | None, group: str | None = None) -> dict[str, Any]:
    """A pool input of batch 1 with the teacher's draft."""
    return {"input": text, **PoolFields(source_id=source_id, group=group).data(),
            **BatchFields(batch=1, round=1, cluster=int(source_id[1:]) % 2, strategy="cluster").data(),
            **(replace(TEACHER, draft=draft).data() if draft else {})}


# name: (data, (output, verdict) of the review or None, the exported (output, verdict) or None when left out)
CASES: dict[str, tuple[dict[str, Any], tuple[str | None, str | None] | None, tuple[str, str] | None]] = {
    "accepted": (pool("p1", "they are all criminals", "Most of them are not.", "migrants"),
                 ("Most of them are not.", "accept"), ("Most of them are not.", "accepted")),
    "edited": (pool("p2", "women can't drive", "Many do.", "women"),
               ("Plenty of women drive,\n\tand well.", "edit"), ("Plenty of women drive, and well.", "edited")),
    "written": (pool("p3", "old people are useless", None, "elderly"),
                ("They raised us.", "edit"), ("They raised us.", "edited")),
    "rejected": (pool("p4", "they should leave", "Leave where?", "migrants"), ("Leave where?", "reject"), None),
    "emptied": (pool("p5", "they are lazy", "No.", "migrants"), ("", "accept"), None),
    "no verdict": (pool("p6", "they are loud", "Some are.", "migrants"), ("Some are.", None), None),
    "unreviewed": (pool("p7", "they smell", "That is unkind."), None, None),
}


def hand_made_tasks() -> list[dict[str, Any]]:
    tasks = []
    for number, (data, reviewed, _) in enumerate(CASES.values(), start=1):
        annotations = [] if reviewed is None else [
            {"id": 100 + number, "result": review(*reviewed), "completed_by": "ann@alvar.test", "was_cancelled": False,
             "updated_at": "2026-01-01"}]
        tasks.append({"id": number, "data": data, "annotations": annotations})
    return tasks


def import_tasks(client: LabelStudio, project_id: int, request: list[Any]) -> list[int]:
    """Import tasks; their ids. (The SDK types the request as its own models and the answer without task_ids.)"""
    response: Any = client.projects.import_tasks(id=project_id, request=request, return_task_ids=True)
    return list(response.task_ids)


def read_tsv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))


def expected_pairs() -> dict[str, tuple[str, str]]:
    """source_id -> (output, verdict) of every case that is a verified pair."""
    return {data["source_id"]: exported for data, _, exported in CASES.values() if exported is not None}


def check_files(out: Path, model_version: str | None) -> list[dict[str, Any]]:
    """Every format holds exactly the verified pairs; returns the JSONL rows."""
    expected = expected_pairs()
    jsonl = [json.loads(line) for line in (out / "dataset.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {row["source_id"]: (row["output"].replace("\n\t", " "), row["verdict"]) for row in jsonl} == expected
    assert {row["student_version"] for row in jsonl} == {model_version}
    released = read_tsv(out / "dataset.tsv")
    assert list(released[0]) == ["id", "input", "output", "group"]
    assert {row["id"]: row["output"] for row in released} == {key: output for key, (output, _) in expected.items()}
    full = read_tsv(out / "dataset_full.tsv")
    assert {row["source_id"]: (row["output"], row["verdict"]) for row in full} == expected
    from datasets import load_from_disk

    hf = load_from_disk(str(out / "hf"))
    assert sorted(hf["source_id"]) == sorted(expected) and hf.features["verdict"].names == ["accepted", "edited"]
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "**3 verified (input, output) pairs**, 1 accepted as drafted and 2 edited" in card
    assert "Left out (4): 1 rejected, 1 accepted or edited with the output emptied, 2 not reviewed yet" in card
    return jsonl


def test_export_of_hand_made_tasks_is_exactly_the_verified_pairs_with_provenance(tmp_path: Path) -> None:
    built = build_export(hand_made_tasks(), GenerationProject(CONTROL, "v0002"))
    assert isinstance(built, GenerationExport) and built.left_out == 4
    assert built.counts == {"accept": 1, "edit": 2, "reject": 1, "emptied": 1, "unreviewed": 2}
    written = write_export(built, tmp_path, ["tsv", "jsonl", "hf"], project_id=7)
    assert {path.name for path in written} == {"dataset.tsv", "dataset_full.tsv", "dataset.jsonl", "hf",
                                               "dataset.parquet", "README.md"}
    jsonl = check_files(tmp_path, "v0002")
    accepted = next(row for row in jsonl if row["source_id"] == "p1")
    assert accepted == {
        "source_id": "p1", "input": "they are all criminals", "output": "Most of them are not.",
        "verdict": "accepted", "verifier": "ann@alvar.test", "attribute": "counter-narrative",
        "draft": "Most of them are not.", "teacher_model": "teacher-1", "template": "teacher@ab12",
        "student_version": "v0002", "draft_student_version": "v0001", "group": "migrants", "cluster": 1,
        "batch": 1, "strategy": "cluster", "task_id": 1, "annotation_id": 101}
    written_by_hand = next(row for row in jsonl if row["source_id"] == "p3")
    assert (written_by_hand["draft"], written_by_hand["teacher_model"]) == (None, None)


def test_unverified_outputs_are_never_exported() -> None:
    with pytest.raises(ExportError, match="--include-unverified is for classification projects"):
        build_export(hand_made_tasks(), GenerationProject(CONTROL, None), include_unverified=True)


def test_export_from_label_studio_is_exactly_the_verified_pairs(ls: LabelStudio, tmp_path: Path) -> None:
    project_id = create_project(ls, "alvar generation export", CONFIG)
    ids = dict(zip(CASES, import_tasks(ls, project_id, [{"data": data} for data, _, _ in CASES.values()])))
    for name, (_, reviewed, _) in CASES.items():
        if reviewed is not None:
            ls.annotations.create(id=ids[name], result=review(*reviewed), was_cancelled=False)
    second = ls.users.create(username="generation-reviewer", email="generation-reviewer@alvar.test",
                             first_name="Reviewer")
    # Two reviewers: the second one's later edit decides over the first one's rejection.
    two = import_tasks(ls, project_id, [
        {"data": pool("p8", "they take our jobs", "They do jobs too.", "migrants"), "annotations": [
            {"result": review("They do jobs too.", "reject")},
            {"result": review("They also create jobs.", "edit"), "completed_by": second.id}]}])
    # The student v0002 serves the project: its prediction on an unreviewed task, and the project's version.
    ls.predictions.create(task=ids["unreviewed"], result=CONTROL.output_result("They are people."), score=0.3,
                          model_version="v0002")
    ls.projects.update(id=project_id, model_version="v0002")

    tasks, control = project_tasks(ls, project_id)
    assert control == GenerationProject(CONTROL, "v0002")
    built = build_export(tasks, control)
    assert isinstance(built, GenerationExport)
    assert {(row.source_id, row.verifier) for row in built.rows} == {
        ("p1", LS_USER), ("p2", LS_USER), ("p3", LS_USER), ("p8", "generation-reviewer@alvar.test")}
    late = next(row for row in built.rows if row.source_id == "p8")
    assert (late.task_id, late.output, late.verdict) == (two[0], "They also create jobs.", "edited")
    by_task = {row.task_id: row.annotation_id for row in built.rows}
    for name in ("accepted", "edited", "written"):
        assert by_task[ids[name]] == ls.annotations.list(id=ids[name])[0].id

    write_export(built, tmp_path, ["tsv", "jsonl"], project_id)
    jsonl = [json.loads(line) for line in (tmp_path / "dataset.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {row["source_id"]: row["verdict"] for row in jsonl} == {"p1": "accepted", "p2": "edited", "p3": "edited",
                                                                   "p8": "edited"}
    assert {row["id"] for row in read_tsv(tmp_path / "dataset.tsv")} == {"p1", "p2", "p3", "p8"}
    assert "**4 verified (input, output) pairs**" in (tmp_path / "README.md").read_text(encoding="utf-8")
