"""Label Studio's environment is checked at every start, not assumed: built from its lock, repaired when a
package moved, and named with the fix when Label Studio cannot run in it. The start-up smoke test is here too
(`.ci/fresh-resolve` runs it against the newest versions the ranges allow)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests
from label_studio_sdk import LabelStudio

from alvar.loop import services
from alvar.loop.label_studio_env import (
    PIP,
    STAMP_FILE,
    LabelStudioEnvironmentError,
    check_environment,
    default_installer,
    ensure_label_studio_venv,
    import_problem,
    install_from_lock,
    label_studio_lock,
    locked_versions,
    python_of,
    seed_sqlite_database,
)
from alvar.loop.label_studio_server import LabelStudioServer, start_label_studio
from alvar.pinned_files import sha256
from alvar.settings import load_settings
from tests.conftest import LS_PASSWORD, LS_TOKEN, LS_USER, free_port

# Every test here takes or builds a Label Studio environment (the slow tier's part, like the session fixture's).
pytestmark = pytest.mark.label_studio
BROKEN_SENTRY = "3.0.0"  # sentry-sdk 3.0.0 makes Label Studio 1.23.2 die at import
# A package Label Studio's lock does not name (a repair removes it).
STRAY, STRAY_VERSION = "iniconfig", "2.0.0"


@pytest.fixture(scope="session")
def lock() -> Path:
    return load_settings().label_studio_lock or label_studio_lock()


@pytest.fixture(scope="session")
def label_studio_venv(lock: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's Label Studio environment, as the fixtures and `alvar up` use it, with its migrated database
    made (so a copy of it starts without migrating)."""
    venv = load_settings().label_studio_venv
    ensure_label_studio_venv(venv, lock)
    seed_sqlite_database(venv, tmp_path_factory.mktemp("seeded"))
    return venv


def linked_copy(venv: Path, target: Path) -> Path:
    """A copy of an environment that shares its files by hard link (seconds, not 400 MB). pip replaces a file
    by removing it and writing a new one, so changing the copy leaves the original as it was."""
    try:
        shutil.copytree(venv, target, symlinks=True, copy_function=os.link)
    except shutil.Error:
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(venv, target, symlinks=True)
    return target


def pip_install(venv: Path, *requirements: str) -> None:
    subprocess.run([str(python_of(venv)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "--no-deps", *requirements], check=True)


def package_digests(venv: Path, package: str) -> dict[str, str]:
    """SHA-256 of every file of an installed package: a write through a shared hard link would change one."""
    root = next(venv.glob(f"lib/python3*/site-packages/{package}"))
    return {str(path.relative_to(root)): sha256(path) for path in sorted(root.rglob("*.py"))}


def test_label_studio_starts_from_its_locked_environment(label_studio: LabelStudioServer,
                                                          ls: LabelStudio, lock: Path) -> None:
    """The smoke test: the environment matches its lock, the server answers /health and its API logs in."""
    check = check_environment(load_settings().label_studio_venv, lock)
    assert check.matches, check.describe()
    assert requests.get(f"{label_studio.url}/health", timeout=10).status_code == 200
    assert isinstance(list(ls.projects.list()), list)


def test_the_check_of_a_right_environment_adds_under_a_second(label_studio_venv: Path, lock: Path) -> None:
    started = time.perf_counter()
    python = ensure_label_studio_venv(label_studio_venv, lock, log=pytest.fail)
    elapsed = time.perf_counter() - started
    assert python == python_of(label_studio_venv)
    assert elapsed < 1.0, f"checking a right environment took {elapsed:.2f} s"


def test_a_moved_package_is_found_and_repaired_by_the_next_start(
        label_studio_venv: Path, lock: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    original = package_digests(label_studio_venv, "sentry_sdk")
    venv = linked_copy(label_studio_venv, tmp_path / "ls-venv")
    pip_install(venv, f"sentry-sdk=={BROKEN_SENTRY}")
    check = check_environment(venv, lock)
    locked = locked_versions(lock)["sentry-sdk"]
    assert not check.matches and check.differing == {"sentry-sdk": (BROKEN_SENTRY, locked)}
    assert "send_default_pii" in (import_problem(venv) or ""), "sentry-sdk 3 no longer breaks Label Studio"

    data_dir = tmp_path / "stack"
    server = start_label_studio(data_dir, free_port(), LS_USER, LS_PASSWORD, LS_TOKEN, venv=venv, lock=lock)
    try:
        assert services.healthy(server.url)
    finally:
        services.stop_process(data_dir, "label-studio")
    said = capsys.readouterr()
    assert f"Repairing Label Studio's environment at {venv}" in said.out + said.err
    assert f"sentry-sdk {BROKEN_SENTRY} (lock: {locked})" in said.out + said.err
    assert check_environment(venv, lock).matches
    assert check_environment(label_studio_venv, lock).matches, "repairing the copy changed the original"
    assert package_digests(label_studio_venv, "sentry_sdk") == original, "the copy wrote through to the original"


@pytest.mark.parametrize("installer", ["pip", "uv"])
def test_each_installer_puts_moved_packages_back_and_removes_strays(label_studio_venv: Path, lock: Path,
                                                                    tmp_path: Path, installer: str) -> None:
    """pip where uv is not installed, uv where it is (the test extra installs it beside alvar): either one restores
    the lock's sentry-sdk and removes a package the lock does not name, leaving the original environment whole."""
    chosen = PIP if installer == "pip" else default_installer()
    assert chosen.name == installer, "uv is not installed beside alvar (it is in the test extra)"
    original = package_digests(label_studio_venv, "sentry_sdk")
    venv = linked_copy(label_studio_venv, tmp_path / "ls-venv")
    pip_install(venv, f"sentry-sdk=={BROKEN_SENTRY}", f"{STRAY}=={STRAY_VERSION}")
    check = check_environment(venv, lock)
    assert set(check.differing) == {"sentry-sdk"} and check.extra == (STRAY,)

    install_from_lock(venv, lock, check, installer=chosen)
    assert check_environment(venv, lock).matches, check_environment(venv, lock).describe()
    assert package_digests(label_studio_venv, "sentry_sdk") == original, "the copy wrote through to the original"


def test_a_lock_that_cannot_run_label_studio_is_refused_with_the_fix(label_studio_venv: Path, lock: Path,
                                                                     tmp_path: Path) -> None:
    """A lock whose sentry-sdk is 3.0.0 (what a bare `label-studio==1.23.2` resolves to today): the repair installs
    it, Label Studio cannot import, and the start stops there, naming the environment and the fix."""
    wheels = tmp_path / "wheels"
    subprocess.run([str(python_of(label_studio_venv)), "-m", "pip", "download", "--quiet", "--no-deps",
                    "--disable-pip-version-check", "-d", str(wheels), f"sentry-sdk=={BROKEN_SENTRY}"], check=True)
    wheel = next(wheels.glob("*.whl"))
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    broken_lock = tmp_path / "label-studio.txt"
    broken_lock.write_text(_with_pin(lock.read_text(), "sentry-sdk", f"{BROKEN_SENTRY} --hash=sha256:{digest}"))
    venv = linked_copy(label_studio_venv, tmp_path / "ls-venv")

    with pytest.raises(LabelStudioEnvironmentError) as refused:
        start_label_studio(tmp_path / "stack", free_port(), LS_USER, LS_PASSWORD, LS_TOKEN, venv=venv,
                           lock=broken_lock)
    message = str(refused.value)
    assert f"Label Studio cannot import in its environment at {venv}" in message
    assert "send_default_pii" in message and "alvar doctor --repair" in message
    assert not (venv / STAMP_FILE).exists(), "an environment that cannot run Label Studio was stamped as right"


def test_label_studio_dying_at_start_names_its_environment(label_studio_venv: Path, lock: Path,
                                                           tmp_path: Path) -> None:
    """Right versions, a damaged file (a disk that filled up mid-write): the start fails within seconds and says
    which environment and what to run."""
    venv = linked_copy(label_studio_venv, tmp_path / "ls-venv")
    server_py = next(venv.glob("lib/python3*/site-packages/label_studio/server.py"))
    text = server_py.read_text()
    server_py.unlink()  # a new file: the original's hard link stays whole
    server_py.write_text(text[: len(text) // 2])

    started = time.monotonic()
    with pytest.raises(LabelStudioEnvironmentError) as refused:
        start_label_studio(tmp_path / "stack", free_port(), LS_USER, LS_PASSWORD, LS_TOKEN, venv=venv,
                           lock=lock)
    assert time.monotonic() - started < 60
    message = str(refused.value)
    assert f"Label Studio failed in its environment at {venv}" in message
    assert "SyntaxError" in message and "alvar doctor --repair" in message


def _with_pin(lock_text: str, name: str, pin: str) -> str:
    """``lock_text`` with the block of ``name==...`` (its line and its ``--hash`` continuation lines) replaced."""
    lines = lock_text.splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith(f"{name}=="))
    end = start + 1
    while end < len(lines) and lines[end].startswith("    --hash"):
        end += 1
    return "\n".join([*lines[:start], f"{name}=={pin}", *lines[end:]]) + "\n"


def test_a_folder_that_is_no_environment_is_never_wiped(lock: Path, tmp_path: Path) -> None:
    """ALVAR_LABEL_STUDIO_VENV pointed at a folder of other files (a typo, the cache folder itself): refused, kept."""
    kept = tmp_path / "vectors.sqlite"
    kept.write_text("a cache that is not a virtual environment")
    with pytest.raises(LabelStudioEnvironmentError, match="holds files but no virtual environment"):
        ensure_label_studio_venv(tmp_path, lock)
    assert kept.read_text() == "a cache that is not a virtual environment"
