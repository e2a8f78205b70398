"""The student G of generative projects: a text-to-text model with scikit-learn's estimator shape.

The base model decides the architecture (:func:`architecture`):

- an encoder-decoder (``config.is_encoder_decoder``: t5, flan-t5, bart) is fine-tuned as it is;
- a BERT-family encoder (the offline default, the shipped all-MiniLM-L6-v2) is warm-started as an encoder-decoder
  (bert2bert: the encoder's weights on both sides, new cross-attention), so no hub access is needed;
- a causal LM (gpt2, llama...) learns ``input <eos> output <eos>`` with the loss on the output only, and writes
  by continuing after ``input <eos>``.

Scoring a pool is the hot path (every pool input gets an interim output), so :meth:`TextToTextStudent.generate`
tokenizes once, sorts inputs by length, pads each batch only to its own longest input and decodes greedily under
``torch.inference_mode``.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.exceptions import NotFittedError
from tqdm.auto import tqdm
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    EncoderDecoderModel,
    get_linear_schedule_with_warmup,
)
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES as CAUSAL_LM_TYPES
from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES as MASKED_LM_TYPES

from alvar.backend.learner import seeded_torch
from alvar.labelstudio.generation_config import GENERATION
from alvar.settings import Settings

PARAMS_FILE = "student.json"
SEQ2SEQ = "seq2seq"
WARM_STARTED = "encoder-decoder"
CAUSAL = "causal"
IGNORED = -100
"""The label id the loss skips (padding, and a causal LM's input part)."""


def architecture(base_model: str) -> str:
    """How a base model becomes a text-to-text student: :data:`SEQ2SEQ`, :data:`WARM_STARTED` or :data:`CAUSAL`.

    An encoder such as BERT also has a causal-LM head in transformers, so "causal" means a causal LM that is not a
    masked-LM family (gpt2, llama, qwen...).
    """
    config = AutoConfig.from_pretrained(base_model)
    if getattr(config, "is_encoder_decoder", False):
        return SEQ2SEQ
    if config.model_type in CAUSAL_LM_TYPES and config.model_type not in MASKED_LM_TYPES:
        return CAUSAL
    return WARM_STARTED


class TextToTextStudent:
    """Fine-tunes a transformers model to write an output text for an input text.

    Fitted attributes (set by :meth:`fit` or :meth:`load`): ``architecture_``, ``model_``, ``tokenizer_``,
    ``training_loss_`` (mean loss of the last epoch) and ``loss_history_`` (mean loss of every epoch).
    """

    kind: ClassVar[str] = GENERATION

    def __init__(
        self,
        base_model: str,
        learning_rate: float = 1e-4,
        batch_size: int = 16,
        max_input_length: int = 64,
        max_output_length: int = 48,
        epochs: int = 10,
        random_state: int = 0,
        inference_batch_size: int = 64,
        num_threads: int | None = None,
        show_progress: bool = False,
    ) -> None:
        self.base_model = base_model
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_input_length = max_input_length
        self.max_output_length = max_output_length
        self.epochs = epochs
        self.random_state = random_state
        self.inference_batch_size = inference_batch_size
        self.num_threads = num_threads
        self.show_progress = show_progress

    def get_params(self) -> dict[str, Any]:
        return {
            "base_model": self.base_model,
            "learning_rate": self.learning_rate,
            "batch_size": self.batch_size,
            "max_input_length": self.max_input_length,
            "max_output_length": self.max_output_length,
            "epochs": self.epochs,
            "random_state": self.random_state,
            "inference_batch_size": self.inference_batch_size,
            "num_threads": self.num_threads,
        }

    def _set_threads(self) -> None:
        if self.num_threads:
            torch.set_num_threads(self.num_threads)

    # -- fitting --------------------------------------------------------------------------------------------

    def fit(self, inputs: Sequence[str], outputs: Sequence[str]) -> TextToTextStudent:
        """Fine-tune the base model on (input, output) pairs; every call starts again from the base."""
        if len(inputs) != len(outputs):
            raise ValueError(f"{len(inputs)} inputs but {len(outputs)} outputs")
        if not inputs:
            raise ValueError("cannot fit on an empty training set")
        self._set_threads()
        kind = architecture(self.base_model)
        tokenizer = AutoTokenizer.from_pretrained(self.base_model)
        with seeded_torch(self.random_state) as generator:
            model = _base(kind, self.base_model, tokenizer)
            self.architecture_, self.tokenizer_ = kind, tokenizer
            examples = [self._example(source, target) for source, target in zip(inputs, outputs)]
            history = self._train(model, examples, generator)
        model.eval()
        self.model_, self.loss_history_, self.training_loss_ = model, history, history[-1]
        return self

    def _input_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each input as the model reads it (a causal LM's end with the separator it continues after)."""
        if self.architecture_ == CAUSAL:
            ids = self.tokenizer_(list(texts), add_special_tokens=False, truncation=True,
                                  max_length=self.max_input_length)["input_ids"]
            return [row + [_eos_id(self.tokenizer_)] for row in ids]
        encoded: list[list[int]] = self.tokenizer_(list(texts), truncation=True,
                                                   max_length=self.max_input_length)["input_ids"]
        return encoded

    def _example(self, source: str, target: str) -> tuple[list[int], list[int]]:
        """(input ids, label ids): the output's tokens ended by eos, cut to ``max_output_length``."""
        eos = _eos_id(self.tokenizer_)
        target_ids = self.tokenizer_(target, add_special_tokens=False)["input_ids"][: self.max_output_length - 1]
        return self._input_ids([source])[0], target_ids + [eos]

    def _train(self, model: Any, examples: list[tuple[list[int], list[int]]],
               generator: torch.Generator) -> list[float]:
        """``epochs`` passes over the data in shuffled batches; the mean loss of each pass."""
        steps_per_epoch = -(-len(examples) // self.batch_size)
        optimizer = torch.optim.AdamW(model.parameters(), lr=self.learning_rate)
        schedule = get_linear_schedule_with_warmup(optimizer, 0, steps_per_epoch * self.epochs)
        model.train()
        history = []
        progress = tqdm(total=steps_per_epoch * self.epochs, desc="training", disable=not self.show_progress)
        # EncoderDecoderModel warns on every loss that transformers 4.12 changed how it computes it; a student
        # warm-started today never saw the old way, so the warning says nothing about it.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Version v4.12.0 introduces", category=FutureWarning)
            for _ in range(self.epochs):
                order = torch.randperm(len(examples), generator=generator).tolist()
                history.append(self._epoch(model, [examples[i] for i in order], optimizer, schedule, progress))
        progress.close()
        return history

    def _epoch(self, model: Any, examples: list[tuple[list[int], list[int]]], optimizer: torch.optim.Optimizer,
               schedule: Any, progress: Any) -> float:
        """One pass over ``examples`` in their order, in batches; the mean loss per example."""
        total_loss = 0.0
        for start in range(0, len(examples), self.batch_size):
            batch = examples[start : start + self.batch_size]
            loss = model(**self._training_batch(batch)).loss
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            total_loss += loss.item() * len(batch)
            progress.update()
        return total_loss / len(examples)

    def _training_batch(self, batch: list[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
        pad = _pad_id(self.tokenizer_)
        if self.architecture_ == CAUSAL:
            sequences = [source + target for source, target in batch]
            labels = [[IGNORED] * len(source) + target for source, target in batch]
            input_ids, attention_mask = _padded(sequences, pad, left=False)
            return {"input_ids": input_ids, "attention_mask": attention_mask,
                    "labels": _padded(labels, IGNORED, left=False)[0]}
        input_ids, attention_mask = _padded([source for source, _ in batch], pad, left=False)
        return {"input_ids": input_ids, "attention_mask": attention_mask,
                "labels": _padded([target for _, target in batch], IGNORED, left=False)[0]}

    # -- writing --------------------------------------------------------------------------------------------

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError("the student is not fitted: call fit() or load a saved version")

    def generate(self, inputs: Sequence[str]) -> list[str]:
        """Greedy outputs, one per input, in input order: batched over length-sorted inputs."""
        self._check_fitted()
        self._set_threads()
        if not inputs:
            return []
        encoded = self._input_ids(inputs)
        order = np.argsort(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)), kind="stable")
        written: list[str] = [""] * len(encoded)
        with torch.inference_mode():
            for start in range(0, len(order), self.inference_batch_size):
                batch = order[start : start + self.inference_batch_size].tolist()
                for index, text in zip(batch, self._generate_batch([encoded[i] for i in batch])):
                    written[index] = text
        return written

    def _generate_batch(self, encoded: list[list[int]]) -> list[str]:
        causal = self.architecture_ == CAUSAL
        # A causal LM continues each row from its last token, so its rows are padded on the left.
        input_ids, attention_mask = _padded(encoded, _pad_id(self.tokenizer_), left=causal)
        generated = self.model_.generate(input_ids=input_ids, attention_mask=attention_mask,
                                         **self.generation_options())
        if causal:
            generated = generated[:, input_ids.shape[1] :]
        return [text.strip() for text in self.tokenizer_.batch_decode(generated, skip_special_tokens=True)]

    def generation_options(self) -> dict[str, Any]:
        """The keyword arguments :meth:`generate` gives ``model_.generate``: greedy, at most ``max_output_length``
        new tokens, ending at eos."""
        options = {"max_new_tokens": self.max_output_length, "do_sample": False, "num_beams": 1,
                   "eos_token_id": _eos_id(self.tokenizer_), "pad_token_id": _pad_id(self.tokenizer_)}
        if self.architecture_ == WARM_STARTED:
            options["decoder_start_token_id"] = self.tokenizer_.cls_token_id
        return options

    # -- persistence ----------------------------------------------------------------------------------------

    def save(self, directory: str | Path) -> None:
        """Write safetensors weights, the tokenizer, and the student's parameters and losses."""
        self._check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model_.save_pretrained(directory, safe_serialization=True)
        self.tokenizer_.save_pretrained(directory)
        state = {"params": self.get_params(), "architecture": self.architecture_,
                 "training_loss": self.training_loss_, "loss_history": self.loss_history_}
        (directory / PARAMS_FILE).write_text(json.dumps(state, indent=2))

    def version_metadata(self, outputs: Sequence[str]) -> dict[str, Any]:
        """What a saved version's metadata says of its training: the architecture and every epoch's loss (the
        outputs are free texts, with nothing to count)."""
        return {"architecture": self.architecture_, "loss_history": self.loss_history_}

    @classmethod
    def load(cls, directory: str | Path, precision: str | None = None, **overrides: Any) -> TextToTextStudent:
        """A fitted student from a directory written by :meth:`save`; ``overrides`` change inference settings.
        ``precision`` is a classifier's scoring arithmetic: a student scores in float32 and ignores it."""
        directory = Path(directory)
        state = json.loads((directory / PARAMS_FILE).read_text())
        student = cls(**{**state["params"], **{k: v for k, v in overrides.items() if v is not None}})
        student.architecture_ = state["architecture"]
        student.training_loss_ = state.get("training_loss")
        student.loss_history_ = list(state.get("loss_history") or [])
        student.tokenizer_ = AutoTokenizer.from_pretrained(directory)
        loader: dict[str, Any] = {SEQ2SEQ: AutoModelForSeq2SeqLM, WARM_STARTED: EncoderDecoderModel,
                                  CAUSAL: AutoModelForCausalLM}
        student.model_ = loader[student.architecture_].from_pretrained(directory)
        student.model_.eval()
        return student


def _eos_id(tokenizer: Any) -> int:
    """The token that ends an output: the tokenizer's eos, else its separator (BERT's [SEP])."""
    token_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    if token_id is None:
        raise ValueError(f"tokenizer of {tokenizer.name_or_path!r} has neither an eos nor a sep token")
    return int(token_id)


def _pad_id(tokenizer: Any) -> int:
    return int(tokenizer.pad_token_id) if tokenizer.pad_token_id is not None else _eos_id(tokenizer)


def _padded(rows: Sequence[Sequence[int]], pad: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows padded to the longest with ``pad`` (on the left or the right) and the attention mask."""
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for row_index, row in enumerate(rows):
        columns = slice(width - len(row), width) if left else slice(0, len(row))
        ids[row_index, columns] = torch.tensor(row, dtype=torch.long)
        mask[row_index, columns] = 1
    return ids, mask


def _base(kind: str, base_model: str, tokenizer: Any) -> Any:
    """The untrained student built from the base model (new weights draw from torch's seeded generator)."""
    if kind == SEQ2SEQ:
        return AutoModelForSeq2SeqLM.from_pretrained(base_model)
    if kind == CAUSAL:
        causal = AutoModelForCausalLM.from_pretrained(base_model)
        causal.config.pad_token_id = _pad_id(tokenizer)
        return causal
    model = EncoderDecoderModel.from_encoder_decoder_pretrained(base_model, base_model)
    model.config.decoder_start_token_id = tokenizer.cls_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.eos_token_id = tokenizer.sep_token_id
    model.config.vocab_size = model.config.encoder.vocab_size
    for name in ("decoder_start_token_id", "pad_token_id", "eos_token_id"):
        setattr(model.generation_config, name, getattr(model.config, name))
    return model


def new_student(settings: Settings, seed: int | None = None, show_progress: bool = False) -> TextToTextStudent:
    """The student with the settings' hyper-parameters; ``seed`` overrides theirs."""
    return TextToTextStudent(
        base_model=settings.student_model,
        learning_rate=settings.student_learning_rate,
        batch_size=settings.batch_size,
        max_input_length=settings.max_length,
        max_output_length=settings.max_output_length,
        epochs=settings.student_epochs,
        random_state=settings.seed if seed is None else seed,
        inference_batch_size=settings.inference_batch_size,
        num_threads=settings.torch_threads,
        show_progress=show_progress,
    )
