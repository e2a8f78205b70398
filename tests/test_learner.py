from pathlib import Path

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from alvar.backend.learner import TransformerClassifier
from alvar.backend.model_store import ModelStore
from alvar.datafiles import read_dataset
from alvar.entropy import entropy
from alvar.settings import load_settings


@pytest.fixture(scope="module")
def small_set(safety_dir: Path) -> tuple[list[str], list[str]]:
    data = read_dataset(safety_dir / "bootstrap_labeled.tsv")
    return data.texts[:48], data.labels[:48]


def make(seed: int = 0) -> TransformerClassifier:
    return TransformerClassifier(load_settings().base_model, epochs=1, batch_size=16, random_state=seed, num_threads=2)


@pytest.fixture(scope="module")
def fitted(small_set: tuple[list[str], list[str]]) -> TransformerClassifier:
    return make().fit(*small_set)


def test_fit_predict_shapes_and_probabilities(fitted: TransformerClassifier,
                                              small_set: tuple[list[str], list[str]]) -> None:
    texts, labels = small_set
    assert fitted.classes_ == sorted(set(labels))
    probabilities = fitted.predict_proba(texts)
    assert probabilities.shape == (len(texts), len(fitted.classes_))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(fitted.entropy(texts), entropy(probabilities), rtol=1e-5)
    assert fitted.predict(texts) == [fitted.classes_[i] for i in probabilities.argmax(axis=1)]
    assert fitted.predict_proba([]).shape == (0, len(fitted.classes_))


def test_length_sorted_batches_match_one_text_at_a_time(fitted: TransformerClassifier,
                                                         small_set: tuple[list[str], list[str]]) -> None:
    texts = small_set[0] + ["", "word " * 20000]
    batched = fitted.predict_proba(texts)
    fitted.inference_batch_size = 1
    try:
        single = fitted.predict_proba(texts)
    finally:
        fitted.inference_batch_size = 128
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_same_seed_same_model(fitted: TransformerClassifier, small_set: tuple[list[str], list[str]]) -> None:
    again = make(seed=0).fit(*small_set)
    np.testing.assert_allclose(again.predict_proba(small_set[0]), fitted.predict_proba(small_set[0]), atol=1e-6)
    other = make(seed=1).fit(*small_set)
    assert not np.allclose(other.predict_proba(small_set[0]), fitted.predict_proba(small_set[0]), atol=1e-4)


def test_versions_save_load_and_switch_atomically(tmp_path: Path, fitted: TransformerClassifier,
                                                  small_set: tuple[list[str], list[str]]) -> None:
    texts, labels = small_set
    store = ModelStore(tmp_path / "models")
    assert store.current_version() is None
    with pytest.raises(FileNotFoundError, match="train one first"):
        store.load()
    first = store.save(fitted, texts, labels, metrics={"macro_f1": 0.5})
    assert store.current_version() is None
    store.switch(first)
    second = store.save(fitted, texts[:-1], labels[:-1])
    assert store.versions() == [first, second]
    assert store.current_version() == first
    metadata = store.metadata(first)
    assert metadata["base_model"] == fitted.base_model and metadata["metrics"] == {"macro_f1": 0.5}
    assert metadata["n_examples"] == len(texts) and sum(metadata["class_counts"].values()) == len(texts)
    assert (store.path(first) / "model.safetensors").is_file()
    store.switch(second)
    version, loaded = store.load()
    assert version == second
    np.testing.assert_allclose(loaded.predict_proba(texts), fitted.predict_proba(texts), atol=1e-6)
    assert not [p for p in store.root.iterdir() if p.name.startswith(".")]
    with pytest.raises(FileNotFoundError):
        store.switch("no-such-version")


def test_bad_training_input() -> None:
    with pytest.raises(ValueError, match="at least two classes"):
        make().fit(["a", "b"], ["x", "x"])
    with pytest.raises(ValueError, match="empty"):
        make().fit([], [])
    with pytest.raises(NotFittedError):
        make().predict_proba(["a"])
