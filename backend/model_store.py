"""Saved learner versions under ``MODEL_DIR/<version>/`` and an atomic pointer to the current one.

A version is written into a hidden temporary directory and renamed into place, and the ``CURRENT`` file is
replaced with ``os.replace``: a reader sees either the old version or the new one, never a half-written one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alvar.backend.learner import TransformerClassifier

CURRENT_FILE = "CURRENT"
METADATA_FILE = "metadata.json"


def data_hash(texts: Sequence[str], labels: Sequence[str]) -> str:
    """A hash of the training set that does not depend on row order."""
    digest = hashlib.sha256()
    for text, label in sorted(zip(texts, labels)):
        digest.update(f"{label}\t{text}\n".encode())
    return digest.hexdigest()


class ModelStore:
    """The versions of one learner, with the current one named in ``CURRENT``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def current_version(self) -> str | None:
        try:
            version = (self.root / CURRENT_FILE).read_text().strip()
        except FileNotFoundError:
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
        return sorted(p.name for p in self.root.iterdir() if (p / METADATA_FILE).is_file() and not p.name.startswith("."))

    def save(self, learner: TransformerClassifier, texts: Sequence[str], labels: Sequence[str],
             metrics: dict[str, Any] | None = None, extra: dict[str, Any] | None = None) -> str:
        """Save a fitted learner as a new version (not yet current) and return its name."""
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
                "class_counts": dict(sorted(Counter(labels).items())),
                "classes": learner.classes_,
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

    def load(self, version: str | None = None, **overrides: Any) -> tuple[str, TransformerClassifier]:
        """The given version, or the current one, as a fitted learner."""
        version = version or self.current_version()
        if version is None:
            raise FileNotFoundError(f"no current model version under {self.root}: train one first")
        return version, TransformerClassifier.load(self.path(version), **overrides)
