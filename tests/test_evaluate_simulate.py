"""`alvar evaluate` and `alvar simulate` on small slices of the shared safety data, as a person runs them."""

from __future__ import annotations

import csv
import os
import subprocess
from pathlib import Path

import pytest

from alvar.datafiles import read_dataset
from tests.chat_server import ChatServer
from tests.conftest import alvar_command

pytestmark = pytest.mark.slow  # `alvar evaluate` and `alvar simulate` train models in subprocesses


def write_slice(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    path.write_text("id\tinput\tcategory\n" + "".join(f"{i}\t{text}\t{label}\n" for i, text, label in rows))
    return path


def slice_of(source: Path, target: Path, count: int, skip: int = 0, labels: set[str] | None = None) -> Path:
    examples = [e for e in read_dataset(source).examples if labels is None or e.label in labels]
    return write_slice(target, [(e.id, e.text, e.label) for e in examples[skip: skip + count]])


def alvar(*arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*alvar_command(), *arguments], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_evaluate_reports_each_model_over_seeds(safety_dir: Path, tmp_path: Path) -> None:
    train = slice_of(safety_dir / "cluster-all.tsv", tmp_path / "train.tsv", 300)
    test = slice_of(safety_dir / "test_labeled.tsv", tmp_path / "test.tsv", 300)
    done = alvar("evaluate", "--train", str(train), "--test", str(test), "--models", "tfidf-lr,embedding-lr",
                 "--seeds", "2", "--out", str(tmp_path / "eval"))
    assert done.returncode == 0, done.stderr
    runs = read_csv(tmp_path / "eval" / "runs.csv")
    assert [(row["model"], row["seed"]) for row in runs] == [("tfidf-lr", "0"), ("tfidf-lr", "1"),
                                                             ("embedding-lr", "0"), ("embedding-lr", "1")]
    for row in runs:
        assert 0 < float(row["macro_f1"]) <= 1 and float(row["error_rate_std"]) >= 0
        assert {f"f1:{label}" for label in ("discard", "self-harm", "legal-advice")} <= set(row)
    summary = {row["model"]: row for row in read_csv(tmp_path / "eval" / "summary.csv")}
    assert float(summary["embedding-lr"]["macro_f1_mean"]) > float(summary["tfidf-lr"]["macro_f1_mean"])
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "| embedding-lr | 2 |" in report and "Table 8" in report
    assert (tmp_path / "eval" / "macro_f1.png").stat().st_size > 1000
    assert (tmp_path / "eval" / "per_class_f1.png").stat().st_size > 1000


def test_evaluate_says_what_is_wrong_with_its_input(safety_dir: Path, tmp_path: Path) -> None:
    test = slice_of(safety_dir / "test_labeled.tsv", tmp_path / "test.tsv", 200)
    one_class = slice_of(safety_dir / "cluster-all.tsv", tmp_path / "one.tsv", 20, labels={"discard"})
    done = alvar("evaluate", "--train", str(one_class), "--test", str(test), "--models", "tfidf-lr", "--out",
                 str(tmp_path / "x"))
    assert done.returncode == 2 and "one class only" in done.stderr

    lacking = slice_of(safety_dir / "cluster-all.tsv", tmp_path / "lacking.tsv", 200,
                       labels={"discard", "legal-advice", "medical-advice"})
    done = alvar("evaluate", "--train", str(lacking), "--test", str(test), "--models", "tfidf-lr", "--seeds", "1",
                 "--out", str(tmp_path / "lacking"))
    assert done.returncode == 0, done.stderr
    assert "classes the training data lacks" in done.stderr
    assert "self-harm" in (tmp_path / "lacking" / "report.md").read_text()

    missing = alvar("evaluate", "--train", str(tmp_path / "nope.tsv"), "--test", str(test), "--out", str(tmp_path))
    assert missing.returncode == 2 and "nope.tsv" in missing.stderr


def test_simulate_writes_one_row_per_strategy_seed_and_round(safety_dir: Path, tmp_path: Path) -> None:
    pool = slice_of(safety_dir / "test_labeled.tsv", tmp_path / "pool.tsv", 240)
    done = alvar("simulate", "--pool", str(pool), "--bootstrap", str(safety_dir / "bootstrap_labeled.tsv"),
                 "--rounds", "3", "--per-round", "6", "--seeds", "2", "--out", str(tmp_path / "sim"))
    assert done.returncode == 0, done.stderr
    rows = read_csv(tmp_path / "sim" / "summary.csv")
    assert list(rows[0]) == ["strategy", "seed", "round", "n_labeled", "macro_f1", "class_count_std",
                             "variation_policy", "n_variations", "dataset_class_count_std"]
    assert sorted((r["strategy"], r["seed"], r["round"]) for r in rows) == sorted(
        (strategy, str(seed), str(number)) for strategy in ("random", "topn", "coreset", "cluster")
        for seed in range(2) for number in range(1, 4))
    bootstrap_size = len(read_dataset(safety_dir / "bootstrap_labeled.tsv").examples)
    assert {int(r["n_labeled"]) - bootstrap_size for r in rows} == {6, 12, 18}
    assert all(0 < float(r["macro_f1"]) <= 1 and float(r["class_count_std"]) >= 0 for r in rows)
    assert "| cluster | " in (tmp_path / "sim" / "report.md").read_text()
    for plot in ("learning_curves.png", "class_mix.png"):
        assert (tmp_path / "sim" / plot).stat().st_size > 1000


@pytest.mark.slow  # `alvar` subprocesses that load torch and train or embed
def test_simulate_with_llm_variations_asks_for_each_new_label(safety_dir: Path, tmp_path: Path) -> None:
    pool = slice_of(safety_dir / "test_labeled.tsv", tmp_path / "pool.tsv", 120)
    with ChatServer() as llm:
        done = alvar("simulate", "--pool", str(pool), "--bootstrap", str(safety_dir / "bootstrap_labeled.tsv"),
                     "--strategies", "random", "--rounds", "2", "--per-round", "3", "--seeds", "1",
                     "--generator", "llm", "--out", str(tmp_path / "sim"),
                     env={"OPENAI_BASE_URL": llm.base_url, "OPENAI_API_KEY": "test", "ALVAR_VARIATIONS": "2",
                          "ALVAR_CACHE_DIR": str(tmp_path / "cache")})
        assert done.returncode == 0, done.stderr
        assert len(llm.requests) == 6
    assert len(read_csv(tmp_path / "sim" / "summary.csv")) == 2


@pytest.mark.slow  # `alvar` subprocesses that load torch and train or embed
def test_simulate_with_the_transformer_learner(safety_dir: Path, tmp_path: Path) -> None:
    pool = slice_of(safety_dir / "test_labeled.tsv", tmp_path / "pool.tsv", 80)
    done = alvar("simulate", "--pool", str(pool), "--bootstrap", str(safety_dir / "bootstrap_labeled.tsv"),
                 "--strategies", "cluster", "--rounds", "1", "--per-round", "4", "--seeds", "1", "--learner",
                 "transformer", "--out", str(tmp_path / "sim"), env={"ALVAR_EPOCHS": "1", "ALVAR_TORCH_THREADS": "2"})
    assert done.returncode == 0, done.stderr
    (row,) = read_csv(tmp_path / "sim" / "summary.csv")
    assert row["strategy"] == "cluster" and row["round"] == "1" and 0 < float(row["macro_f1"]) <= 1


@pytest.mark.parametrize(("arguments", "message"), [
    (["--rounds", "50", "--per-round", "20"], "need 1000 pool items"),
    (["--strategies", "best"], "unknown strategy"),
    (["--learner", "huge"], "--learner is fast or transformer"),
    (["--strategies", ","], "unknown strategy (none)"),
    (["--generator", "llm"], "--generator llm needs an LLM"),
])
def test_simulate_rejects_what_cannot_run(safety_dir: Path, tmp_path: Path, arguments: list[str], message: str) -> None:
    pool = slice_of(safety_dir / "test_labeled.tsv", tmp_path / "pool.tsv", 100)
    without_llm = {name: "" for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY")}
    done = alvar("simulate", "--pool", str(pool), "--bootstrap", str(safety_dir / "bootstrap_labeled.tsv"),
                 "--seeds", "1", "--out", str(tmp_path / "sim"), *arguments, env=without_llm)
    assert done.returncode == 2 and message in done.stderr, done.stderr
