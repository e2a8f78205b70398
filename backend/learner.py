"""The learner: a transformer sequence classifier with scikit-learn's estimator shape.

Scoring is the hot path (Label Studio sends every selected task in one /predict; the selector scores whole
pools), so it tokenizes once, sorts texts by length, pads each batch only to its own longest text and runs
under ``torch.inference_mode``, in the arithmetic ``precision`` names (:mod:`alvar.precision`).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.exceptions import NotFittedError
from tqdm.auto import tqdm
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    get_linear_schedule_with_warmup,
)

from alvar.classifiers import ClassifierMixin, require_two_classes
from alvar.entropy import entropy as entropy_of
from alvar.labelstudio.generation_config import CLASSIFICATION
from alvar.precision import FLOAT32, arithmetic, check_precision, converted_copy, resolve_precision

log = logging.getLogger(__name__)

PARAMS_FILE = "learner.json"


@contextmanager
def seeded_torch(random_state: int) -> Iterator[torch.Generator]:
    """A local generator seeded from ``random_state``, inside a fork of torch's default generator.

    The batch order draws from the local generator. The new head's initial weights and dropout draw from torch's
    default generator (transformers takes no generator), so that one is seeded only inside a fork and restored on
    exit: a fit is reproducible and leaves the process's random state as it found it.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(random_state)
        yield torch.Generator().manual_seed(random_state)


class TransformerClassifier(ClassifierMixin):
    """Fine-tunes a BERT-family model to classify texts; ``classes_`` are the sorted label names.

    Fitted attributes (set by :meth:`fit` or :meth:`load`): ``classes_``, ``model_``, ``tokenizer_``,
    ``training_loss_``; ``scoring_models_`` holds ``model_`` converted to each precision scored in, made on
    first use (``model_`` itself is never converted, so what :meth:`save` writes stays float32).
    """

    kind: ClassVar[str] = CLASSIFICATION

    def __init__(
        self,
        base_model: str,
        learning_rate: float = 2e-5,
        batch_size: int = 16,
        max_length: int = 50,
        epochs: int = 10,
        random_state: int = 0,
        inference_batch_size: int = 128,
        num_threads: int | None = None,
        show_progress: bool = False,
        precision: str = FLOAT32,
    ) -> None:
        self.base_model = base_model
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_length = max_length
        self.epochs = epochs
        self.random_state = random_state
        self.inference_batch_size = inference_batch_size
        self.num_threads = num_threads
        self.show_progress = show_progress
        self.precision = check_precision(precision)

    def get_params(self) -> dict[str, Any]:
        return {
            "base_model": self.base_model,
            "learning_rate": self.learning_rate,
            "batch_size": self.batch_size,
            "max_length": self.max_length,
            "epochs": self.epochs,
            "random_state": self.random_state,
            "inference_batch_size": self.inference_batch_size,
            "num_threads": self.num_threads,
            "precision": self.precision,
        }

    def _set_threads(self) -> None:
        if self.num_threads:
            torch.set_num_threads(self.num_threads)

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> TransformerClassifier:
        """Fine-tune the base model on (text, label) pairs; every call starts again from the base."""
        if len(texts) != len(labels):
            raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
        if not texts:
            raise ValueError("cannot fit on an empty training set")
        require_two_classes(labels)
        classes = sorted(set(labels))
        label_ids = {label: index for index, label in enumerate(classes)}
        self._set_threads()
        tokenizer = AutoTokenizer.from_pretrained(self.base_model)
        encoded = tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]
        targets = torch.tensor([label_ids[label] for label in labels])
        with seeded_torch(self.random_state) as generator:
            model = AutoModelForSequenceClassification.from_pretrained(
                self.base_model,
                num_labels=len(classes),
                id2label=dict(enumerate(classes)),
                label2id=label_ids,
                ignore_mismatched_sizes=True,
            )
            loss = self._train(model, tokenizer, encoded, targets, generator)
        model.eval()
        self.classes_, self.model_, self.tokenizer_, self.training_loss_ = classes, model, tokenizer, loss
        self.scoring_models_: dict[str, Any] = {}
        return self

    def _train(self, model: Any, tokenizer: Any, encoded: list[list[int]], targets: torch.Tensor,
               generator: torch.Generator) -> float:
        """``epochs`` passes over the data in shuffled batches; the mean loss of the last pass."""
        steps_per_epoch = -(-len(encoded) // self.batch_size)
        optimizer = torch.optim.AdamW(model.parameters(), lr=self.learning_rate)
        schedule = get_linear_schedule_with_warmup(optimizer, 0, steps_per_epoch * self.epochs)
        model.train()
        total_loss = 0.0
        progress = tqdm(total=steps_per_epoch * self.epochs, desc="training", disable=not self.show_progress)
        for _ in range(self.epochs):
            total_loss = 0.0
            order = torch.randperm(len(encoded), generator=generator).tolist()
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                inputs = tokenizer.pad({"input_ids": [encoded[i] for i in batch]}, return_tensors="pt")
                output = model(**inputs, labels=targets[batch])
                output.loss.backward()
                optimizer.step()
                schedule.step()
                optimizer.zero_grad()
                total_loss += output.loss.item() * len(batch)
                progress.update()
        progress.close()
        return total_loss / len(encoded)

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError("the learner is not fitted: call fit() or load a saved version")

    def _scoring_model(self) -> Any:
        """``model_`` in this learner's ``precision``: converted once per fitted model, then reused."""
        precision = resolve_precision(self.precision)
        if precision not in self.scoring_models_:
            self.scoring_models_[precision] = converted_copy(self.model_, precision)
        return self.scoring_models_[precision]

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities, one row per text, columns in ``classes_`` order."""
        self._check_fitted()
        check_precision(self.precision)
        self._set_threads()
        probabilities = np.empty((len(texts), len(self.classes_)), dtype=np.float32)
        if not texts:
            return probabilities
        encoded = self.tokenizer_(list(texts), truncation=True, max_length=self.max_length)["input_ids"]
        lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        order = np.argsort(lengths, kind="stable")
        model = self._scoring_model()
        with torch.inference_mode(), arithmetic(self.precision):
            for start in range(0, len(order), self.inference_batch_size):
                batch = order[start : start + self.inference_batch_size]
                inputs = self.tokenizer_.pad({"input_ids": [encoded[i] for i in batch]}, return_tensors="pt")
                logits = model(**inputs).logits
                probabilities[batch] = torch.softmax(logits.float(), dim=-1).numpy()
        return probabilities

    def entropy(self, texts: Sequence[str]) -> np.ndarray:
        """Predictive entropy (nats) of each text."""
        return entropy_of(self.predict_proba(texts))

    def save(self, directory: str | Path) -> None:
        """Write safetensors weights, the tokenizer, and the label map with the learner's parameters.

        The weights are the float32 ``model_`` and ``precision`` is not written: it belongs to whoever scores
        with a version (ALVAR_INFERENCE_PRECISION), so a version loaded without one scores in float32.
        """
        self._check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model_.save_pretrained(directory, safe_serialization=True)
        self.tokenizer_.save_pretrained(directory)
        params = {name: value for name, value in self.get_params().items() if name != "precision"}
        state = {"params": params, "classes": self.classes_, "training_loss": self.training_loss_}
        (directory / PARAMS_FILE).write_text(json.dumps(state, indent=2))

    def version_metadata(self, labels: Sequence[str]) -> dict[str, Any]:
        """What a saved version's metadata says of its training set: the class counts and the classes."""
        return {"class_counts": dict(sorted(Counter(labels).items())), "classes": self.classes_}

    @classmethod
    def load(cls, directory: str | Path, **overrides: Any) -> TransformerClassifier:
        """A fitted learner from a directory written by :meth:`save`; ``overrides`` change inference settings."""
        directory = Path(directory)
        state = json.loads((directory / PARAMS_FILE).read_text())
        learner = cls(**{**state["params"], **{k: v for k, v in overrides.items() if v is not None}})
        learner.classes_ = list(state["classes"])
        learner.training_loss_ = state.get("training_loss")
        learner.tokenizer_ = AutoTokenizer.from_pretrained(directory)
        learner.model_ = AutoModelForSequenceClassification.from_pretrained(directory)
        learner.model_.eval()
        learner.scoring_models_ = {}
        return learner
