"""`alvar up` and `alvar down`: Label Studio, Redis, the ML backend and a worker on one machine.

Everything lives in the data dir: Label Studio's SQLite database (or, with ``--database``, its data beside a
PostgreSQL database), the embedded Redis, the models, PIDs, logs, generated credentials and ``stack.json`` (ports,
logins, which database), so a second `up` reuses what runs.
``alvar.env`` there holds the settings the services were started with: every later command given the same
``--data-dir`` reads it (see :func:`alvar.settings.load_settings`), and a later `up` finds the same database.
The data dir is 0700 and everything in it its user's only (see :mod:`alvar.loop.services`).
"""

from __future__ import annotations

import json
import secrets
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from label_studio_sdk import LabelStudio
from redis import Redis

from alvar.loop import label_studio_database, label_studio_server, services
from alvar.pairfiles import PairColumns
from alvar.settings import STACK_ENV_FILE, Settings

if TYPE_CHECKING:
    from alvar.loop.initialize import InitOutcome

STATE_FILE = "stack.json"
# Stopped in this order: consumers first, then what they consume.
SERVICES = ("worker", "backend", "label-studio", "redis")
BACKEND_WORKERS = 1
DATABASE_VARIABLE = "ALVAR_LABEL_STUDIO_DATABASE"


def backend_argv(host: str, port: int) -> list[str]:
    """The ML backend's command, here and in docker-compose.yml: waitress with its threads."""
    return ["alvar", "backend", "--host", host, "--port", str(port), "--workers", str(BACKEND_WORKERS)]


def worker_argv() -> list[str]:
    """The worker's command, here and in docker-compose.yml: the training, generation and scoring queues."""
    return ["alvar", "worker"]


@dataclass
class StackState:
    """What `up` created, kept in ``<data dir>/stack.json`` (mode 0600: it holds credentials)."""

    label_studio_url: str
    backend_url: str
    username: str
    password: str
    token: str
    backend_user: str
    backend_password: str
    webhook_secret: str
    project_id: int | None = None
    # What Label Studio keeps its projects in: "sqlite", or the PostgreSQL URL without its password.
    database: str = "sqlite"

    @classmethod
    def load(cls, data_dir: Path) -> StackState | None:
        path = data_dir / STATE_FILE
        return cls(**json.loads(path.read_text())) if path.is_file() else None

    def save(self, data_dir: Path) -> None:
        services.write_private(data_dir / STATE_FILE, json.dumps(asdict(self), indent=2))

    @property
    def label_studio_port(self) -> int:
        return int(self.label_studio_url.rsplit(":", 1)[1])

    @property
    def backend_port(self) -> int:
        return int(self.backend_url.rsplit(":", 1)[1])


def _new_state(settings: Settings) -> StackState:
    return StackState(
        label_studio_url=f"http://127.0.0.1:{settings.label_studio_port}",
        backend_url=f"http://127.0.0.1:{settings.backend_port}",
        username=settings.label_studio_username,
        password=settings.label_studio_password or secrets.token_urlsafe(12),
        token=secrets.token_hex(20),
        backend_user="label-studio",
        backend_password=secrets.token_urlsafe(16),
        webhook_secret=secrets.token_urlsafe(24),
    )


def _local(argv: list[str]) -> list[str]:
    """``alvar ...`` with the ``alvar`` of this environment, found next to the running one."""
    return [str(Path(sys.executable).with_name("alvar")), *argv[1:]]


def database_name(database: str | None) -> str:
    """How :attr:`StackState.database` names Label Studio's database: ``sqlite``, or the URL redacted."""
    return label_studio_database.redacted(database) if database else "sqlite"


def _check_database(data_dir: Path, state: StackState, database: str | None) -> None:
    """A running Label Studio keeps its database: one asked to move to another is told to stop first."""
    wanted = database_name(database)
    if services.running_pid(data_dir, "label-studio") is not None and state.database != wanted:
        raise services.ServiceError(f"the Label Studio of {data_dir} runs on {state.database}, not {wanted}: "
                                    f"stop it first (alvar down --data-dir {data_dir})")


def stack_env(state: StackState, redis_url: str, model_dir: Path) -> dict[str, str]:
    """What the stack fixes for all its services (where Redis, the models, Label Studio and the backend are, and
    the credentials between them); written to ``alvar.env`` for later commands."""
    return {
        "REDIS_URL": redis_url,
        "MODEL_DIR": str(model_dir.resolve()),
        "LABEL_STUDIO_URL": state.label_studio_url,
        "LABEL_STUDIO_API_KEY": state.token,
        "BASIC_AUTH_USER": state.backend_user,
        "BASIC_AUTH_PASS": state.backend_password,
        "ALVAR_WEBHOOK_SECRET": state.webhook_secret,
        "ALVAR_BACKEND_URL": state.backend_url,
    }


def start_services(settings: Settings, state: StackState) -> dict[str, str]:
    """Start (or reuse) Redis, Label Studio, the backend and the worker; return the services' environment.

    The backend and the worker run with ``settings`` (global and command flags included) as their environment,
    with what the stack fixes on top. Label Studio listens on ``settings.label_studio_bind``;
    ``state.label_studio_url`` becomes the address this machine reaches it at; its database is
    ``settings.label_studio_database`` (PostgreSQL), else SQLite in the data dir. Secrets travel in the services'
    environment, never on their command lines.
    """
    data_dir = services.secure_data_dir(settings.data_dir.resolve())
    database = settings.label_studio_database
    _check_database(data_dir, state, database)
    # Label Studio first: its start checks PostgreSQL, which being down then leaves no Redis behind.
    server = label_studio_server.start_label_studio(data_dir, state.label_studio_port, state.username, state.password,
                                         state.token, settings.label_studio_venv, bind=settings.label_studio_bind,
                                         database=database, lock=settings.label_studio_lock)
    redis_url = services.ensure_redis(data_dir, settings.redis_url)
    state.label_studio_url = server.url
    state.database = database_name(database)
    state.save(data_dir)
    fixed = stack_env(state, redis_url, settings.model_dir)
    # The embedded Redis is found from the data dir; only a REDIS_URL of the person's own is written down, and
    # a PostgreSQL database, so that a later `up` starts Label Studio on it again.
    kept = {name: value for name, value in fixed.items() if name != "REDIS_URL" or settings.redis_url}
    if database:
        kept[DATABASE_VARIABLE] = database
    services.write_private(data_dir / STACK_ENV_FILE, "".join(f"{name}={value}\n" for name, value in kept.items()))
    # Label Studio's database (and its password) is Label Studio's own: the backend and the worker never see it.
    env = {name: value for name, value in {**settings.as_env(), **fixed}.items() if name != DATABASE_VARIABLE}
    if services.running_pid(data_dir, "backend") is None:
        auth = (state.backend_user, state.backend_password)
        services.start_and_wait(data_dir, "backend", _local(backend_argv("127.0.0.1", state.backend_port)),
                                lambda: services.healthy(state.backend_url, auth), "the ML backend", 120, env)
    if services.running_pid(data_dir, "worker") is None:
        services.start_process(data_dir, "worker", _local(worker_argv()), env)
    return env


def up(settings: Settings, pool: Path | None = None, bootstrap: Path | None = None, budget: int = 20,
       report: Callable[[str], None] = print, task: str = "auto",
       columns: PairColumns | None = None) -> tuple[StackState, InitOutcome]:
    """Start (or reuse) every service, then make the project ready (:func:`initialize`; ``task`` is its kind:
    auto, classification or generation); return the login.

    Runs under :func:`services.private_umask`: what it writes into the data dir is the user's only.
    """
    with services.private_umask():
        return _up(settings, pool, bootstrap, budget, report, task, columns or PairColumns())


def _up(settings: Settings, pool: Path | None, bootstrap: Path | None, budget: int,
        report: Callable[[str], None], task: str, columns: PairColumns) -> tuple[StackState, InitOutcome]:
    data_dir = services.secure_data_dir(settings.data_dir.resolve())
    state = StackState.load(data_dir) or _new_state(settings)
    state.save(data_dir)
    from alvar.loop.init_plan import InitPlan
    from alvar.loop.initialize import initialize  # torch and the models: `down` and `status` need neither

    env = start_services(settings, state)
    report(f"Label Studio's database: {state.database}")
    plan = InitPlan(backend_url=state.backend_url, pool=pool, bootstrap=bootstrap, budget=budget, task=task,
                    columns=columns, backend_auth=(state.backend_user, state.backend_password),
                    webhook_secret=state.webhook_secret)
    client = LabelStudio(base_url=state.label_studio_url, api_key=state.token, timeout=300)
    outcome = initialize(settings, client, Redis.from_url(env["REDIS_URL"]), plan, report)
    state.project_id = outcome.project_id
    state.save(data_dir)
    return state, outcome


def down(settings: Settings) -> list[str]:
    """Stop what `up` started in this data dir, by PID, and nothing else; return the names stopped."""
    data_dir = settings.data_dir.resolve()
    return [name for name in SERVICES if services.stop_process(data_dir, name)]
