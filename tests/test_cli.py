"""`alvar train` and `alvar predict` as a person runs them."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from alvar.backend.model_store import ModelStore
from alvar.entropy import entropy
from tests.conftest import alvar_command


def alvar(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*alvar_command(), *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "ALVAR_TORCH_THREADS": "2", **(env or {})})


@pytest.mark.slow  # `alvar` subprocesses that load torch and train or embed
def test_train_then_predict(tmp_path: Path, safety_dir: Path) -> None:
    train_file = tmp_path / "train.tsv"
    lines = (safety_dir / "bootstrap_labeled.tsv").read_text().splitlines()
    train_file.write_text("\n".join(lines[:61]) + "\n")
    model_dir = tmp_path / "models"

    trained = alvar("--max-length", "40", "train", "--data", str(train_file), "--model-dir", str(model_dir),
                    "--epochs", "1", "--seed", "3", "--eval", str(safety_dir / "dev_labeled.tsv"))
    assert trained.returncode == 0, trained.stderr
    store = ModelStore(model_dir)
    version = store.current_version()
    metadata = store.metadata(version)
    assert metadata["n_examples"] == 60 and metadata["params"]["epochs"] == 1
    assert metadata["params"]["random_state"] == 3
    assert metadata["params"]["learning_rate"] == 2e-5 and metadata["params"]["batch_size"] == 16
    assert metadata["params"]["max_length"] == 40, "a global option sets any setting"
    assert 0 <= metadata["metrics"]["macro_f1"] <= 1 and "macro_f1" in trained.stdout

    out = tmp_path / "predictions.jsonl"
    predicted = alvar("predict", "--input", str(safety_dir / "dev_labeled.tsv"), "--out", str(out),
                      env={"MODEL_DIR": str(model_dir)})
    assert predicted.returncode == 0, predicted.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 150
    for row in rows:
        probabilities = np.array(list(row["probabilities"].values()))
        assert set(row) == {"id", "text", "label", "probabilities", "entropy", "gold"}
        assert row["label"] == max(row["probabilities"], key=row["probabilities"].get)
        assert abs(probabilities.sum() - 1) < 1e-4
        assert abs(row["entropy"] - float(entropy(probabilities[None])[0])) < 1e-4
    assert "macro_f1" in predicted.stderr


@pytest.mark.slow  # `alvar` subprocesses that load torch and train or embed
def test_bad_input_gives_a_clear_error_and_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tsv"
    bad.write_text("text\tlabel\nfine\ta\nbroken\tb\textra\n")
    result = alvar("train", "--data", str(bad), "--model-dir", str(tmp_path / "m"), "--epochs", "1")
    assert result.returncode == 2
    assert "bad.tsv:3: expected 2 fields" in result.stderr and "Traceback" not in result.stdout + result.stderr

    one_class = tmp_path / "one.tsv"
    one_class.write_text("text\tlabel\na\tx\nb\tx\n")
    result = alvar("train", "--data", str(one_class), "--model-dir", str(tmp_path / "m"), "--epochs", "1")
    assert result.returncode == 2 and "at least two classes" in result.stderr

    result = alvar("predict", "--input", str(one_class), "--model-dir", str(tmp_path / "empty"))
    assert result.returncode == 2 and "train one first" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_a_bad_setting_names_its_variable_and_exits_2(tmp_path: Path) -> None:
    """From the environment, a flag, or two settings that contradict each other: `error: bad setting: ...`."""
    checks = [({"ALVAR_RELATION": "sideways"}, (), "ALVAR_RELATION='sideways'"),
              ({}, ("--epochs", "-3"), "ALVAR_EPOCHS=-3"),
              ({"ALVAR_VARIATIONS_MIN": "9", "ALVAR_VARIATIONS_MAX": "3"}, (), "ALVAR_VARIATIONS_MIN (9) is above"),
              ({"ALVAR_LABEL_STUDIO_DATABASE": "postgresql://ls:s3cret@db:5432"}, (),
               "ALVAR_LABEL_STUDIO_DATABASE='postgresql://ls:***@db:5432'")]
    for env, flags, named in checks:
        result = alvar(*flags, "jobs", "--json", env={"ALVAR_DATA_DIR": str(tmp_path), **env})
        assert result.returncode == 2, result.stdout + result.stderr
        assert "error: bad setting: " in result.stderr and named in result.stderr
        assert "Traceback" not in result.stdout + result.stderr and "s3cret" not in result.stderr


def test_commands_that_read_or_stop_load_no_model_library() -> None:
    """`alvar status`, `alvar down` and a bad input file to `train`/`predict` answer in a second or two: the modules
    behind them leave torch, transformers, sentence-transformers and scikit-learn unimported (they cost ~8 s)."""
    modules = ("alvar.loop.status", "alvar.loop.stack", "alvar.loop.offline", "alvar.attribute_model",
               "alvar.backend.model_store", "alvar.backend.pool_scoring", "alvar.scripts.cli")
    probe = (f"import sys\nfor name in {modules!r}: __import__(name)\n"
             "print(sorted({'torch', 'transformers', 'sentence_transformers', 'sklearn'} & set(sys.modules)))")
    loaded = subprocess.run([str(Path(alvar_command()[0]).with_name("python")), "-c", probe], capture_output=True,
                            text=True, timeout=120)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "[]"
