"""docker-compose.yml, .env.example and the Dockerfile, checked without a Docker engine.

Debian's docker-compose 1.29 resolves and validates the compose file (`docker-compose config`); the tests check
that the containers run the commands `alvar up` runs, that the secrets are required, that every alvar setting is
documented and reaches the alvar containers, and that the image's healthcheck passes the backend's basic auth.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import TypeAdapter
from pydantic_core import PydanticUndefined

from alvar.loop.stack import backend_argv, worker_argv
from alvar.settings import Settings

REPO = Path(__file__).resolve().parents[1]
ENV_EXAMPLE = REPO / ".env.example"
SECRETS = {"POSTGRES_PASSWORD": "pg-secret", "LABEL_STUDIO_PASSWORD": "ls-secret",
           "LABEL_STUDIO_USER_TOKEN": "token-0123456789", "BASIC_AUTH_PASS": "basic-secret",
           "ALVAR_WEBHOOK_SECRET": "hook-secret"}
ALVAR_SERVICES = ("backend", "worker", "init")
SETTINGS = {str(field.validation_alias.choices[0]): field  # type: ignore[union-attr]
            for field in Settings.model_fields.values()}
# Settings that only `alvar up` (everything on one machine) reads; compose has its own equivalents.
UP_ONLY = {
    "ALVAR_LABEL_STUDIO_VENV": "Label Studio runs from its official image, not from a venv alvar creates",
    "ALVAR_LABEL_STUDIO_LOCK": "Label Studio runs from its official image, not from a venv alvar builds from a lock",
    "ALVAR_LABEL_STUDIO_PORT": "the port Label Studio is published on is compose's LABEL_STUDIO_PORT",
    "ALVAR_BACKEND_PORT": "the backend always listens on 9090 inside the compose network",
    "ALVAR_LABEL_STUDIO_BIND": "Label Studio's container listens on its own network; compose publishes its port",
    "ALVAR_LABEL_STUDIO_DATABASE": "Label Studio's container runs on the postgres service (its POSTGRE_* variables)",
}
# Settings that go to the label-studio service (Label Studio reads the same names), not to alvar's containers:
# there they only name the admin that `alvar up` creates; the containers sign in with the token instead.
LABEL_STUDIO_LOGIN = {"LABEL_STUDIO_USERNAME", "LABEL_STUDIO_PASSWORD"}
# Settings that docker-compose.yml fixes for every alvar container: names and volumes of the compose network.
FIXED = {"REDIS_URL": "redis://redis:6379/0", "LABEL_STUDIO_URL": "http://label-studio:8080",
         "ALVAR_BACKEND_URL": "http://backend:9090", "MODEL_DIR": "/data/models", "ALVAR_DATA_DIR": "/data",
         "ALVAR_CACHE_DIR": "/data/cache"}
# Values in .env.example that deliberately differ from alvar's default.
NOT_DEFAULTS = {"BASIC_AUTH_USER": "basic auth is always on in compose (alvar's default: off)"}
LLM_URL = "http://llm.test:8000/v1"


def filled_env_example(**extra: str) -> str:
    """.env.example with its secrets filled in, as a person would save it as .env."""
    text = ENV_EXAMPLE.read_text()
    for name, value in SECRETS.items():
        text, count = re.subn(rf"^{name}=$", f"{name}={value}", text, flags=re.MULTILINE)
        assert count == 1, f".env.example should have one empty line {name}="
    return text + "".join(f"{name}={value}\n" for name, value in extra.items())


def docker_compose() -> str:
    """The docker-compose executable; its absence fails the tests (they are the only check of the compose file)."""
    executable = shutil.which("docker-compose") or "/usr/bin/docker-compose"
    if not Path(executable).is_file():
        pytest.fail("docker-compose is missing (Debian package docker-compose, /usr/bin/docker-compose): "
                    "the compose file cannot be validated without it")
    return executable


def compose_config(executable: str, env_file: Path) -> subprocess.CompletedProcess:
    """`docker-compose config` in the repository root with only this env file (no .env, no shell variables)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"),
           "LANG": "C.UTF-8"}
    command = [executable, "-f", "docker-compose.yml", "--env-file", str(env_file), "config"]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env, timeout=60,
                          check=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess]:
    """`docker-compose config` with several env files, run side by side (each takes about a second)."""
    executable = docker_compose()
    folder = tmp_path_factory.mktemp("compose")
    texts = {"filled": filled_env_example(), "with-llm-url": filled_env_example(OPENAI_BASE_URL=LLM_URL),
             "unfilled": ENV_EXAMPLE.read_text(), "three-workers": filled_env_example(ALVAR_WORKER_REPLICAS="3")}
    for secret in SECRETS:
        texts[f"without {secret}"] = re.sub(rf"^{secret}=.*\n", "", filled_env_example(), flags=re.MULTILINE)
    for name, text in texts.items():
        (folder / name).write_text(text)
    with ThreadPoolExecutor(len(texts)) as pool:
        results = pool.map(lambda name: compose_config(executable, folder / name), texts)
        return dict(zip(texts, results))


def test_worker_replicas_follow_the_env_file(runs: dict[str, subprocess.CompletedProcess]) -> None:
    """One worker container by default; ALVAR_WORKER_REPLICAS in .env runs more (the last line wins in an env file)."""
    assert resolved(runs["filled"])["services"]["worker"]["deploy"]["replicas"] == 1
    assert resolved(runs["three-workers"])["services"]["worker"]["deploy"]["replicas"] == 3
    assert "replicas" not in resolved(runs["filled"])["services"]["backend"].get("deploy", {})


def test_docker_compose_is_installed() -> None:
    assert subprocess.run([docker_compose(), "version"], capture_output=True, timeout=30, check=False).returncode == 0


def resolved(run: subprocess.CompletedProcess) -> dict[str, Any]:
    assert run.returncode == 0, run.stderr
    return yaml.safe_load(run.stdout)


@pytest.fixture(scope="module")
def services(runs: dict[str, subprocess.CompletedProcess]) -> dict[str, Any]:
    """The resolved services, with .env.example's values and its secrets filled in."""
    return resolved(runs["filled"])["services"]


def test_the_stack_is_label_studio_on_postgres_redis_backend_worker_and_init(services: dict[str, Any]) -> None:
    assert set(services) == {"postgres", "label-studio", "redis", *ALVAR_SERVICES}
    studio = services["label-studio"]
    environment = studio["environment"]
    assert studio["image"] == "heartexlabs/label-studio:1.23.2"
    assert environment["DJANGO_DB"] == "default" and environment["POSTGRE_HOST"] == "postgres"
    assert environment["POSTGRE_PASSWORD"] == services["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert environment["POSTGRE_USER"] == services["postgres"]["environment"]["POSTGRES_USER"]
    assert environment["POSTGRE_NAME"] == services["postgres"]["environment"]["POSTGRES_DB"]
    assert environment["LABEL_STUDIO_PASSWORD"] == SECRETS["LABEL_STUDIO_PASSWORD"]
    assert environment["LABEL_STUDIO_USERNAME"] == SETTINGS["LABEL_STUDIO_USERNAME"].default
    assert len(environment["LABEL_STUDIO_USER_TOKEN"]) > 5
    # Legacy tokens on from the first start; the SSRF guards would refuse the backend on the compose network.
    assert environment["LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN"] == "true"
    assert environment["LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK"] == "true"
    assert environment["ML_BLOCK_LOCAL_IP"] == "false" and environment["SSRF_PROTECTION_ENABLED"] == "false"
    assert "label-studio-data:/label-studio/data:rw" in studio["volumes"]
    assert any(str(port.get("published") if isinstance(port, dict) else port).startswith("8080")
               for port in studio["ports"])
    assert "localhost:8080/health" in " ".join(studio["healthcheck"]["test"])
    assert studio["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "--appendonly" in services["redis"]["command"]
    assert all(services[name].get("healthcheck", {}).get("test") not in (None, ["NONE"])
               for name in services if name != "init")
    assert "backend" not in [name for name, service in services.items() if service.get("ports")]


def test_the_containers_run_the_commands_alvar_up_runs(services: dict[str, Any]) -> None:
    assert services["backend"]["command"] == backend_argv("0.0.0.0", 9090)
    assert services["worker"]["command"] == worker_argv()
    assert services["init"]["command"] == ["alvar", "init", "--demo"] and services["init"]["restart"] == "no"
    for name in ALVAR_SERVICES:
        service = services[name]
        build = service["build"]
        assert Path(build["context"]) == REPO and (REPO / build.get("dockerfile", "Dockerfile")) == REPO / "Dockerfile"
        assert service["image"] == services["backend"]["image"]
        assert "alvar-data:/data:rw" in service["volumes"]
        environment = service["environment"]
        assert environment["LABEL_STUDIO_API_KEY"] == SECRETS["LABEL_STUDIO_USER_TOKEN"]
        assert environment["BASIC_AUTH_PASS"] == SECRETS["BASIC_AUTH_PASS"]
        assert environment["ALVAR_WEBHOOK_SECRET"] == SECRETS["ALVAR_WEBHOOK_SECRET"]
        assert {key: environment[key] for key in FIXED} == FIXED
    assert services["backend"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert {name: condition["condition"] for name, condition in services["worker"]["depends_on"].items()} == {
        "redis": "service_healthy", "label-studio": "service_healthy"}
    assert {name: condition["condition"] for name, condition in services["init"]["depends_on"].items()} == {
        "label-studio": "service_healthy", "backend": "service_healthy", "worker": "service_started"}


def test_every_missing_secret_stops_compose_with_its_name(runs: dict[str, subprocess.CompletedProcess]) -> None:
    for secret in SECRETS:
        run = runs[f"without {secret}"]
        assert run.returncode != 0 and f"{secret} is required" in run.stderr, (secret, run.stderr)
    # .env.example copied as it is: its secrets are empty, which counts as missing.
    unfilled = runs["unfilled"]
    assert unfilled.returncode != 0 and "is required - set it in .env" in unfilled.stderr, unfilled.stderr


def test_every_setting_is_documented_in_env_example() -> None:
    lines = ENV_EXAMPLE.read_text().splitlines()
    missing = []
    for name in SETTINGS:
        if name in UP_ONLY:
            found = any(line.startswith(f"# {name}:") for line in lines)
        else:  # NAME=..., or "# NAME=..." for the ones compose fixes and OPENAI_BASE_URL (commented out)
            found = any(re.match(rf"(# )?{name}=", line) for line in lines)
        if not found:
            missing.append(name)
    assert missing == []
    for index, line in enumerate(lines):
        if re.match(r"[A-Z_]+=", line):  # every variable has its comment line
            assert lines[index - 1].startswith("# "), line


def test_env_example_and_compose_name_the_same_variables() -> None:
    variables = set(re.findall(r"^([A-Z_0-9]+)=", ENV_EXAMPLE.read_text(), flags=re.MULTILINE))
    compose = re.sub(r"(^|\s)#.*$", "", (REPO / "docker-compose.yml").read_text(), flags=re.MULTILINE)  # comments
    interpolated = set(re.findall(r"\$\{([A-Z_0-9]+)", compose))
    assert variables == interpolated


def test_env_example_values_are_alvars_defaults() -> None:
    """A copied .env pins nothing by accident: its alvar values are alvar's defaults (or empty)."""
    differing = {}
    for name, value in re.findall(r"^([A-Z_0-9]+)=(.*)$", ENV_EXAMPLE.read_text(), flags=re.MULTILINE):
        field = SETTINGS.get(name)
        if field is None or value == "" or name in NOT_DEFAULTS:
            continue
        if field.default is PydanticUndefined or TypeAdapter(field.annotation).validate_python(value) != field.default:
            differing[name] = (value, field.default)
    assert differing == {}


def test_every_setting_reaches_the_alvar_containers(runs: dict[str, subprocess.CompletedProcess]) -> None:
    services = resolved(runs["filled"])["services"]
    expected = set(SETTINGS) - set(UP_ONLY) - LABEL_STUDIO_LOGIN
    for name in ALVAR_SERVICES:
        environment = services[name]["environment"]
        assert sorted(expected - set(environment)) == [], name
        assert not set(UP_ONLY) & set(environment), name
    assert LABEL_STUDIO_LOGIN <= set(services["label-studio"]["environment"])
    # OPENAI_BASE_URL is passed on only when set: the OpenAI SDK would take an empty one for the endpoint.
    assert services["backend"]["environment"]["OPENAI_BASE_URL"] is None
    with_url = resolved(runs["with-llm-url"])["services"]
    assert all(with_url[name]["environment"]["OPENAI_BASE_URL"] == LLM_URL for name in ALVAR_SERVICES)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of each Dockerfile instruction, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip()) for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_the_image_is_cpu_torch_non_root_and_serves_the_backend() -> None:
    instructions = dockerfile_instructions()
    arguments = {keyword: [args for key, args in instructions if key == keyword] for keyword, _ in instructions}
    assert all(base.startswith("python:3.11-slim") for base in arguments["FROM"])
    assert "TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in arguments["ARG"]
    assert any('--index-url "$TORCH_INDEX_URL" torch==2.13.0' in run for run in arguments["RUN"])
    # Everything else exactly as the lock pins it, hashes checked; the package itself adds nothing.
    assert any("--require-hashes --no-deps -r requirements/alvar.txt" in run for run in arguments["RUN"])
    assert any("install --no-deps ." in run for run in arguments["RUN"])
    assert arguments["USER"] and arguments["USER"][-1] not in ("root", "0", "0:0")
    environment = dict(pair.split("=", 1) for line in arguments["ENV"] for pair in shlex.split(line))
    assert {key: environment.get(key) for key in ("HF_HUB_OFFLINE", "MODEL_DIR", "ALVAR_DATA_DIR", "ALVAR_CACHE_DIR")} \
        == {"HF_HUB_OFFLINE": "1", "MODEL_DIR": "/data/models", "ALVAR_DATA_DIR": "/data",
            "ALVAR_CACHE_DIR": "/data/cache"}
    assert arguments["EXPOSE"] == ["9090"]
    assert [json.loads(command) for command in arguments["CMD"]] == [backend_argv("0.0.0.0", 9090)]
    copied = [source for args in arguments["COPY"] if not args.startswith("--from") for source in args.split()[:-1]]
    assert not {"tests", "bench", ".", "test-artifacts"} & set(copied)
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".env", ".venv", ".git", "tests", "bench"} <= ignored


class HealthStub(http.server.BaseHTTPRequestHandler):
    """/health of a backend whose basic auth is user:secret (or off when the server's `expected` is None)."""

    def do_GET(self) -> None:
        expected = self.server.expected  # type: ignore[attr-defined]
        allowed = self.path == "/health" and (expected is None or self.headers.get("Authorization") == expected)
        self.send_response(200 if allowed else 401)
        self.end_headers()
        self.wfile.write(b'{"status": "UP"}')

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[http.server.HTTPServer]:
    server = http.server.HTTPServer(("127.0.0.1", 0), HealthStub)
    server.expected = "Basic " + base64.b64encode(b"user:secret").decode()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_the_healthchecks_send_the_backends_basic_auth(services: dict[str, Any],
                                                        health_server: http.server.HTTPServer) -> None:
    """The Dockerfile's HEALTHCHECK (run by /bin/sh as Docker does) against a stub of the backend's /health."""
    (healthcheck,) = [args for key, args in dockerfile_instructions() if key == "HEALTHCHECK"]
    shell_command = healthcheck.split(" CMD ", 1)[1]
    # The compose backend's check is the same Python code, in exec form.
    assert services["backend"]["healthcheck"]["test"] == ["CMD", *shlex.split(shell_command)]
    assert "127.0.0.1:9090/health" in shell_command
    shell_command = shell_command.replace("127.0.0.1:9090", f"127.0.0.1:{health_server.server_port}")
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"

    def check(**variables: str) -> int:
        return subprocess.run(["sh", "-c", shell_command], env={"PATH": path, **variables},
                              capture_output=True, timeout=30, check=False).returncode

    assert check(BASIC_AUTH_USER="user", BASIC_AUTH_PASS="secret") == 0
    assert check(BASIC_AUTH_USER="user", BASIC_AUTH_PASS="wrong") != 0
    assert check() != 0
    health_server.expected = None  # type: ignore[attr-defined]
    assert check() == 0
