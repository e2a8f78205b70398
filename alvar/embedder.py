"""Sentence embeddings of a pool, cached on disk so each round embeds only texts it has not seen."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from alvar.precision import FLOAT32, arithmetic, check_precision, converted_copy, embedding_precision, resolve_precision
from alvar.settings import Settings
from alvar.vector_cache import VectorCache, normalize_text, text_key

log = logging.getLogger(__name__)

VECTOR_CACHE_FILE = "vectors.sqlite"


def embedding_namespace(model: str, precision: str) -> str:
    """The cache namespace of ``model``'s vectors in ``precision``: the bare model name for float32 (as caches
    written before precisions existed), ``model@bfloat16`` otherwise, so precisions never mix."""
    precision = resolve_precision(precision)
    return model if precision == FLOAT32 else f"{model}@{precision}"


class Embedder:
    """Embeds texts with a sentence-transformers model (unit-length float32 vectors).

    Texts are normalized (NFC, whitespace collapsed) and de-duplicated before embedding; with a cache, only
    texts missing from it are embedded, in chunks that are written to the cache as they finish. ``precision``
    (:mod:`alvar.precision`) is the encoder's arithmetic; vectors of each precision have their own cache
    namespace.
    """

    def __init__(self, model: str, cache_path: str | Path | None = None, batch_size: int = 64,
                 chunk_size: int = 8192, show_progress: bool = False, num_threads: int | None = None,
                 precision: str = FLOAT32) -> None:
        self.model = model
        self.cache_path = cache_path
        self.batch_size = batch_size
        self.chunk_size = chunk_size
        self.show_progress = show_progress
        self.num_threads = num_threads
        self.precision = check_precision(precision)
        self._encoder = None

    @property
    def encoder(self):  # noqa: ANN201 - sentence_transformers.SentenceTransformer, imported lazily
        if self._encoder is None:
            import torch
            from sentence_transformers import SentenceTransformer

            if self.num_threads:
                torch.set_num_threads(self.num_threads)
            self._encoder = converted_copy(SentenceTransformer(self.model, device="cpu"), self.precision)
        return self._encoder

    @property
    def namespace(self) -> str:
        """The cache namespace of this embedder's vectors (vectors of other models or precisions never mix with
        them; float32 keeps the bare model name that caches written before precisions existed use)."""
        return embedding_namespace(self.model, self.precision)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length vectors of ``texts`` as given (no normalization, no cache): one row per text."""
        with arithmetic(self.precision):
            vectors = self.encoder.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                                          normalize_embeddings=True, show_progress_bar=False)
        return vectors.astype(np.float32)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One row per text, in order."""
        keys = [text_key(text) for text in texts]
        unique: dict[bytes, str] = {}
        for key, text in zip(keys, texts):
            unique.setdefault(key, text)
        cache = VectorCache(self.cache_path, self.namespace) if self.cache_path else None
        vectors = cache.get(list(unique)) if cache else {}
        missing = [key for key in unique if key not in vectors]
        log.info("embedding %d texts: %d unique, %d cached, %d to embed", len(texts), len(unique),
                 len(unique) - len(missing), len(missing))
        with tqdm(total=len(missing), desc="embedding", unit="text", disable=not self.show_progress) as progress:
            for start in range(0, len(missing), self.chunk_size):
                chunk = missing[start : start + self.chunk_size]
                encoded = self.encode([normalize_text(unique[key]) for key in chunk])
                if cache:
                    cache.put(chunk, encoded)
                vectors.update(zip(chunk, encoded))
                progress.update(len(chunk))
        if not texts:
            return np.zeros((0, self.encoder.get_sentence_embedding_dimension()), dtype=np.float32)
        out = np.empty((len(texts), len(next(iter(vectors.values())))), dtype=np.float32)
        for row, key in enumerate(keys):
            out[row] = vectors[key]
        return out


def settings_embedder(settings: Settings, show_progress: bool = False) -> Embedder:
    """The embedder of ALVAR_EMBEDDING_MODEL with the one on-disk cache every command shares."""
    return Embedder(settings.embedding_model, cache_path=settings.cache_dir / VECTOR_CACHE_FILE,
                    show_progress=show_progress, num_threads=settings.torch_threads,
                    precision=embedding_precision(settings.inference_precision))


def settings_namespace(settings: Settings) -> str:
    """The cache namespace of :func:`settings_embedder`'s vectors (read without loading a model)."""
    return embedding_namespace(settings.embedding_model, embedding_precision(settings.inference_precision))
