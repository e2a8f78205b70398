"""`alvar attribute train` and `alvar attribute show`: the auxiliary model R of generative projects.

R is alvar's own learner (:class:`~alvar.backend.learner.TransformerClassifier`) trained on attribute-labelled
texts, or, with ``pairs``, on :func:`~alvar.attribute_model.judge_text` of (input, output) pairs, so that it judges
an output against its input. It is written next to its target directory and renamed into place: a reader finds
the old R or the new one (or, for the instant between the two renames, none: "R is not trained yet", the
documented fallback), never a half-written one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from alvar.attribute_model import (
    CARD_FILE,
    AttributeModelError,
    attribute_card,
    attribute_model_path,
    default_attribute_dir,
    judge_text,
    model_classes,
)
from alvar.backend.training import new_learner
from alvar.datafiles import read_dataset
from alvar.errors import user_facing
from alvar.settings import Settings


@dataclass(frozen=True)
class TrainedAttribute:
    """What `alvar attribute train` wrote."""

    path: Path
    counts: dict[str, int]
    required: str | None
    pair_input: bool


@dataclass(frozen=True)
class AttributeInfo:
    """Which R a generative project would use (``path`` None: R is not trained yet) and H (None: the label
    config's first attribute choice decides)."""

    path: str | None
    classes: list[str]
    required: str | None
    pair_input: bool

    @property
    def known_required(self) -> bool:
        """Whether H, where set, is one of R's classes."""
        return self.required is None or self.required in self.classes


def labelled_texts(file: Path, text_col: str | None, label_col: str | None, pairs: bool, input_col: str | None,
                   output_col: str | None) -> tuple[list[str], list[str]]:
    """R's training texts and labels: the file's texts, or with ``pairs`` its outputs joined with their inputs."""
    if not pairs:
        data = read_dataset(file, text_col, label_col, require_labels=True)
        return data.texts, data.labels
    inputs = read_dataset(file, input_col or "input", label_col, require_labels=True)
    outputs = read_dataset(file, output_col or "output", label_col, require_labels=True)
    if [example.id for example in inputs.examples] != [example.id for example in outputs.examples]:
        raise AttributeModelError(f"{file}: some rows have an empty {inputs.text_column!r} or "
                                  f"{outputs.text_column!r}; every pair needs both")
    return [judge_text(source, output) for source, output in zip(inputs.texts, outputs.texts)], inputs.labels


def train_attribute(settings: Settings, file: Path, text_col: str | None = None, label_col: str | None = None,
                    pairs: bool = False, input_col: str | None = None, output_col: str | None = None,
                    required: str | None = None, out: Path | None = None) -> TrainedAttribute:
    """Train R on a labelled file and save it (with its attribute.json) to ``out``, default MODEL_DIR/attribute."""
    texts, labels = labelled_texts(file, text_col, label_col, pairs, input_col, output_col)
    counts = dict(sorted(Counter(labels).items()))
    if required is not None and required not in counts:
        raise AttributeModelError(f"--required {required!r} is not a label of {file} ({', '.join(counts)})")
    with user_facing(ValueError):  # the learner's: one class only
        learner = new_learner(settings, show_progress=True).fit(texts, labels)
    target = out or default_attribute_dir(settings)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        learner.save(staging)
        (staging / CARD_FILE).write_text(json.dumps({"pair_input": pairs, "required": required,
                                                     "trained_on": str(file), "counts": counts}, indent=2))
        _replace_directory(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return TrainedAttribute(target, counts, required, pairs)


def _replace_directory(new: Path, target: Path) -> None:
    """Move ``new`` to ``target``; an old ``target`` is first renamed aside, then deleted."""
    if not target.exists():
        os.replace(new, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}-old-", dir=target.parent))
    os.replace(target, old / target.name)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)


def attribute_info(settings: Settings) -> AttributeInfo:
    """The R a generative project would load, its classes and H."""
    path = attribute_model_path(settings)
    if path is None:
        return AttributeInfo(None, [], settings.attribute_value, False)
    card = attribute_card(path)
    return AttributeInfo(path, model_classes(path), settings.attribute_value or card.get("required"),
                         bool(card.get("pair_input", False)))
