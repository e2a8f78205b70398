"""A private PostgreSQL 15 cluster for one test: its own data dir, port and socket dir, which the test may stop and
start again (a PostgreSQL restart under running jobs) without touching the machine's cluster on port 5432.

PostgreSQL refuses to run as root, so the cluster belongs to the ``postgres`` user: ``initdb`` and ``pg_ctl``
run through ``runuser``, in a directory under /tmp that user owns. Trust authentication, listening on the
loopback only.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import psycopg

POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")
SUPERUSER = "postgres"


class PostgresServer:
    """``with PostgresServer(port) as server:`` a running cluster on 127.0.0.1:``port``; removed at exit."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.root = Path(tempfile.mkdtemp(prefix="alvar-pg-", dir="/tmp"))
        shutil.chown(self.root, SUPERUSER, SUPERUSER)
        self.data_dir = self.root / "data"
        self.log = self.root / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _as_superuser(self, *argv: str) -> None:
        subprocess.run(["runuser", "-u", SUPERUSER, "--", *argv], check=True, capture_output=True, timeout=120)

    def answers(self) -> bool:
        try:
            with psycopg.connect(self.url(), connect_timeout=2) as connection:
                connection.execute("SELECT 1")
        except psycopg.OperationalError:
            return False
        return True

    def start(self, timeout: float = 60) -> None:
        """Start the cluster (initialized on first start) and wait until it takes connections."""
        if not self.data_dir.exists():
            self._as_superuser(str(POSTGRES_BIN / "initdb"), "--pgdata", str(self.data_dir), "--username",
                               SUPERUSER, "--auth", "trust", "--encoding", "UTF8", "--no-sync")
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_superuser(str(POSTGRES_BIN / "pg_ctl"), "start", "--pgdata", str(self.data_dir), "--log",
                           str(self.log), "--options", options, "--wait")
        deadline = time.monotonic() + timeout
        while not self.answers():
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL on port {self.port} does not answer; see {self.log}")
            time.sleep(0.2)

    def stop(self, mode: str = "fast") -> None:
        """Stop the cluster: ``fast`` ends every connection (rolling back open transactions), ``immediate``
        is a crash (recovery at the next start)."""
        self._as_superuser(str(POSTGRES_BIN / "pg_ctl"), "stop", "--pgdata", str(self.data_dir), "--mode", mode,
                           "--wait")

    def running(self) -> bool:
        done = subprocess.run(["runuser", "-u", SUPERUSER, "--", str(POSTGRES_BIN / "pg_ctl"), "status",
                               "--pgdata", str(self.data_dir)], capture_output=True, timeout=30)
        return done.returncode == 0

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        try:
            if self.data_dir.exists() and self.running():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
