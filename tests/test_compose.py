"""docker-compose.yml and the Dockerfile, checked without a Docker engine: `docker-compose config` (Debian's
docker-compose 1.29) resolves and validates the file, and the container commands are the ones `alvar up` runs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from alvar.scripts.stack import backend_argv, worker_argv
from alvar.settings import Settings
from tests.conftest import REPO

SECRETS = {"POSTGRES_PASSWORD": "pg-secret", "LABEL_STUDIO_PASSWORD": "ls-secret",
           "LABEL_STUDIO_USER_TOKEN": "token-0123456789", "BASIC_AUTH_PASS": "basic-secret",
           "ALVAR_WEBHOOK_SECRET": "hook-secret"}
ALVAR_SERVICES = ("backend", "worker", "init")


def compose_config(env_file: Path | None, **variables: str) -> subprocess.CompletedProcess:
    executable = shutil.which("docker-compose")
    if executable is None:
        pytest.fail("docker-compose is missing: install Debian's docker-compose package (.ci/run does)")
    env = {key: value for key, value in os.environ.items() if key not in SECRETS} | variables
    command = [executable, "--project-directory", str(REPO), "-f", str(REPO / "docker-compose.yml")]
    if env_file is not None:
        command += ["--env-file", str(env_file)]
    return subprocess.run([*command, "config"], capture_output=True, text=True, env=env, timeout=60)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The resolved file, with .env.example's values and its secrets filled in."""
    text = (REPO / ".env.example").read_text()
    for name, value in SECRETS.items():
        text = re.sub(rf"^{name}=$", f"{name}={value}", text, flags=re.MULTILINE)
    env_file = tmp_path_factory.mktemp("compose") / ".env"
    env_file.write_text(text)
    resolved = compose_config(env_file)
    assert resolved.returncode == 0, resolved.stderr
    return yaml.safe_load(resolved.stdout)


def test_the_stack_is_label_studio_on_postgres_redis_backend_worker_and_init(config: dict[str, Any]) -> None:
    services = config["services"]
    assert set(services) == {"postgres", "label-studio", "redis", *ALVAR_SERVICES}
    studio = services["label-studio"]
    assert studio["image"] == "heartexlabs/label-studio:1.23.2"
    assert studio["environment"]["DJANGO_DB"] == "default" and studio["environment"]["POSTGRE_HOST"] == "postgres"
    assert studio["environment"]["POSTGRE_PASSWORD"] == services["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert studio["environment"]["LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN"] == "true"
    assert studio["environment"]["ML_BLOCK_LOCAL_IP"] == "false"
    assert studio["environment"]["SSRF_PROTECTION_ENABLED"] == "false"
    assert all("healthcheck" in services[name] for name in services if name != "init")
    assert services["label-studio"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_the_containers_run_the_commands_alvar_up_runs(config: dict[str, Any]) -> None:
    services = config["services"]
    assert services["backend"]["command"] == backend_argv("0.0.0.0", 9090)
    assert services["worker"]["command"] == worker_argv()
    assert services["init"]["command"][:2] == ["alvar", "init"] and services["init"]["restart"] == "no"
    for name in ALVAR_SERVICES:
        service = services[name]
        assert Path(service["build"]["context"]) == REPO
        environment = service["environment"]
        assert environment["LABEL_STUDIO_API_KEY"] == services["label-studio"]["environment"]["LABEL_STUDIO_USER_TOKEN"]
        assert environment["REDIS_URL"] == "redis://redis:6379/0"
        assert environment["LABEL_STUDIO_URL"] == "http://label-studio:8080"
        assert environment["ALVAR_BACKEND_URL"] == "http://backend:9090"
        assert "alvar-data:/data:rw" in service["volumes"]
    assert services["init"]["depends_on"]["backend"]["condition"] == "service_healthy"


def test_a_missing_secret_stops_compose_with_its_name() -> None:
    partial = {name: value for name, value in SECRETS.items() if name != "LABEL_STUDIO_PASSWORD"}
    resolved = compose_config(None, **partial)
    assert resolved.returncode != 0
    assert "set LABEL_STUDIO_PASSWORD in .env" in resolved.stderr


def test_every_setting_is_documented_for_compose() -> None:
    documented = (REPO / ".env.example").read_text()
    names = [str(field.validation_alias.choices[0]) for field in Settings.model_fields.values()]  # type: ignore[union-attr]
    assert [name for name in names if name not in documented] == []


def test_the_image_is_cpu_torch_non_root_and_serves_the_backend() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"pip install --index-url \"\$TORCH_INDEX_URL\" torch==2\.13\.0", dockerfile)
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in dockerfile
    users = re.findall(r"^USER (\S+)", dockerfile, flags=re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    (command,) = re.findall(r"^CMD (.+)$", dockerfile, flags=re.MULTILINE)
    assert json.loads(command) == backend_argv("0.0.0.0", 9090)
    assert "HEALTHCHECK" in dockerfile
