"""What people see while they judge, on a real Label Studio: a variation beside its source text and the label a
person gave it (headless Chromium, screenshot kept), the Batch tab's numeric order, and the prediction score of a
batch's tasks.

The screenshot goes to ``$ALVAR_SCREENSHOT_DIR/review.png`` when that is set (``docs/`` for the README's picture),
else to ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from label_studio_sdk import LabelStudio
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from alvar.backend.model_store import ModelStore
from alvar.backend.publishing import publish_predictions
from alvar.datafiles import read_dataset
from alvar.generator.generation import Generation
from alvar.generator.templates import VariationPrompt
from alvar.generator.variation_tasks import VERIFY_TAB, build_tasks, ensure_verify_tab
from alvar.label_config import load
from alvar.labelstudio.batches import NUMBER_COLUMNS, batch_tab, ensure_batch_tab
from alvar.labelstudio.choices_control import parse_choices_control
from alvar.labelstudio.client import as_dict, dm_number_order
from alvar.labelstudio.task_data import ENTROPY_COLUMN, BatchFields, in_batch
from alvar.loop.project import create_project, import_pool
from alvar.loop.select import select_project
from alvar.settings import load_settings
from tests.browser import chromium, log_in
from tests.conftest import LS_PASSWORD, LS_USER, REPO

CONTROL = parse_choices_control(load("annotate"))
SCREENSHOTS = Path(os.environ.get("ALVAR_SCREENSHOT_DIR") or REPO / "test-artifacts" / "screenshots")


@dataclass(frozen=True)
class Reviewed:
    """A project scored by a model version, its first batch, one batch task labelled and one variation of it."""

    project_id: int
    version: str
    batch: list[dict[str, Any]]
    source: dict[str, Any]
    source_label: str
    variation: dict[str, Any]
    probabilities: dict[int, np.ndarray]


@pytest.fixture(scope="module")
def settings(seed_model_dir: Path, run_root: Path):
    return load_settings(model_dir=seed_model_dir, cache_dir=run_root / "review-cache", torch_threads=2)


@pytest.fixture(scope="module")
def reviewed(ls: LabelStudio, settings, safety_dir: Path) -> Reviewed:
    """As `alvar init` leaves a project (predictions published, then the first batch), plus what the generator
    imports once a person labels a batch task."""
    pool = read_dataset(safety_dir / "test_labeled.tsv").examples[:30]
    project_id = create_project(ls, "alvar review view", load("annotate"))
    gold = dict(zip(import_pool(ls, project_id, pool), (str(example.label) for example in pool)))
    store = ModelStore(settings.model_dir)
    version = str(store.current_version())
    _, learner = store.load(version, num_threads=2)
    publish_predictions(ls, project_id, learner, version, CONTROL)
    select_project(settings, ls, project_id, "cluster", budget=4, seed=0, n_clusters=2)
    ensure_verify_tab(ls, project_id)
    listed: Any = ls.tasks.list(project=project_id, view=_batch_tab(ls, project_id)[0], fields="all")
    batch = [as_dict(task) for task in listed]

    source = batch[0]
    label = gold[source["id"]]
    annotation = ls.annotations.create(id=source["id"], result=CONTROL.choice_result(label))
    prompt = VariationPrompt(text=source["data"]["text"], label=label, k=1)
    said_again = f"{prompt.text.strip().rstrip('?.!')}: what should I know?"
    generation = Generation(variations=[said_again], requested=1, template_id=prompt.template_id, model="loopback")
    request = build_tasks(generation, prompt, source, annotation.id, "review-view", CONTROL, version)
    imported = ls.projects.import_tasks(id=project_id, request=request, return_task_ids=True)
    (variation_id,) = imported.task_ids  # type: ignore[attr-defined]
    variation = as_dict(ls.tasks.get(id=variation_id))
    probabilities = dict(zip((task["id"] for task in batch),
                             learner.predict_proba([task["data"]["text"] for task in batch])))
    return Reviewed(project_id, version, batch, source, label, variation, probabilities)


def _batch_tab(ls: LabelStudio, project_id: int) -> tuple[int, dict[str, Any]]:
    """Batch 1's tab: its id and data."""
    view = batch_tab(ls, project_id, 1)
    assert view is not None and view.id is not None and view.data is not None, "batch 1 has a tab"
    return view.id, dict(view.data)


def _open_task(browser: Any, url: str, tab: int | None, task: dict[str, Any]) -> None:
    """Open a task in the labeling UI from a tab, and wait until its text and choices are on the page."""
    wait = WebDriverWait(browser, 60)
    browser.get(f"{url}/data?tab={tab}&task={task['id']}")
    wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "input.ant-radio-input")))
    wait.until(lambda driver: task["data"]["text"] in driver.find_element(By.TAG_NAME, "body").text)


def _shown(browser: Any, selector: str) -> list[str]:
    return [element.text for element in browser.find_elements(By.CSS_SELECTOR, selector) if element.is_displayed()]


def test_a_reviewer_sees_the_source_text_and_its_label_above_the_variation(ls: LabelStudio, label_studio,
                                                                           reviewed: Reviewed) -> None:
    project_url = f"{label_studio.url}/projects/{reviewed.project_id}"
    tabs = {view.data["title"]: int(view.id) for view in ls.views.list(project=reviewed.project_id)}
    pool_task = reviewed.batch[1]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser = chromium(window="1280,860")
    try:
        log_in(browser, label_studio.url, LS_USER, LS_PASSWORD)
        _open_task(browser, project_url, tabs[VERIFY_TAB], reviewed.variation)
        label_shown = _shown(browser, ".alvar-source-label h4")
        source_shown = _shown(browser, ".alvar-source-text h4")
        browser.save_screenshot(str(SCREENSHOTS / "review.png"))

        _open_task(browser, project_url, _batch_tab(ls, reviewed.project_id)[0], pool_task)
        pool_shown = _shown(browser, ".alvar-source h4")
        pool_page = browser.find_element(By.TAG_NAME, "body").text
        pool_radios = len(browser.find_elements(By.CSS_SELECTOR, "input.ant-radio-input"))
    finally:
        browser.quit()
    assert label_shown == [reviewed.source_label]
    assert source_shown == [reviewed.source["data"]["text"]]
    assert pool_shown == [], "a pool task has no source: nothing of the block shows"
    assert "undefined" not in pool_page and "$source" not in pool_page
    assert pool_radios == len(CONTROL.labels) + 2, "the labeling UI renders the task's choices"


def test_the_batch_tasks_score_is_the_learners_confidence(ls: LabelStudio, reviewed: Reviewed) -> None:
    """Score = the probability the project's version gives its likeliest class: a number that reads as it is
    (at least 1 / classes, so never 0.000 on screen however flat the first model), and that Label Studio's
    "Uncertainty sampling" (ascending score) serves least confident first."""
    floor = 1 / len(CONTROL.labels)
    for task in reviewed.batch:
        (prediction,) = [found for found in task["predictions"] if found["model_version"] == reviewed.version]
        assert prediction["score"] == pytest.approx(float(reviewed.probabilities[task["id"]].max()), abs=1e-5)
        assert task["predictions_score"] == pytest.approx(prediction["score"])
        assert round(task["predictions_score"], 3) >= round(floor, 3) > 0


# Batch fields written as select writes them (JSON numbers) whose order as text differs from their order as numbers
# ("10" before "9"; "1.2e-05" after "1.2" where the number is kept as written). Label Studio on SQLite orders JSON
# numbers as numbers either way; on PostgreSQL a column sorts as text unless the tab declares it a Number (checked
# by hand: a tab declaring only entropy listed clusters 0, 10, 11, 2, 9), hence the declarations are asserted too.
FIELDS = [(0.9, 9), (0.1, 10), (0.25, 2), (1.2, 11), (1.2e-05, 0)]


def test_the_batch_tab_sorts_entropy_and_cluster_as_numbers(ls: LabelStudio) -> None:
    project_id = create_project(ls, "alvar batch order", load("annotate"))
    tasks: list[Any] = [
        {"data": {"text": f"task {number}", **BatchFields(batch=1, round=1, cluster=cluster, entropy=entropy,
                                                           strategy="cluster", batch_size=len(FIELDS)).data()}}
        for number, (entropy, cluster) in enumerate(FIELDS)]
    ls.projects.import_tasks(id=project_id, request=tasks)
    assert ensure_batch_tab(ls, project_id, 1, "cluster")
    tab, data = _batch_tab(ls, project_id)
    assert data["columnsDisplayType"] == NUMBER_COLUMNS, "Label Studio shows them as numbers (num)"

    def listed(field: str) -> list[Any]:
        pages: Any = ls.tasks.list(project=project_id, view=tab)
        return [as_dict(task)["data"][field] for task in pages]

    assert listed("entropy") == sorted((entropy for entropy, _ in FIELDS), reverse=True)
    # A person sorts by the cluster column: the Data Manager saves the tab with the new ordering.
    ls.views.update(id=str(tab), project=project_id,
                    data={**data, "ordering": dm_number_order("data.cluster", descending=False)["ordering"]})
    assert listed("cluster") == sorted(cluster for _, cluster in FIELDS)


def test_a_batch_tab_made_before_number_columns_gets_them(ls: LabelStudio) -> None:
    project_id = create_project(ls, "alvar old batch tab", load("annotate"))
    task: Any = {"data": {"text": "a task", **BatchFields(batch=1, cluster=3, entropy=0.5, batch_size=1).data()}}
    ls.projects.import_tasks(id=project_id, request=[task])
    order = dm_number_order(ENTROPY_COLUMN)
    ls.views.create(project=project_id,
                    data={"title": "my batch", "filters": {"conjunction": "and", "items": [in_batch(1)]}, **order})
    assert not ensure_batch_tab(ls, project_id, 1, "cluster")
    _, data = _batch_tab(ls, project_id)
    assert data["columnsDisplayType"] == NUMBER_COLUMNS
    assert data["title"] == "my batch" and data["ordering"] == order["ordering"]
