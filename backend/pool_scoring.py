"""A chunk of a pool's scoring, run by a worker of the scoring queue (`alvar select` fans a pool out in chunks).

A chunk job carries everything it needs in Redis: what to compute (the sentence embeddings of one embedding model,
or the class probabilities of one learner version under a model directory), and the chunk's normalized texts. So a
worker on another machine needs only the model directory (MODEL_DIR, shared with the backend) and the embedding
model. The job returns the vectors; the waiting select writes them into its own caches, keyed by text, so a chunk
that ran twice gives the same rows and is never counted twice.

A scoring worker process keeps its models between chunks (:class:`ScoringResources`): the embedders it was asked
for, and the learner version it used last (a new round brings a new version; the previous one is let go).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from rq import get_current_job

from alvar.backend.model_store import ModelStore
from alvar.embedder import Embedder
from alvar.job_settings import job_settings
from alvar.settings import Settings

if TYPE_CHECKING:
    from alvar.backend.learner import TransformerClassifier

EMBEDDINGS = "embeddings"
PROBABILITIES = "probabilities"
KINDS = (EMBEDDINGS, PROBABILITIES)


class ScoringResources:
    """The models one scoring worker process keeps between chunks, each loaded on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._embedders: dict[tuple[str, str], Embedder] = {}
        self._learner: tuple[tuple[str, str, str], TransformerClassifier] | None = None

    def embedder(self, model: str, precision: str) -> Embedder:
        with self._lock:
            if (model, precision) not in self._embedders:
                self._embedders[model, precision] = Embedder(model, num_threads=self.settings.torch_threads,
                                                             precision=precision)
            return self._embedders[model, precision]

    def learner(self, root: str, version: str, precision: str) -> TransformerClassifier:
        """The learner of ``version`` under the model directory ``root`` (relative to this worker's MODEL_DIR, or
        absolute) scoring in ``precision``; only the latest version asked for is kept."""
        with self._lock:
            if self._learner is None or self._learner[0] != (root, version, precision):
                self._learner = None  # the previous version's memory goes before the next one loads
                _, learner = ModelStore(self.settings.model_dir / root).load_classifier(
                    version, inference_batch_size=self.settings.inference_batch_size,
                    num_threads=self.settings.torch_threads, precision=precision)
                self._learner = ((root, version, precision), learner)
            return self._learner[1]


_resources: ScoringResources | None = None
_resources_lock = threading.Lock()


def current_resources() -> ScoringResources:
    """This process's scoring resources, built from the worker's settings on the first chunk."""
    global _resources
    with _resources_lock:
        if _resources is None:
            _resources = ScoringResources(job_settings())
        return _resources


def compute(resources: ScoringResources, kind: str, model: str, version: str | None,
            texts: Sequence[str], precision: str) -> np.ndarray:
    """The rows of one chunk: unit-length embeddings of ``model`` (an embedding model), or class probabilities of
    ``version`` under the model directory ``model``, computed in ``precision``; float32, one row per text, in
    order."""
    if kind == EMBEDDINGS:
        return resources.embedder(model, precision).encode(texts)
    if kind == PROBABILITIES and version is not None:
        return np.asarray(resources.learner(model, version, precision).predict_proba(list(texts)), dtype=np.float32)
    raise ValueError(f"a scoring chunk computes {' or '.join(KINDS)} (probabilities with a version), not {kind!r}")


def score_chunk(kind: str, model: str, version: str | None, texts: list[str], precision: str) -> np.ndarray:
    """The job function of the scoring queue (see the module docstring). Each run is counted in the job's meta
    (``runs``), so a chunk re-run after its worker died shows it."""
    job = get_current_job()
    if job is not None:
        job.meta["runs"] = int(job.meta.get("runs", 0)) + 1
        job.save_meta()
    return compute(current_resources(), kind, model, version, texts, precision)
