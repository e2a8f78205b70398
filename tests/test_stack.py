"""`alvar up` then `alvar down` in a temporary data dir, with the real services."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from label_studio_sdk import LabelStudio

from alvar.backend.model_store import ModelStore
from alvar.loop import services
from alvar.loop.stack import SERVICES, StackState
from alvar.processes import group_alive, process_alive
from tests.conftest import alvar_command, copy_model_dir, free_port, wait_for

# Generated passwords may start with "-" too (secrets.token_urlsafe): Label Studio must still get it as a value.
PASSWORD = "-starts-with-a-dash"


def alvar(*args: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key not in ("REDIS_URL", "MODEL_DIR")}
    return subprocess.run([*alvar_command(), *args], capture_output=True, text=True, timeout=900,
                          env={**env, "ALVAR_TORCH_THREADS": "1", "LABEL_STUDIO_PASSWORD": PASSWORD})


@pytest.mark.label_studio  # `alvar up` starts Label Studio
def test_up_reuses_and_down_stops_everything(run_root: Path, seed_model_dir: Path, safety_dir: Path) -> None:
    data_dir = run_root / "up"
    copy_model_dir(seed_model_dir, data_dir / "models")
    pool = safety_dir / "dev_labeled.tsv"
    try:
        check_up_and_down(data_dir, pool)
    finally:
        alvar("down", "--data-dir", str(data_dir))


def check_up_and_down(data_dir: Path, pool: Path) -> None:
    started = alvar("up", "--data-dir", str(data_dir), "--port", str(free_port()),
                    "--backend-port", str(free_port()), "--pool", str(pool))
    assert started.returncode == 0, started.stderr + started.stdout
    state = StackState.load(data_dir)
    assert state is not None and state.project_id is not None and state.password == PASSWORD
    assert f"{state.label_studio_url}/projects/{state.project_id}" in started.stdout
    assert (data_dir / "stack.json").stat().st_mode & 0o077 == 0
    pids = {name: services.running_pid(data_dir, name) for name in SERVICES}
    assert all(pids.values()), pids

    client = LabelStudio(base_url=state.label_studio_url, api_key=state.token)
    project = client.projects.get(id=state.project_id)
    version = ModelStore(data_dir / "models").current_version()
    assert project.model_version == version
    tasks = list(client.tasks.list(project=state.project_id, fields="all", page_size=500))
    assert len(tasks) == 150
    assert all(len(task.predictions) == 1 and task.predictions[0].model_version == version for task in tasks)
    (backend,) = client.ml.list(project=state.project_id)
    assert backend.url == state.backend_url and backend.auth_method == "BASIC_AUTH"
    (hook,) = client.webhooks.list(project=state.project_id)
    assert hook.headers["X-Alvar-Secret"] == state.webhook_secret

    again = alvar("up", "--data-dir", str(data_dir))
    assert again.returncode == 0, again.stderr
    assert {name: services.running_pid(data_dir, name) for name in SERVICES} == pids
    assert len(list(client.projects.list())) == 1

    stopped = alvar("down", "--data-dir", str(data_dir))
    assert stopped.returncode == 0 and all(name in stopped.stdout for name in SERVICES)
    assert not any(process_alive(pid) for pid in pids.values())
    assert "nothing was running" in alvar("down", "--data-dir", str(data_dir)).stdout


def test_stopping_a_service_waits_for_every_process_of_its_group(tmp_path: Path) -> None:
    """A process of the group that ignores SIGTERM and outlives the leader for a while (a worker's multiprocessing
    resource tracker does, until its pipe closes) is waited for: once stop_process returns, none is left."""
    ready = tmp_path / "ignoring-sigterm"
    lingering = (f"import pathlib, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                 f"pathlib.Path({str(ready)!r}).touch(); time.sleep(3)")
    group = f'"{sys.executable}" -c "{lingering}" & exec sleep 60'  # the leader: sleep, which SIGTERM ends
    pid = services.start_process(tmp_path, "lingering", ["sh", "-c", group])
    wait_for(ready.exists, 30, "the group's second process to ignore SIGTERM")
    assert services.stop_process(tmp_path, "lingering")
    assert not group_alive(pid) and not process_alive(pid)
