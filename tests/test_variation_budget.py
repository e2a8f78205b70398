"""The variation policy (ALVAR_VARIATION_POLICY): the per-label k, the simulation's writer on the loopback LLM,
and the generation job on a real Label Studio, Redis and `alvar worker` with a skewed set of annotations."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from label_studio_sdk import LabelStudio

from alvar.backend.model_store import ModelStore
from alvar.backend.publishing import publish_predictions
from alvar.datafiles import read_dataset
from alvar.experiments.simulate import VariationWriter
from alvar.generator.budget import VariationBudget, balanced_k, budgeted_prompt, variation_budget
from alvar.generator.class_counts import read_class_counts
from alvar.generator.jobs import generation_key
from alvar.loop.export import build_export, project_tasks
from alvar.loop.label_studio_server import LabelStudioServer
from alvar.settings import SettingsError, load_settings
from tests.chat_server import ChatServer
from tests.generator_stack import CONTROL, GeneratorStack, annotate, generator_stack, new_project, variations

LABELS = list(CONTROL.labels)


@pytest.mark.parametrize(("label", "expected"), [
    ("rare", VariationBudget(15, "balance: rare 10 vs mean 20.0 → k 15")),
    ("even", VariationBudget(5, "balance: even 20 vs mean 20.0 → k 5")),
    ("common", VariationBudget(1, "balance: common 30 vs mean 20.0 → k 1")),
])
def test_balance_gives_the_under_represented_more_and_the_over_represented_fewer(label: str,
                                                                                   expected: VariationBudget) -> None:
    assert balanced_k({"rare": 10, "even": 20, "common": 30}, label, k=5, minimum=1, maximum=20) == expected


def test_balance_stays_within_its_bounds_and_rounds_half_up() -> None:
    assert balanced_k({"none": 0, "lots": 100}, "none", k=5, minimum=1, maximum=20).k == 20
    assert balanced_k({"none": 0, "lots": 100}, "lots", k=5, minimum=0, maximum=20).k == 0
    assert balanced_k({"a": 1, "b": 2}, "a", k=5, minimum=0, maximum=20).k == 6  # 5 + 0.5 rounds up
    assert balanced_k({"a": 1, "b": 2}, "b", k=5, minimum=0, maximum=20).k == 5  # 5 - 0.5 rounds up too
    assert balanced_k({"a": 4, "b": 2}, "missing", k=5, minimum=0, maximum=20) == VariationBudget(
        8, "balance: missing 0 vs mean 3.0 → k 8")


def test_fixed_gives_every_label_k_whatever_the_counts() -> None:
    settings = load_settings(variations=4)
    assert variation_budget(settings, "rare", {"rare": 0, "common": 90}) == VariationBudget(4, "fixed: k 4")
    assert variation_budget(settings, "rare", None).k == 4


def test_the_bounds_must_be_in_order() -> None:
    with pytest.raises(SettingsError, match="ALVAR_VARIATIONS_MIN \\(6\\) is above ALVAR_VARIATIONS_MAX \\(3\\)"):
        load_settings(variations_min=6, variations_max=3)


def test_a_zero_budget_asks_for_nothing_and_contrast_budgets_the_class_its_variations_carry() -> None:
    descriptions = dict.fromkeys(["self-harm", "discard"], "")
    counts = {"self-harm": 2, "discard": 40}
    balance = load_settings(variation_policy="balance", variations=5, variations_min=0, variations_max=20)
    prompt, budget = budgeted_prompt(balance, descriptions, "a text", "discard", 1, counts)
    assert prompt is None and budget == VariationBudget(0, "balance: discard 40 vs mean 21.0 → k 0")
    contrast = load_settings(variation_policy="balance", variations=5, relation="contrast", contrast_label="self-harm")
    prompt, budget = budgeted_prompt(contrast, descriptions, "a text", "discard", 1, counts)
    assert prompt is not None and prompt.variation_label == "self-harm" and prompt.k == budget.k == 20


def test_under_balance_contrast_variations_carry_the_rarest_other_class() -> None:
    descriptions = dict.fromkeys(["self-harm", "medical-advice", "discard", "legal-advice"], "")
    counts = {"self-harm": 9, "medical-advice": 3, "discard": 40, "legal-advice": 3}
    balance = load_settings(variation_policy="balance", variations=5, relation="contrast")
    for task_id in range(3):  # no rotation: the rarest other class, the first in config order on a tie
        prompt, budget = budgeted_prompt(balance, descriptions, "a text", "discard", task_id, counts)
        assert prompt is not None and prompt.variation_label == "medical-advice"
        assert budget == VariationBudget(16, "balance: medical-advice 3 vs mean 13.8 → k 16")
    prompt, _ = budgeted_prompt(balance, descriptions, "a text", "medical-advice", 0, counts)
    assert prompt is not None and prompt.variation_label == "legal-advice"
    fixed = load_settings(variations=5, relation="contrast")
    rotation = [budgeted_prompt(fixed, descriptions, "a text", "discard", task_id, counts)[0] for task_id in range(3)]
    assert [prompt.variation_label for prompt in rotation if prompt] == ["self-harm", "medical-advice", "legal-advice"]


def test_the_simulation_writer_tops_up_the_rare_class_on_the_loopback_llm(tmp_path: Path) -> None:
    dataset = ["common"] * 30 + ["even"] * 20 + ["rare"] * 10
    texts, labels = ["common one", "common two", "rare one"], ["common", "common", "rare"]
    with ChatServer() as llm:
        for policy, expected in (("fixed", {"common": 10, "rare": 5}), ("balance", {"common": 2, "rare": 16})):
            settings = load_settings(openai_base_url=llm.base_url, openai_api_key="test", variations=5,
                                variation_policy=policy, cache_dir=tmp_path / policy)
            writer = VariationWriter.for_labels(settings, ["common", "even", "rare"])
            written, written_labels = writer.write(texts, labels, [0, 1, 2], dataset)
            assert Counter(written_labels) == expected
            assert all(text.startswith(("common", "rare")) for text in written)


@pytest.fixture(scope="module")
def balanced_stack(run_root: Path, seed_model_dir: Path,
                   label_studio: LabelStudioServer) -> Iterator[GeneratorStack]:
    with generator_stack(run_root / "budget", seed_model_dir, label_studio, ALVAR_VARIATION_POLICY="balance",
                         ALVAR_VARIATIONS_MIN="1", ALVAR_VARIATIONS_MAX="6") as built:
        yield built


def test_the_job_under_balance_writes_more_for_the_rare_label_with_its_k_and_why(
        ls: LabelStudio, balanced_stack: GeneratorStack, safety_dir: Path) -> None:
    pool = read_dataset(safety_dir / "test_labeled.tsv").examples[:8]
    project_id, task_ids = new_project(ls, balanced_stack, "alvar variation budget", pool)
    version, learner = ModelStore(balanced_stack.env["MODEL_DIR"]).load(num_threads=1)
    publish_predictions(ls, project_id, learner, version, CONTROL)
    common, rare = "legal-advice", "self-harm"
    for task_id in task_ids[:4]:
        annotate(ls, task_id, common)
        balanced_stack.finished(generation_key(project_id, task_id, common))
    annotate(ls, task_ids[4], rare)
    balanced_stack.finished(generation_key(project_id, task_ids[4], rare))

    sets = {task_id: variations(ls, project_id, task_id) for task_id in task_ids[:5]}
    for made in sets.values():  # every variation says how many its job asked for, and why
        assert made and {task["data"]["variation_k"] for task in made} == {len(made)}
    (rare_reason,) = {task["data"]["variation_reason"] for task in sets[task_ids[4]]}
    assert rare_reason.startswith(f"balance: {rare} ") and rare_reason.endswith(f"→ k {len(sets[task_ids[4]])}")
    common_sizes = [len(sets[task_id]) for task_id in task_ids[:4]]
    assert len(sets[task_ids[4]]) > max(common_sizes[1:]), (common_sizes, rare_reason)
    assert common_sizes[-1] == 1  # the common class is far above the mean by now: the minimum

    written = sum(common_sizes) + len(sets[task_ids[4]])
    counts = read_class_counts(ls, project_id, CONTROL)
    assert counts == {**dict.fromkeys(LABELS, 0), common: 4 + sum(common_sizes), rare: 1 + len(sets[task_ids[4]])}
    assert sum(counts.values()) == 5 + written
    tasks, control = project_tasks(ls, project_id)
    exported = [row for row in build_export(tasks, control, include_unverified=True).rows if row.origin == "llm"]
    assert len(exported) == written
    assert {(row.variation_k, row.variation_reason) for row in exported if row.source_task == str(task_ids[4])} == {
        (str(len(sets[task_ids[4]])), rare_reason)}
