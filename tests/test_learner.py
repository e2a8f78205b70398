import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from sklearn.exceptions import NotFittedError

from alvar.backend.learner import PARAMS_FILE, TransformerClassifier
from alvar.backend.model_store import ModelStore
from alvar.datafiles import read_dataset
from alvar.embedder import Embedder, settings_embedder, settings_namespace
from alvar.entropy import entropy
from alvar.loop.scoring_fanout import embeddings_of
from alvar.precision import AUTO, BFLOAT16, FLOAT32, INT8, resolve_precision
from alvar.settings import load_settings

# Trains and scores with the transformer learner (bfloat16 is emulated on CPUs without it).
pytestmark = pytest.mark.slow


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


@pytest.fixture(scope="module")
def seed_learner(seed_model_dir: Path) -> TransformerClassifier:
    return ModelStore(seed_model_dir).load_classifier(num_threads=2)[1]


@pytest.mark.parametrize(("precision", "tolerance"), [(BFLOAT16, 1e-3), (INT8, 2e-2)])
def test_precision_stays_close_to_float32(seed_model_dir: Path, seed_learner: TransformerClassifier,
                                          safety_dir: Path, precision: str, tolerance: float) -> None:
    """bfloat16 keeps the float32 argmax on >= 99.5 % of a real set even for a one-epoch learner, whose top two
    probabilities are often closer than 1e-3; int8 moves probabilities by up to ~5e-3, which flips the argmax of
    such near ties (83 % kept in bench/scoring.py), so for int8 only the distance is held."""
    texts = read_dataset(safety_dir / "test_labeled.tsv").texts[:1000]
    _, converted = ModelStore(seed_model_dir).load_classifier(num_threads=2, precision=precision)
    assert converted.precision == precision
    float32 = seed_learner.predict_proba(texts)
    scored = converted.predict_proba(texts)
    np.testing.assert_allclose(scored.sum(axis=1), 1.0, rtol=1e-4)
    assert 0 < np.abs(scored - float32).max() < tolerance
    if precision == BFLOAT16:
        assert np.mean(scored.argmax(axis=1) == float32.argmax(axis=1)) >= 0.995
    assert all(parameter.dtype == torch.float32 for parameter in converted.model_.parameters())


def test_auto_precision_is_bfloat16_where_the_cpu_has_it(seed_model_dir: Path, safety_dir: Path) -> None:
    """ALVAR_INFERENCE_PRECISION's default: bfloat16 on a CPU with bfloat16 instructions (the kernel's x86 flags say
    which), float32 on any other, plain AVX-512 included (it emulates bfloat16, about 4x slower); a learner and an
    embedder on ``auto`` score exactly as on the precision it resolves to."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = {flag for line in re.findall(r"^flags\s*:(.*)$", cpuinfo, re.MULTILINE) for flag in line.split()}
    resolved = resolve_precision(AUTO)
    assert resolved == (BFLOAT16 if flags & {"avx512_bf16", "amx_bf16"} else FLOAT32)
    texts = read_dataset(safety_dir / "test_labeled.tsv").texts[:200]
    store = ModelStore(seed_model_dir)
    auto, explicit = (store.load_classifier(num_threads=2, precision=precision)[1] for precision in (AUTO, resolved))
    np.testing.assert_array_equal(auto.predict_proba(texts), explicit.predict_proba(texts))
    model = load_settings().embedding_model
    assert Embedder(model, precision=AUTO).namespace == Embedder(model, precision=resolved).namespace
    np.testing.assert_array_equal(Embedder(model, precision=AUTO).encode(texts[:50]),
                                  Embedder(model, precision=resolved).encode(texts[:50]))


def test_int8_scores_but_never_embeds() -> None:
    """int8 moves sentence embeddings too far for clustering (cosine 0.75): the selection's embedder stays float32
    under ALVAR_INFERENCE_PRECISION=int8, in the float32 cache namespace, on the local and the fanned-out path."""
    settings = load_settings(inference_precision=INT8)
    embedder = settings_embedder(settings)
    assert embedder.precision == FLOAT32 and embedder.namespace == settings.embedding_model
    assert settings_namespace(settings) == embedder.namespace
    assert embeddings_of(settings.embedding_model, INT8).namespace == embedder.namespace


def test_saved_version_stays_float32(tmp_path: Path, small_set: tuple[list[str], list[str]]) -> None:
    texts, labels = small_set
    learner = TransformerClassifier(load_settings().base_model, epochs=1, batch_size=16, num_threads=2,
                                    precision=INT8).fit(texts, labels)
    int8 = learner.predict_proba(texts)
    learner.save(tmp_path / "version")
    with safe_open(tmp_path / "version" / "model.safetensors", framework="pt") as weights:
        assert {weights.get_slice(name).get_dtype() for name in weights.keys()} == {"F32"}
    assert "precision" not in json.loads((tmp_path / "version" / PARAMS_FILE).read_text())["params"]
    loaded = TransformerClassifier.load(tmp_path / "version")
    assert loaded.precision == FLOAT32
    learner.precision = FLOAT32
    np.testing.assert_allclose(loaded.predict_proba(texts), learner.predict_proba(texts), atol=1e-6)
    assert not np.array_equal(int8, learner.predict_proba(texts))


def test_unknown_precision_is_a_clear_error(tmp_path: Path, fitted: TransformerClassifier) -> None:
    with pytest.raises(ValueError, match="unknown precision 'float16': use one of auto, float32, bfloat16, int8"):
        TransformerClassifier(load_settings().base_model, precision="float16")
    fitted.save(tmp_path / "version")
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        TransformerClassifier.load(tmp_path / "version", precision="fp8")
