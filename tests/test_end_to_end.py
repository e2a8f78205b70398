"""One whole loop through the real stack that `alvar up` starts, driven as people drive it.

`alvar up` (real Label Studio 1.23.2, embedded Redis, waitress backend, `alvar worker`, a loopback
chat-completions server as the LLM) -> an annotator labels the first batch through Label Studio's API ->
variations appear pre-labeled -> a reviewer verifies them (one marked invalid) and presses "Start training" ->
the worker retrains and the project switches to the new version -> `alvar select` makes batch 2 ->
`alvar export` -> `alvar evaluate` reads the export -> `alvar status` -> `alvar down` leaves no process behind.
The whole loop runs twice: on Label Studio's embedded SQLite, and on PostgreSQL (`alvar up --database` on a
fresh database of ALVAR_TEST_POSTGRES, dropped after).
Beside it, headless Chromium opens a variation in Label Studio's labeling UI and finds its pre-label selected
(screenshots kept in test-artifacts/).
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from label_studio_sdk import LabelStudio
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from alvar.backend.model_store import project_store
from alvar.datafiles import read_dataset
from alvar.generator.variation_tasks import VERIFY_TAB
from alvar.labelstudio.choices_control import parse_choices_control
from alvar.labelstudio.training_data import VALIDITY_FROM_NAME
from alvar.loop import label_studio_database, services
from alvar.loop.stack import SERVICES, StackState
from alvar.strategies import DEFAULT_STRATEGY
from tests.browser import chromium, log_in
from tests.chat_server import ChatServer
from tests.conftest import REPO, alvar_command, free_port, wait_for
from tests.stack_processes import FOREIGN_SETTINGS, processes_in_sessions

pytestmark = pytest.mark.label_studio  # `alvar up` starts the stack with its Label Studio

BUDGET = 4
VARIATIONS = 2
PER_CLASS_BOOTSTRAP = 5
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"


@dataclass
class Loop:
    """The running stack and what the first round left: the batch, its gold labels and its variations."""

    data_dir: Path
    env: dict[str, str]
    state: StackState
    client: LabelStudio
    first_version: str
    gold: dict[int, str]
    variations: list[dict[str, Any]]
    llm: ChatServer

    def alvar(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        return subprocess.run([*alvar_command(), *args], capture_output=True, text=True, timeout=timeout,
                              env=self.env)


def _write_tsv(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(("id", "title", "category"))
        writer.writerows(rows)
    return path


def _bootstrap_rows(safety_dir: Path) -> list[tuple[str, str, str]]:
    """The first five bootstrap labels of each class: a first model in seconds."""
    taken: dict[str, int] = {}
    rows = []
    for example in read_dataset(safety_dir / "bootstrap_labeled.tsv").examples:
        if taken.get(str(example.label), 0) < PER_CLASS_BOOTSTRAP:
            taken[str(example.label)] = taken.get(str(example.label), 0) + 1
            rows.append((example.id, example.text, str(example.label)))
    return rows


def _choice(from_name: str, to_name: str, value: str) -> dict[str, Any]:
    return {"from_name": from_name, "to_name": to_name, "type": "choices", "value": {"choices": [value]}}


def _tasks(client: LabelStudio, project_id: int, **equal: Any) -> list[dict[str, Any]]:
    items = [{"filter": f"filter:tasks:data.{key}", "operator": "equal",
              "type": "Number" if isinstance(value, int) else "String", "value": value} for key, value in equal.items()]
    query = json.dumps({"filters": {"conjunction": "and", "items": items}})
    return [task.model_dump() for task in client.tasks.list(project=project_id, query=query, fields="all")]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """The `alvar up` arguments that choose Label Studio's database: none (SQLite), or a fresh PostgreSQL one."""
    if request.param == "sqlite":
        yield []
        return
    postgres_admin_url = request.getfixturevalue("postgres_admin_url")
    name = f"pg_loop_{secrets.token_hex(4)}"
    url = label_studio_database.create_database(postgres_admin_url, name)
    try:
        yield ["--database", url]
    finally:
        label_studio_database.drop_database(postgres_admin_url, name)


@pytest.fixture(scope="module")
def loop(run_root: Path, safety_dir: Path, database: list[str]) -> Iterator[Loop]:
    data_dir = run_root / f"loop-{'postgresql' if database else 'sqlite'}"
    data_dir.mkdir()
    pool = safety_dir / "dev_labeled.tsv"
    bootstrap = _write_tsv(run_root / "bootstrap.tsv", _bootstrap_rows(safety_dir))
    gold_by_id = {example.id: str(example.label) for example in read_dataset(pool).examples}
    with ChatServer() as llm:
        env = {key: value for key, value in os.environ.items() if key not in FOREIGN_SETTINGS}
        env.update({
            "OPENAI_BASE_URL": llm.base_url, "OPENAI_API_KEY": "loopback", "ALVAR_VARIATIONS": str(VARIATIONS),
            # Only new human labels count toward retraining: the batch's 4 labels do not reach it, so the retrain
            # comes when the reviewer, done verifying, presses "Start training" (below).
            "ALVAR_RETRAIN_EVERY": str(BUDGET + 1),
            "ALVAR_EPOCHS": "3", "ALVAR_TORCH_THREADS": "1", "ALVAR_GENERATION_CONCURRENCY": "2",
            "ALVAR_LABEL_STUDIO_PORT": str(free_port()), "ALVAR_BACKEND_PORT": str(free_port()),
            # Each database's loop asks the LLM itself: no answer cached by the other one (same texts, same model).
            "ALVAR_CACHE_DIR": str(data_dir / "cache"),
        })
        partial = Loop(data_dir, env, None, None, "", {}, [], llm)  # type: ignore[arg-type]
        try:
            yield _first_round(partial, pool, bootstrap, gold_by_id, database)
        finally:
            partial.alvar("down", "--data-dir", str(data_dir))


def _first_round(loop: Loop, pool: Path, bootstrap: Path, gold_by_id: dict[str, str], database: list[str]) -> Loop:
    """`alvar up`, then an annotator labels batch 1 and the generator answers with pre-labeled variations."""
    started = loop.alvar("up", "--data-dir", str(loop.data_dir), "--pool", str(pool), "--bootstrap", str(bootstrap),
                         "--budget", str(BUDGET), *database)
    assert started.returncode == 0, started.stderr + started.stdout
    state = StackState.load(loop.data_dir)
    assert state is not None and state.project_id is not None
    assert f"{state.label_studio_url}/projects/{state.project_id}" in started.stdout
    assert "LLM: gpt-4o-mini at " + loop.llm.base_url in started.stdout
    loop.state = state
    if database:  # Label Studio keeps the project in PostgreSQL, and the stack remembers which database
        with psycopg.connect(database[-1]) as connection:
            assert connection.execute("SELECT id FROM project").fetchall() == [(state.project_id,)]
        assert state.database == label_studio_database.redacted(database[-1])
    loop.client = LabelStudio(base_url=state.label_studio_url, api_key=state.token)
    project = loop.client.projects.get(id=state.project_id)
    loop.first_version = str(project.model_version)
    assert project_store(loop.data_dir / "models", state.project_id).current_version() == loop.first_version

    batch = _tasks(loop.client, state.project_id, batch=1)
    assert len(batch) == BUDGET and all(task["data"]["strategy"] == DEFAULT_STRATEGY for task in batch)
    assert all(not task["annotations"] for task in batch)
    control = parse_choices_control(project.label_config)
    for task in batch:
        label = gold_by_id[task["data"]["source_id"]]
        loop.gold[task["id"]] = label
        loop.client.annotations.create(id=task["id"], result=[_choice(control.from_name, control.to_name, label)],
                                       lead_time=4.0)
    loop.variations = wait_for(lambda: _complete_variations(loop), 300,
                               f"{BUDGET * VARIATIONS} variations with their predictions in Label Studio")
    return loop


def _complete_variations(loop: Loop) -> list[dict[str, Any]] | None:
    """All variations, once each has its predictions (Label Studio adds them just after the tasks)."""
    found = _tasks(loop.client, loop.state.project_id, origin="llm")
    done = len(found) == BUDGET * VARIATIONS and all(task["predictions"] for task in found)
    return found if done else None


def test_variations_arrive_pre_labeled_with_the_human_label(loop: Loop) -> None:
    for variation in loop.variations:
        source_label = loop.gold[variation["data"]["source_task"]]
        assert variation["data"]["prelabel"] == source_label
        versions = {prediction["model_version"]: prediction["result"][0]["value"]["choices"]
                    for prediction in variation["predictions"]}
        # The labeling stream shows only the project's version: the pre-label must be there too.
        assert versions == {loop.first_version: [source_label], "llm:gpt-4o-mini": [source_label]}, \
            loop.client.projects.get(id=loop.state.project_id).model_version
        assert not variation["annotations"]


def _tab_id(loop: Loop, title: str) -> int:
    return next(int(view.id) for view in loop.client.views.list(project=loop.state.project_id)
                if (view.data or {}).get("title") == title)


def test_the_labeling_ui_shows_a_variation_with_its_pre_label_selected(loop: Loop) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    variation = loop.variations[0]
    prelabel = variation["data"]["prelabel"]
    project_url = f"{loop.state.label_studio_url}/projects/{loop.state.project_id}"
    browser = chromium()
    try:
        wait = WebDriverWait(browser, 60)
        log_in(browser, loop.state.label_studio_url, loop.state.username, loop.state.password)

        browser.get(f"{project_url}/data?tab={_tab_id(loop, f'Batch 1 · {DEFAULT_STRATEGY}')}")
        wait.until(expected_conditions.presence_of_element_located(
            (By.CSS_SELECTOR, "input[aria-label^='Select Task ']")))
        rows = browser.find_elements(By.CSS_SELECTOR, "input[aria-label^='Select Task ']")
        # The batch's tasks and, carrying their source's batch, its variations.
        listed = {task for task in [*loop.gold, *(variation["id"] for variation in loop.variations)]}
        assert {row.get_attribute("aria-label") for row in rows} == {f"Select Task {task}" for task in listed}
        assert f"Batch 1 · {DEFAULT_STRATEGY}" in browser.page_source and VERIFY_TAB in browser.page_source
        browser.save_screenshot(str(SCREENSHOTS / "batch-tab.png"))

        browser.get(f"{project_url}/data?tab={_tab_id(loop, VERIFY_TAB)}&task={variation['id']}")
        wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "input.ant-radio-input")))
        wait.until(lambda driver: variation["data"]["text"] in driver.find_element(By.TAG_NAME, "body").text)
        radios = {radio.get_attribute("name"): radio.is_selected()
                  for radio in browser.find_elements(By.CSS_SELECTOR, "input.ant-radio-input")}
        browser.save_screenshot(str(SCREENSHOTS / "variation-prelabel.png"))
    finally:
        browser.quit()
    assert radios[prelabel] is True, radios
    assert [name for name, selected in radios.items() if selected] == [prelabel]
    assert {"valid", "invalid"} <= set(radios), "the validity choices are on the page"


def _verify_all(loop: Loop) -> dict[int, str]:
    """A reviewer confirms each variation's label and judges it valid, except the first one: invalid."""
    control = parse_choices_control(loop.client.projects.get(id=loop.state.project_id).label_config)
    judged = {}
    for index, variation in enumerate(loop.variations):
        judged[variation["id"]] = "invalid" if index == 0 else "valid"
        result = [_choice(control.from_name, control.to_name, variation["data"]["prelabel"]),
                  _choice(VALIDITY_FROM_NAME, control.to_name, judged[variation["id"]])]
        loop.client.annotations.create(id=variation["id"], result=result, lead_time=2.0)
    return judged


def test_the_loop_closes_from_verification_to_export(loop: Loop, run_root: Path, safety_dir: Path) -> None:
    project_id = loop.state.project_id
    judged = _verify_all(loop)
    assert loop.client.projects.get(id=project_id).model_version == loop.first_version
    (backend,) = loop.client.ml.list(project=project_id)
    loop.client.ml.train(id=backend.id)  # "Start training" in the project's Model settings

    new_version = wait_for(lambda: (version := loop.client.projects.get(id=project_id).model_version)
                           != loop.first_version and version, 600, "a new model version set on the project")
    store = project_store(loop.data_dir / "models", project_id)
    assert store.current_version() == new_version
    metadata = json.loads((store.path(new_version) / "metadata.json").read_text())
    valid = sum(verdict == "valid" for verdict in judged.values())
    assert metadata["n_examples"] == len(_bootstrap_rows(safety_dir)) + BUDGET + valid

    selected = loop.alvar("select", "--project", str(project_id), "--data-dir", str(loop.data_dir),
                          "--budget", str(BUDGET))
    assert selected.returncode == 0, selected.stderr + selected.stdout
    batch_two = _tasks(loop.client, project_id, batch=2)
    assert len(batch_two) == BUDGET
    assert not any(task["annotations"] or task["data"].get("origin") for task in batch_two)

    export_dir = run_root / f"{loop.data_dir.name}-export"
    exported = loop.alvar("export", "--project", str(project_id), "--out", str(export_dir),
                          "--data-dir", str(loop.data_dir))
    assert exported.returncode == 0, exported.stderr + exported.stdout
    rows = list(csv.DictReader((export_dir / "dataset_full.tsv").open(), delimiter="\t"))
    assert len(rows) == len(_bootstrap_rows(safety_dir)) + BUDGET + valid
    assert sum(row["origin"] == "llm" for row in rows) == valid
    invalid_text = loop.variations[0]["data"]["text"]
    assert invalid_text not in {row["text"] for row in rows}

    evaluated = loop.alvar("evaluate", "--train", str(export_dir / "dataset.tsv"),
                           "--test", str(safety_dir / "bootstrap_labeled.tsv"), "--models", "tfidf-lr",
                           "--seeds", "1", "--out", str(run_root / f"{loop.data_dir.name}-evaluation"))
    assert evaluated.returncode == 0, evaluated.stderr + evaluated.stdout
    summary = list(csv.DictReader((run_root / f"{loop.data_dir.name}-evaluation" / "summary.csv").open()))
    assert [row["model"] for row in summary] == ["tfidf-lr"]

    status = loop.alvar("status", "--data-dir", str(loop.data_dir), "--json")
    assert status.returncode == 0, status.stderr + status.stdout
    report = json.loads(status.stdout)
    assert report["all_up"] and report["model_version"] == new_version and report["batch"] == 2
    assert report["batch_progress"] == {"done": 0, "total": BUDGET}
    assert report["verification"] == {"done": BUDGET * VARIATIONS, "total": BUDGET * VARIATIONS}
    assert report["llm"]["requests"] >= BUDGET and report["failed_jobs"] == []

    sessions = {pid for name in SERVICES if (pid := services.running_pid(loop.data_dir, name))}
    assert len(sessions) == len(SERVICES)
    stopped = loop.alvar("down", "--data-dir", str(loop.data_dir))
    assert stopped.returncode == 0 and all(name in stopped.stdout for name in SERVICES)
    assert processes_in_sessions(sessions) == []
    after = loop.alvar("status", "--data-dir", str(loop.data_dir), "--json")
    assert after.returncode == 1 and not json.loads(after.stdout)["all_up"]
