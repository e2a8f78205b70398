"""`alvar up` and `alvar down`: Label Studio, Redis, the ML backend and a worker on one machine.

Everything lives in the data dir: Label Studio's SQLite database, the embedded Redis, the models, PIDs,
logs, generated credentials and ``stack.json`` (the project and ports), so a second `up` reuses what runs.
"""

from __future__ import annotations

import json
import secrets
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from label_studio_sdk import LabelStudio

from alvar.backend.label_config import parse_choices_control
from alvar.backend.model_store import ModelStore
from alvar.backend.publishing import publish_predictions
from alvar.datafiles import read_dataset
from alvar.label_config import load
from alvar.scripts import services
from alvar.scripts.project import connect_backend, create_project, import_pool
from alvar.settings import Settings

STATE_FILE = "stack.json"
PROJECT_TITLE = "alvar safety dataset"
# Stopped in this order: consumers first, then what they consume.
SERVICES = ("worker", "backend", "label-studio", "redis")


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

    @classmethod
    def load(cls, data_dir: Path) -> StackState | None:
        path = data_dir / STATE_FILE
        return cls(**json.loads(path.read_text())) if path.is_file() else None

    def save(self, data_dir: Path) -> None:
        path = data_dir / STATE_FILE
        path.touch(mode=0o600, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2))


def _new_state(settings: Settings, port: int, backend_port: int) -> StackState:
    return StackState(
        label_studio_url=f"http://127.0.0.1:{port}",
        backend_url=f"http://127.0.0.1:{backend_port}",
        username=settings.label_studio_username,
        password=settings.label_studio_password or secrets.token_urlsafe(12),
        token=secrets.token_hex(20),
        backend_user="label-studio",
        backend_password=secrets.token_urlsafe(16),
        webhook_secret=secrets.token_urlsafe(24),
    )


def _alvar() -> str:
    return str(Path(sys.executable).with_name("alvar"))


def _service_env(settings: Settings, state: StackState, redis_url: str) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "MODEL_DIR": str(settings.model_dir.resolve()),
        "LABEL_STUDIO_URL": state.label_studio_url,
        "LABEL_STUDIO_API_KEY": state.token,
        "BASIC_AUTH_USER": state.backend_user,
        "BASIC_AUTH_PASS": state.backend_password,
        "ALVAR_WEBHOOK_SECRET": state.webhook_secret,
    }


def up(settings: Settings, port: int, backend_port: int, pool: Path | None = None) -> StackState:
    """Start (or reuse) every service and the project; return what a person needs to log in."""
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    state = StackState.load(data_dir) or _new_state(settings, port, backend_port)
    state.save(data_dir)
    redis_url = services.ensure_redis(data_dir, settings.redis_url)
    server = services.start_label_studio(data_dir, int(state.label_studio_url.rsplit(":", 1)[1]), state.username,
                                         state.password, state.token, settings.label_studio_venv)
    env = _service_env(settings, state, redis_url)
    backend_port = int(state.backend_url.rsplit(":", 1)[1])
    if services.running_pid(data_dir, "backend") is None:
        services.start_and_wait(data_dir, "backend", [_alvar(), "backend", "--host", "127.0.0.1", "--port",
                                                      str(backend_port), "--workers", "1"],
                                lambda: services.healthy(state.backend_url, (state.backend_user, state.backend_password)),
                                "the ML backend", 120, env)
    if services.running_pid(data_dir, "worker") is None:
        services.start_process(data_dir, "worker", [_alvar(), "worker", "--name", f"alvar-{backend_port}"], env)
    if state.project_id is None:
        client = LabelStudio(base_url=server.url, api_key=state.token)
        state.project_id = create_project(client, PROJECT_TITLE, load("annotate"))
        state.save(data_dir)
        if pool is not None:
            import_pool(client, state.project_id, read_dataset(pool).examples)
        connect_backend(client, state.project_id, state.backend_url,
                        basic_auth=(state.backend_user, state.backend_password), webhook_secret=state.webhook_secret)
        _publish_current_model(client, state.project_id, settings)
    return state


def _publish_current_model(client: LabelStudio, project_id: int, settings: Settings) -> None:
    """When MODEL_DIR already holds a version, its predictions go into the new project at once."""
    store = ModelStore(settings.model_dir)
    if store.current_version() is None:
        return
    version, learner = store.load(num_threads=settings.torch_threads)
    control = parse_choices_control(client.projects.get(id=project_id).label_config)
    publish_predictions(client, project_id, learner, version, control, show_progress=True)


def down(settings: Settings) -> list[str]:
    """Stop what `up` started in this data dir, by PID, and nothing else; return the names stopped."""
    data_dir = settings.data_dir.resolve()
    return [name for name in SERVICES if services.stop_process(data_dir, name)]
