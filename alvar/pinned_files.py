"""Data files pinned by SHA-256: read from ``ALVAR_DATASETS/<dataset>/`` when that is set, else downloaded once
from one pinned base URL (a repository at one commit) into ``cache_dir/datasets/<dataset>/``.

Either way every file is checked against its SHA-256, so a changed or truncated file is an error that names the
file and what to do, never silently different data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pooch

from alvar.errors import AlvarError
from alvar.settings import Settings


class PinnedFileError(AlvarError, RuntimeError):
    """A pinned file that is missing, unreachable or not the released one; the message says which and what to do."""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class PinnedFiles:
    """The files of one data set: their names under ``base_url`` (and under the local folder) and their SHA-256."""

    dataset: str
    base_url: str
    hashes: Mapping[str, str]

    def local(self, folder: Path, name: str, error: type[AlvarError] = PinnedFileError) -> Path:
        """``folder/<dataset>/<name>``, as it is, once its hash is checked."""
        path = folder / self.dataset / name
        if not path.is_file():
            raise error(f"ALVAR_DATASETS={folder} has no {self.dataset}/{name}")
        if sha256(path) != self.hashes[name]:
            raise error(f"{path} is not the released file (SHA-256 differs); put the file of {self.base_url} there, "
                        "or unset ALVAR_DATASETS to download it")
        return path

    def download(self, cache_dir: Path, name: str, error: type[AlvarError] = PinnedFileError) -> Path:
        """The file in ``cache_dir/datasets/<dataset>/``, downloaded the first time; a wrong hash keeps nothing."""
        fetcher = pooch.create(
            path=cache_dir / "datasets" / self.dataset,
            base_url=self.base_url.rstrip("/") + "/",
            registry={file: f"sha256:{digest}" for file, digest in self.hashes.items()},
            retry_if_failed=3,
        )
        try:
            return Path(fetcher.fetch(name, progressbar=True))
        except ValueError as failure:
            raise error(f"{name} from {self.base_url}: {failure} (the upstream file changed or the download was cut; "
                        f"set ALVAR_DATASETS to a folder holding the released {self.dataset}/{name})") from None
        except OSError as failure:
            raise error(f"could not download {name} from {self.base_url} ({failure}); "
                        f"set ALVAR_DATASETS to a folder holding {self.dataset}/") from None

    def path(self, settings: Settings, name: str, error: type[AlvarError] = PinnedFileError) -> Path:
        """One checked file: from ALVAR_DATASETS when that is set, else from the download cache."""
        if settings.datasets_dir is not None:
            return self.local(settings.datasets_dir, name, error)
        return self.download(settings.cache_dir, name, error)

    def paths(self, settings: Settings, error: type[AlvarError] = PinnedFileError) -> dict[str, Path]:
        """Every file of the data set, checked, by name."""
        return {name: self.path(settings, name, error) for name in self.hashes}
