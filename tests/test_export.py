"""`alvar export` from a real Label Studio project holding human annotations and valid, invalid, unverified
and stale variations; every format, and `alvar evaluate` reading the export."""

from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

import pytest
from label_studio_sdk import LabelStudio

from alvar.label_config import load
from alvar.labelstudio.choices_control import parse_choices_control
from alvar.loop.label_studio_server import LabelStudioServer
from alvar.loop.project import create_project
from tests.conftest import LS_USER, alvar_command

CONFIG = load("annotate")
CONTROL = parse_choices_control(CONFIG)


def result(label: str, validity: str | None = None) -> list[dict]:
    regions = CONTROL.choice_result(label)
    if validity:
        regions.append({"from_name": "validity", "to_name": "text", "type": "choices",
                        "value": {"choices": [validity]}})
    return regions


def variation(text: str, prelabel: str, source_task: int, status: str = "current") -> dict:
    return {"text": text, "origin": "llm", "prelabel": prelabel, "variation_status": status,
            "source_task": source_task, "relation": "same_label", "llm_model": "loopback-1",
            "strategy": "cluster", "round": 1, "batch": 1, "source_id": f"src{source_task}~v1"}


@pytest.fixture(scope="module")
def exported_project(ls: LabelStudio) -> tuple[int, dict[str, int]]:
    """Tasks of every kind, annotated through the API; returns the project and task ids by name."""
    project_id = create_project(ls, "alvar export", CONFIG)
    second = ls.users.create(username="second-annotator", email="second@alvar.test", first_name="Second")
    humans = {
        "human medical": ("my knee hurts after running", "medical-advice"),
        "human legal": ("can my landlord keep the deposit", "legal-advice"),
        "human money": ("how do I pay off my card debt", "financial-advice"),
        "human flood": ('the river is over the "main" road \\ help', "emergency-situation"),
    }
    requests = [{"data": {"text": text, "source_id": name.split()[1], "strategy": "cluster", "round": 1, "batch": 1}}
                for name, (text, _) in humans.items()]
    ids = dict(zip(humans, ls.projects.import_tasks(id=project_id, request=requests, return_task_ids=True).task_ids))
    for name, (_, label) in humans.items():
        ls.annotations.create(id=ids[name], result=result(label), was_cancelled=False)
    # A second annotator on two tasks: agrees on one, disagrees on the other.
    both = [{"data": {"text": "I feel like ending it all", "source_id": "double1"},
             "annotations": [{"result": result("self-harm")}, {"result": result("self-harm"),
                                                                "completed_by": second.id}]},
            {"data": {"text": "is it legal to record my boss", "source_id": "double2"},
             "annotations": [{"result": result("legal-advice")}, {"result": result("discard"),
                                                                   "completed_by": second.id}]}]
    ids.update(zip(("double 1", "double 2"),
                   ls.projects.import_tasks(id=project_id, request=both, return_task_ids=True).task_ids))
    source = ids["human medical"]
    kinds = {"valid": variation("my knee aches after a jog", "medical-advice", source),
             "corrected": variation("my knee is fine, where do I buy shoes", "medical-advice", source),
             "invalid": variation("knee knee knee", "medical-advice", source),
             "unverified": variation("running hurts my knees", "medical-advice", source),
             "stale": variation("my knee hurt, then it stopped", "legal-advice", source, status="stale")}
    ids.update(zip(kinds, ls.projects.import_tasks(id=project_id, request=[{"data": data} for data in kinds.values()],
                                                   return_task_ids=True).task_ids))
    ls.annotations.create(id=ids["valid"], result=result("medical-advice", "valid"), was_cancelled=False)
    ls.annotations.create(id=ids["corrected"], result=result("discard", "valid"), was_cancelled=False)
    ls.annotations.create(id=ids["invalid"], result=result("medical-advice", "invalid"), was_cancelled=False)
    ls.annotations.create(id=ids["stale"], result=result("legal-advice", "valid"), was_cancelled=False)
    ls.projects.import_tasks(id=project_id, request=[{"data": {"text": "never labelled", "source_id": "none"}}])
    return project_id, ids


def run_export(label_studio: LabelStudioServer, project_id: int, out: Path, *extra: str) -> str:
    env = {**os.environ, "LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.token}
    done = subprocess.run([*alvar_command(), "export", "--project", str(project_id), "--out", str(out), *extra],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def read_tsv_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def read_tsv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))


def test_export_holds_exactly_humans_and_valid_variations_in_every_format(
        ls: LabelStudio, label_studio: LabelStudioServer, exported_project: tuple[int, dict[str, int]],
        tmp_path: Path) -> None:
    project_id, ids = exported_project
    output = run_export(label_studio, project_id, tmp_path)
    expected = {
        ids["human medical"]: ("medical-advice", "human", True), ids["human legal"]: ("legal-advice", "human", True),
        ids["human money"]: ("financial-advice", "human", True),
        ids["human flood"]: ("emergency-situation", "human", True),
        ids["double 1"]: ("self-harm", "human", True), ids["double 2"]: ("discard", "human", True),
        ids["valid"]: ("medical-advice", "llm", True), ids["corrected"]: ("discard", "llm", True),
    }
    assert "8 rows (6 human, 2 variations; 3 variations left out)" in output

    jsonl = [json.loads(line) for line in (tmp_path / "dataset.jsonl").read_text().splitlines()]
    assert {row["id"]: (row["label"], row["origin"], row["verified"]) for row in jsonl} == expected
    valid = next(row for row in jsonl if row["id"] == ids["valid"])
    assert valid["llm_model"] == "loopback-1" and valid["relation"] == "same_label"
    assert valid["source_task"] == str(ids["human medical"]) and valid["strategy"] == "cluster"
    assert next(row for row in jsonl if row["id"] == ids["double 2"])["annotators"] == f"{LS_USER},second@alvar.test"

    full = read_tsv(tmp_path / "dataset_full.tsv")
    assert {int(row["id"]): (row["label"], row["origin"], row["verified"] == "True") for row in full} == expected
    released = read_tsv(tmp_path / "dataset.tsv")
    assert list(released[0]) == ["id", "input", "category"]
    assert sorted((row["input"], row["category"]) for row in released) == sorted(
        (row["text"], row["label"]) for row in jsonl)

    import pandas
    from datasets import load_from_disk

    hf = load_from_disk(str(tmp_path / "hf"))
    names = hf.features["label"].names
    assert {row["id"]: (names[row["label"]], row["origin"], row["verified"]) for row in hf} == expected
    assert sorted(pandas.read_parquet(tmp_path / "dataset.parquet")["id"]) == sorted(expected)

    card = (tmp_path / "README.md").read_text()
    assert "**8 rows**" in card and "std of counts" in card and "loopback-1" in card
    # Two annotators, two shared tasks, one agreement: po 0.5, pe 0.25, kappa 1/3.
    assert f"| {LS_USER} | second@alvar.test | 2 | 0.333 |" in card

    evaluated = subprocess.run([*alvar_command(), "evaluate", "--train", str(tmp_path / "dataset.tsv"), "--test",
                                str(tmp_path / "dataset.jsonl"), "--models", "tfidf-lr", "--seeds", "1", "--out",
                                str(tmp_path / "eval")], capture_output=True, text=True, timeout=300)
    assert evaluated.returncode == 0, evaluated.stderr
    (run,) = read_tsv_csv(tmp_path / "eval" / "runs.csv")
    assert run["model"] == "tfidf-lr" and float(run["accuracy"]) > 0.5


def test_unverified_variations_only_when_asked(label_studio: LabelStudioServer,
                                              exported_project: tuple[int, dict[str, int]], tmp_path: Path) -> None:
    project_id, ids = exported_project
    run_export(label_studio, project_id, tmp_path, "--format", "jsonl", "--include-unverified")
    rows = {json.loads(line)["id"]: json.loads(line) for line in (tmp_path / "dataset.jsonl").read_text().splitlines()}
    assert len(rows) == 9 and rows[ids["unverified"]]["verified"] is False
    assert rows[ids["unverified"]]["label"] == "medical-advice"
    assert ids["invalid"] not in rows and ids["stale"] not in rows
    assert not (tmp_path / "dataset.tsv").exists() and not (tmp_path / "hf").exists()


def test_bad_export_requests_fail_clearly(ls: LabelStudio, label_studio: LabelStudioServer,
                                          exported_project: tuple[int, dict[str, int]], tmp_path: Path) -> None:
    env = {**os.environ, "LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.token}
    empty = create_project(ls, "alvar empty export", CONFIG)
    for arguments, message in [(["--project", str(empty)], "no labelled items"),
                               (["--project", str(exported_project[0]), "--format", "xml"], "unknown format"),
                               (["--project", "999999"], "Label Studio answered 404")]:
        done = subprocess.run([*alvar_command(), "export", *arguments, "--out", str(tmp_path / "x")], env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and message in done.stderr, done.stderr
