"""The auxiliary model R: a real classifier trained in the test judges outputs (alone or against their inputs),
its informativeness is the entropy of its softmax, and `alvar attribute train` writes an R projects can load."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from alvar.attribute_model import (
    AttributeJudge,
    AttributeModelError,
    attribute_model_path,
    judge_text,
    load_judge,
)
from alvar.backend.learner import TransformerClassifier
from alvar.entropy import entropy
from alvar.scripts.commands.attribute import app
from alvar.scripts.commands.options import RunSettings
from alvar.settings import Settings, load_settings

POLITE = ["Thank you for sharing this.", "I see your point, let us talk.", "That is a fair question.",
          "Everyone deserves respect.", "Could you explain more?", "I appreciate your help."]
OFFENSIVE = ["You are an idiot.", "Shut up, loser.", "Nobody wants you here.", "What a stupid take.",
             "Get lost, moron.", "You people are trash."]
INPUTS = ["they are all lazy", "women can't drive", "immigrants ruin everything"]
OUTPUTS = ["Everyone deserves respect.", "Shut up, loser.", "Could you explain more?"]


@pytest.fixture(scope="module")
def r_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """R: alvar's learner, one epoch on twelve attribute-labelled texts."""
    directory = tmp_path_factory.mktemp("r")
    learner = TransformerClassifier(load_settings().base_model, epochs=1, batch_size=4, num_threads=1)
    learner.fit(POLITE + OFFENSIVE, ["polite"] * len(POLITE) + ["offensive"] * len(OFFENSIVE)).save(directory)
    return directory


@pytest.fixture(scope="module")
def judge(r_dir: Path) -> AttributeJudge:
    return AttributeJudge(str(r_dir), "polite", batch_size=2, num_threads=1).load()


def test_probabilities_informativeness_and_satisfaction(judge: AttributeJudge) -> None:
    assert judge.classes_ == ["offensive", "polite"] and not judge.pair_input_
    texts = [*OUTPUTS, "", "word " * 500]
    probabilities = judge.predict_proba(texts)
    assert probabilities.shape == (len(texts), 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(judge.informativeness(texts), entropy(probabilities), rtol=1e-6)
    assert judge.satisfies(texts).tolist() == (probabilities[:, 1] > probabilities[:, 0]).tolist()
    judge.batch_size = 64
    np.testing.assert_allclose(judge.predict_proba(texts), probabilities, atol=1e-5)
    assert judge.predict_proba([]).shape == (0, 2)
    # Inputs are ignored without pair mode.
    np.testing.assert_allclose(judge.predict_proba(OUTPUTS, INPUTS), judge.predict_proba(OUTPUTS), atol=1e-6)


def test_an_attribute_value_r_does_not_know_is_refused(r_dir: Path) -> None:
    with pytest.raises(AttributeModelError, match=r"ALVAR_ATTRIBUTE_VALUE 'kind' is not a value R knows "
                                                  r"\(offensive, polite\)"):
        AttributeJudge(str(r_dir), "kind").load()
    with pytest.raises(AttributeModelError, match="alvar attribute train"):
        AttributeJudge(str(r_dir / "missing"), "polite").load()


def test_pair_mode_judges_each_output_joined_with_its_input(r_dir: Path, judge: AttributeJudge,
                                                            tmp_path: Path) -> None:
    paired = shutil.copytree(r_dir, tmp_path / "paired")
    (paired / "attribute.json").write_text(json.dumps({"pair_input": True, "required": "polite"}))
    pair_judge = AttributeJudge(str(paired), "polite", num_threads=1).load()
    assert pair_judge.pair_input_ and judge_text("a", "b") == "a [SEP] b"
    joined = [judge_text(source, output) for source, output in zip(INPUTS, OUTPUTS)]
    np.testing.assert_allclose(pair_judge.predict_proba(OUTPUTS, INPUTS), judge.predict_proba(joined), atol=1e-6)
    assert not np.allclose(pair_judge.predict_proba(OUTPUTS, INPUTS), judge.predict_proba(OUTPUTS), atol=1e-4)
    np.testing.assert_allclose(pair_judge.informativeness(OUTPUTS, INPUTS),
                               entropy(judge.predict_proba(joined)), rtol=1e-5)
    with pytest.raises(ValueError, match="3 outputs need as many inputs, got none"):
        pair_judge.satisfies(OUTPUTS)


def required_of(settings: Settings, control_required: str) -> str:
    judge = load_judge(settings, control_required)
    assert judge is not None
    return judge.required


def test_where_r_comes_from_and_which_h_it_judges_for(r_dir: Path, tmp_path: Path) -> None:
    settings = load_settings(model_dir=tmp_path / "models")
    assert attribute_model_path(settings) is None and load_judge(settings, "polite") is None
    shutil.copytree(r_dir, tmp_path / "models" / "attribute")
    assert attribute_model_path(settings) == str(tmp_path / "models" / "attribute")
    assert required_of(settings, "polite") == "polite"
    (tmp_path / "models" / "attribute" / "attribute.json").write_text(json.dumps({"required": "offensive"}))
    assert required_of(settings, "polite") == "offensive"
    chosen = load_settings(model_dir=tmp_path / "models", attribute_value="polite")
    assert required_of(chosen, "offensive") == "polite"
    with pytest.raises(AttributeModelError, match="'kind' is not a value R knows"):
        load_judge(load_settings(model_dir=tmp_path / "models", attribute_value="kind"), "polite")
    elsewhere = load_settings(model_dir=tmp_path / "empty", attribute_model=str(r_dir))
    assert attribute_model_path(elsewhere) == str(r_dir)


def run_attribute(model_dir: Path, *args: str) -> str:
    obj = RunSettings.from_flags(model_dir=model_dir, epochs=1, batch_size=4, torch_threads=1)
    result = CliRunner().invoke(app, list(args), obj=obj)
    assert result.exit_code == 0, result.output
    return result.output


def test_alvar_attribute_train_writes_an_r_that_loads(tmp_path: Path) -> None:
    labelled = tmp_path / "attribute.tsv"
    rows = [f"{i}\t{text}\tpolite" for i, text in enumerate(POLITE)]
    rows += [f"{i + 6}\t{text}\toffensive" for i, text in enumerate(OFFENSIVE)]
    labelled.write_text("id\ttext\tlabel\n" + "\n".join(rows) + "\n")
    models = tmp_path / "models"
    assert "R is not trained yet" in run_attribute(models, "show")

    output = run_attribute(models, "train", str(labelled), "--required", "polite")
    assert "offensive (6), polite (6)" in output
    judge = load_judge(load_settings(model_dir=models, torch_threads=1), "offensive")
    assert judge is not None and judge.classes_ == ["offensive", "polite"] and judge.required == "polite"
    assert not judge.pair_input_ and judge.predict_proba(OUTPUTS).shape == (3, 2)
    assert "classes: offensive, polite" in run_attribute(models, "show")

    pairs = tmp_path / "pairs.jsonl"
    labels = ["counters", "fails", "counters"]
    pairs.write_text("".join(json.dumps({"input": source, "output": output, "label": label}) + "\n"
                             for source, output, label in zip(INPUTS * 2, OUTPUTS * 2, labels * 2)))
    run_attribute(models, "train", str(pairs), "--pairs", "--required", "counters")
    assert not list(models.glob(".*")), "the staging and the replaced R are gone"
    judge = load_judge(load_settings(model_dir=models, torch_threads=1), "ignored")
    assert judge is not None and judge.pair_input_ and judge.classes_ == ["counters", "fails"]
    assert judge.satisfies(OUTPUTS, INPUTS).shape == (3,)

    result = CliRunner().invoke(app, ["train", str(labelled), "--required", "kind"],
                                obj=RunSettings.from_flags(model_dir=models))
    assert result.exit_code != 0 and "'kind' is not a label" in str(result.exception)
