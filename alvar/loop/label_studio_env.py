"""Label Studio's own virtual environment: built from the lock, stamped with it, checked at every start.

Label Studio's pins clash with alvar's, so it lives in an environment of its own, installed with
``pip install --require-hashes -r requirements/label-studio.txt`` (the lock; never the bare ``label-studio`` spec,
whose open transitive pins broke it once: sentry-sdk 3.0), or ``uv pip install`` of the same lock where uv is
installed. The environment records the lock's SHA-256 in
:data:`STAMP_FILE`. Every start compares the stamp and every installed version with the lock, which reads a few
hundred folder names and costs milliseconds; anything missing or different is repaired from the lock (the
packages the lock lacks removed), and the person is told. Importing Label Studio takes seconds, so that check
runs after a build or repair and on demand (`alvar doctor`), never on every start.

Nothing here runs ``label-studio --version``: it collects version and git information and has blocked for over
ten minutes.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from alvar.errors import AlvarError
from alvar.pinned_files import sha256

STAMP_FILE = "alvar-lock.sha256"
# An empty SQLite database with all of this environment's Label Studio migrations applied (seed_sqlite_database).
MIGRATED_SQLITE = "alvar-migrated.sqlite3"
# Label Studio's SQLite database in its data dir.
SQLITE_DATABASE = "label_studio.sqlite3"
# Packages a virtual environment brings with it, not from the lock.
VENV_TOOLING = frozenset({"pip", "setuptools", "wheel"})
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
IMPORT_CHECK = """
import os, sys, label_studio
sys.path.insert(0, os.path.dirname(label_studio.__file__))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "label_studio.core.settings.label_studio")
import django
django.setup()
"""


MIGRATE = IMPORT_CHECK + """
from django.core.management import call_command
call_command("migrate", "--no-color", verbosity=0)
"""


class LabelStudioEnvironmentError(AlvarError, RuntimeError):
    """Label Studio's environment cannot be made to match its lock, or Label Studio cannot import in it."""


def label_studio_lock() -> Path:
    """The lock that every Label Studio environment is installed from (shipped inside the package)."""
    return Path(str(resources.files("alvar.requirements") / "label-studio.txt"))


def normalized(name: str) -> str:
    """A distribution's name as PEP 503 compares it (``Django`` = ``django``, ``sentry_sdk`` = ``sentry-sdk``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions(lock: Path) -> dict[str, str]:
    """``{name: version}`` of every ``name==version`` line of a pip requirements lock."""
    pins = (PIN.match(line) for line in lock.read_text().splitlines())
    return {normalized(pin[1]): pin[2] for pin in pins if pin}


def python_of(venv: Path) -> Path:
    return venv / "bin" / "python"


def installed_versions(venv: Path) -> dict[str, str]:
    """``{name: version}`` of the distributions in the environment, read from its ``*.dist-info`` folder names
    (no interpreter started: this is the check every start pays)."""
    found = {}
    for info in venv.glob("lib/python3*/site-packages/*.dist-info"):
        name, _, version = info.name.removesuffix(".dist-info").rpartition("-")
        if not name.startswith("~"):  # what an interrupted pip left behind, not an installed package
            found[normalized(name)] = version
    return found


@dataclass(frozen=True)
class EnvironmentCheck:
    """How an environment differs from its lock; empty when it matches."""

    venv: Path
    missing_python: bool
    stamp: str | None
    expected_stamp: str
    differing: dict[str, tuple[str | None, str]]  # name: (installed or None, locked)
    extra: tuple[str, ...]

    @property
    def matches(self) -> bool:
        return not self.missing_python and self.stamp == self.expected_stamp and not self.differing and not self.extra

    def describe(self) -> str:
        """What is wrong, for a person: ``sentry-sdk 3.0.0 (lock: 2.76.0); built from another lock``."""
        if self.missing_python:
            return "no environment yet"
        problems = [f"{name} {installed or 'missing'} (lock: {locked})"
                    for name, (installed, locked) in sorted(self.differing.items())]
        if self.extra:
            problems.append("not in the lock: " + ", ".join(self.extra))
        if self.stamp is None:
            problems.append("no stamp of the lock it was built from")
        elif self.stamp != self.expected_stamp:
            problems.append("built from another lock")
        return "; ".join(problems)


def check_environment(venv: Path, lock: Path) -> EnvironmentCheck:
    """Compare the environment with the lock: its stamp, then every locked package's installed version."""
    if not lock.is_file():
        raise LabelStudioEnvironmentError(f"no lock at {lock} (ALVAR_LABEL_STUDIO_LOCK) to check {venv} against")
    stamp_file = venv / STAMP_FILE
    locked = locked_versions(lock)
    installed = installed_versions(venv)
    differing = {name: (installed.get(name), version) for name, version in locked.items()
                 if installed.get(name) != version}
    extra = tuple(sorted(set(installed) - set(locked) - VENV_TOOLING))
    return EnvironmentCheck(
        venv=venv,
        missing_python=not python_of(venv).exists(),
        stamp=stamp_file.read_text().strip() if stamp_file.is_file() else None,
        expected_stamp=sha256(lock),
        differing=differing,
        extra=extra,
    )


def import_problem(venv: Path, timeout: float = 180.0) -> str | None:
    """Import Label Studio and load its Django settings in the environment (seconds); the error's last line, or
    None when it loads. Its data goes to a temporary folder, so no database or file of a real one is touched."""
    with tempfile.TemporaryDirectory(prefix="alvar-ls-check-") as data_dir:
        try:
            result = subprocess.run([str(python_of(venv)), "-c", IMPORT_CHECK], capture_output=True, text=True,
                                    timeout=timeout, env=_label_studio_env(data_dir))
        except subprocess.TimeoutExpired:
            return f"importing Label Studio took over {timeout:.0f} s"
    if result.returncode == 0:
        return None
    lines = (result.stderr or result.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit code {result.returncode}"


def fix_hint(venv: Path) -> str:
    return f"run `alvar doctor --repair`, or delete {venv} and start again (it is rebuilt from the lock)"


@dataclass(frozen=True)
class Installer:
    """The program that installs a lock into an environment: pip (every Python has it) or uv (the same lock with
    the same hash checks, in seconds instead of minutes from a warm cache)."""

    program: Path | None = None  # uv's executable; None: the environment's pip

    @property
    def name(self) -> str:
        return "pip" if self.program is None else "uv"

    def install(self, venv: Path, lock: Path, reinstall: bool) -> list[str]:
        if self.program is None:
            afresh = ["--force-reinstall"] if reinstall else []
            return [*self._pip(venv), "install", "--quiet", "--require-hashes", "--no-deps", *afresh, "-r", str(lock)]
        afresh = ["--reinstall"] if reinstall else []
        # Compiled to bytecode at install, as pip does: where PYTHONDONTWRITEBYTECODE is set nothing else would.
        return [str(self.program), "pip", "install", "--quiet", "--python", str(python_of(venv)), "--require-hashes",
                "--no-deps", "--compile-bytecode", *afresh, "-r", str(lock)]

    def uninstall(self, venv: Path, packages: Iterable[str]) -> list[str]:
        if self.program is None:
            return [*self._pip(venv), "uninstall", "--quiet", "--yes", *packages]
        return [str(self.program), "pip", "uninstall", "--quiet", "--python", str(python_of(venv)), *packages]

    @staticmethod
    def _pip(venv: Path) -> list[str]:
        return [str(python_of(venv)), "-m", "pip", "--disable-pip-version-check"]


PIP = Installer()


def default_installer() -> Installer:
    """uv when it is installed beside alvar or on PATH, else pip."""
    found = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    return Installer(Path(found)) if found else PIP


def install_from_lock(venv: Path, lock: Path, check: EnvironmentCheck, reinstall: bool = False,
                      installer: Installer | None = None) -> None:
    """Create the environment if needed, install the lock into it (every package afresh with ``reinstall``), and
    remove what the lock does not name."""
    installer = installer or default_installer()
    if check.missing_python:
        if venv.is_dir() and any(venv.iterdir()) and not (venv / "pyvenv.cfg").is_file():
            raise LabelStudioEnvironmentError(f"{venv} holds files but no virtual environment: alvar builds Label "
                                              "Studio's environment only in a new or empty folder "
                                              "(ALVAR_LABEL_STUDIO_VENV)")
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run(installer.install(venv, lock, reinstall), check=True)
    if check.extra:
        subprocess.run(installer.uninstall(venv, check.extra), check=True)


def ensure_label_studio_venv(venv: Path, lock: Path | None = None, log: Callable[[str], object] = print,
                             reinstall: bool = False) -> Path:
    """Label Studio's environment, built or repaired from ``lock`` (default: the shipped one) when it differs, or
    reinstalled whole with ``reinstall`` (its versions are right but a file is not: `alvar doctor --repair`).

    Returns its Python. A build or repair is said through ``log`` and followed by an import check; an
    environment that still differs or cannot import Label Studio raises, naming the environment and the fix.
    """
    lock = lock or label_studio_lock()
    if check_environment(venv, lock).matches and not reinstall:
        return python_of(venv)
    with _building(venv):
        _repair(venv, lock, log, reinstall)
    return python_of(venv)


@contextmanager
def _building(venv: Path) -> Iterator[None]:
    """One build or repair of an environment at a time (two `alvar up`s, two test workers): the later one waits,
    then finds the environment right."""
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".{venv.name}.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        yield


def _repair(venv: Path, lock: Path, log: Callable[[str], object], reinstall: bool) -> None:
    check = check_environment(venv, lock)
    if check.matches and not reinstall:
        return
    action = "Building" if check.missing_python else "Reinstalling" if check.matches else "Repairing"
    reason = "asked for" if check.matches else check.describe()
    installer = default_installer()
    log(f"{action} Label Studio's environment at {venv} from {lock} with {installer.name} ({reason}); "
        f"{'a minute' if installer.program else 'a few minutes'}")
    (venv / STAMP_FILE).unlink(missing_ok=True)
    (venv / MIGRATED_SQLITE).unlink(missing_ok=True)
    try:
        install_from_lock(venv, lock, check, reinstall, installer)
    except subprocess.CalledProcessError as error:
        raise LabelStudioEnvironmentError(
            f"installing {lock} into Label Studio's environment at {venv} failed ({error}); {fix_hint(venv)}"
        ) from None
    after = check_environment(venv, lock)
    if after.differing or after.extra or after.missing_python:
        raise LabelStudioEnvironmentError(
            f"Label Studio's environment at {venv} still differs from {lock} after installing it: "
            f"{after.describe()}; {fix_hint(venv)}")
    problem = import_problem(venv)
    if problem is not None:
        raise LabelStudioEnvironmentError(
            f"Label Studio cannot import in its environment at {venv}: {problem}; {fix_hint(venv)}")
    written = venv / f"{STAMP_FILE}.new"
    written.write_text(after.expected_stamp + "\n")
    written.replace(venv / STAMP_FILE)


def seed_sqlite_database(venv: Path, label_studio_data: Path) -> None:
    """Give a new SQLite data dir a copy of :func:`_migrated_sqlite`; Label Studio then starts in seconds and applies
    only what the copy lacks (nothing) before it creates its admin. A data dir with a database keeps it; where no
    copy can be made (an environment folder that cannot be written), Label Studio migrates by itself as before."""
    database = label_studio_data / SQLITE_DATABASE
    if database.exists():
        return
    with _building(venv):
        try:
            shutil.copyfile(_migrated_sqlite(venv), database)
        except OSError:
            return
    database.chmod(0o600)


def _migrated_sqlite(venv: Path, timeout: float = 900.0) -> Path:
    """An empty Label Studio database with every migration applied, made once per environment (a build or repair
    drops it): a new SQLite data dir would otherwise spend 30-60 s (two minutes on two busy cores) migrating.
    The caller holds :func:`_building`."""
    migrated = venv / MIGRATED_SQLITE
    if migrated.is_file():
        return migrated
    with tempfile.TemporaryDirectory(prefix="migrating-", dir=venv) as data_dir:
        env = {**_label_studio_env(data_dir), "DJANGO_DB": "sqlite"}
        env.pop("DATABASE_NAME", None)
        try:
            done = subprocess.run([str(python_of(venv)), "-c", MIGRATE], timeout=timeout, capture_output=True,
                                  text=True, env=env)
        except subprocess.TimeoutExpired:
            raise LabelStudioEnvironmentError(f"Label Studio's migrations took over {timeout:.0f} s in its "
                                              f"environment at {venv}; {fix_hint(venv)}") from None
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines() or [f"exit code {done.returncode}"]
            raise LabelStudioEnvironmentError(
                f"Label Studio's migrations failed in its environment at {venv}: {lines[-1]}; {fix_hint(venv)}")
        (Path(data_dir) / SQLITE_DATABASE).replace(migrated)
    return migrated


def _label_studio_env(data_dir: str) -> dict[str, str]:
    """This process's environment for a Label Studio command with its data in ``data_dir``, less the variables that
    would point it at another settings module or code."""
    env = {key: value for key, value in os.environ.items() if key not in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH")}
    return {**env, "LABEL_STUDIO_BASE_DATA_DIR": data_dir}
