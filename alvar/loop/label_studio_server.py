"""Starting Label Studio in its own environment (one code path for `alvar up` and the tests' session fixtures),
as a process of :mod:`alvar.loop.services`: in its own session, with its PID and log in the data dir, listening
on the bind address it is given (loopback by default), its secrets in its environment, the files it saves 0600."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from alvar.loop.label_studio_database import ensure_database, label_studio_env
from alvar.loop.label_studio_env import (
    LabelStudioEnvironmentError,
    ensure_label_studio_venv,
    fix_hint,
    seed_sqlite_database,
)
from alvar.loop.services import (
    LOOPBACK,
    ServiceError,
    ServiceExited,
    console,
    healthy,
    log_path,
    private_dir,
    running_pid,
    start_and_wait,
    write_private,
)


@dataclass(frozen=True)
class LabelStudioServer:
    """A running Label Studio: where it is and how to log in."""

    url: str
    username: str
    password: str
    token: str
    pid: int


def _url_host(address: str) -> str:
    """``address`` as the host part of a URL or of Django's ``runserver ADDR:PORT`` (IPv6 in brackets)."""
    try:
        parsed = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return address
    return f"[{parsed}]" if parsed.version == 6 else str(parsed)


def _client_host(bind: str) -> str:
    """Where a client on this machine reaches a server bound to ``bind`` (a wildcard: its loopback)."""
    try:
        parsed = ipaddress.ip_address(bind.strip("[]"))
    except ValueError:
        return bind
    if parsed.is_unspecified:
        return "[::1]" if parsed.version == 6 else LOOPBACK
    return _url_host(bind)


# Label Studio's entry point, run by the environment's own Python (not its `label-studio` script, whose first
# line names the Python of wherever the environment was first built).
LABEL_STUDIO_MAIN = "import sys; from label_studio.server import main; sys.exit(main())"


def _python_failure(log: Path, offset: int) -> str | None:
    """The exception line that ended a Python traceback in what ``log`` got after ``offset`` (this start's output:
    Label Studio died at import), or None."""
    try:
        with log.open("rb") as written:
            written.seek(offset)
            lines = written.read().decode(errors="replace").splitlines()[-200:]
    except FileNotFoundError:
        return None
    if not any(line.startswith("Traceback (most recent call last)") for line in lines):
        return None
    return next((line for line in reversed(lines) if re.match(r"^[\w.]+(Error|Exception)\b", line)), lines[-1])


LABEL_STUDIO_SETTINGS_MODULE = "alvar_label_studio_settings"
LABEL_STUDIO_SETTINGS = '''"""Label Studio's settings, but the files it saves (uploads, exports) are created 0600."""
import os

# Label Studio's settings read django.conf.settings while they load (Sentry): let that find them meanwhile.
os.environ["DJANGO_SETTINGS_MODULE"] = "label_studio.core.settings.label_studio"
from label_studio.core.settings.label_studio import *  # noqa: E402,F403

os.environ["DJANGO_SETTINGS_MODULE"] = __name__
FILE_UPLOAD_PERMISSIONS = 0o600
'''


def _private_uploads_env(data_dir: Path) -> dict[str, str]:
    """Environment that has Label Studio save uploaded and exported files 0600.

    Django chmods every file its storage saves to ``FILE_UPLOAD_PERMISSIONS`` (default 0644) whatever the
    umask, and Label Studio reads no variable for it: a settings module on its path wraps its own settings.
    """
    folder = private_dir(data_dir / "label-studio-settings")
    write_private(folder / f"{LABEL_STUDIO_SETTINGS_MODULE}.py", LABEL_STUDIO_SETTINGS)
    return {"DJANGO_SETTINGS_MODULE": LABEL_STUDIO_SETTINGS_MODULE, "PYTHONPATH": str(folder)}


def start_label_studio(data_dir: Path, port: int, username: str, password: str, token: str, venv: Path,
                       timeout: float = 300.0, bind: str = LOOPBACK, database: str | None = None,
                       lock: Path | None = None) -> LabelStudioServer:
    """Start (or reuse) Label Studio on ``bind:port`` with its data in ``data_dir/label-studio``; wait for /health.

    Its database is SQLite in that folder, or with ``database`` (``postgresql://USER[:PASSWORD]@HOST[:PORT]/DB``)
    that PostgreSQL database, created first when the server lacks it
    (:func:`alvar.loop.label_studio_database.ensure_database`); its files (uploads, exports) stay in the folder.

    Label Studio runs from its own environment ``venv``, checked against ``lock`` first (built or repaired from it
    when it differs: :func:`alvar.loop.label_studio_env.ensure_label_studio_venv`); a Label Studio that dies
    with a Python traceback while starting is reported with that environment and the fix. A new SQLite data dir
    starts from a copy of the environment's migrated empty database
    (:func:`~alvar.loop.label_studio_env.seed_sqlite_database`).

    Legacy tokens are enabled (so ``token`` works as an API key from the first start), and the SSRF guards
    that reject an ML backend and webhooks on localhost are off: this stack runs them on this machine.
    ``--internal-host`` is Label Studio's listening address (``--host`` is only its public URL, and it
    listens on 0.0.0.0 without the former). The login and token go in its environment, which its first start
    reads to create the admin (``label_studio.server._create_user``): never on its command line.
    """
    url = f"http://{_client_host(bind)}:{port}"
    pid = running_pid(data_dir, "label-studio")
    if pid is not None and healthy(url):
        return LabelStudioServer(url, username, password, token, pid)
    if healthy(url):
        raise ServiceError(f"port {port} already serves a Label Studio that this data dir did not start")
    python = ensure_label_studio_venv(venv, lock, log=lambda text: console.print(text, markup=False, soft_wrap=True))
    ls_data = private_dir(data_dir / "label-studio")
    database_env = {"DJANGO_DB": "sqlite"}
    if database is None:
        seed_sqlite_database(venv, ls_data)
    else:
        ensure_database(database)
        database_env = label_studio_env(database)
    env = {
        "LABEL_STUDIO_BASE_DATA_DIR": str(ls_data),
        "LABEL_STUDIO_USERNAME": username,
        "LABEL_STUDIO_PASSWORD": password,
        "LABEL_STUDIO_USER_TOKEN": token,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        "ML_BLOCK_LOCAL_IP": "false",
        "SSRF_PROTECTION_ENABLED": "false",
        "LABEL_STUDIO_HOST": "",
        **database_env,
        **_private_uploads_env(data_dir),
    }
    log = log_path(data_dir, "label-studio")
    earlier_log = log.stat().st_size if log.exists() else 0
    try:
        pid = start_and_wait(
            data_dir,
            "label-studio",
            [str(python), "-c", LABEL_STUDIO_MAIN, "start", "--no-browser", "--internal-host", _url_host(bind),
             "--port", str(port), "--data-dir", str(ls_data), "--enable-legacy-api-token"],
            lambda: healthy(url),
            f"Label Studio on port {port}",
            timeout,
            env=env,
            cwd=ls_data,
        )
    except ServiceExited:
        failure = _python_failure(log, earlier_log)
        if failure is None:
            raise
        raise LabelStudioEnvironmentError(f"Label Studio failed in its environment at {venv}: {failure}; "
                                          f"{fix_hint(venv)}") from None
    return LabelStudioServer(url, username, password, token, pid)
