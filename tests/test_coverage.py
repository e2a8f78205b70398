"""`alvar coverage` on files and on a real Label Studio project, and the clusters line of `alvar status`."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from label_studio_sdk import LabelStudio
from PIL import Image

from alvar.datafiles import read_dataset
from alvar.label_config import load
from alvar.labelstudio.choices_control import parse_choices_control
from alvar.loop.coverage import compute_coverage, file_pool, project_pool
from alvar.loop.project import create_project, import_pool
from alvar.loop.select import select_project
from alvar.loop.stack import StackState
from alvar.loop.status import stack_status
from alvar.scripts.coverage_output import PICTURE_FILE, TABLE_COLUMNS, TABLE_FILE, write_outputs
from alvar.settings import load_settings
from tests.conftest import alvar_command, free_port

CONTROL = parse_choices_control(load("annotate"))


@pytest.fixture(scope="module")
def cache_dir(run_root: Path) -> Path:
    return run_root / "coverage-cache"


def alvar(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*alvar_command(), *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "ALVAR_TORCH_THREADS": "2"})


def table(out: Path) -> list[dict[str, str]]:
    with (out / TABLE_FILE).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and list(rows[0]) == list(TABLE_COLUMNS)
    return rows


def assert_picture(out: Path) -> None:
    path = out / PICTURE_FILE
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width >= 800 and image.height >= 600
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50, "points in several colours, not a blank canvas"


def write_tsv(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    path.write_text("id\ttext\tlabel\n" + "".join(f"{i}\t{text}\t{label}\n" for i, text, label in rows))
    return path


def test_coverage_of_files(tmp_path: Path, safety_dir: Path, cache_dir: Path) -> None:
    examples = read_dataset(safety_dir / "test_labeled.tsv").examples[:60]
    pool = write_tsv(tmp_path / "pool.tsv", [(e.id, e.text, e.label) for e in examples[:50]])
    # Six labelled texts: four of the pool, two that only the labelled file holds (they join the pool).
    labelled = [*examples[:4], *examples[50:52]]
    labeled = write_tsv(tmp_path / "labeled.tsv", [(e.id, e.text, e.label) for e in labelled])
    variations = write_tsv(tmp_path / "variations.tsv", [("v1", "my chest hurts and I cannot breathe, help",
                                                          examples[0].label), ("v2", "can I sue my landlord?",
                                                                               examples[1].label)])
    batch = tmp_path / "batch.jsonl"
    batch.write_text("".join(json.dumps({"id": e.id, "text": e.text}) + "\n" for e in examples[10:15]))
    settings = load_settings(model_dir=tmp_path / "no-models", cache_dir=cache_dir, torch_threads=2)

    chosen = file_pool(pool, labeled, variations, batch)
    assert len(chosen.pool) == 52 and int(chosen.labelled.sum()) == 6 and len(chosen.variations) == 2
    assert sum(item.in_batch for item in chosen.pool) == 5
    assert [item.label for item in chosen.pool[:4]] == [e.label for e in examples[:4]]
    assert all(item.label is None for item in chosen.pool[4:50]), "the pool file's own labels are not read"

    coverage = compute_coverage(settings, chosen, n_clusters=5, seed=0)
    assert coverage.model_version is None and coverage.entropy is None
    out = tmp_path / "out"
    write_outputs(coverage, out)
    assert_picture(out)
    rows = table(out)
    assert [int(row["cluster"]) for row in rows] == list(range(5))
    assert sum(int(row["size"]) for row in rows) == 52
    assert sum(int(row["labelled"]) for row in rows) == 6 and sum(int(row["variations"]) for row in rows) == 2
    assert all(row["mean_entropy"] == "" for row in rows), "no model trained: entropy is blank"
    for row in rows:
        members = coverage.clustering.clusters == int(row["cluster"])
        assert int(row["labelled"]) == int((members & chosen.labelled).sum())
    assert {int(row["cluster"]) for row in rows if row["labelled"] == "0"} == set(coverage.unlabelled_clusters)

    again = compute_coverage(settings, file_pool(pool, labeled, variations, batch), n_clusters=5, seed=0)
    assert np.array_equal(again.clustering.clusters, coverage.clustering.clusters), "the same seed, the same picture"


def test_bad_input_is_a_clear_error(tmp_path: Path, safety_dir: Path) -> None:
    neither = alvar("coverage", "--out", str(tmp_path))
    assert neither.returncode == 2 and "--project" in neither.stderr and "--pool" in neither.stderr
    empty = tmp_path / "empty.tsv"
    empty.write_text("id\ttext\n")
    nothing = alvar("coverage", "--pool", str(empty), "--out", str(tmp_path))
    assert nothing.returncode == 2 and "empty" in nothing.stderr
    small = write_tsv(tmp_path / "small.tsv", [("1", "one text", "x"), ("2", "another text", "y")])
    too_many = alvar("coverage", "--pool", str(small), "--clusters", "3", "--out", str(tmp_path))
    assert too_many.returncode == 2 and "between 1 and the pool's size (2), got 3" in too_many.stderr
    mixed = alvar("coverage", "--project", "1", "--labeled", str(small), "--out", str(tmp_path))
    assert mixed.returncode == 2 and "--labeled: file mode only" in mixed.stderr
    for result in (neither, nothing, too_many, mixed):
        assert "Traceback" not in result.stderr
    assert not (tmp_path / PICTURE_FILE).exists()


def variation(text: str, label: str, source: int, status: str = "current") -> dict:
    return {"data": {"text": text, "origin": "llm", "prelabel": label, "variation_status": status,
                     "source_task": source, "source_label": label}}


def stack_settings(data_dir: Path, label_studio, project_id: int, model_dir: Path, cache_dir: Path, redis_url: str):
    """Settings whose data dir holds a stack.json pointing at the test Label Studio and project (the other
    services are down: status still reports the project)."""
    data_dir.mkdir(parents=True)
    StackState(label_studio.url, f"http://127.0.0.1:{free_port()}", label_studio.username, label_studio.password,
               label_studio.token, "backend", "backend-password", "secret", project_id).save(data_dir)
    return load_settings(data_dir=data_dir, model_dir=model_dir, cache_dir=cache_dir, torch_threads=2,
                         redis_url=redis_url)


def test_coverage_of_a_label_studio_project_and_status(tmp_path: Path, ls: LabelStudio, label_studio,
                                                       seed_model_dir: Path, safety_dir: Path,
                                                       cache_dir: Path, external_redis_url: str) -> None:
    examples = read_dataset(safety_dir / "test_labeled.tsv").examples[200:240]
    project_id = create_project(ls, "alvar coverage", load("annotate"))
    task_ids = import_pool(ls, project_id, examples)
    for task_id, example in zip(task_ids[:5], examples[:5]):
        ls.annotations.create(id=task_id, result=CONTROL.choice_result(example.label), was_cancelled=False)
    ls.projects.import_tasks(id=project_id, request=[  # type: ignore[arg-type]
        variation("a variation of the first", examples[0].label, task_ids[0]),
        variation("another variation of the first", examples[0].label, task_ids[0]),
        variation("a variation of the second", examples[1].label, task_ids[1]),
        variation("an outdated variation", examples[1].label, task_ids[1], status="stale"),
    ])
    settings = load_settings(model_dir=seed_model_dir, cache_dir=cache_dir, torch_threads=2)
    batch = select_project(settings, ls, project_id, "cluster", budget=6, seed=0, n_clusters=3)

    chosen = project_pool(ls, project_id)
    assert len(chosen.pool) == 40 and int(chosen.labelled.sum()) == 5
    assert len(chosen.variations) == 3, "the stale variation is no longer part of the dataset"
    assert chosen.batch == batch.batch == 1 and sum(item.in_batch for item in chosen.pool) == 6

    # status before anything embedded the project's texts in its cache: it says so and embeds nothing
    fresh = stack_settings(tmp_path / "fresh", label_studio, project_id, seed_model_dir, tmp_path / "empty-cache",
                           external_redis_url)
    cover = stack_status(fresh, label_cover=True).label_cover
    assert cover is not None and cover.unlabelled is None and cover.not_embedded == 40
    assert "not embedded yet" in cover.line()
    assert stack_status(fresh).label_cover is None, "status counts clusters only when asked"

    out = tmp_path / "coverage"
    result = alvar("--cache-dir", str(cache_dir), "coverage", "--project", str(project_id), "--out", str(out),
                   "--clusters", "20", "--model-dir", str(seed_model_dir), "--label-studio-url", label_studio.url,
                   "--label-studio-api-key", label_studio.token)
    assert result.returncode == 0, result.stderr
    assert_picture(out)
    rows = table(out)
    assert len(rows) == 20 and sum(int(row["size"]) for row in rows) == 40
    assert sum(int(row["labelled"]) for row in rows) == 5 and sum(int(row["variations"]) for row in rows) == 3
    assert all(0 <= float(row["mean_entropy"]) <= math.log(len(CONTROL.labels)) for row in rows if row["size"] != "0")
    unlabelled = [int(row["cluster"]) for row in rows if row["labelled"] == "0"]
    assert len(unlabelled) >= 15, "five labels reach at most five of twenty clusters"
    assert f"{len(unlabelled)} of 20 clusters have no labelled task yet" in result.stdout

    status_settings = stack_settings(tmp_path / "stack", label_studio, project_id, seed_model_dir, cache_dir,
                                     external_redis_url)
    status = stack_status(status_settings, label_cover=True)
    assert status.label_cover is not None and status.label_cover.clusters == 20
    assert status.label_cover.unlabelled == len(unlabelled), "status counts what coverage shows"
    assert status.label_cover.line() == f"{len(unlabelled)} of 20 clusters have no labelled task yet"
    assert status.as_dict()["label_cover"]["unlabelled"] == len(unlabelled)

    coverage = compute_coverage(settings, project_pool(ls, project_id), n_clusters=20, seed=0)
    first_uncovered = coverage.unlabelled_clusters[0]
    row = int(np.flatnonzero(coverage.clustering.clusters == first_uncovered)[0])
    ls.annotations.create(id=task_ids[row], result=CONTROL.choice_result(examples[row].label), was_cancelled=False)
    after = stack_status(status_settings, label_cover=True).label_cover
    assert after is not None and after.unlabelled == len(unlabelled) - 1, "a label in an empty cluster covers it"

    missing = alvar("coverage", "--project", "999999", "--out", str(tmp_path / "none"),
                    "--label-studio-url", label_studio.url, "--label-studio-api-key", label_studio.token)
    assert missing.returncode == 2 and "404" in missing.stderr and "Traceback" not in missing.stderr
    empty = create_project(ls, "coverage of nothing", load("annotate"))
    nothing = alvar("coverage", "--project", str(empty), "--out", str(tmp_path / "none"),
                    "--label-studio-url", label_studio.url, "--label-studio-api-key", label_studio.token)
    assert nothing.returncode == 2 and "empty" in nothing.stderr

