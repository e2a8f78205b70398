"""The demo data of `alvar up --demo`: the reference paper's public safety dataset.

Read from ``ALVAR_DATASETS/active-learning-safety/`` when that is set, else downloaded once from the
paper's public repository (pinned to one commit) into the cache. Every file is checked by SHA-256 either way,
so a changed or truncated file is an error, never a silently different demo.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pooch

from alvar.errors import AlvarError
from alvar.settings import Settings

DATASET_NAME = "active-learning-safety"
# SHA-256 of the files at commit f30c0e9 of sabithsn/active-learning-safety (folder dataset/).
FILE_HASHES = {
    "bootstrap_labeled.tsv": "503c44a6cf8ba81071095b76c0707c1673a9a78b785c7e1330d9aafebda56446",
    "dev_labeled.tsv": "4aceb179514c5e2f9f5bb37962a18253d3cefab723c0fc0200bfedb5aa6412c2",
    "test_labeled.tsv": "c3ac6dc0b568ce4546efc550567b7995be0d504cebd1fe426516248e5e954cee",
}


class DemoDataError(AlvarError, RuntimeError):
    """The demo files are missing, unreachable or not the released ones; the message says which."""


@dataclass(frozen=True)
class DemoFiles:
    """The pool (test split titles, labels withheld), the bootstrap labels, and a held-out split to evaluate on."""

    pool: Path
    bootstrap: Path
    held_out: Path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _local_file(folder: Path, name: str) -> Path:
    path = folder / DATASET_NAME / name
    if not path.is_file():
        raise DemoDataError(f"ALVAR_DATASETS={folder} has no {DATASET_NAME}/{name}")
    if _sha256(path) != FILE_HASHES[name]:
        raise DemoDataError(f"{path} is not the released file (SHA-256 differs)")
    return path


def _downloaded_file(settings: Settings, name: str) -> Path:
    fetcher = pooch.create(
        path=settings.cache_dir / "datasets" / DATASET_NAME,
        base_url=settings.demo_dataset_url.rstrip("/") + "/",
        registry={file: f"sha256:{digest}" for file, digest in FILE_HASHES.items()},
        retry_if_failed=3,
    )
    try:
        return Path(fetcher.fetch(name, progressbar=True))
    except ValueError as error:
        raise DemoDataError(f"{name} from {settings.demo_dataset_url}: {error}") from None
    except OSError as error:
        raise DemoDataError(f"could not download {name} from {settings.demo_dataset_url} ({error}); "
                            f"set ALVAR_DATASETS to a folder holding {DATASET_NAME}/") from None


def demo_files(settings: Settings) -> DemoFiles:
    """The demo's files, from ALVAR_DATASETS or the download cache, each checked against its SHA-256."""
    if settings.datasets_dir is not None:
        fetch = lambda name: _local_file(settings.datasets_dir, name)  # noqa: E731
    else:
        fetch = lambda name: _downloaded_file(settings, name)  # noqa: E731
    return DemoFiles(pool=fetch("test_labeled.tsv"), bootstrap=fetch("bootstrap_labeled.tsv"),
                     held_out=fetch("dev_labeled.tsv"))
