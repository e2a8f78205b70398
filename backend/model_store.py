"""Saved model versions (classifiers and generative students), one store per Label Studio project, each with an
atomic pointer to its current version.

Layout of ``MODEL_DIR``::

    MODEL_DIR/CURRENT                 the shared model's current version (`alvar train` on files, a seed)
    MODEL_DIR/<version>/              the shared model's versions
    MODEL_DIR/<project>/CURRENT       project <project>'s current version (its training jobs write it)
    MODEL_DIR/<project>/<version>/    project <project>'s versions, the last ``ALVAR_MODELS_KEPT`` of them

A project is served its own current version; a project without one is served the shared current version; with
neither it gets no predictions (:func:`serving`). Training one project writes only ``MODEL_DIR/<project>/``.

A version is written into a hidden temporary directory and renamed into place, and the ``CURRENT`` file is
replaced with ``os.replace``: a reader sees either the old version or the new one, never a half-written one.
A pruned version is renamed to a hidden name before it is deleted, so it is never listed half-deleted.

A version's metadata names its ``kind``: ``classification`` (a :class:`TransformerClassifier`; versions written
before generative projects have no kind and are classifiers) or ``generation`` (a :class:`TextToTextStudent`).
The two classes (and torch with them) are imported when a model is loaded or saved: `alvar status` reads versions
here and needs neither.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias, cast

from alvar.errors import AlvarError
from alvar.labelstudio.generation_config import CLASSIFICATION, GENERATION

if TYPE_CHECKING:
    from alvar.backend.learner import TransformerClassifier
    from alvar.backend.student import TextToTextStudent

CURRENT_FILE = "CURRENT"
METADATA_FILE = "metadata.json"
# A version's name: its creation time (UTC, to the microsecond) and the start of its training data's hash.
VERSION_NAME = re.compile(r"[0-9]{8}-[0-9]{6}-[0-9]{6}-[0-9a-f]{8}")
# A hidden staging or deletion directory older than this was left by a process that died (a save takes seconds).
ABANDONED_AFTER_SECONDS = 3600.0

Model: TypeAlias = "TransformerClassifier | TextToTextStudent"


class ModelClass(NamedTuple):
    """Where the class of one kind of version lives (imported when a version of that kind loads), and its name
    in messages."""

    module: str
    name: str
    noun: str


MODEL_CLASSES = {CLASSIFICATION: ModelClass("alvar.backend.learner", "TransformerClassifier", "classifier"),
                 GENERATION: ModelClass("alvar.backend.student", "TextToTextStudent", "student")}


class ModelKindError(AlvarError, TypeError):
    """A saved version of the other kind (a classifier where a generative student is needed, or the reverse):
    MODEL_DIR mixes the models of a classification and a generation project."""


def data_hash(texts: Sequence[str], labels: Sequence[str]) -> str:
    """A hash of the training set that does not depend on row order."""
    digest = hashlib.sha256()
    for text, label in sorted(zip(texts, labels)):
        digest.update(f"{label}\t{text}\n".encode())
    return digest.hexdigest()


def model_class(kind: str) -> type[Model]:
    """The class a version of ``kind`` loads as (:data:`MODEL_CLASSES`)."""
    found = MODEL_CLASSES[kind]
    return cast("type[Model]", getattr(importlib.import_module(found.module), found.name))


def load_model(path: str | Path, precision: str | None = None, **overrides: Any) -> Model:
    """The model saved in a version directory, as the class its metadata's ``kind`` names.

    ``precision`` is a classifier's scoring arithmetic (:data:`~alvar.precision.PRECISIONS`; None = float32);
    a student has none and ignores it.
    """
    path = Path(path)
    kind = json.loads((path / METADATA_FILE).read_text()).get("kind", CLASSIFICATION)
    return model_class(kind).load(path, precision=precision, **overrides)


def is_version_name(name: str) -> bool:
    """Whether ``name`` has the shape of the versions this store writes (what Label Studio's predictions carry)."""
    return VERSION_NAME.fullmatch(name) is not None


class ModelStore:
    """The versions of one model (a classifier or a student), with the current one named in ``CURRENT``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def current_version(self) -> str | None:
        try:
            version = (self.root / CURRENT_FILE).read_text().strip()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return version or None

    def path(self, version: str) -> Path:
        return self.root / version

    def metadata(self, version: str) -> dict[str, Any]:
        return json.loads((self.path(version) / METADATA_FILE).read_text())

    def versions(self) -> list[str]:
        """Saved versions, oldest first (version names sort by creation time)."""
        if not self.root.is_dir():
            return []
        return sorted(path.name for path in self.root.iterdir()
                      if (path / METADATA_FILE).is_file() and not path.name.startswith("."))

    def save(self, learner: Model, texts: Sequence[str], labels: Sequence[str],
             metrics: dict[str, Any] | None = None, extra: dict[str, Any] | None = None) -> str:
        """Save a fitted model as a new version (not yet current) and return its name.

        For a classifier ``texts`` and ``labels`` are its training texts and labels; for a student, its training
        inputs and outputs (the data hash is over the pairs either way).
        """
        self.root.mkdir(parents=True, exist_ok=True)
        created = datetime.now(UTC)
        hashed = data_hash(texts, labels)
        version = f"{created:%Y%m%d-%H%M%S-%f}-{hashed[:8]}"
        staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=self.root))
        try:
            learner.save(staging)
            metadata = {
                "version": version,
                "base_model": learner.base_model,
                "data_hash": hashed,
                "n_examples": len(texts),
                "kind": learner.kind,
                **learner.version_metadata(labels),
                "params": learner.get_params(),
                "training_loss": learner.training_loss_,
                "metrics": metrics or {},
                "created": created.isoformat(),
                **(extra or {}),
            }
            (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=2))
            os.replace(staging, self.path(version))
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return version

    def switch(self, version: str) -> None:
        """Make ``version`` the current one, atomically."""
        if not (self.path(version) / METADATA_FILE).is_file():
            raise FileNotFoundError(f"no saved version {version!r} under {self.root}")
        pointer = self.root / f".{CURRENT_FILE}.{os.getpid()}"
        pointer.write_text(version + "\n")
        os.replace(pointer, self.root / CURRENT_FILE)

    def load(self, version: str | None = None, **overrides: Any) -> tuple[str, Model]:
        """The given version, or the current one, as a fitted model of the class it was saved as."""
        version = version or self.current_version()
        if version is None:
            raise FileNotFoundError(f"no current model version under {self.root}: train one first")
        return version, load_model(self.path(version), **overrides)

    def load_kind(self, kind: str, version: str | None = None, **overrides: Any) -> tuple[str, Model]:
        """:meth:`load` for a caller that needs a model of ``kind``; another kind raises :class:`ModelKindError`."""
        version, model = self.load(version, **overrides)
        if model.kind != kind:
            raise ModelKindError(f"version {version} under {self.root} is a {model.kind} model, "
                                 f"not a {MODEL_CLASSES[kind].noun}")
        return version, model

    def load_classifier(self, version: str | None = None, **overrides: Any) -> tuple[str, TransformerClassifier]:
        """:meth:`load_kind` for a classifier."""
        version, model = self.load_kind(CLASSIFICATION, version, **overrides)
        return version, cast("TransformerClassifier", model)

    def load_student(self, version: str | None = None, **overrides: Any) -> tuple[str, TextToTextStudent]:
        """:meth:`load_kind` for a student."""
        version, model = self.load_kind(GENERATION, version, **overrides)
        return version, cast("TextToTextStudent", model)

    def kind(self, version: str) -> str:
        """The kind of project ``version`` was trained for (``classification`` when its metadata predates
        generation projects)."""
        return str(self.metadata(version).get("kind") or CLASSIFICATION)

    def prune(self, keep: int) -> list[str]:
        """Delete all but the newest ``keep`` versions, never the current one; return the deleted names.

        Also removes hidden staging directories that a killed training job left behind.
        """
        if keep < 1:
            raise ValueError(f"keep at least one version, not {keep}")
        current = self.current_version()
        doomed = [version for version in self.versions()[:-keep] if version != current]
        for version in doomed:
            _remove(self.path(version), self.root)
        if self.root.is_dir():
            cutoff = time.time() - ABANDONED_AFTER_SECONDS
            for leftover in self.root.glob(".*"):
                if leftover.is_dir() and leftover.stat().st_mtime < cutoff:
                    shutil.rmtree(leftover, ignore_errors=True)
        return doomed


def _remove(directory: Path, root: Path) -> None:
    """Delete a version directory: first renamed to a hidden name (atomic), then removed."""
    hidden = Path(tempfile.mkdtemp(prefix=f".deleting-{directory.name}-", dir=root))
    os.replace(directory, hidden / directory.name)
    shutil.rmtree(hidden, ignore_errors=True)


def shared_store(model_dir: str | Path) -> ModelStore:
    """The shared model at the top of ``MODEL_DIR``: what projects without a model of their own are served."""
    return ModelStore(model_dir)


def project_store(model_dir: str | Path, project_id: int) -> ModelStore:
    """Project ``project_id``'s own versions, under ``MODEL_DIR/<project_id>/``."""
    if isinstance(project_id, bool) or not isinstance(project_id, int) or project_id <= 0:
        raise ValueError(f"a project id is a positive integer, not {project_id!r}")
    return ModelStore(Path(model_dir) / str(project_id))


def project_ids(model_dir: str | Path) -> list[int]:
    """The projects that have a store of their own under ``MODEL_DIR``."""
    root = Path(model_dir)
    if not root.is_dir():
        return []
    return sorted(int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit() and p.name[0] != "0")


@dataclass(frozen=True)
class Serving:
    """The version that serves a project and the store it comes from."""

    store: ModelStore
    version: str
    own: bool
    """True when it is the project's own model, False for the shared fallback."""


def serving(model_dir: str | Path, project_id: int | None) -> Serving | None:
    """What serves ``project_id``: its own current version, else the shared one; None when neither exists.

    Without a project (a request that names none) only the shared model serves.
    """
    if project_id is not None:
        own = project_store(model_dir, project_id)
        if (version := own.current_version()) is not None:
            return Serving(own, version, True)
    shared = shared_store(model_dir)
    if (version := shared.current_version()) is not None:
        return Serving(shared, version, False)
    return None


def serving_kind(model_dir: str | Path, project_id: int | None, kind: str | None = None) -> Serving | None:
    """:func:`serving`, and with ``kind`` only a version of that kind: the shared classifier never serves a
    generation project, whose own student does not exist yet."""
    found = serving(model_dir, project_id)
    if found is None or (kind is not None and found.store.kind(found.version) != kind):
        return None
    return found
