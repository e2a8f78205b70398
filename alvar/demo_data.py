"""The demo data of `alvar up --demo`: the reference paper's public safety dataset.

Read from ``ALVAR_DATASETS/active-learning-safety/`` when that is set, else downloaded once from the
paper's public repository (pinned to one commit) into the cache. Every file is checked by SHA-256 either way,
so a changed or truncated file is an error, never a silently different demo.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alvar.pinned_files import PinnedFileError, PinnedFiles
from alvar.settings import Settings

DATASET_NAME = "active-learning-safety"
# SHA-256 of the files at commit f30c0e9 of sabithsn/active-learning-safety (folder dataset/).
FILE_HASHES = {
    "bootstrap_labeled.tsv": "503c44a6cf8ba81071095b76c0707c1673a9a78b785c7e1330d9aafebda56446",
    "dev_labeled.tsv": "4aceb179514c5e2f9f5bb37962a18253d3cefab723c0fc0200bfedb5aa6412c2",
    "test_labeled.tsv": "c3ac6dc0b568ce4546efc550567b7995be0d504cebd1fe426516248e5e954cee",
}


class DemoDataError(PinnedFileError):
    """The demo files are missing, unreachable or not the released ones; the message says which."""


@dataclass(frozen=True)
class DemoFiles:
    """The pool (test split titles, labels withheld), the bootstrap labels, and a held-out split to evaluate on."""

    pool: Path
    bootstrap: Path
    held_out: Path


def demo_files(settings: Settings) -> DemoFiles:
    """The demo's files, from ALVAR_DATASETS or the download cache, each checked against its SHA-256."""
    files = PinnedFiles(DATASET_NAME, settings.demo_dataset_url, FILE_HASHES).paths(settings, DemoDataError)
    return DemoFiles(pool=files["test_labeled.tsv"], bootstrap=files["bootstrap_labeled.tsv"],
                     held_out=files["dev_labeled.tsv"])
