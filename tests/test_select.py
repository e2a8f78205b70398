"""`alvar select` in a real Label Studio project and on files."""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from label_studio_sdk import LabelStudio

from alvar.backend.model_store import ModelStore
from alvar.datafiles import Example, read_dataset
from alvar.label_config import load
from alvar.labelstudio.batches import batch_tab_title, latest_batch
from alvar.labelstudio.choices_control import LabelConfigError, parse_choices_control
from alvar.labelstudio.client import is_labeled, iter_tasks, pool_tasks
from alvar.labelstudio.task_data import BatchFields, VariationFields
from alvar.loop.project import create_project, import_pool
from alvar.loop.select import select_project
from alvar.loop.selection import first_of_duplicates
from alvar.settings import load_settings
from alvar.strategies import DEFAULT_STRATEGY
from tests.conftest import alvar_command

CONTROL = parse_choices_control(load("annotate"))


@pytest.fixture(scope="module")
def settings(seed_model_dir: Path, run_root: Path):
    return load_settings(model_dir=seed_model_dir, cache_dir=run_root / "select-cache", torch_threads=2)


def batch_tasks(ls: LabelStudio, project_id: int, batch: int) -> list:
    view = next(v for v in ls.views.list(project=project_id) if v.data["title"].startswith(f"Batch {batch} "))
    return list(ls.tasks.list(project=project_id, view=view.id, fields="all", page_size=500))


def test_select_a_batch_in_label_studio(ls: LabelStudio, settings, safety_dir: Path) -> None:
    pool = read_dataset(safety_dir / "test_labeled.tsv").examples[:60]
    project_id = create_project(ls, "alvar select", load("annotate"))
    task_ids = import_pool(ls, project_id, pool)
    for task_id, example in zip(task_ids[:2], pool[:2]):
        ls.annotations.create(id=task_id, result=CONTROL.choice_result(example.label), was_cancelled=False)
    variation = ls.projects.import_tasks(id=project_id, return_task_ids=True, request=[
        {"data": {"text": "a generated variation", "origin": "llm", "source_task": task_ids[0]}}]).task_ids[0]

    outcome = select_project(settings, ls, project_id, "cluster", budget=10, seed=0, n_clusters=5)
    assert outcome.created and outcome.batch == 1 and len(set(outcome.task_ids)) == 10
    assert not set(outcome.task_ids) & {*task_ids[:2], variation}

    views = [v.data["title"] for v in ls.views.list(project=project_id)]
    assert views.count(batch_tab_title(1, "cluster")) == 1
    listed = batch_tasks(ls, project_id, 1)
    assert sorted(task.id for task in listed) == sorted(outcome.task_ids)
    entropies = [task.data["entropy"] for task in listed]
    assert entropies == sorted(entropies, reverse=True), "the tab lists the most uncertain first"

    _, learner = ModelStore(settings.model_dir).load()
    by_id = {task_id: example for task_id, example in zip(task_ids, pool)}
    for task in listed:
        example = by_id[task.id]
        assert task.data["text"] == example.text and task.data["source_id"] == example.id, "data is merged"
        assert (task.data["batch"], task.data["round"], task.data["strategy"]) == (1, 1, "cluster")
        assert 0 <= task.data["cluster"] < 5
        assert task.data["entropy"] == pytest.approx(float(learner.entropy([example.text])[0]), abs=1e-4)
    assert len({task.data["cluster"] for task in listed}) == 5

    snapshot = {task.id: task.data for task in listed}
    again = select_project(settings, ls, project_id, "cluster", budget=10, seed=0, n_clusters=5)
    assert not again.created and "still open" in again.message
    assert {task.id: task.data for task in batch_tasks(ls, project_id, 1)} == snapshot
    assert len([v for v in ls.views.list(project=project_id)]) == len(views)

    for task in listed:
        ls.annotations.create(id=task.id, result=CONTROL.choice_result(by_id[task.id].label), was_cancelled=False)
    human = Counter(by_id[task_id].label for task_id in [*task_ids[:2], *outcome.task_ids])
    default = select_project(settings, ls, project_id, "default", budget=10, seed=0, dry_run=True)
    assert default.run is not None and default.run.strategy == DEFAULT_STRATEGY
    balanced = select_project(settings, ls, project_id, "balanced", budget=10, seed=0, dry_run=True)
    open_ids = [task_id for task_id in task_ids if task_id not in {*task_ids[:2], *outcome.task_ids}]
    predicted = dict(zip(open_ids, learner.predict([by_id[task_id].text for task_id in open_ids])))
    rarest = min(sorted(set(predicted.values())), key=lambda label: human[label])
    assert predicted[balanced.task_ids[0]] == rarest, "the annotations' labels are the counts balanced evens out"
    dry = select_project(settings, ls, project_id, "topn", budget=10, seed=0, dry_run=True)
    assert not dry.created and dry.batch == 2 and len(dry.task_ids) == 10
    assert all("batch" not in ls.tasks.get(id=task_id).data for task_id in dry.task_ids)
    second = select_project(settings, ls, project_id, "topn", budget=10, seed=0)
    assert second.created and second.batch == 2 and second.task_ids == dry.task_ids
    assert not set(second.task_ids) & set(outcome.task_ids)


def test_the_pool_is_read_whole_where_a_person_annotated_or_skipped(ls: LabelStudio, safety_dir: Path) -> None:
    """select reads the pool without annotations and the annotated and skipped tasks again whole: what it sees
    equals one whole read (order, data, annotations, which tasks count as labelled)."""
    pool = read_dataset(safety_dir / "test_labeled.tsv").examples[:12]
    project_id = create_project(ls, "alvar pool read", load("annotate"))
    task_ids = import_pool(ls, project_id, pool)
    for task_id, example in zip(task_ids[:3], pool[:3]):
        ls.annotations.create(id=task_id, result=CONTROL.choice_result(example.label), was_cancelled=False)
    ls.annotations.create(id=task_ids[3], result=[], was_cancelled=True)
    ls.predictions.create(task=task_ids[4], result=CONTROL.choice_result(pool[4].label), model_version="v")

    whole = list(iter_tasks(ls, project_id, fields="all"))
    read = pool_tasks(ls, project_id, page_size=5)
    assert [task["id"] for task in read] == [task["id"] for task in whole] == task_ids
    assert [task["data"] for task in read] == [task["data"] for task in whole]
    assert [is_labeled(task) for task in read] == [is_labeled(task) for task in whole] == [True] * 4 + [False] * 8
    for task, reference in zip(read[:4], whole[:4]):
        assert task["annotations"] == reference["annotations"] and len(task["annotations"]) == 1
    assert all(not task.get("annotations") for task in read[4:])
    assert whole[4]["predictions"] and not read[4].get("predictions"), "an untouched task is read without them"


def batch_titles(ls: LabelStudio, project_id: int) -> list[str]:
    return [view.data["title"] for view in ls.views.list(project=project_id)]


def test_a_batch_cut_short_is_completed_with_the_same_picks(ls: LabelStudio, settings, safety_dir: Path) -> None:
    pool = read_dataset(safety_dir / "test_labeled.tsv").examples[60:100]
    project_id = create_project(ls, "alvar select cut short", load("annotate"))
    import_pool(ls, project_id, pool)
    planned = select_project(settings, ls, project_id, "cluster", budget=8, seed=0, n_clusters=4, dry_run=True)
    for task_id in planned.task_ids[:3]:  # a run stopped after writing three of its eight tasks, before the tab
        data = ls.tasks.get(id=task_id).data
        fields = BatchFields(batch=1, round=1, strategy="cluster", batch_size=len(planned.task_ids))
        ls.tasks.update(id=task_id, data={**data, **fields.data()})
    assert batch_titles(ls, project_id) == []

    completed = select_project(settings, ls, project_id, "cluster", budget=8, seed=0, n_clusters=4)
    assert completed.created and completed.batch == 1 and completed.task_ids == planned.task_ids
    assert sorted(task.id for task in batch_tasks(ls, project_id, 1)) == sorted(planned.task_ids)
    assert batch_titles(ls, project_id) == [batch_tab_title(1, "cluster")]

    (tab,) = ls.views.list(project=project_id)
    ls.views.update(id=str(tab.id), project=project_id, data={**tab.data, "title": "my batch"})
    renamed = select_project(settings, ls, project_id, "cluster", budget=8, seed=0, n_clusters=4)
    assert not renamed.created and "still open" in renamed.message
    assert batch_titles(ls, project_id) == ["my batch"], "the tab is found by its filter, not its title"

    ls.views.delete(id=str(tab.id))  # a run stopped after writing every task, before the tab
    again = select_project(settings, ls, project_id, "cluster", budget=8, seed=0, n_clusters=4)
    assert not again.created and "still open" in again.message and sorted(again.task_ids) == sorted(planned.task_ids)
    assert batch_titles(ls, project_id) == [batch_tab_title(1, "cluster")]


def test_a_written_batch_stays_closed_when_a_picked_task_is_deleted(ls: LabelStudio, settings,
                                                                      safety_dir: Path) -> None:
    pool = read_dataset(safety_dir / "test_labeled.tsv").examples[100:140]
    project_id = create_project(ls, "alvar select deleted task", load("annotate"))
    import_pool(ls, project_id, pool)
    first = select_project(settings, ls, project_id, "cluster", budget=6, seed=0, n_clusters=3)
    ls.tasks.delete(id=first.task_ids[0])

    again = select_project(settings, ls, project_id, "cluster", budget=6, seed=0, n_clusters=3)
    assert not again.created and again.batch == 1 and "still open" in again.message
    assert sorted(task.id for task in batch_tasks(ls, project_id, 1)) == sorted(first.task_ids[1:]), \
        "no new task joins a batch whose tab was written"


def alvar(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*alvar_command(), *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "ALVAR_TORCH_THREADS": "2"})


@pytest.mark.slow  # `alvar` subprocesses that load torch and train or embed
def test_select_from_files(tmp_path: Path, settings, safety_dir: Path) -> None:
    pool = safety_dir / "dev_labeled.tsv"
    labeled = tmp_path / "labeled.tsv"
    labeled.write_text("\n".join((pool.read_text().splitlines())[:11]) + "\n")
    out = tmp_path / "batch.jsonl"
    common = ["--model-dir", str(settings.model_dir), "--cache-dir", str(settings.cache_dir)]
    result = alvar(*common[2:], "select", "--pool", str(pool), "--labeled", str(labeled), *common[:2],
                   "--strategy", "cluster", "--budget", "25", "--clusters", "5", "--seed", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 25 and len({row["id"] for row in rows}) == 25
    assert set(rows[0]) == {"id", "text", "cluster", "entropy", "strategy", "rank"}
    assert [row["rank"] for row in rows] == list(range(1, 26))
    labeled_texts = set(read_dataset(labeled).texts)
    assert not {row["text"] for row in rows} & labeled_texts
    assert {row["cluster"] for row in rows} == set(range(5))
    assert "cluster" in result.stdout and "picked" in result.stdout

    default = alvar(*common[2:], "select", "--pool", str(pool), "--labeled", str(labeled), *common[:2],
                    "--budget", "5", "--out", str(out))
    assert default.returncode == 0, default.stderr
    assert {json.loads(line)["strategy"] for line in out.read_text().splitlines()} == {DEFAULT_STRATEGY}
    assert f"5 items by {DEFAULT_STRATEGY}" in default.stdout

    too_many = alvar(*common[2:], "select", "--pool", str(pool), *common[:2], "--budget", "151", "--out", str(out))
    assert too_many.returncode == 2 and "larger than the 150 selectable" in too_many.stderr
    no_text = tmp_path / "pool.csv"
    no_text.write_text("a,b\n1,2\n")
    bad = alvar("select", "--pool", str(no_text), *common[:2], "--out", str(out))
    assert bad.returncode == 2 and "no text column" in bad.stderr and "Traceback" not in bad.stderr


def test_projects_that_cannot_give_a_batch_say_why(ls: LabelStudio, settings) -> None:
    no_choices = create_project(ls, "no choices", "<View><Text name='text' value='$text'/></View>")
    import_pool(ls, no_choices, [Example(id="0", text="a post", label=None)])
    with pytest.raises(LabelConfigError, match="no <Choices>"):
        select_project(settings, ls, no_choices, "cluster", budget=1, seed=0)
    empty = create_project(ls, "empty pool", load("annotate"))
    with pytest.raises(ValueError, match="has no tasks"):
        select_project(settings, ls, empty, "cluster", budget=1, seed=0)


def test_repeated_texts_are_selected_once() -> None:
    texts = ["Is this legal?", "is this  legal?", "Is this legal?", "Is\tthis legal?", "Other"]
    assert first_of_duplicates(texts).tolist() == [True, True, False, False, True]


def test_a_batch_is_complete_once_as_many_picked_tasks_carry_it_as_its_size_says() -> None:
    def task(batch: int | None, size: int | None = None) -> dict:
        return {"data": {"text": "t", **BatchFields(batch=batch, batch_size=size).data()}}

    variation = {"data": {"text": "v", **VariationFields(source_task=1).data(), **BatchFields(batch=2).data()}}
    tasks = [task(1, 2), task(1, 2), task(2, 3), task(None), variation, task(2, 3)]
    latest = latest_batch(tasks)
    assert latest is not None and latest.number == 2 and len(latest.tasks) == 3 and len(latest.picked) == 2
    assert not latest.complete, "two of three picked tasks written"
    assert latest_batch([*tasks, task(2, 3)]).complete
    assert latest_batch([task(1)]).complete, "a batch written before sizes were recorded"
    assert latest_batch([task(None), variation | {"data": {}}]) is None
