"""`alvar datasets prepare multitarget-conan`, `alvar simulate --task generation` and `alvar evaluate --task
generation` on small pair data made here (three subgroups), as a person runs them.

The CONAN file is served by a loopback server standing in for raw.githubusercontent.com, in the upstream's
columns (INDEX, HATE_SPEECH, COUNTER_NARRATIVE, TARGET, VERSION), pinned by this file's own hash."""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import random
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from alvar.backend.learner import TransformerClassifier
from alvar.experiments.datasets import COUNTERS, DOES_NOT_COUNTER, PrepareError, prepare_pairs
from alvar.generator.validation import normal_form
from alvar.pairfiles import read_pairs
from alvar.pinned_files import PinnedFiles
from alvar.public_data import CONAN_FILE, MULTITARGET_CONAN, PairRow, PublicDataError, PublicDataset
from alvar.settings import load_settings
from tests.conftest import alvar_command
from tests.test_demo_data import FileServer

pytestmark = pytest.mark.slow  # the generative simulation trains students in subprocesses

TOPICS = {
    "CATS": ("Cats are {} and should be banned", "Cats keep people company and calm them down, note {}."),
    "CARS": ("Drivers are {} and ruin our towns", "Most drivers are careful people who need to reach work, note {}."),
    "RAIN": ("Rainy people are {} and spoil everything", "People from rainy places farm and build like anyone, "
                                                          "note {}."),
}
WORDS = ("lazy", "cruel", "dirty", "stupid", "greedy", "loud", "sneaky", "useless", "selfish", "rude", "weak",
         "noisy", "mean", "vain")


def synthetic_pairs() -> list[tuple[str, str, str]]:
    """14 pairs in each of three groups, in a fixed shuffled order."""
    rows = [(hate.format(word), answer.format(index), group) for group, (hate, answer) in TOPICS.items()
            for index, word in enumerate(WORDS)]
    random.Random(0).shuffle(rows)
    return rows


def write_pair_file(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    path.write_text("id\tinput\toutput\tgroup\n" + "".join(f"p{index}\t{text}\t{output}\t{group}\n"
                                                           for index, (text, output, group) in enumerate(rows)))
    return path


@pytest.fixture
def pair_files(tmp_path: Path) -> dict[str, Path]:
    rows = synthetic_pairs()
    attribute = ["input\toutput\tlabel"]
    for index, (text, output, group) in enumerate(rows[9:]):
        other = next(row for row in rows[9 + index:] + rows[9:] if row[2] != group)
        attribute += [f"{text}\t{output}\t{COUNTERS}", f"{text}\t{other[1]}\t{DOES_NOT_COUNTER}"]
    (tmp_path / "attribute.tsv").write_text("\n".join(attribute) + "\n")
    return {"test": write_pair_file(tmp_path / "test.tsv", rows[:9]),
            "bootstrap": write_pair_file(tmp_path / "bootstrap.tsv", rows[9:15]),
            "pool": write_pair_file(tmp_path / "pool.tsv", rows[15:]), "attribute": tmp_path / "attribute.tsv"}


def alvar(tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ALVAR_CACHE_DIR": str(tmp_path / "cache"), "ALVAR_TORCH_THREADS": "1", "COLUMNS": "200",
           "ALVAR_STUDENT_EPOCHS": "1", "ALVAR_MAX_OUTPUT_LENGTH": "8", "ALVAR_MAX_LENGTH": "16",
           "ALVAR_ATTRIBUTE_VALUE": ""}
    return subprocess.run([*alvar_command(), *arguments], capture_output=True, text=True, timeout=600, env=env)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_simulate_runs_every_strategy_seed_and_round(tmp_path: Path, pair_files: dict[str, Path]) -> None:
    out = tmp_path / "sim"
    done = alvar(tmp_path, "simulate", "--task", "generation", "--pairs", str(pair_files["pool"]), "--bootstrap",
                 str(pair_files["bootstrap"]), "--eval", str(pair_files["test"]), "--attribute-file",
                 str(pair_files["attribute"]), "--strategies", "random,cluster", "--seeds", "2", "--rounds", "2",
                 "--per-round", "3", "--out", str(out))
    assert done.returncode == 0, done.stderr
    rows = read_csv(out / "summary.csv")
    assert [(row["strategy"], row["seed"], row["round"]) for row in rows if row["strategy"] != "bootstrap"] == [
        (strategy, seed, number) for seed in "01" for strategy in ("random", "cluster") for number in "12"]
    assert [(row["seed"], row["round"], row["n_labeled"]) for row in rows if row["strategy"] == "bootstrap"] == [
        ("0", "0", "6"), ("1", "0", "6")]
    for row in rows:
        for column in ("satisfaction", "chrf", "distinct_2", "chrf_std", "chrf_range", "satisfaction_std"):
            assert math.isfinite(float(row[column])), (column, row)
        assert 0 <= float(row["satisfaction"]) <= 1 and 0 <= float(row["chrf"]) <= 100
        if row["strategy"] != "bootstrap":
            assert int(row["n_labeled"]) == 6 + 3 * int(row["round"])
            assert float(row["mean_informativeness"]) >= 0
    groups = read_csv(out / "groups.csv")
    assert {row["group"] for row in groups} == {"CATS", "CARS", "RAIN"}
    assert len(groups) == 3 * len(rows)
    last = [row for row in groups if row["round"] == "2"]
    assert all(sum(int(row["n_acquired"]) for row in last if (row["strategy"], row["seed"]) == key) == 6
               for key in {(row["strategy"], row["seed"]) for row in last})
    report = (out / "report.md").read_text()
    assert "| random | 12 |" in report and "| cluster | 12 |" in report and "H = `counter-narrative`" in report
    assert "Evenness after the last round: on chrF cluster is" in report and "of 2 seeds" in report
    assert (out / "generation.png").stat().st_size > 1000


def test_simulate_says_what_is_missing(tmp_path: Path, pair_files: dict[str, Path]) -> None:
    common = ("simulate", "--task", "generation", "--bootstrap", str(pair_files["bootstrap"]), "--eval",
              str(pair_files["test"]), "--out", str(tmp_path / "sim"), "--rounds", "1", "--per-round", "3")
    no_judge = alvar(tmp_path, *common, "--pairs", str(pair_files["pool"]))
    assert no_judge.returncode == 2 and "give --attribute-file" in no_judge.stderr
    bad = tmp_path / "bad.tsv"
    bad.write_text("post\treply\nx\ty\n")
    no_input = alvar(tmp_path, *common, "--pairs", str(bad), "--attribute-file", str(pair_files["attribute"]))
    assert no_input.returncode == 2 and "has no input column" in no_input.stderr and "'post'" in no_input.stderr
    wrong_value = alvar(tmp_path, *common, "--pairs", str(pair_files["pool"]), "--attribute-file",
                        str(pair_files["attribute"]), "--attribute-value", "polite")
    assert wrong_value.returncode == 2 and "'polite' is not one of R's classes" in wrong_value.stderr
    assert "Traceback" not in no_judge.stderr + no_input.stderr + wrong_value.stderr


def test_simulate_with_a_real_r(tmp_path: Path, pair_files: dict[str, Path]) -> None:
    """R as a project has it: alvar's learner fine-tuned for one epoch on attribute-labelled outputs."""
    rows = read_csv_tsv(pair_files["attribute"])[:12]
    r_dir = tmp_path / "r"
    TransformerClassifier(load_settings().base_model, epochs=1, batch_size=4, num_threads=1).fit(
        [row["output"] for row in rows], [row["label"] for row in rows]).save(r_dir)
    common = ("simulate", "--task", "generation", "--pairs", str(pair_files["pool"]), "--bootstrap",
              str(pair_files["bootstrap"]), "--eval", str(pair_files["test"]), "--attribute-model", str(r_dir),
              "--strategies", "cluster", "--seeds", "1", "--rounds", "1", "--per-round", "3")
    done = alvar(tmp_path, *common, "--attribute-value", COUNTERS, "--out", str(tmp_path / "sim"))
    assert done.returncode == 0, done.stderr
    assert f"R = {r_dir}; H = `{COUNTERS}`" in (tmp_path / "sim" / "report.md").read_text()
    assert [row["strategy"] for row in read_csv(tmp_path / "sim" / "summary.csv")] == ["bootstrap", "cluster"]
    unnamed = alvar(tmp_path, *common, "--out", str(tmp_path / "unnamed"))
    assert unnamed.returncode == 2 and "--attribute-model needs H: set --attribute-value" in unnamed.stderr


def test_evaluate_trains_g_and_a_secondary_student(tmp_path: Path, pair_files: dict[str, Path]) -> None:
    out = tmp_path / "eval"
    done = alvar(tmp_path, "evaluate", "--task", "generation", "--train", str(pair_files["bootstrap"]), "--train",
                 str(pair_files["pool"]), "--test", str(pair_files["test"]), "--attribute-file",
                 str(pair_files["attribute"]), "--out", str(out))
    assert done.returncode == 0, done.stderr
    runs = read_csv(out / "runs.csv")
    assert [row["model"] for row in runs] == ["student", "nearest-neighbour"]
    for row in runs:
        for column in ("satisfaction", "chrf", "bleu", "distinct_1", "distinct_2", "chrf_std", "satisfaction_range"):
            assert math.isfinite(float(row[column])), (column, row)
    neighbour = runs[1]
    # Every test input has a training input of its group with the same sentence frame: retrieval finds its answer.
    assert float(neighbour["chrf"]) > 60 and float(neighbour["satisfaction"]) > 0.5
    groups = read_csv(out / "groups.csv")
    assert {(row["model"], row["group"]) for row in groups} == {
        (model, group) for model in ("student", "nearest-neighbour") for group in ("CATS", "CARS", "RAIN")}
    report = (out / "report.md").read_text()
    assert "| nearest-neighbour | 1 |" in report and "chrF per subgroup" in report
    assert (out / "per_group.png").stat().st_size > 1000


def conan_csv(rows: list[tuple[str, str, str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["INDEX", "HATE_SPEECH", "COUNTER_NARRATIVE", "TARGET", "VERSION"])
    writer.writerows([index, text, output, group, "V1"] for index, (text, output, group) in enumerate(rows))
    return buffer.getvalue().encode("utf-8")


@pytest.fixture
def served_conan(tmp_path: Path) -> Iterator[tuple[PublicDataset[PairRow], FileServer]]:
    """40 pairs in each of three targets, one input repeated with a second answer, one input that is only a dash."""
    rows = [(f"{group.title()} post {index}:\nthey are bad", f"A reply to post {index} about {group}.", group)
            for group in ("MUSLIMS", "WOMEN", "JEWS") for index in range(40)]
    rows += [("Muslims post 3: they are bad!", "Another reply.", "MUSLIMS"), ("-", "nothing", "WOMEN")]
    data = conan_csv(rows)
    folder = tmp_path / "upstream"
    folder.mkdir()
    (folder / CONAN_FILE).write_bytes(data)
    server = FileServer(folder)
    files = PinnedFiles(MULTITARGET_CONAN.name, server.url, {CONAN_FILE: hashlib.sha256(data).hexdigest()})
    yield replace(MULTITARGET_CONAN, files=files), server
    server.close()


def test_prepare_writes_disjoint_stratified_pair_files_and_rs_training_file(
        tmp_path: Path, served_conan: tuple[PublicDataset[PairRow], FileServer]) -> None:
    dataset, server = served_conan
    settings = load_settings(cache_dir=tmp_path / "cache").model_copy(update={"datasets_dir": None})
    prepared = prepare_pairs(dataset, settings, tmp_path / "out", bootstrap_size=6, test_size=30, max_pool=50,
                             attribute_size=20, seed=1)
    assert server.served == [f"/{CONAN_FILE}"]
    assert (prepared.inputs, prepared.repeats) == (120, 2)
    files = {name: read_pairs(tmp_path / "out" / f"{name}.tsv") for name in ("pool", "bootstrap", "test")}
    assert {name: len(pairs) for name, pairs in files.items()} == {"pool": 50, "bootstrap": 6, "test": 30}
    assert Counter(files["test"].groups) == {"MUSLIMS": 10, "WOMEN": 10, "JEWS": 10}
    assert Counter(files["bootstrap"].groups) == {"MUSLIMS": 2, "WOMEN": 2, "JEWS": 2}
    assert all(pairs.has_outputs for pairs in files.values())
    assert files["test"].pairs[0].input.count("\n") == 0
    attribute = read_csv_tsv(tmp_path / "out" / "attribute.tsv")
    forms = {name: {normal_form(text) for text in pairs.inputs} for name, pairs in files.items()}
    forms["attribute"] = {normal_form(row["input"]) for row in attribute}
    assert sum(len(value) for value in forms.values()) == len(set().union(*forms.values())), "no input in two files"
    assert len(attribute) == 40 and [row["label"] for row in attribute[:2]] == [COUNTERS, DOES_NOT_COUNTER]
    assert Counter(row["label"] for row in attribute) == {COUNTERS: 20, DOES_NOT_COUNTER: 20}
    truth = {row["input"]: row["output"] for row in attribute if row["label"] == COUNTERS}
    assert all(row["output"] != truth[row["input"]] for row in attribute if row["label"] == DOES_NOT_COUNTER)
    again = prepare_pairs(dataset, settings, tmp_path / "again", bootstrap_size=6, test_size=30, max_pool=50,
                          attribute_size=20, seed=1)
    assert (again.pool.read_bytes(), again.attribute.read_bytes()) == (prepared.pool.read_bytes(),
                                                                       prepared.attribute.read_bytes())
    with pytest.raises(PrepareError, match="has 120 distinct inputs"):
        prepare_pairs(dataset, settings, tmp_path / "big", test_size=100, attribute_size=20)


def read_csv_tsv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))


def test_a_changed_conan_file_is_refused(tmp_path: Path,
                                         served_conan: tuple[PublicDataset[PairRow], FileServer]) -> None:
    dataset, _ = served_conan
    local = tmp_path / "datasets" / MULTITARGET_CONAN.name
    local.mkdir(parents=True)
    (local / CONAN_FILE).write_bytes(conan_csv([("x", "y", "WOMEN")]))
    with pytest.raises(PublicDataError, match="Multitarget-CONAN.csv is not the released file"):
        prepare_pairs(dataset, load_settings(datasets_dir=tmp_path / "datasets", cache_dir=tmp_path / "cache"),
                      tmp_path / "out")


def test_the_pinned_conan_file_and_its_licence_are_listed(tmp_path: Path) -> None:
    assert MULTITARGET_CONAN.files.hashes == {
        CONAN_FILE: "1ab624c9e74ac4ef4f4913991802f7305b4a0bad21b8693e4d61ce22c874da26"}
    assert "627faf12d73ee75291d0c99a1dffd54c811a93cb" in MULTITARGET_CONAN.files.base_url
    assert MULTITARGET_CONAN.size == 5003 and round(MULTITARGET_CONAN.shares()["DISABLED"], 3) == 0.044
    listed = alvar(tmp_path, "datasets", "list")
    assert listed.returncode == 0, listed.stderr
    assert "multitarget-conan" in listed.stdout and "no redistribution" in listed.stdout
    assert "MUSLIMS 26.7%" in listed.stdout
