"""Nothing the stack of `alvar up` starts is exposed: not on the network, not on a command line, not on disk.

The services are started the `alvar up` way (:func:`alvar.loop.stack.start_services`: embedded Redis,
Label Studio, the ML backend, a worker) in a data dir an older alvar had left 0755; the project set-up of a
full `alvar up` is left out (tests/test_stack.py runs it).
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import redis
import requests
from label_studio_sdk import LabelStudio

from alvar.loop import services, stack
from alvar.loop.label_studio_server import LABEL_STUDIO_MAIN
from alvar.settings import load_settings
from tests.conftest import free_port, wait_for

pytestmark = pytest.mark.label_studio  # `alvar up` starts the stack with its Label Studio

# Dashes first: a secret that looks like an option is the case that once went through argv as --opt=value.
PASSWORD = "-exposure-password-7d1f"
TOKEN = "exposure-token-5c0a9e3b2f4d"


@dataclass(frozen=True)
class Stack:
    data_dir: Path
    state: stack.StackState
    env: dict[str, str]

    def secrets(self) -> list[str]:
        return [self.state.password, self.state.token, self.state.backend_password, self.state.webhook_secret]


@pytest.fixture(scope="module")
def started(run_root: Path) -> Iterator[Stack]:
    data_dir = run_root / "exposure"
    data_dir.mkdir()
    data_dir.chmod(0o755)
    settings = load_settings().model_copy(update={
        "data_dir": data_dir, "model_dir": data_dir / "models", "redis_url": None,
        "label_studio_port": free_port(), "backend_port": free_port(), "label_studio_bind": "127.0.0.1",
    })
    state = stack.StackState(
        label_studio_url=f"http://127.0.0.1:{settings.label_studio_port}",
        backend_url=f"http://127.0.0.1:{settings.backend_port}",
        username="admin@exposure.test", password=PASSWORD, token=TOKEN, backend_user="label-studio",
        backend_password="-exposure-backend-pass", webhook_secret="exposure-webhook-secret-93ab",
    )
    state.save(data_dir)
    try:
        env = stack.start_services(settings, state)
        yield Stack(data_dir, state, env)
    finally:
        stack.down(settings)


def listening_addresses(port: int) -> set[str]:
    """The local addresses of the sockets listening on TCP ``port``, IPv4 and IPv6."""
    return {connection.laddr.ip for connection in psutil.net_connections(kind="tcp")
            if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port}


def other_addresses() -> list[str]:
    """This machine's own addresses that are neither loopback nor link-local (those need a scope to dial)."""
    found = []
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family in (socket.AF_INET, socket.AF_INET6):
                parsed = ipaddress.ip_address(address.address.split("%")[0])
                if not (parsed.is_loopback or parsed.is_link_local):
                    found.append(str(parsed))
    return found


def refused(address: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family) as probe:
        probe.settimeout(2)
        return probe.connect_ex((address, port)) != 0


def command_lines(pid: int) -> dict[int, str]:
    """pid -> command line of the process ``pid`` and of all its descendants."""
    process = psutil.Process(pid)
    return {each.pid: " ".join(each.cmdline()) for each in [process, *process.children(recursive=True)]}


def shared_paths(root: Path) -> list[str]:
    """Everything under ``root`` (itself included) that its group or others may read, write or enter."""
    found = [f"{root} {oct(root.stat().st_mode)}"] if root.stat().st_mode & 0o077 else []
    for directory, names, files in os.walk(root):
        for name in [*names, *files]:
            mode = os.lstat(Path(directory) / name).st_mode
            if mode & 0o077 and not stat.S_ISLNK(mode):
                found.append(f"{Path(directory) / name} {oct(mode)}")
    return found


def test_the_listening_check_sees_a_wildcard_socket() -> None:
    with socket.socket() as server:
        server.bind(("0.0.0.0", 0))
        server.listen()
        assert listening_addresses(server.getsockname()[1]) == {"0.0.0.0"}


def test_label_studio_and_the_backend_listen_on_loopback_only(started: Stack) -> None:
    for port in (started.state.label_studio_port, started.state.backend_port):
        assert listening_addresses(port) == {"127.0.0.1"}
        assert not refused("127.0.0.1", port)
        for address in other_addresses():
            assert refused(address, port), f"port {port} answers on {address}"


def test_no_secret_on_any_command_line(started: Stack) -> None:
    lines: dict[int, str] = {}
    for name in stack.SERVICES:
        pid = services.running_pid(started.data_dir, name)
        assert pid is not None, f"{name} is not running"
        lines.update(command_lines(pid))
    # Label Studio runs from its environment's own Python: `python -c "...label_studio.server import main..." start`.
    assert any(LABEL_STUDIO_MAIN in line and " start " in line and "--internal-host 127.0.0.1" in line
               for line in lines.values()), lines
    leaks = {pid: line for pid, line in lines.items() if any(secret in line for secret in started.secrets())}
    assert not leaks


def test_the_login_and_token_from_the_environment_work(started: Stack) -> None:
    url, state = started.state.label_studio_url, started.state
    assert LabelStudio(base_url=url, api_key=state.token).users.whoami().email == state.username

    def log_in(password: str) -> requests.Response:
        session = requests.Session()
        session.get(f"{url}/user/login/", timeout=30)
        return session.post(f"{url}/user/login/", timeout=30, allow_redirects=False,
                            data={"email": state.username, "password": password,
                                  "csrfmiddlewaretoken": session.cookies["csrftoken"]},
                            headers={"Referer": f"{url}/user/login/"})

    assert log_in(state.password).status_code == 302
    assert log_in(state.password + "x").status_code == 200


def test_no_file_in_the_data_dir_is_readable_by_others(started: Stack) -> None:
    """After the services wrote their files (Redis' dump, an uploaded file, an export), all are the user's only."""
    redis.Redis.from_url(services.embedded_redis_url(started.data_dir)).save()
    client = LabelStudio(base_url=started.state.label_studio_url, api_key=started.state.token)
    project = client.projects.create(title="exposure", label_config=(
        '<View><Text name="text" value="$text"/><Choices name="label" toName="text">'
        '<Choice value="a"/><Choice value="b"/></Choices></View>'))
    upload = requests.post(f"{started.state.label_studio_url}/api/projects/{project.id}/import", timeout=60,
                           headers={"Authorization": f"Token {started.state.token}"},
                           files={"file": ("tasks.json", json.dumps([{"text": "a private text"}]))})
    assert upload.status_code == 201, upload.text
    wait_for(lambda: len(list(client.tasks.list(project=project.id))) == 1, 60, "the uploaded task")
    export = client.projects.exports.create(project.id, title="exposure")
    wait_for(lambda: client.projects.exports.get(project.id, export.id).status == "completed", 60, "the export")

    expected = ["stack.json", "alvar.env", "logs/label-studio.log", "logs/redis.log", "logs/backend.log",
                "logs/worker.log", "run/label-studio.pid", "run/worker.pid", "redis/redis.conf", "redis/dump.rdb",
                "label-studio/label_studio.sqlite3"]
    assert [path for path in expected if not (started.data_dir / path).exists()] == []
    assert list((started.data_dir / "label-studio" / "media" / "upload").glob("**/*tasks.json"))
    assert shared_paths(started.data_dir) == []
