"""A pool's scoring fanned out over `alvar worker --queues scoring` processes: the same probabilities and
embeddings as scoring in one process, with a worker SIGKILLed mid-chunk (its chunk runs once more) and with Redis
restarted during the fan-out; ALVAR_SCORING=auto without a worker scores locally, =queue without one says so.
Against the real parts: Redis (this machine's and the embedded one), worker processes, the seed model.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from redis import Redis
from rq.job import Job

from alvar.backend.pool_scoring import PROBABILITIES
from alvar.datafiles import read_dataset
from alvar.embedder import VECTOR_CACHE_FILE
from alvar.loop import services
from alvar.loop.jobs import worker_rows
from alvar.loop.scoring_fanout import (
    Computation,
    FanOut,
    ScoringError,
    embeddings_of,
    fan_out,
    fan_out_connection,
    live_scoring_workers,
    probabilities_of,
)
from alvar.loop.selection import fill_caches, pool_embeddings, pool_probabilities, serving_version
from alvar.settings import SCORING_QUEUE, Settings, load_settings
from alvar.vector_cache import VectorCache, text_key
from tests.conftest import alvar_command, copy_model_dir, emptied_redis_database, wait_for

pytestmark = pytest.mark.slow
FANOUT_DATABASE_OFFSET = 8

POOL_SIZE = 1500
CHUNK = 100
# A killed worker's chunk is noticed once its heartbeat lapses: production's 40 s, shortened (its live workers beat
# every 1.5 s, far inside it even on two busy cores).
HEARTBEAT_TTL = 12


@pytest.fixture(scope="module")
def pool(safety_dir: Path) -> list[str]:
    texts = list(dict.fromkeys(read_dataset(safety_dir / "test_labeled.tsv").texts))[:POOL_SIZE]
    assert len(texts) == POOL_SIZE
    return texts


@pytest.fixture(scope="module")
def model_dir(run_root: Path, seed_model_dir: Path) -> Path:
    return copy_model_dir(seed_model_dir, run_root / "fanout-models")


def scoring_settings(root: Path, model_dir: Path, redis_url: str, scoring: str) -> Settings:
    """float32: its scores do not depend on which texts share a batch, so one process and the chunks must agree
    to 1e-4 (bfloat16's depend on a batch's padding by ~1e-3, which flips the near ties of a one-epoch model)."""
    return load_settings(model_dir=model_dir, cache_dir=root / f"cache-{scoring}", redis_url=redis_url,
                         data_dir=root, scoring=scoring, scoring_chunk_size=CHUNK, torch_threads=1,
                         inference_precision="float32")


@pytest.fixture(scope="module")
def local(run_root: Path, model_dir: Path, pool: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The pool scored in this process: (probabilities, embeddings)."""
    settings = scoring_settings(run_root / "fanout-local", model_dir, "redis://127.0.0.1:1/0", "local")
    return pool_probabilities(settings, pool)[2], pool_embeddings(settings, pool)


def start_scoring_worker(root: Path, redis_url: str, model_dir: Path, processes: int) -> None:
    services.start_process(root, "worker", [*alvar_command(), "worker", "--queues", "scoring", "--processes",
                                            str(processes), "--name", f"fanout-{os.getpid()}-{processes}"],
                           {"REDIS_URL": redis_url, "MODEL_DIR": str(model_dir), "ALVAR_TORCH_THREADS": "1",
                            "ALVAR_DATA_DIR": str(root), "ALVAR_RECONCILE_INTERVAL": "0",
                            "ALVAR_SCORING_HEARTBEAT_TTL": str(HEARTBEAT_TTL)})


@pytest.fixture(scope="module")
def redis_url(worker_id: str) -> str:
    """This machine's Redis at REDIS_URL, in a database of this module's: 8 below the tests' own, minus the
    xdist worker's number (workers on one database would take each other's chunks, of models they lack);
    emptied first."""
    return emptied_redis_database(worker_id, below=FANOUT_DATABASE_OFFSET)


@pytest.fixture(scope="module")
def two_workers(run_root: Path, redis_url: str, model_dir: Path) -> Iterator[Path]:
    """`alvar worker --queues scoring --processes 2` on ``redis_url``; yields its data dir (logs)."""
    root = run_root / "fanout-two"
    start_scoring_worker(root, redis_url, model_dir, 2)
    try:
        wait_for(lambda: live_scoring_workers(Redis.from_url(redis_url)) == 2, 180, "two live scoring workers")
        yield root
    finally:
        services.stop_process(root, "worker")


def in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run ``call`` in a thread; the dict gets its ``value`` or its ``error``."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except Exception as error:  # noqa: BLE001 - handed to the test, which re-raises it
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def result(thread: threading.Thread, outcome: dict[str, Any], timeout: float) -> Any:
    thread.join(timeout)
    assert not thread.is_alive(), f"the fan-out did not finish in {timeout:.0f} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def busy_scoring_worker(connection: Redis) -> tuple[int, str] | None:
    """(PID, job id) of a live scoring worker that is running a chunk."""
    for row in worker_rows(connection):
        if row.live and SCORING_QUEUE in row.queues and row.job and row.pid:
            return row.pid, row.job
    return None


def cached_rows(settings: Settings, computation: Computation, pool: list[str]) -> np.ndarray:
    """The rows of ``computation`` the cache file holds for the pool's texts, in order; fails the test when it lacks
    any text's row (nothing here computes what is missing)."""
    keys = [text_key(text) for text in pool]
    rows = VectorCache(settings.cache_dir / VECTOR_CACHE_FILE, computation.namespace).get(keys)
    missing = [text for text, key in zip(pool, keys, strict=True) if key not in rows]
    assert not missing, f"the {computation.kind} cache lacks {len(missing)} of {len(pool)} texts: {missing[:3]}"
    return np.stack([rows[key] for key in keys])


def assert_same_scores(settings: Settings, pool: list[str], local: tuple[np.ndarray, np.ndarray]) -> None:
    """The caches the fan-out filled hold every text's probabilities and embedding, and they are the local scores
    (read from the cache file itself: a text the fan-out did not write fails)."""
    store, version = serving_version(settings, None)
    precision = settings.inference_precision
    probabilities = cached_rows(settings, probabilities_of(settings.model_dir, store.root, version, precision), pool)
    embeddings = cached_rows(settings, embeddings_of(settings.embedding_model, precision), pool)
    np.testing.assert_allclose(probabilities, local[0], atol=1e-4)
    assert (probabilities.argmax(axis=1) == local[0].argmax(axis=1)).all()
    np.testing.assert_allclose(embeddings, local[1], atol=1e-4)


def assert_each_chunk_once(report: FanOut, pool: list[str]) -> None:
    for kind in ("probabilities", "embeddings"):
        keys = [key for chunk in report.chunks if chunk.computation.kind == kind for key in chunk.keys]
        assert len(keys) == len(set(keys)) == len(pool) and set(keys) == {text_key(text) for text in pool}
    assert len(report.chunks) == 2 * POOL_SIZE // CHUNK and all(chunk.done for chunk in report.chunks)


def test_auto_without_a_worker_scores_locally_and_queue_says_no_worker_listens(
        run_root: Path, model_dir: Path, pool: list[str], local: tuple[np.ndarray, np.ndarray]) -> None:
    root = run_root / "fanout-none"
    redis_url = services.ensure_redis(root / "redis", None)  # a Redis of its own: no worker has ever been on it
    try:
        auto = scoring_settings(root, model_dir, redis_url, "auto")
        assert fan_out_connection(auto) is None
        assert fill_caches(auto, pool[:50], pool[:50]) is None
        probabilities = pool_probabilities(auto, pool[:50])[2]
        np.testing.assert_allclose(probabilities, local[0][:50], atol=1e-4)
        assert Redis.from_url(redis_url).keys("rq:job:*") == []  # nothing went through the queue

        queue = scoring_settings(root, model_dir, redis_url, "queue")
        connection = fan_out_connection(queue)
        assert connection is not None
        started = time.monotonic()
        with pytest.raises(ScoringError) as raised:
            fan_out(connection, queue.cache_dir / "vectors.sqlite",
                    [(Computation(PROBABILITIES, str(model_dir.resolve()), "v", "float32", "proba:test"),
                      {text_key(text): text for text in pool[:150]})], CHUNK, patience=3)
        assert time.monotonic() - started < 30
        message = str(raised.value)
        assert f"no worker listened on {SCORING_QUEUE}" in message and "not done: 2 chunk(s): alvar-scoring-" in message
    finally:
        services.stop_process(root / "redis", "redis")


def test_two_workers_one_killed_mid_chunk_give_the_local_scores(
        run_root: Path, model_dir: Path, redis_url: str, two_workers: Path, pool: list[str],
        local: tuple[np.ndarray, np.ndarray]) -> None:
    settings = scoring_settings(run_root / "fanout-killed", model_dir, redis_url, "queue")
    connection = Redis.from_url(redis_url)
    thread, outcome = in_thread(lambda: fill_caches(settings, pool, pool))
    killed_pid, killed_job = wait_for(lambda: busy_scoring_worker(connection), 120, "a scoring worker with a chunk")
    # Mid-chunk: the job function has begun (it counts its run first), not only RQ's preparation of it.
    wait_for(lambda: Job.fetch(killed_job, connection=connection).meta.get("runs") == 1, 60, "the chunk to begin")
    os.kill(killed_pid, signal.SIGKILL)
    report = result(thread, outcome, 600)

    assert_each_chunk_once(report, pool)
    (rerun,) = [chunk for chunk in report.chunks if chunk.job_id == killed_job]
    assert rerun.runs == 2 and rerun.retried and rerun.submissions == 1  # RQ ran it once more, the waiter no more
    assert all(chunk.runs == 1 and not chunk.retried for chunk in report.chunks if chunk is not rerun)
    assert_same_scores(settings, pool, local)
    assert connection.keys("rq:job:alvar-scoring-*") == []  # every result was collected and let go
    log = services.log_path(two_workers, "worker").read_text()
    assert f"scoring worker process (PID {killed_pid}) ended unexpectedly (signal 9)" in log
    wait_for(lambda: live_scoring_workers(connection) == 2, 120, "the killed scoring process started again")


def test_a_chunk_that_fails_twice_is_an_error_naming_it_and_the_reason(
        run_root: Path, model_dir: Path, redis_url: str, two_workers: Path, pool: list[str]) -> None:
    missing_version = Computation(PROBABILITIES, str(model_dir.resolve()), "no-such-version", "float32",
                                  "proba:missing")
    with pytest.raises(ScoringError) as raised:
        fan_out(Redis.from_url(redis_url), run_root / "fanout-failing" / "vectors.sqlite",
                [(missing_version, {text_key(text): text for text in pool[:20]})], CHUNK)
    message = str(raised.value)
    assert "alvar-scoring-probabilities-" in message and "failed twice" in message and "no-such-version" in message


def test_a_redis_restart_during_the_fan_out_is_ridden_out(
        run_root: Path, model_dir: Path, pool: list[str], local: tuple[np.ndarray, np.ndarray]) -> None:
    root = run_root / "fanout-restart"
    redis_url = services.ensure_redis(root / "redis", None)
    start_scoring_worker(root, redis_url, model_dir, 1)
    try:
        connection = Redis.from_url(redis_url)
        wait_for(lambda: live_scoring_workers(connection) == 1, 180, "a live scoring worker")
        settings = scoring_settings(root, model_dir, redis_url, "queue")
        thread, outcome = in_thread(lambda: fill_caches(settings, pool, pool))
        wait_for(lambda: busy_scoring_worker(connection), 120, "the worker's first chunk")
        services.stop_process(root / "redis", "redis")
        wait_for(lambda: not services.redis_reachable(redis_url), 10, "Redis to stop")
        time.sleep(3)
        assert services.ensure_redis(root / "redis", None) == redis_url
        report = result(thread, outcome, 600)

        assert_each_chunk_once(report, pool)
        assert_same_scores(settings, pool, local)
        assert "ended unexpectedly" not in services.log_path(root, "worker").read_text()
    finally:
        services.stop_process(root, "worker")
        services.stop_process(root / "redis", "redis")


def test_chunks_lost_with_redis_data_are_enqueued_again(
        run_root: Path, model_dir: Path, redis_url: str, two_workers: Path, pool: list[str],
        local: tuple[np.ndarray, np.ndarray]) -> None:
    """A Redis that comes back empty (this machine's keeps nothing on disk): the queued and running chunks' jobs are
    gone, the waiter enqueues them again from the texts it holds, and the select completes with the same scores."""
    settings = scoring_settings(run_root / "fanout-flushed", model_dir, redis_url, "queue")
    connection = Redis.from_url(redis_url)
    thread, outcome = in_thread(lambda: fill_caches(settings, pool, pool))
    wait_for(lambda: busy_scoring_worker(connection), 120, "a scoring worker with a chunk")
    connection.flushdb()
    report = result(thread, outcome, 600)

    assert_each_chunk_once(report, pool)
    assert any(chunk.submissions >= 2 for chunk in report.chunks)  # the lost ones were enqueued again
    assert_same_scores(settings, pool, local)
    wait_for(lambda: live_scoring_workers(connection) == 2, 120, "both scoring workers registered again")
