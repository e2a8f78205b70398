"""`--demo`'s data: the released files from ALVAR_DATASETS or downloaded once, always checked by SHA-256."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from alvar.demo_data import DATASET_NAME, FILE_HASHES, DemoDataError, demo_files
from alvar.settings import Settings
from tests.conftest import free_port


class FileServer:
    """A real loopback HTTP server for one folder, counting the files it served."""

    def __init__(self, folder: Path) -> None:
        served = self.served = []

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, *_: object) -> None:
                served.append(self.path)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(folder)))
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def mirror(tmp_path: Path, safety_dir: Path) -> Iterator[tuple[Path, FileServer]]:
    """A copy of the released files behind a loopback server, standing in for the public repository."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    for name in FILE_HASHES:
        shutil.copy(safety_dir / name, folder / name)
    server = FileServer(folder)
    yield folder, server
    server.close()


def _settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(cache_dir=tmp_path / "cache", datasets_dir=None, **values)


def test_downloads_once_into_the_cache_and_checks_every_file(tmp_path: Path, safety_dir: Path,
                                                             mirror: tuple[Path, FileServer]) -> None:
    _, server = mirror
    settings = _settings(tmp_path, demo_dataset_url=server.url)
    files = demo_files(settings)
    assert files.pool.read_bytes() == (safety_dir / "test_labeled.tsv").read_bytes()
    assert files.bootstrap.read_bytes() == (safety_dir / "bootstrap_labeled.tsv").read_bytes()
    assert files.held_out.read_bytes() == (safety_dir / "dev_labeled.tsv").read_bytes()
    assert files.pool.is_relative_to(tmp_path / "cache" / "datasets" / DATASET_NAME)
    assert len(server.served) == 3
    assert demo_files(settings) == files
    assert len(server.served) == 3, "a second run reads the cache"


def test_a_changed_download_is_an_error_and_is_not_kept(tmp_path: Path, mirror: tuple[Path, FileServer]) -> None:
    folder, server = mirror
    with (folder / "bootstrap_labeled.tsv").open("a") as handle:
        handle.write("999\tr/test\tan extra row\tdiscard\n")
    with pytest.raises(DemoDataError, match="bootstrap_labeled.tsv.*hash"):
        demo_files(_settings(tmp_path, demo_dataset_url=server.url))
    assert not (tmp_path / "cache" / "datasets" / DATASET_NAME / "bootstrap_labeled.tsv").exists()


def test_an_unreachable_source_says_how_to_go_on(tmp_path: Path) -> None:
    with pytest.raises(DemoDataError, match="could not download .*set ALVAR_DATASETS"):
        demo_files(_settings(tmp_path, demo_dataset_url=f"http://127.0.0.1:{free_port()}"))


def test_a_local_folder_is_used_as_it_is_and_checked(tmp_path: Path, safety_dir: Path) -> None:
    files = demo_files(Settings(datasets_dir=safety_dir.parent))
    assert files.pool == safety_dir / "test_labeled.tsv"
    local = tmp_path / "datasets" / DATASET_NAME
    local.mkdir(parents=True)
    for name in FILE_HASHES:
        shutil.copy(safety_dir / name, local / name)
    (local / "dev_labeled.tsv").write_text("id\ttitle\tcategory\n")
    with pytest.raises(DemoDataError, match="dev_labeled.tsv is not the released file"):
        demo_files(Settings(datasets_dir=tmp_path / "datasets"))
    (local / "dev_labeled.tsv").unlink()
    with pytest.raises(DemoDataError, match="has no active-learning-safety/dev_labeled.tsv"):
        demo_files(Settings(datasets_dir=tmp_path / "datasets"))
