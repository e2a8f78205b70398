"""The auxiliary model R of generative projects: a classifier that judges outputs against the regulated attribute H.

Entropy over classes does not exist for free text, so a generative project scores a pool input by how unsure R
is about the student's output for it: informativeness = entropy of R's softmax over G(x). R is any Hugging Face
sequence-classification model (a path or a hub id), or the one `alvar attribute train` writes to
``MODEL_DIR/attribute``; its classes come from the model's ``id2label``. H is the class outputs must have.

In pair mode R judges an output against its input ("the output actually counters the input"): it reads
:func:`judge_text` of the two. A model directory says so in its ``attribute.json`` (``{"pair_input": true,
"required": "..."}``), written by ``alvar attribute train --pairs``.

torch and transformers load when R does: `alvar status` and `alvar down` read R's path here, and importing them
costs seconds that those commands do not need.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from alvar.entropy import entropy
from alvar.errors import AlvarError
from alvar.settings import Settings

ATTRIBUTE_DIR = "attribute"
"""R's default home under MODEL_DIR, written by `alvar attribute train`."""
CARD_FILE = "attribute.json"
PAIR_SEPARATOR = " [SEP] "


class AttributeModelError(AlvarError, ValueError):
    """R cannot judge as configured (it does not load, or H is not one of its classes); the message says why."""


def judge_text(input_text: str, output: str) -> str:
    """What a pair-mode R reads: the output after its input (BERT tokenizers read [SEP] as the separator)."""
    return f"{input_text}{PAIR_SEPARATOR}{output}"


def attribute_card(model_path: str | Path) -> dict[str, Any]:
    """The ``attribute.json`` of a local model directory; empty for a hub id or a directory without one."""
    card = Path(model_path) / CARD_FILE
    if not card.is_file():
        return {}
    try:
        loaded = json.loads(card.read_text())
    except json.JSONDecodeError as error:
        raise AttributeModelError(f"R's {card} is not JSON ({error}): train R again with `alvar attribute train`, or "
                                  "fix the file") from None
    return loaded if isinstance(loaded, dict) else {}


def model_classes(model_path: str) -> list[str]:
    """R's classes in label-id order, read from its config (no weights loaded)."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(model_path)
    except (OSError, ValueError) as error:
        raise AttributeModelError(
            f"R ({model_path}) is not a model that loads: {error}. Train one with `alvar attribute train` or point "
            "ALVAR_ATTRIBUTE_MODEL at a sequence-classification model") from error
    return [str(config.id2label[index]) for index in sorted(config.id2label)]


class AttributeJudge:
    """R loaded for judging: class probabilities, informativeness and whether outputs have the value ``required``.

    Fitted attributes (set by :meth:`load`): ``classes_`` (in the model's label-id order), ``model_``,
    ``tokenizer_``, ``pair_input_`` (whether R reads outputs joined with their inputs).
    """

    def __init__(self, model_path: str, required: str, batch_size: int = 64, max_length: int = 64,
                 num_threads: int | None = None) -> None:
        self.model_path = model_path
        self.required = required
        self.batch_size = batch_size
        self.max_length = max_length
        self.num_threads = num_threads

    def load(self) -> AttributeJudge:
        """Load R's model and tokenizer; H must be one of its classes."""
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        classes = model_classes(self.model_path)
        if self.required not in classes:
            raise AttributeModelError(
                f"ALVAR_ATTRIBUTE_VALUE {self.required!r} is not a value R knows ({', '.join(classes)}): set "
                "ALVAR_ATTRIBUTE_VALUE (or the label config's first attribute choice) to one of them")
        try:
            tokenizer = AutoTokenizer.from_pretrained(self.model_path)
            model = AutoModelForSequenceClassification.from_pretrained(self.model_path)
        except (OSError, ValueError) as error:
            raise AttributeModelError(f"R ({self.model_path}) is not a sequence-classification model that loads: "
                                      f"{error}") from error
        model.eval()
        self.classes_, self.model_, self.tokenizer_ = classes, model, tokenizer
        self.pair_input_ = bool(attribute_card(self.model_path).get("pair_input", False))
        return self

    def _texts(self, outputs: Sequence[str], inputs: Sequence[str] | None) -> list[str]:
        if not self.pair_input_:
            return list(outputs)
        if inputs is None or len(inputs) != len(outputs):
            raise ValueError(f"R judges outputs against their inputs: {len(outputs)} outputs need as many inputs, "
                             f"got {'none' if inputs is None else len(inputs)}")
        return [judge_text(source, output) for source, output in zip(inputs, outputs)]

    def predict_proba(self, outputs: Sequence[str], inputs: Sequence[str] | None = None) -> np.ndarray:
        """R's class probabilities, one row per output, columns in ``classes_`` order (inputs: pair mode only)."""
        import torch

        if not hasattr(self, "model_"):
            self.load()
        if self.num_threads:
            torch.set_num_threads(self.num_threads)
        probabilities = np.empty((len(outputs), len(self.classes_)), dtype=np.float32)
        if not outputs:
            return probabilities
        encoded = self.tokenizer_(self._texts(outputs, inputs), truncation=True,
                                  max_length=self.max_length)["input_ids"]
        order = np.argsort(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)), kind="stable")
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                padded = self.tokenizer_.pad({"input_ids": [encoded[i] for i in batch]}, return_tensors="pt")
                probabilities[batch] = torch.softmax(self.model_(**padded).logits.float(), dim=-1).numpy()
        return probabilities

    def informativeness(self, outputs: Sequence[str], inputs: Sequence[str] | None = None) -> np.ndarray:
        """Entropy (nats) of R's softmax on each output: how unsure R is whether it has the attribute."""
        return entropy(self.predict_proba(outputs, inputs))

    def satisfies(self, outputs: Sequence[str], inputs: Sequence[str] | None = None) -> np.ndarray:
        """Whether R's likeliest class for each output is H."""
        probabilities = self.predict_proba(outputs, inputs)
        return np.asarray(probabilities.argmax(axis=1) == self.classes_.index(self.required), dtype=bool)


def default_attribute_dir(settings: Settings) -> Path:
    """Where `alvar attribute train` writes R by default: ``MODEL_DIR/attribute``."""
    return Path(settings.model_dir) / ATTRIBUTE_DIR


def attribute_model_path(settings: Settings) -> str | None:
    """R's model: ALVAR_ATTRIBUTE_MODEL, else MODEL_DIR/attribute when it holds a model; None: R is not trained yet."""
    if settings.attribute_model:
        return settings.attribute_model
    default = default_attribute_dir(settings)
    return str(default) if (default / "config.json").is_file() else None


def required_value(settings: Settings, model_path: str, control_required: str) -> str:
    """H: ALVAR_ATTRIBUTE_VALUE, else the value R was trained for (its attribute.json), else the label config's."""
    return str(settings.attribute_value or attribute_card(model_path).get("required") or control_required)


def load_judge(settings: Settings, control_required: str) -> AttributeJudge | None:
    """R loaded for H, or None when R is not trained yet (the first round falls back to cluster-then-random)."""
    path = attribute_model_path(settings)
    if path is None:
        return None
    judge = AttributeJudge(path, required_value(settings, path, control_required),
                           batch_size=settings.inference_batch_size, max_length=settings.max_length,
                           num_threads=settings.torch_threads)
    return judge.load()
