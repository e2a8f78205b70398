"""Sentence embeddings of a pool, cached on disk so each round embeds only texts it has not seen."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from alvar.settings import Settings
from alvar.vector_cache import VectorCache, normalize_text, text_key

log = logging.getLogger(__name__)

VECTOR_CACHE_FILE = "vectors.sqlite"


class Embedder:
    """Embeds texts with a sentence-transformers model (unit-length float32 vectors).

    Texts are normalized (NFC, whitespace collapsed) and de-duplicated before embedding; with a cache, only
    texts missing from it are embedded, in chunks that are written to the cache as they finish.
    """

    def __init__(self, model: str, cache_path: str | Path | None = None, batch_size: int = 64,
                 chunk_size: int = 8192, show_progress: bool = False, num_threads: int | None = None) -> None:
        self.model = model
        self.cache_path = cache_path
        self.batch_size = batch_size
        self.chunk_size = chunk_size
        self.show_progress = show_progress
        self.num_threads = num_threads
        self._encoder = None

    @property
    def encoder(self):  # noqa: ANN201 - sentence_transformers.SentenceTransformer, imported lazily
        if self._encoder is None:
            import torch
            from sentence_transformers import SentenceTransformer

            if self.num_threads:
                torch.set_num_threads(self.num_threads)
            self._encoder = SentenceTransformer(self.model, device="cpu")
        return self._encoder

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.encoder.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                                   normalize_embeddings=True, show_progress_bar=False).astype(np.float32)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One row per text, in order."""
        keys = [text_key(text) for text in texts]
        unique: dict[bytes, str] = {}
        for key, text in zip(keys, texts):
            unique.setdefault(key, text)
        cache = VectorCache(self.cache_path, self.model) if self.cache_path else None
        vectors = cache.get(list(unique)) if cache else {}
        missing = [key for key in unique if key not in vectors]
        log.info("embedding %d texts: %d unique, %d cached, %d to embed", len(texts), len(unique),
                 len(unique) - len(missing), len(missing))
        with tqdm(total=len(missing), desc="embedding", unit="text", disable=not self.show_progress) as progress:
            for start in range(0, len(missing), self.chunk_size):
                chunk = missing[start : start + self.chunk_size]
                encoded = self._encode([normalize_text(unique[key]) for key in chunk])
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
                    show_progress=show_progress, num_threads=settings.torch_threads)
