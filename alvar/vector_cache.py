"""An on-disk cache of float32 vectors keyed by (namespace, text), so a second round computes only new texts.

SQLite (one file, safe across processes) holds one row per (namespace, hash of the normalized text).
Namespaces keep models apart: an embedding model's name, or ``entropy:<model version>``.
"""

from __future__ import annotations

import hashlib
import sqlite3
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

LOOKUP_CHUNK = 900  # stays under SQLite's limit on bound parameters per statement


def normalize_text(text: str) -> str:
    """Unicode NFC with runs of whitespace collapsed: texts that differ only there are one text."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def text_key(text: str) -> bytes:
    return hashlib.blake2b(normalize_text(text).encode(), digest_size=16).digest()


class VectorCache:
    """Vectors of one namespace in a SQLite file."""

    def __init__(self, path: str | Path, namespace: str) -> None:
        self.path = Path(path)
        self.namespace = namespace
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as connection:
            connection.execute(
                "CREATE TABLE IF NOT EXISTS vectors (namespace TEXT NOT NULL, key BLOB NOT NULL, "
                "vector BLOB NOT NULL, PRIMARY KEY (namespace, key)) WITHOUT ROWID"
            )

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        connection = sqlite3.connect(self.path, timeout=60)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            with connection:
                yield connection
        finally:
            connection.close()

    def get(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """The cached vectors among ``keys``."""
        found: dict[bytes, np.ndarray] = {}
        with self._connect() as connection:
            for start in range(0, len(keys), LOOKUP_CHUNK):
                chunk = keys[start : start + LOOKUP_CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = connection.execute(
                    f"SELECT key, vector FROM vectors WHERE namespace = ? AND key IN ({marks})",
                    (self.namespace, *chunk),
                )
                found.update((key, np.frombuffer(vector, dtype=np.float32)) for key, vector in rows)
        return found

    def put(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        """Store vectors (one row per key) in one transaction: a chunk is either all there or not at all."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        with self._connect() as connection:
            connection.executemany(
                "INSERT OR REPLACE INTO vectors (namespace, key, vector) VALUES (?, ?, ?)",
                ((self.namespace, key, vector.tobytes()) for key, vector in zip(keys, vectors)),
            )
