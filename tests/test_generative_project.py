"""Issue 14's acceptance test: one generative round through the real stack, driven as people drive it.

A pool file without labels (inputs with subgroups) and 3 bootstrap pairs -> `alvar init` makes a generative
project (the TextArea config), trains the student G on the 3 pairs on the worker, publishes G's interim outputs
with their informativeness (R's entropy) as predictions, and selects a cluster batch of 4 -> the teacher (the
loopback LLM) pre-fills the batch's outputs -> headless Chromium opens a drafted task and finds the draft in the
output box (docs/generation-review.png) -> a reviewer accepts one draft, edits one, rejects one and empties one
-> G is fine-tuned on the verified pairs only (3 + 2) and the project switches to the new version -> `alvar
status` counts the reviews -> `alvar export` holds exactly the verified pairs, with their provenance -> `alvar
select` makes batch 2 on the new student's outputs and the teacher drafts it.

Real Label Studio 1.23.2, the backend and `alvar worker` as processes, the embedded Redis, real torch models (G
from the shipped MiniLM files; R a 1-epoch classifier trained here), the loopback chat-completions server.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from label_studio_sdk import LabelStudio
from rq.job import JobStatus
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from alvar.attribute_model import AttributeJudge
from alvar.backend.learner import TransformerClassifier
from alvar.backend.model_store import data_hash, project_store
from alvar.datafiles import DataFileError
from alvar.generator.teacher import draft_key
from alvar.labelstudio.client import iter_tasks
from alvar.labelstudio.generation_config import CLASSIFICATION, GENERATION, parse_generation_control, project_kind
from alvar.labelstudio.task_data import BatchFields, DraftFields
from alvar.loop.generation_scores import GenerationSelection, select_generation_batch
from alvar.loop.init_plan import InitError, InitPlan, wanted_kind
from alvar.loop.initialize import GENERATION_TITLE, check_files
from alvar.loop.label_studio_server import LabelStudioServer
from alvar.loop.select import REVIEW_TAB
from alvar.loop.status import generation_status
from alvar.pairfiles import PairColumns
from alvar.queues import job_status
from alvar.settings import load_settings
from tests.browser import chromium, log_in
from tests.conftest import LS_PASSWORD, LS_USER, REPO, alvar_command, wait_for
from tests.generator_stack import GeneratorStack, generative_stack
from tests.stack_processes import FOREIGN_SETTINGS

H = "counter-narrative"
NOT_H = "not-counter-narrative"
BUDGET = 4
SCREENSHOT = REPO / "docs" / "generation-review.png"

POOL = [
    ("p1", "Migrants only come here to take our jobs and benefits.", "migrants"),
    ("p2", "Migrants should all be sent back where they came from.", "migrants"),
    ("p3", "Refugees bring crime into every town they settle in.", "migrants"),
    ("p4", "Women are too emotional to lead a company.", "women"),
    ("p5", "Women belong in the kitchen, not in parliament.", "women"),
    ("p6", "Girls are simply worse at science than boys.", "women"),
    ("p7", "Muslims cannot be loyal citizens of a democracy.", "muslims"),
    ("p8", "Every mosque is a breeding ground for extremists.", "muslims"),
    ("p9", "Islam is a religion of violence, full stop.", "muslims"),
]
BOOTSTRAP = [
    ("b1", "Migrants are lazy and live off welfare.",
     "Most migrants work, pay taxes and contribute more than they receive.", "migrants"),
    ("b2", "Women drivers cause most accidents.",
     "Insurance data show women cause fewer serious accidents than men.", "women"),
    ("b3", "Muslims refuse to integrate anywhere.",
     "Millions of Muslims are teachers, doctors and neighbours who are part of their communities.", "muslims"),
]
# R: does a text counter hate respectfully? A 1-epoch classifier on a dozen texts: uncertain, never confident.
ATTRIBUTE_TEXTS = [
    ("Most people who arrive work hard and pay their taxes.", H),
    ("Studies show no link between religion and crime rates.", H),
    ("Everyone deserves respect, whatever their background.", H),
    ("Women lead many successful companies and countries.", H),
    ("Diversity makes our towns stronger and richer.", H),
    ("Facts show this claim is simply not true.", H),
    ("They should all go home, nobody wants them.", NOT_H),
    ("I agree, they are the problem.", NOT_H),
    ("Whatever, I do not care.", NOT_H),
    ("Yes, ban them all.", NOT_H),
    ("lol", NOT_H),
    ("That is exactly why they are dangerous.", NOT_H),
]


@dataclass
class Round:
    """The stack, the project `alvar init` made and its first version, the batch and its drafts."""

    stack: GeneratorStack
    env: dict[str, str]
    client: LabelStudio
    project_id: int
    first_version: str
    init_output: str
    attribute_dir: Path
    batch: list[dict[str, Any]]

    def alvar(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run([*alvar_command(), *args], capture_output=True, text=True, timeout=timeout,
                              env=self.env)

    def tasks(self) -> list[dict[str, Any]]:
        return list(iter_tasks(self.client, self.project_id))

    @property
    def model_dir(self) -> Path:
        return Path(self.stack.env["MODEL_DIR"])


def _write_tsv(path: Path, header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _train_attribute_model(target: Path) -> Path:
    texts, labels = zip(*ATTRIBUTE_TEXTS)
    model = TransformerClassifier(load_settings().base_model, epochs=1, max_length=32, num_threads=1)
    model.fit(list(texts), list(labels)).save(target)
    return target


@pytest.fixture(scope="module")
def generative_round(run_root: Path, label_studio: LabelStudioServer, ls: LabelStudio) -> Iterator[Round]:
    root = run_root / "generative"
    root.mkdir()
    pool = _write_tsv(root / "pool.tsv", ("id", "input", "group"), POOL)
    bootstrap = _write_tsv(root / "bootstrap.tsv", ("id", "input", "output", "group"), BOOTSTRAP)
    attribute_dir = _train_attribute_model(root / "attribute")
    with generative_stack(root, attribute_dir, label_studio) as stack:
        env = {key: value for key, value in os.environ.items() if key not in FOREIGN_SETTINGS}
        env.update(stack.env)
        done = subprocess.run([*alvar_command(), "init", "--pool", str(pool), "--bootstrap", str(bootstrap),
                               "--budget", str(BUDGET), "--backend-url", stack.url], capture_output=True,
                              text=True, timeout=900, env=env)
        assert done.returncode == 0, done.stderr + done.stdout
        projects: Iterable[Any] = ls.projects.list()
        (project_id,) = [int(project.id) for project in projects if project.title == GENERATION_TITLE]
        version = str(ls.projects.get(id=project_id).model_version)
        partial = Round(stack, env, ls, project_id, version, done.stdout, attribute_dir, [])
        partial.batch = [task for task in partial.tasks() if BatchFields.of(task).batch == 1]
        yield partial


def test_init_makes_a_generative_project_and_trains_g_on_the_bootstrap_pairs(generative_round: Round) -> None:
    project = generative_round.client.projects.get(id=generative_round.project_id)
    assert project_kind(project.label_config) == GENERATION and "<TextArea" in str(project.label_config)
    control = parse_generation_control(project.label_config)
    assert control.attributes[0] == H, "the attribute choices are R's classes, H first"
    tasks = generative_round.tasks()
    assert len(tasks) == len(POOL) + len(BOOTSTRAP)
    assert {task["data"]["group"] for task in tasks} == {"migrants", "women", "muslims"}

    store = project_store(generative_round.model_dir, generative_round.project_id)
    assert store.current_version() == generative_round.first_version
    metadata = store.metadata(generative_round.first_version)
    assert metadata["kind"] == GENERATION and metadata["n_examples"] == len(BOOTSTRAP)
    assert metadata["data_hash"] == data_hash([row[1] for row in BOOTSTRAP], [row[2] for row in BOOTSTRAP])


def test_gs_interim_outputs_and_their_informativeness_are_the_predictions(generative_round: Round) -> None:
    """Each pool task has the first version's prediction: G's output (or, on a drafted task, the draft) as the
    TextArea text, and the entropy of R on that output as its score."""
    judge = AttributeJudge(str(generative_round.attribute_dir), H).load()
    pool_tasks = [task for task in generative_round.tasks() if not task["annotations"]]
    assert len(pool_tasks) == len(POOL)
    for task in pool_tasks:
        current = [found for found in task["predictions"] if found["model_version"] == generative_round.first_version]
        assert current, f"task {task['id']} has no prediction of {generative_round.first_version}"
        for prediction in current:
            (region,) = [region for region in prediction["result"] if region["type"] == "textarea"]
            (text,) = region["value"]["text"]
            assert text.strip()
            if text != DraftFields.of(task).draft:  # G's own output (a draft may have arrived meanwhile)
                informativeness = judge.informativeness([text], [task["data"]["input"]])[0]
                assert prediction["score"] == pytest.approx(float(informativeness), abs=1e-4)


def test_init_selects_a_cluster_batch_on_the_informativeness(generative_round: Round) -> None:
    batch = generative_round.batch
    assert len(batch) == BUDGET and not any(task["annotations"] for task in batch)
    fields = [BatchFields.of(task) for task in batch]
    assert {field.strategy for field in fields} == {"cluster"} and {field.batch_size for field in fields} == {BUDGET}
    assert len({field.cluster for field in fields}) == BUDGET, "one input from each cluster"
    assert all(field.entropy is not None and field.entropy > 0 for field in fields), "scored by R, not random"
    assert f"batch 1: {BUDGET} tasks by cluster" in generative_round.init_output
    tabs = {(view.data or {}).get("title") for view in generative_round.client.views.list(
        project=generative_round.project_id)}
    assert {"Batch 1 · cluster", REVIEW_TAB} <= tabs


def _drafted(generative_round: Round) -> list[dict[str, Any]] | None:
    """The batch once every task's draft job has finished (a job writes the draft into the task, then makes it the
    task's prediction: between the two, under load for seconds while R scores it, a reader sees only the first)."""
    ids = {task["id"] for task in generative_round.batch}
    jobs = [job_status(generative_round.stack.redis, draft_key(generative_round.project_id, task_id))
            for task_id in ids]
    if jobs != [JobStatus.FINISHED] * len(ids):
        return None
    batch = [task for task in generative_round.tasks() if task["id"] in ids]
    return batch if all(DraftFields.of(task).draft_status for task in batch) else None


def test_the_teacher_prefills_the_batch_and_the_labeling_ui_shows_the_draft(generative_round: Round) -> None:
    batch = wait_for(lambda: _drafted(generative_round), 300, "the teacher's drafts of the batch")
    version = generative_round.client.projects.get(id=generative_round.project_id).model_version
    for task in batch:
        draft = DraftFields.of(task)
        assert draft.draft_status == "drafted" and draft.draft, task["data"]
        assert draft.draft_key == f"draft-{generative_round.project_id}-{task['id']}"
        texts = [prediction["result"][0]["value"]["text"][0] for prediction in task["predictions"]
                 if prediction["model_version"] == version]
        assert draft.draft in texts, "the draft is a prediction of the project's version: Label Studio pre-fills it"
    generative_round.batch = batch

    task = batch[0]
    tab = next(int(view.id) for view in generative_round.client.views.list(project=generative_round.project_id)
               if (view.data or {}).get("title") == REVIEW_TAB)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    browser = chromium(window="1280,860")
    try:
        log_in(browser, generative_round.stack.env["LABEL_STUDIO_URL"], LS_USER, LS_PASSWORD)
        browser.get(f"{generative_round.stack.env['LABEL_STUDIO_URL']}/projects/{generative_round.project_id}"
                    f"/data?tab={tab}&task={task['id']}")
        wait = WebDriverWait(browser, 60)
        wait.until(lambda driver: task["data"]["input"] in driver.find_element(By.TAG_NAME, "body").text)
        shown = wait.until(lambda driver: _shown(driver, "[data-testid=htx-textbox-content]"))
        browser.save_screenshot(str(SCREENSHOT))
        browser.find_element(By.CSS_SELECTOR, "[data-testid=htx-textbox-edit-button]").click()
        editable = wait.until(lambda driver: [box.get_attribute("value") for box in driver.find_elements(
            By.CSS_SELECTOR, "[data-testid=textarea-region] textarea")])
    finally:
        browser.quit()
    assert shown == [DraftFields.of(task).draft], "the output box is pre-filled with the draft, and only with it"
    assert editable == [DraftFields.of(task).draft], "its edit button turns the draft into an editable text box"


def _shown(browser: Any, selector: str) -> list[str]:
    return [element.text for element in browser.find_elements(By.CSS_SELECTOR, selector) if element.is_displayed()]


def _choice(from_name: str, to_name: str, value: str) -> dict[str, Any]:
    return {"from_name": from_name, "to_name": to_name, "type": "choices", "value": {"choices": [value]}}


def test_reviews_train_g_on_the_verified_pairs_only_and_the_export_holds_them(generative_round: Round,
                                                                              tmp_path: Path) -> None:
    client, project_id = generative_round.client, generative_round.project_id
    control = parse_generation_control(client.projects.get(id=project_id).label_config)
    rejected, emptied, accepted, edited = generative_round.batch
    edited_text = "Respect is owed to everyone; generalising about a whole group is how hatred starts."

    def review(task: dict[str, Any], verdict: str, output: str | None) -> None:
        result = [*(control.output_result(output) if output is not None else []),
                  _choice(control.attribute_name, control.input_name, H),
                  _choice(control.verdict_name, control.input_name, verdict)]
        client.annotations.create(id=task["id"], result=result, was_cancelled=False, lead_time=3.0)

    # What a reviewer's UI sends: the output box's text (the draft as it was, or corrected, or nothing left).
    review(rejected, "reject", DraftFields.of(rejected).draft)
    review(emptied, "accept", None)
    review(accepted, "accept", DraftFields.of(accepted).draft)
    review(edited, "edit", edited_text)  # the second verified review: ALVAR_RETRAIN_EVERY=2 retrains

    store = project_store(generative_round.model_dir, project_id)
    second = wait_for(lambda: (found := client.projects.get(id=project_id).model_version) != generative_round
                      .first_version and found, 600, "the project to switch to G's second version")
    assert store.current_version() == second
    inputs = [row[1] for row in BOOTSTRAP] + [accepted["data"]["input"], edited["data"]["input"]]
    outputs = [row[2] for row in BOOTSTRAP] + [str(DraftFields.of(accepted).draft), edited_text]
    metadata = store.metadata(second)
    assert metadata["n_examples"] == 5 and metadata["data_hash"] == data_hash(inputs, outputs)
    predicted = wait_for(lambda: [task for task in generative_round.tasks()
                                  if any(found["model_version"] == second for found in task["predictions"])],
                         120, f"predictions of {second}")
    assert len(predicted) >= len(POOL)

    status = generation_status(load_settings(model_dir=generative_round.model_dir,
                                             attribute_model=str(generative_round.attribute_dir)), client, project_id)
    assert (status.drafted, status.screened_out, status.student_version) == (BUDGET, 0, second)
    assert status.reviews == {"accept": len(BOOTSTRAP) + 1, "edit": 1, "reject": 1, "emptied": 1,
                              "unreviewed": len(POOL) - BUDGET}

    out = tmp_path / "export"
    exported = generative_round.alvar("export", "--project", str(project_id), "--out", str(out),
                                      "--format", "tsv,jsonl")
    assert exported.returncode == 0, exported.stderr + exported.stdout
    rows = [json.loads(line) for line in (out / "dataset.jsonl").read_text().splitlines()]
    assert sorted((row["input"], row["output"]) for row in rows) == sorted(zip(inputs, outputs))
    by_task = {row["task_id"]: row for row in rows}
    assert set(by_task) >= {accepted["id"], edited["id"]} and not {rejected["id"], emptied["id"]} & set(by_task)
    assert by_task[edited["id"]]["verdict"] == "edited"
    assert by_task[edited["id"]]["draft"] == DraftFields.of(edited).draft != edited_text
    assert by_task[accepted["id"]]["verdict"] == "accepted"
    assert by_task[accepted["id"]]["group"] == accepted["data"]["group"]
    assert by_task[accepted["id"]]["teacher_model"] == DraftFields.of(accepted).teacher_model


def test_select_makes_the_next_batch_on_the_new_student_and_queues_its_drafts(generative_round: Round) -> None:
    selected = generative_round.alvar("select", "--project", str(generative_round.project_id), "--strategy",
                                      "cluster", "--budget", "2")
    assert selected.returncode == 0, selected.stderr + selected.stdout
    said = " ".join(selected.stdout.split())
    assert "batch 2: 2 tasks by cluster; teacher drafts queued for 2 of them" in said
    second = [task for task in generative_round.tasks() if BatchFields.of(task).batch == 2]
    assert len(second) == 2 and not {task["id"] for task in second} & {task["id"] for task in generative_round.batch}
    version = generative_round.client.projects.get(id=generative_round.project_id).model_version
    assert all(BatchFields.of(task).entropy for task in second), f"scored with R on {version}'s outputs"
    drafted = wait_for(lambda: all(DraftFields.of(task).draft for task in generative_round.tasks()
                                   if BatchFields.of(task).batch == 2), 300, "the teacher's drafts of batch 2")
    assert drafted


# Fast tier: what decides a project's kind, and the first round without R.


def test_bootstrap_pairs_make_a_generative_project_and_a_labelled_bootstrap_a_classification_one(
        tmp_path: Path) -> None:
    inputs = _write_tsv(tmp_path / "pool.tsv", ("id", "input", "group"), POOL)
    pairs = _write_tsv(tmp_path / "pairs.tsv", ("id", "input", "output", "group"), BOOTSTRAP)
    unlabelled = _write_tsv(tmp_path / "texts.tsv", ("id", "text"), [("1", "a post"), ("2", "another post")])
    labelled = _write_tsv(tmp_path / "labelled.tsv", ("id", "text", "label"), [("1", "a post", "discard")])
    assert wanted_kind(InitPlan(backend_url="-", pool=inputs, bootstrap=pairs)) == GENERATION
    assert wanted_kind(InitPlan(backend_url="-", pool=pairs)) == GENERATION
    # The documented classification setup: an unlabelled pool and labelled bootstrap (or no bootstrap yet).
    assert wanted_kind(InitPlan(backend_url="-", pool=unlabelled, bootstrap=labelled)) == CLASSIFICATION
    assert wanted_kind(InitPlan(backend_url="-", pool=unlabelled)) == CLASSIFICATION
    assert wanted_kind(InitPlan(backend_url="-", pool=inputs)) == CLASSIFICATION
    assert wanted_kind(InitPlan(backend_url="-", pool=inputs, task=GENERATION)) == GENERATION
    assert wanted_kind(InitPlan(backend_url="-", pool=inputs, columns=PairColumns(group_col="group"))) == GENERATION
    assert wanted_kind(InitPlan(backend_url="-")) == CLASSIFICATION


@pytest.mark.slow  # `alvar` subprocesses that load models or start services
def test_files_init_cannot_use_stop_it_before_anything_is_made(tmp_path: Path) -> None:
    posts = _write_tsv(tmp_path / "posts.tsv", ("id", "post", "reply"), [("1", "a post", "a reply")])
    with pytest.raises(DataFileError, match=r"no input column .*post.*reply.*--input-col"):
        check_files(InitPlan(backend_url="-", pool=posts, task=GENERATION), GENERATION)
    check_files(InitPlan(backend_url="-", pool=posts, bootstrap=posts, task=GENERATION,
                         columns=PairColumns(input_col="post", output_col="reply")), GENERATION)
    inputs = _write_tsv(tmp_path / "pool.tsv", ("id", "input", "group"), POOL)
    with pytest.raises(InitError, match="the bootstrap pairs need an output in every row"):
        check_files(InitPlan(backend_url="-", pool=inputs, bootstrap=inputs, task=GENERATION), GENERATION)
    refused = subprocess.run([*alvar_command(), "init", "--task", "translation", "--pool", str(inputs)],
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "choose one of auto, classification, generation" in refused.stderr


@pytest.mark.slow  # `alvar` subprocesses that load models or start services
def test_without_r_the_first_batch_is_cluster_then_random_and_says_so(tmp_path: Path) -> None:
    settings = load_settings(model_dir=tmp_path / "models", cache_dir=tmp_path / "cache", torch_threads=1)
    inputs = [row[1] for row in POOL]
    eligible = np.ones(len(inputs), dtype=bool)
    eligible[0] = False

    def picks(seed: int) -> GenerationSelection:
        return select_generation_batch(settings, inputs, eligible, "default", 3, seed, project_id=1,
                                       control_required=H)

    chosen = picks(0)
    assert chosen.fallback == "R is not trained yet" and chosen.run.strategy == "cluster"
    assert len(set(chosen.run.selection.indices)) == 3 and 0 not in chosen.run.selection.indices
    assert len(set(chosen.run.selection.clusters)) == 3, "one input from each of 3 clusters"
    assert not chosen.run.entropy.any(), "nothing measured an informativeness: the batch records none"
    assert picks(0).run.selection.indices.tolist() == chosen.run.selection.indices.tolist(), "the seed decides"
