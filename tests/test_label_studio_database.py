"""Label Studio on PostgreSQL: the database URL, `alvar up --database` with PostgreSQL down, a missing database
created, and a real Label Studio 1.23.2 on a fresh database of this machine's PostgreSQL (ALVAR_TEST_POSTGRES)."""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from label_studio_sdk import LabelStudio

from alvar.errors import AlvarError
from alvar.loop import label_studio_database, label_studio_server, services, stack
from alvar.loop.label_studio_server import LabelStudioServer
from alvar.loop.stack import SERVICES
from alvar.settings import load_settings
from tests.conftest import LS_PASSWORD, LS_TOKEN, LS_USER, alvar_command, free_port
from tests.stack_processes import FOREIGN_SETTINGS

LABEL_CONFIG = """<View><Text name="text" value="$text"/>
<Choices name="label" toName="text"><Choice value="safe"/><Choice value="unsafe"/></Choices></View>"""
IMPORTERS = 8
TASKS_PER_IMPORT = 5


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://alvar:s%3Acret%40x@db.example:5433/labels", "postgresql://alvar:***@db.example:5433/labels"),
    ("postgresql://alvar@db.example/labels", "postgresql://alvar@db.example/labels"),
    ("postgres://alvar:pw@[::1]:5432/labels?sslmode=require", "postgres://alvar:***@[::1]:5432/labels?sslmode=require"),
    # Unencoded characters that end urllib's host part early: the password stays hidden all the same.
    ("postgresql://alvar:pa#ss@db/labels", "postgresql://alvar:***@db/labels"),
    ("postgresql://alvar:pa?ss/x@db/labels", "postgresql://alvar:***@db/labels"),
    ("postgresql://alvar:p@ss@db/labels", "postgresql://alvar:***@db/labels"),
])
def test_a_password_never_shows(url: str, shown: str) -> None:
    assert label_studio_database.redacted(url) == shown


def test_label_studio_reads_the_url_from_its_own_variables() -> None:
    env = label_studio_database.label_studio_env("postgresql://alvar:s%3Acret%40x@db.example:5433/labels"
                                                 "?sslmode=require")
    assert env == {"DJANGO_DB": "default", "POSTGRE_NAME": "labels", "POSTGRE_USER": "alvar",
                   "POSTGRE_PASSWORD": "s:cret@x", "POSTGRE_HOST": "db.example", "POSTGRE_PORT": "5433",
                   "PGSSLMODE": "require"}
    # No password: empty, so the driver looks in PGPASSWORD or ~/.pgpass (Label Studio's default is "postgres").
    assert label_studio_database.label_studio_env("postgresql://alvar@[::1]/labels")["POSTGRE_PASSWORD"] == ""
    assert label_studio_database.label_studio_env("postgresql://alvar@[::1]/labels")["POSTGRE_HOST"] == "::1"
    assert label_studio_database.label_studio_env("postgresql://alvar@h/labels")["POSTGRE_PORT"] == "5432"


@pytest.mark.parametrize(("url", "problem"), [
    ("mysql://alvar:pw@h/labels", "scheme"),
    ("postgresql://h/labels", "no user"),
    ("postgresql://alvar:pw@h:port/labels", "port"),
    ("postgresql://alvar:pw@h:5432/", "no database"),
    ("postgresql://alvar:pw@h:5432/labels?options=-c", "option options"),
])
def test_a_bad_url_says_what_is_wrong_without_its_password(url: str, problem: str) -> None:
    with pytest.raises(AlvarError, match=problem) as raised:
        label_studio_database.label_studio_env(url)
    assert "pw" not in str(raised.value)


def _database_exists(admin_url: str, name: str) -> bool:
    with psycopg.connect(admin_url) as connection:
        return connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def _on_database(admin_url: str, name: str) -> str:
    """``admin_url`` with its database replaced by ``name``."""
    return admin_url.rsplit("/", 1)[0] + "/" + name


def test_a_missing_database_is_created(postgres_admin_url: str) -> None:
    name = f"pg_missing_{secrets.token_hex(4)}"
    url = _on_database(postgres_admin_url, name)
    try:
        assert not _database_exists(postgres_admin_url, name)
        label_studio_database.ensure_database(url)
        assert _database_exists(postgres_admin_url, name)
        label_studio_database.ensure_database(url)  # there now: nothing to do
        with psycopg.connect(url) as connection:
            assert connection.execute("SELECT current_database()").fetchone() == (name,)
    finally:
        label_studio_database.drop_database(postgres_admin_url, name)
    assert not _database_exists(postgres_admin_url, name)


def test_an_existing_database_is_kept_as_it_is(fresh_postgres_database: Callable[[str], str]) -> None:
    url = fresh_postgres_database("pg_kept")
    with psycopg.connect(url) as connection:
        connection.execute("CREATE TABLE kept (id int)")
        connection.execute("INSERT INTO kept VALUES (7)")
    label_studio_database.ensure_database(url)
    with psycopg.connect(url) as connection:
        assert connection.execute("SELECT id FROM kept").fetchall() == [(7,)]


def test_a_login_the_server_refuses_is_named_without_its_password(postgres_admin_url: str) -> None:
    host = postgres_admin_url.split("@", 1)[1].rsplit("/", 1)[0]
    url = f"postgresql://alvar_no_such_role:hunter22@{host}/pg_never_created"
    with pytest.raises(services.ServiceError) as raised:
        label_studio_database.ensure_database(url)
    message = str(raised.value)
    assert f"postgresql://alvar_no_such_role:***@{host}/pg_never_created" in message
    assert "alvar_no_such_role" in message and "hunter22" not in message
    assert not _database_exists(postgres_admin_url, "pg_never_created")


@pytest.mark.slow  # `alvar` subprocesses that load models or start services
def test_up_with_postgresql_down_names_the_url_and_leaves_nothing_running(tmp_path: Path) -> None:
    data_dir = tmp_path / "stack"
    url = f"postgresql://alvar:hunter22@127.0.0.1:{free_port()}/labels"
    env = {key: value for key, value in os.environ.items() if key not in FOREIGN_SETTINGS}
    env.update({"ALVAR_LABEL_STUDIO_PORT": str(free_port()), "ALVAR_BACKEND_PORT": str(free_port())})
    started = subprocess.run([*alvar_command(), "up", "--data-dir", str(data_dir), "--database", url],
                             capture_output=True, text=True, timeout=120, env=env)
    output = started.stdout + started.stderr
    assert started.returncode == 2, output
    assert f"error: cannot connect to PostgreSQL at {label_studio_database.redacted(url)}" in " ".join(output.split())
    assert "hunter22" not in output
    assert [name for name in SERVICES if services.running_pid(data_dir, name) is not None] == []
    assert not list((data_dir / "run").glob("*.pid"))


@dataclass(frozen=True)
class PostgresLabelStudio:
    """A Label Studio running on a fresh PostgreSQL database, and how long its first start took."""

    server: LabelStudioServer
    client: LabelStudio
    database_url: str
    first_start_s: float


@pytest.fixture(scope="module")
def label_studio_on_postgres(run_root: Path, postgres_admin_url: str) -> Iterator[PostgresLabelStudio]:
    """Label Studio started on a fresh PostgreSQL database (dropped after)."""
    name = f"pg_ls_{secrets.token_hex(4)}"
    url = label_studio_database.create_database(postgres_admin_url, name)
    data_dir = run_root / "ls-postgres"
    started = time.monotonic()
    try:
        server = label_studio_server.start_label_studio(data_dir, free_port(), LS_USER, LS_PASSWORD, LS_TOKEN,
                                             venv=load_settings().label_studio_venv,
                                             lock=load_settings().label_studio_lock, database=url)
        yield PostgresLabelStudio(server, LabelStudio(base_url=server.url, api_key=server.token, timeout=120), url,
                                  time.monotonic() - started)
    finally:
        services.stop_process(data_dir, "label-studio")
        label_studio_database.drop_database(postgres_admin_url, name)


@pytest.mark.label_studio
def test_label_studio_keeps_its_projects_in_postgresql(label_studio_on_postgres: PostgresLabelStudio) -> None:
    print(f"Label Studio's first start on PostgreSQL (migrations included): "
          f"{label_studio_on_postgres.first_start_s:.1f} s")
    assert requests.get(f"{label_studio_on_postgres.server.url}/health", timeout=5).status_code == 200
    title = f"kept in postgres {secrets.token_hex(3)}"
    project = label_studio_on_postgres.client.projects.create(title=title, label_config=LABEL_CONFIG)
    with psycopg.connect(label_studio_on_postgres.database_url) as connection:
        rows = connection.execute("SELECT id FROM project WHERE title = %s", (title,)).fetchall()
    assert rows == [(project.id,)]


def _tasks_with_prediction(importer: int) -> list[dict[str, Any]]:
    choice = "unsafe" if importer % 2 else "safe"
    return [{"data": {"text": f"import {importer} text {index}"},
             "predictions": [{"model_version": "v1", "score": 0.5,
                              "result": [{"from_name": "label", "to_name": "text", "type": "choices",
                                          "value": {"choices": [choice]}}]}]}
            for index in range(TASKS_PER_IMPORT)]


@pytest.mark.label_studio
def test_imports_at_once_keep_every_prediction_on_postgresql(label_studio_on_postgres: PostgresLabelStudio) -> None:
    """On SQLite, of two imports at once one loses its predictions (hence generator's import lock); on
    PostgreSQL each import's tasks and predictions are its own, so 8 at once keep all 40 predictions."""
    client = label_studio_on_postgres.client
    project = client.projects.create(title="imports at once", label_config=LABEL_CONFIG)

    def import_one(importer: int) -> tuple[list[int], int]:
        response = client.projects.import_tasks(id=project.id, request=_tasks_with_prediction(importer),
                                                 return_task_ids=True)
        return list(response.task_ids or []), int(response.prediction_count or 0)

    with ThreadPoolExecutor(IMPORTERS) as pool:
        outcomes = list(pool.map(import_one, range(IMPORTERS)))
    task_ids = [task_id for ids, _ in outcomes for task_id in ids]
    assert [count for _, count in outcomes] == [TASKS_PER_IMPORT] * IMPORTERS
    assert len(set(task_ids)) == IMPORTERS * TASKS_PER_IMPORT
    with psycopg.connect(label_studio_on_postgres.database_url) as connection:
        predicted = connection.execute(
            "SELECT task.id, count(prediction.id), min(task.data->>'text') FROM task "
            "LEFT JOIN prediction ON prediction.task_id = task.id WHERE task.project_id = %s GROUP BY task.id",
            (project.id,)).fetchall()
    assert sorted(task_id for task_id, _, _ in predicted) == sorted(task_ids)
    assert all(count == 1 for _, count, _ in predicted), predicted
    texts = {text for _, _, text in predicted}
    assert texts == {f"import {importer} text {index}" for importer in range(IMPORTERS)
                     for index in range(TASKS_PER_IMPORT)}


@pytest.mark.label_studio
def test_a_running_label_studio_is_not_moved_to_another_database(label_studio_on_postgres: PostgresLabelStudio,
                                                                 run_root: Path) -> None:
    """`alvar up` on a data dir whose Label Studio runs on PostgreSQL, without --database: told to stop it first,
    and nothing else is started."""
    data_dir = run_root / "ls-postgres"
    server = label_studio_on_postgres.server
    settings = load_settings().model_copy(update={"data_dir": data_dir, "label_studio_database": None,
                                                  "redis_url": None})
    state = stack.StackState(server.url, f"http://127.0.0.1:{free_port()}", server.username, server.password,
                             server.token, "label-studio", "backend-pass", "webhook-secret",
                             database=label_studio_database.redacted(label_studio_on_postgres.database_url))
    with pytest.raises(services.ServiceError, match="runs on postgresql://.* not sqlite: stop it first"):
        stack.start_services(settings, state)
    assert [name for name in SERVICES if services.running_pid(data_dir, name) is not None] == ["label-studio"]
