"""Every classifier meets one protocol (alvar.classifiers), in scikit-learn's conventions: parameters only in
``__init__``, fitted attributes only after ``fit``, ``predict`` = the argmax of ``predict_proba``, and a
``random_state`` that fixes the result without touching the process-wide random generators."""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from alvar.backend.learner import TransformerClassifier
from alvar.classifiers import TextClassifier
from alvar.experiments.simulate import SimulationLearner
from alvar.settings import load_settings
from alvar.text_classifiers import EmbeddingLogisticRegression, TfidfLogisticRegression

TEXTS = ["I want to die tonight", "nobody would miss me", "I keep hurting myself",
         "can my landlord keep my deposit", "is it legal to record my boss", "how do I sue my neighbour",
         "what a lovely sunny day", "my cat likes the sofa", "the bus was late again"]
LABELS = ["self-harm"] * 3 + ["legal-advice"] * 3 + ["discard"] * 3


def letter_counts(texts: Sequence[str]) -> np.ndarray:
    """A stand-in embedding: how often each letter occurs (the simulation learner takes any embed function)."""
    return np.array([[text.lower().count(letter) for letter in "abcdefghijklmnopqrstuvwxyz"] for text in texts],
                    dtype=np.float32)


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A one-layer BERT with the learner's tokenizer: fine-tuning it takes well under a second."""
    directory = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(load_settings().base_model)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)
    with torch.random.fork_rng(devices=[]):
        BertForSequenceClassification(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory)


Factory = Callable[[int], TextClassifier]


@pytest.fixture(params=["tfidf-lr", "embedding-lr", "transformer", "simulation-fast"])
def make(request: pytest.FixtureRequest, tiny_base: str) -> Factory:
    """A new, unfitted classifier of each kind for a random_state."""
    factories: dict[str, Factory] = {
        "tfidf-lr": lambda seed: TfidfLogisticRegression(random_state=seed),
        "embedding-lr": lambda seed: EmbeddingLogisticRegression(load_settings().embedding_model, random_state=seed),
        "transformer": lambda seed: TransformerClassifier(tiny_base, learning_rate=1e-3, epochs=2, batch_size=4,
                                                          random_state=seed, num_threads=2),
        "simulation-fast": lambda seed: SimulationLearner("fast", load_settings(), seed, letter_counts),
    }
    return factories[request.param]


def test_fit_returns_a_classifier_that_meets_the_protocol(make: Factory) -> None:
    classifier = make(0)
    assert classifier.fit(TEXTS, LABELS) is classifier
    assert isinstance(classifier, TextClassifier)
    assert sorted(classifier.classes_) == sorted(set(LABELS))
    probabilities = classifier.predict_proba(TEXTS)
    assert probabilities.shape == (len(TEXTS), 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_predict_is_the_argmax_of_predict_proba(make: Factory) -> None:
    classifier = make(0).fit(TEXTS, LABELS)
    probabilities = classifier.predict_proba(TEXTS)
    assert classifier.predict(TEXTS) == [classifier.classes_[int(row.argmax())] for row in probabilities]


def test_init_stores_parameters_only_and_fitted_attributes_come_with_fit(make: Factory) -> None:
    classifier = make(3)
    parameters = set(inspect.signature(type(classifier).__init__).parameters) - {"self"}
    assert set(vars(classifier)) <= parameters
    assert not [name for name in vars(classifier) if name.endswith("_")]
    assert not hasattr(classifier, "classes_")
    with pytest.raises(AttributeError):  # scikit-learn's NotFittedError is an AttributeError too
        classifier.predict_proba(TEXTS)
    classifier.fit(TEXTS, LABELS)
    assert hasattr(classifier, "classes_") and classifier.random_state == 3


def test_the_same_random_state_gives_the_same_model(make: Factory) -> None:
    first = make(5).fit(TEXTS, LABELS).predict_proba(TEXTS)
    again = make(5).fit(TEXTS, LABELS).predict_proba(TEXTS)
    np.testing.assert_allclose(again, first, atol=1e-6)


def test_the_transformer_seed_changes_the_model_and_leaves_global_generators_alone(tiny_base: str) -> None:
    def fitted(seed: int) -> np.ndarray:
        learner = TransformerClassifier(tiny_base, learning_rate=1e-3, epochs=2, batch_size=4, random_state=seed,
                                        num_threads=2)
        return learner.fit(TEXTS, LABELS).predict_proba(TEXTS)

    torch_state, numpy_state, python_state = torch.get_rng_state(), np.random.get_state(), random.getstate()
    first = fitted(0)
    assert torch.equal(torch.get_rng_state(), torch_state) and random.getstate() == python_state
    assert all(np.array_equal(now, before) for now, before in zip(np.random.get_state(), numpy_state))
    assert not np.allclose(fitted(1), first, atol=1e-4)


def test_a_saved_transformer_loads_as_a_fitted_classifier(tiny_base: str, tmp_path: Path) -> None:
    learner = TransformerClassifier(tiny_base, epochs=1, batch_size=4, num_threads=2).fit(TEXTS, LABELS)
    learner.save(tmp_path / "version")
    loaded = TransformerClassifier.load(tmp_path / "version")
    assert isinstance(loaded, TextClassifier) and loaded.classes_ == learner.classes_
    assert loaded.predict(TEXTS) == learner.predict(TEXTS)
    np.testing.assert_allclose(loaded.predict_proba(TEXTS), learner.predict_proba(TEXTS), atol=1e-6)
