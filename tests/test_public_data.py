"""Public skewed data sets: pinned downloads checked by SHA-256 and cached, the upstream formats converted, and
`alvar datasets prepare` writing a disjoint stratified pool and bootstrap, the same for the same seed.

A loopback HTTP server stands in for raw.githubusercontent.com, serving small files in the upstream formats; the
registry entry is pointed at it with those files' hashes (the real pinned hashes are checked once by hand: no
network here)."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import subprocess
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from alvar.datafiles import read_labeled
from alvar.experiments.datasets import PrepareError, prepare
from alvar.generator.validation import normal_form
from alvar.pinned_files import PinnedFiles
from alvar.public_data import DAVIDSON, MELD, MELD_FILES, REGISTRY, PublicDataError, load, public_dataset
from alvar.settings import Settings
from tests.conftest import alvar_command, free_port
from tests.test_demo_data import FileServer

DAVIDSON_HEADER = ["", "count", "hate_speech", "offensive_language", "neither", "class", "tweet"]
MELD_HEADER = ["Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID", "Season",
               "Episode", "StartTime", "EndTime"]


def _csv(header: Sequence[str], rows: Sequence[Sequence[object]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def davidson_csv(tweets: Sequence[tuple[str, int]]) -> bytes:
    """labeled_data.csv as the repository has it: an unnamed index column, coder counts, the class, the tweet."""
    return _csv(DAVIDSON_HEADER, [[index, 3, 0, 0, 3, label, tweet] for index, (tweet, label) in enumerate(tweets)])


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[tuple[Path, FileServer]]:
    """A folder behind a loopback server, standing in for the repository at its pinned commit."""
    folder = tmp_path / "upstream"
    folder.mkdir()
    server = FileServer(folder)
    yield folder, server
    server.close()


def _settings(tmp_path: Path) -> Settings:
    return Settings(cache_dir=tmp_path / "cache", datasets_dir=None)


def _davidson_at(base_url: str, data: bytes, counts: dict[str, int] | None = None) -> object:
    files = PinnedFiles(DAVIDSON.name, base_url, {"labeled_data.csv": _sha256(data)})
    return replace(DAVIDSON, files=files, counts=counts or DAVIDSON.counts)


TWEETS = [
    ("RT @some_user: look at this http://t.co/abc123 now", 2),
    ("two\nlines\tand a tab from @Other-One", 1),
    ("a hateful one", 0),
]


def test_download_is_checked_converted_and_cached(tmp_path: Path, upstream: tuple[Path, FileServer]) -> None:
    folder, server = upstream
    data = davidson_csv(TWEETS)
    (folder / "labeled_data.csv").write_bytes(data)
    dataset = _davidson_at(server.url, data)
    rows = load(dataset, _settings(tmp_path))
    assert rows == [
        ("RT MENTIONHERE: look at this URLHERE now", "neither"),
        ("two lines and a tab from MENTIONHERE", "offensive"),
        ("a hateful one", "hate"),
    ]
    cached = tmp_path / "cache" / "datasets" / "davidson-2017" / "labeled_data.csv"
    assert cached.read_bytes() == data
    assert server.served == ["/labeled_data.csv"]
    assert load(dataset, _settings(tmp_path)) == rows
    assert server.served == ["/labeled_data.csv"], "a second load reads the cache"


@pytest.mark.slow  # `alvar` subprocesses that load models or start services
def test_a_tampered_download_fails_clearly_and_is_not_kept(tmp_path: Path,
                                                          upstream: tuple[Path, FileServer]) -> None:
    folder, server = upstream
    data = davidson_csv(TWEETS)
    (folder / "labeled_data.csv").write_bytes(data.replace(b"hateful", b"harmless"))
    with pytest.raises(PublicDataError, match=r"labeled_data\.csv from http.*hash.*set ALVAR_DATASETS"):
        load(_davidson_at(server.url, data), _settings(tmp_path))
    assert not (tmp_path / "cache" / "datasets" / "davidson-2017" / "labeled_data.csv").exists()


@pytest.mark.slow  # `alvar` subprocesses that load models or start services
def test_an_unreachable_source_says_how_to_go_on(tmp_path: Path) -> None:
    dataset = _davidson_at(f"http://127.0.0.1:{free_port()}", b"")
    with pytest.raises(PublicDataError, match=r"could not download labeled_data\.csv .*set ALVAR_DATASETS"):
        load(dataset, _settings(tmp_path))


def test_a_local_copy_is_read_from_alvar_datasets_and_checked(tmp_path: Path) -> None:
    data = davidson_csv(TWEETS)
    local = tmp_path / "datasets" / "davidson-2017"
    local.mkdir(parents=True)
    (local / "labeled_data.csv").write_bytes(data)
    dataset = _davidson_at(f"http://127.0.0.1:{free_port()}", data)
    settings = Settings(datasets_dir=tmp_path / "datasets", cache_dir=tmp_path / "cache")
    assert [label for _, label in load(dataset, settings)] == ["neither", "offensive", "hate"]
    (local / "labeled_data.csv").write_bytes(data + b"3,3,0,0,3,2,one more\n")
    with pytest.raises(PublicDataError, match=r"labeled_data\.csv is not the released file"):
        load(dataset, settings)
    (local / "labeled_data.csv").unlink()
    with pytest.raises(PublicDataError, match="has no davidson-2017/labeled_data.csv"):
        load(dataset, settings)


def test_meld_joins_its_three_splits(tmp_path: Path, upstream: tuple[Path, FileServer]) -> None:
    folder, server = upstream
    splits = {
        "train_sent_emo.csv": [("Oh, my God,  really?", "surprise"), ("I’m fine.", "neutral")],
        "dev_sent_emo.csv": [("Get out!", "anger")],
        "test_sent_emo.csv": [("Ew.\nGross.", "disgust")],
    }
    hashes = {}
    for name, utterances in splits.items():
        data = _csv(MELD_HEADER, [[number, text, "Ross", emotion, "neutral", 0, number, 1, 1, "00:00:01,000",
                                   "00:00:02,000"] for number, (text, emotion) in enumerate(utterances)])
        (folder / name).write_bytes(data)
        hashes[name] = _sha256(data)
    assert set(hashes) == set(MELD_FILES)
    dataset = replace(MELD, files=PinnedFiles(MELD.name, server.url, hashes))
    assert load(dataset, _settings(tmp_path)) == [("Oh, my God, really?", "surprise"), ("I’m fine.", "neutral"),
                                                  ("Get out!", "anger"), ("Ew. Gross.", "disgust")]


def skewed_tweets() -> list[tuple[str, int]]:
    """240 offensive, 90 neither, 20 hate; one text repeated with its label, one given two labels."""
    tweets = [(f"offensive tweet number {n}", 1) for n in range(240)]
    tweets += [(f"neither tweet number {n}", 2) for n in range(90)]
    tweets += [(f"hate tweet number {n}", 0) for n in range(20)]
    tweets += [("Hate tweet number 3!", 0), ("who knows what this is", 1), ("who knows what this is", 2)]
    return tweets


@pytest.fixture
def skewed(tmp_path: Path, upstream: tuple[Path, FileServer]) -> object:
    folder, server = upstream
    data = davidson_csv(skewed_tweets())
    (folder / "labeled_data.csv").write_bytes(data)
    return _davidson_at(server.url, data, {"offensive": 241, "neither": 91, "hate": 21})


def _forms(path: Path) -> list[str]:
    return [normal_form(text) for text in read_labeled([path]).texts]


def test_prepare_writes_a_disjoint_stratified_pool_and_bootstrap(tmp_path: Path, skewed: object) -> None:
    out = tmp_path / "prepared"
    prepared = prepare(skewed, _settings(tmp_path), out, bootstrap_per_class=4, seed=3, max_pool=100)
    bootstrap, pool = read_labeled([out / "bootstrap.tsv"]), read_labeled([out / "pool.tsv"])
    assert Counter(bootstrap.labels) == {"offensive": 4, "neither": 4, "hate": 4}
    # The rest (236 / 86 / 16 distinct rows) sampled to 100 in proportion.
    assert Counter(pool.labels) == {"offensive": 70, "neither": 25, "hate": 5}
    assert prepared.pool_counts == Counter(pool.labels) and prepared.bootstrap_counts == Counter(bootstrap.labels)
    assert not set(_forms(out / "pool.tsv")) & set(_forms(out / "bootstrap.tsv"))
    every = _forms(out / "pool.tsv") + _forms(out / "bootstrap.tsv")
    assert len(every) == len(set(every)), "a repeated text is kept once"
    assert normal_form("who knows what this is") not in every, "a text with two labels is left out"
    assert (prepared.repeats, prepared.conflicting, prepared.rows) == (2, 1, 350)


def test_prepare_is_the_same_for_the_same_seed(tmp_path: Path, skewed: object) -> None:
    settings = _settings(tmp_path)
    files = {}
    for run, seed in (("a", 5), ("b", 5), ("c", 6)):
        prepare(skewed, settings, tmp_path / run, bootstrap_per_class=3, seed=seed, max_pool=0)
        files[run] = ((tmp_path / run / "pool.tsv").read_bytes(), (tmp_path / run / "bootstrap.tsv").read_bytes())
    assert files["a"] == files["b"]
    assert files["a"][0] != files["c"][0] and files["a"][1] != files["c"][1]
    assert len(read_labeled([tmp_path / "a" / "pool.tsv"])) == 350 - 9, "max-pool 0 keeps every other row"


def test_a_bootstrap_larger_than_a_class_is_a_clear_error(tmp_path: Path, skewed: object) -> None:
    with pytest.raises(PrepareError, match=r"classes \{'hate': 20\} have fewer than 22 distinct rows"):
        prepare(skewed, _settings(tmp_path), tmp_path / "out", bootstrap_per_class=20)


def test_unknown_name_lists_the_known_ones() -> None:
    assert public_dataset("meld") is MELD
    with pytest.raises(PublicDataError, match="no public data set 'nope'; known: davidson-2017, meld"):
        public_dataset("nope")


def test_every_registered_set_is_pinned_to_a_commit_and_skewed() -> None:
    for dataset in REGISTRY.values():
        assert "raw.githubusercontent.com" in dataset.files.base_url
        assert all(len(digest) == 64 for digest in dataset.files.hashes.values())
        assert dataset.licence and dataset.citation and dataset.cleaning
        assert min(dataset.shares().values()) < 0.10
    assert DAVIDSON.size == 24_783 and round(DAVIDSON.shares()["hate"], 3) == 0.058


def alvar(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*alvar_command(), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200"})


@pytest.mark.slow  # `alvar` subprocesses that load models or start services
def test_the_datasets_command_lists_and_explains_errors(tmp_path: Path) -> None:
    listed = alvar("datasets", "list")
    assert listed.returncode == 0, listed.stderr
    assert "davidson-2017" in listed.stdout and "hate 5.8%" in listed.stdout and "MIT" in listed.stdout
    assert "meld" in listed.stdout and "fear 2.6%" in listed.stdout and "GPL-3.0" in listed.stdout
    unknown = alvar("datasets", "prepare", "nope", "--out", str(tmp_path / "out"))
    assert unknown.returncode == 2 and "error: no public data set 'nope'" in unknown.stderr
    assert "Traceback" not in unknown.stderr
