"""The student G: a real fine-tune of the offline encoder-decoder and of a tiny causal LM, batched greedy writing,
persistence, and the model store holding students next to classifiers."""

import json
from pathlib import Path

import pytest
import torch
from sklearn.exceptions import NotFittedError
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

from alvar.backend.learner import TransformerClassifier
from alvar.backend.model_store import ModelKindError, ModelStore, load_model
from alvar.backend.student import CAUSAL, WARM_STARTED, TextToTextStudent, architecture, new_student
from alvar.settings import load_settings

pytestmark = pytest.mark.slow  # fine-tunes real seq2seq and causal students

PAIRS = [
    ("you people are all idiots", "Name-calling does not help anyone here."),
    ("women should stay at home", "Women contribute in every field."),
    ("immigrants steal our jobs", "Immigrants create jobs and businesses."),
    ("they are animals", "Everyone deserves to be treated as a human."),
    ("go back to your country", "This is their country too."),
    ("old people are useless and slow", "Older people bring experience and wisdom."),
    ("gay people are sick", "Being gay is not an illness."),
    ("muslims are all terrorists", "Most Muslims condemn terrorism."),
]
INPUTS = [source for source, _ in PAIRS]
OUTPUTS = [target for _, target in PAIRS]
# Mixed lengths: batches of three padded rows whose lengths differ a lot.
MIXED = ["x", "a much longer input that goes on and on about many things people say online", *INPUTS[:4], "no"]


@pytest.fixture(scope="module")
def base_model() -> str:
    return load_settings().student_model


@pytest.fixture(scope="module")
def fitted(base_model: str) -> TextToTextStudent:
    student = TextToTextStudent(base_model, learning_rate=1e-4, batch_size=4, max_input_length=32,
                                max_output_length=12, epochs=3, inference_batch_size=3, num_threads=1)
    return student.fit(INPUTS, OUTPUTS)


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory: pytest.TempPathFactory, base_model: str) -> Path:
    """A randomly initialised two-layer GPT-2 with the MiniLM tokenizer: a causal LM that needs no hub."""
    directory = tmp_path_factory.mktemp("tiny-gpt2")
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=tokenizer.vocab_size, n_positions=64, n_embd=64, n_layer=2, n_head=2)
    GPT2LMHeadModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def test_default_student_is_a_warm_started_encoder_decoder_whose_loss_falls(fitted: TextToTextStudent) -> None:
    assert fitted.architecture_ == WARM_STARTED
    assert len(fitted.loss_history_) == 3
    assert fitted.loss_history_[-1] < 0.8 * fitted.loss_history_[0]
    assert fitted.training_loss_ == fitted.loss_history_[-1]


def test_batched_generate_equals_one_at_a_time_in_input_order(fitted: TextToTextStudent) -> None:
    batched = fitted.generate(MIXED)
    assert len(batched) == len(MIXED) and all(isinstance(text, str) for text in batched)
    fitted.inference_batch_size = 1
    try:
        single = [fitted.generate([text])[0] for text in MIXED]
    finally:
        fitted.inference_batch_size = 3
    assert batched == single
    assert fitted.generate(list(reversed(MIXED))) == list(reversed(batched))
    assert fitted.generate([]) == []


def test_save_then_load_writes_the_same_outputs(fitted: TextToTextStudent, tmp_path: Path) -> None:
    fitted.save(tmp_path / "student")
    loaded = TextToTextStudent.load(tmp_path / "student", inference_batch_size=2)
    assert loaded.architecture_ == WARM_STARTED and loaded.inference_batch_size == 2
    assert loaded.loss_history_ == fitted.loss_history_
    assert loaded.get_params() == {**fitted.get_params(), "inference_batch_size": 2}
    assert loaded.generate(MIXED) == fitted.generate(MIXED)


def test_unfitted_and_mismatched_inputs_are_refused(base_model: str) -> None:
    student = TextToTextStudent(base_model)
    with pytest.raises(NotFittedError):
        student.generate(["x"])
    with pytest.raises(ValueError, match="2 inputs but 1 outputs"):
        student.fit(["a", "b"], ["c"])
    with pytest.raises(ValueError, match="empty"):
        student.fit([], [])


def test_causal_lm_learns_the_output_after_the_input(tiny_gpt2: Path, tmp_path: Path) -> None:
    assert architecture(str(tiny_gpt2)) == CAUSAL
    student = TextToTextStudent(str(tiny_gpt2), learning_rate=1e-3, batch_size=4, max_output_length=8, epochs=20,
                                inference_batch_size=3, num_threads=1).fit(INPUTS[:4], OUTPUTS[:4])
    assert student.architecture_ == CAUSAL
    assert student.loss_history_[-1] < 0.9 * student.loss_history_[0]
    batched = student.generate(MIXED)
    student.inference_batch_size = 1
    assert [student.generate([text])[0] for text in MIXED] == batched
    student.save(tmp_path / "causal")
    assert TextToTextStudent.load(tmp_path / "causal").generate(MIXED) == batched


def test_new_student_takes_the_settings(base_model: str) -> None:
    settings = load_settings(student_epochs=2, student_learning_rate=3e-4, max_length=40, max_output_length=20,
                             batch_size=8, inference_batch_size=32, torch_threads=1, seed=5)
    student = new_student(settings)
    assert student.get_params() == {"base_model": base_model, "learning_rate": 3e-4, "batch_size": 8,
                                    "max_input_length": 40, "max_output_length": 20, "epochs": 2, "random_state": 5,
                                    "inference_batch_size": 32, "num_threads": 1}
    assert new_student(settings, seed=9).random_state == 9


def test_model_store_keeps_students_and_classifiers_apart(fitted: TextToTextStudent, base_model: str,
                                                          tmp_path: Path) -> None:
    texts = [*INPUTS, *OUTPUTS]
    labels = ["offensive"] * len(INPUTS) + ["polite"] * len(OUTPUTS)
    classifier = TransformerClassifier(base_model, epochs=1, batch_size=8, num_threads=1).fit(texts, labels)
    store = ModelStore(tmp_path / "models")
    generation = store.save(fitted, INPUTS, OUTPUTS, extra={"project": 3})
    classification = store.save(classifier, texts, labels)

    metadata = store.metadata(generation)
    assert metadata["kind"] == "generation" and metadata["n_examples"] == len(INPUTS) and metadata["project"] == 3
    assert "class_counts" not in metadata and "classes" not in metadata
    assert metadata["loss_history"] == fitted.loss_history_ and metadata["architecture"] == WARM_STARTED
    assert store.metadata(classification)["kind"] == "classification"
    assert store.metadata(classification)["class_counts"] == {"offensive": 8, "polite": 8}

    student = load_model(store.path(generation))
    assert isinstance(student, TextToTextStudent) and student.generate(MIXED) == fitted.generate(MIXED)
    assert isinstance(load_model(store.path(classification)), TransformerClassifier)
    store.switch(generation)
    version, current = store.load()
    assert version == generation and isinstance(current, TextToTextStudent)
    assert isinstance(store.load_student()[1], TextToTextStudent)
    with pytest.raises(ModelKindError, match="not a classifier"):
        store.load_classifier()
    with pytest.raises(ModelKindError, match="not a student"):
        store.load_student(classification)

    # A version written before generative projects has no kind: it is a classifier.
    old = store.path(classification) / "metadata.json"
    old.write_text(json.dumps({key: value for key, value in json.loads(old.read_text()).items() if key != "kind"}))
    version, loaded = store.load_classifier(classification, num_threads=1)
    assert version == classification and loaded.classes_ == ["offensive", "polite"]
