"""A pool's embeddings and class probabilities computed in chunks by every worker of the scoring queue.

`alvar select` splits what its caches miss into chunks (ALVAR_SCORING_CHUNK texts), each an RQ job on
SCORING_QUEUE (:func:`alvar.backend.pool_scoring.score_chunk`) whose id follows from what it computes and its
texts, so the same chunk asked for twice is one job. It waits with a progress bar, writes each chunk's vectors
into its caches as the chunk finishes (the namespaces the local path uses: a chunk that ran twice writes the same
rows again) and deletes the job and its result from Redis.

Faults: a job that failed or whose worker died (RQ settles it as abandoned once its short heartbeat lapses;
this waiter triggers that settling as it polls) runs once more (RQ's ``Retry(max=1)``); a second failure is an
error naming the chunk and the reason. A job that vanished (Redis restarted without its data) is enqueued again
from the texts the waiter holds. While Redis is away the waiter retries with :class:`~alvar.reconnect.Backoff`;
when it stays away, or no worker listens for too long, the error names the chunks not done (those done are cached:
running the select again computes only the rest).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from redis import Redis
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.results import Result
from tqdm.auto import tqdm

from alvar.backend.pool_scoring import EMBEDDINGS, PROBABILITIES, score_chunk
from alvar.embedder import embedding_namespace
from alvar.errors import AlvarError
from alvar.loop.jobs import unserved_queues, worker_rows
from alvar.precision import FLOAT32, embedding_precision, resolve_precision
from alvar.reconnect import REDIS_ERRORS, Backoff, describe
from alvar.settings import SCORING_QUEUE, Settings
from alvar.vector_cache import VectorCache, normalize_text

log = logging.getLogger(__name__)

# Seconds one chunk may run before RQ stops it (and runs it once more).
CHUNK_TIMEOUT = 1800
# How long the waiter waits for a worker on the scoring queue, or for Redis to answer again, before it gives up.
PATIENCE_SECONDS = 300.0
POLL_SECONDS = 0.5
# How often the waiter looks for live workers (for the progress bar and for its patience).
WORKER_CHECK_SECONDS = 2.0
# The statuses of a job that ended without a result (after its one retry).
ENDED_BADLY = tuple(status.value.encode() for status in (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED))
# How many times a chunk whose job vanished from Redis is enqueued again.
VANISHED_RESUBMISSIONS = 3


class ScoringError(AlvarError):
    """A fanned-out scoring that could not finish; the message names the chunks."""


@dataclass(frozen=True)
class Computation:
    """What a chunk computes, and the cache namespace its rows go into."""

    kind: str
    model: str  # the embedding model, or the learner's model directory relative to MODEL_DIR (see probabilities_of)
    version: str | None
    precision: str  # resolved (alvar.precision): the worker computes in the select's arithmetic, not its own
    namespace: str

    @property
    def identity(self) -> str:
        """Names what is computed where: the namespace holds the select's absolute model directory and version."""
        text = f"{self.kind}\0{self.model}\0{self.namespace}\0{self.precision}"
        return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


def embeddings_of(model: str, precision: str) -> Computation:
    """The sentence embeddings of ``model`` in the arithmetic ``precision`` means for embeddings (the namespace is
    the embedder's)."""
    precision = embedding_precision(precision)
    return Computation(EMBEDDINGS, model, None, precision, embedding_namespace(model, precision))


def probability_namespace(model_root: Path, version: str, precision: str) -> str:
    """The cache namespace of a version's class probabilities (float32 keeps the name it had before precisions)."""
    precision = resolve_precision(precision)
    return f"proba:{model_root.resolve()}:{version}" + ("" if precision == FLOAT32 else f"@{precision}")


def probabilities_of(model_dir: Path, model_root: Path, version: str, precision: str) -> Computation:
    """The class probabilities of ``version`` under the model directory ``model_root``, in ``precision``.

    The job names ``model_root`` relative to ``model_dir`` (MODEL_DIR), which each worker resolves against its own
    MODEL_DIR: a worker on another machine may mount the shared models anywhere. A store outside MODEL_DIR is
    named by its absolute path.
    """
    precision = resolve_precision(precision)
    root = model_root.resolve()
    where = root.relative_to(model_dir.resolve()) if root.is_relative_to(model_dir.resolve()) else root
    namespace = probability_namespace(model_root, version, precision)
    return Computation(PROBABILITIES, str(where), version, precision, namespace)


@dataclass
class Chunk:
    """One job's share: its texts (normalized), their cache keys and what happened to it."""

    computation: Computation
    keys: list[bytes]
    texts: list[str]
    job_id: str
    submissions: int = 0
    runs: int = 0
    retried: bool = False
    seconds: float | None = None
    done: bool = False

    @property
    def label(self) -> str:
        return f"{self.job_id} ({len(self.texts)} {self.computation.kind})"


@dataclass
class FanOut:
    """What a fanned-out scoring did, chunk by chunk (each chunk's result was used exactly once)."""

    chunks: list[Chunk] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def texts(self) -> int:
        return sum(len(chunk.texts) for chunk in self.chunks)


def chunk_id(computation: Computation, keys: Sequence[bytes]) -> str:
    digest = hashlib.blake2b(b"".join(keys), digest_size=12).hexdigest()
    return f"alvar-scoring-{computation.kind}-{computation.identity}-{digest}"


def make_chunks(computation: Computation, missing: dict[bytes, str], size: int) -> list[Chunk]:
    """The texts of ``missing`` (key -> text) in chunks of ``size``, in key order (the same texts give the same
    chunks, so a second select finds the first one's jobs)."""
    keys = sorted(missing)
    return [Chunk(computation, part, [normalize_text(missing[key]) for key in part], chunk_id(computation, part))
            for part in (keys[start : start + size] for start in range(0, len(keys), size))]


def scoring_redis(settings: Settings) -> Redis | None:
    """The Redis whose scoring queue `alvar select` uses: REDIS_URL, else the data dir's embedded one when it
    runs; None when neither answers."""
    from alvar.loop.services import embedded_redis_url, redis_reachable

    url = settings.redis_url or embedded_redis_url(settings.data_dir.resolve())
    # Timeouts: a Redis that stops answering without closing the connection (a network partition) must reach the
    # waiter's back-off and patience, not block it in a read forever.
    return Redis.from_url(url, socket_connect_timeout=5, socket_timeout=60) if redis_reachable(url) else None


def live_scoring_workers(connection: Redis) -> int:
    return sum(1 for row in worker_rows(connection) if row.live and SCORING_QUEUE in row.queues)


def fan_out_connection(settings: Settings) -> Redis | None:
    """The Redis to fan a pool's scoring out on, or None to score in this process (ALVAR_SCORING: ``local``;
    ``auto`` without a live worker on the scoring queue). ``queue`` needs a Redis."""
    if settings.scoring == "local":
        return None
    connection = scoring_redis(settings)
    if settings.scoring == "queue":
        if connection is None:
            raise ScoringError("ALVAR_SCORING=queue, but no Redis answers (set REDIS_URL, or start the stack)")
        return connection
    if connection is None:
        log.info("scoring in this process: no Redis for the scoring queue (ALVAR_SCORING=auto)")
        return None
    if unserved_queues(worker_rows(connection), [SCORING_QUEUE]):
        log.info("scoring in this process: no live worker on %s (ALVAR_SCORING=auto)", SCORING_QUEUE)
        return None
    log.info("scoring fanned out over the workers of %s", SCORING_QUEUE)
    return connection


class Waiter:
    """Submits chunks, then collects them into the caches as they finish (see the module docstring)."""

    def __init__(self, connection: Redis, cache_file: Path, chunks: list[Chunk], patience: float) -> None:
        self.connection = connection
        self.queue = Queue(SCORING_QUEUE, connection=connection)
        self.caches: dict[str, VectorCache] = {}
        self.cache_file = cache_file
        self.chunks = chunks
        self.patience = patience
        self.backoff = Backoff("scoring fan-out")
        self.redis_down_since: float | None = None
        self.no_worker_since: float | None = None
        self.checked_workers_at = float("-inf")

    def cache(self, chunk: Chunk) -> VectorCache:
        namespace = chunk.computation.namespace
        if namespace not in self.caches:
            self.caches[namespace] = VectorCache(self.cache_file, namespace)
        return self.caches[namespace]

    def submit(self, chunk: Chunk) -> None:
        """Enqueue the chunk's job, unless a job of that id is waiting, running or finished already."""
        existing = self.queue.fetch_job(chunk.job_id)
        if existing is not None:
            status = existing.get_status(refresh=False)
            if status in (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.FINISHED, JobStatus.SCHEDULED):
                chunk.submissions += 1
                return
            self.forget(existing)
        computation = chunk.computation
        self.queue.enqueue(score_chunk, computation.kind, computation.model, computation.version, chunk.texts,
                           computation.precision,
                           job_id=chunk.job_id, retry=Retry(max=1), job_timeout=CHUNK_TIMEOUT,
                           result_ttl=CHUNK_TIMEOUT, failure_ttl=CHUNK_TIMEOUT,
                           description=f"score {chunk.label}")
        chunk.submissions += 1

    def run(self) -> None:
        pending = list(self.chunks)
        with tqdm(total=sum(len(chunk.texts) for chunk in self.chunks), desc="scoring", unit="text") as progress:
            while pending:
                try:
                    for chunk in pending:
                        if chunk.submissions == 0:
                            self.submit(chunk)
                    for chunk in self.turn(pending):
                        progress.update(len(chunk.texts))
                    self.redis_answers()
                    self.watch_workers(progress, pending)
                except REDIS_ERRORS as error:
                    self.redis_away(error, pending)
                    continue
                pending = [chunk for chunk in pending if not chunk.done]
                if pending:
                    time.sleep(POLL_SECONDS)

    def turn(self, pending: list[Chunk]) -> list[Chunk]:
        """Settle abandoned jobs (RQ's cleanup: retried once, or failed), then collect the finished chunks.

        Each poll reads only the pending jobs' status fields (one pipeline); a job is fetched whole, with its
        result, once it has ended.
        """
        StartedJobRegistry(queue=self.queue).cleanup()
        with self.connection.pipeline(transaction=False) as reading:
            for chunk in pending:
                reading.exists(Job.key_for(chunk.job_id))
                reading.hget(Job.key_for(chunk.job_id), "status")
            replies = reading.execute()
        finished = []
        for chunk, exists, status in zip(pending, replies[::2], replies[1::2]):
            if not exists:
                self.vanished(chunk)
            elif status in (JobStatus.FINISHED.value.encode(), *ENDED_BADLY) and self.settle(chunk):
                finished.append(chunk)
        return finished

    def settle(self, chunk: Chunk) -> bool:
        """Collect a finished chunk (True), or raise for one that failed twice. A job hash that a worker's late
        write left incomplete (its job deleted meanwhile) reads as not yet ended: it is looked at next poll."""
        try:
            job = Job.fetch(chunk.job_id, connection=self.connection)
        except NoSuchJobError:
            return False
        if job.get_status(refresh=False) != JobStatus.FINISHED:
            raise ScoringError(f"scoring chunk {chunk.label} failed twice: {self.reason(job)}; run the "
                               "select again to re-run it (the chunks done are cached)")
        self.collect(chunk, job)
        return True

    def collect(self, chunk: Chunk, job: Job) -> None:
        """The chunk's rows into its cache, then its job and result out of Redis."""
        values = job.return_value()
        if not isinstance(values, np.ndarray) or len(values) != len(chunk.keys):
            raise ScoringError(f"scoring chunk {chunk.label} returned {type(values).__name__} rows that do not match "
                               "its texts")
        self.cache(chunk).put(chunk.keys, values)
        chunk.runs = int(job.meta.get("runs", 0))
        chunk.retried = job.retries_left == 0
        if job.started_at is not None and job.ended_at is not None:
            chunk.seconds = (job.ended_at - job.started_at).total_seconds()
        chunk.done = True
        self.forget(job)

    def forget(self, job: Job) -> None:
        """The job, its result and its registry entries out of Redis (not ``job.delete()``: that fails on an
        execution that a Redis restart lost)."""
        with self.connection.pipeline() as deleting:
            job.finished_job_registry.remove(job, pipeline=deleting)
            job.failed_job_registry.remove(job, pipeline=deleting)
            deleting.delete(job.key, Result.get_key(job.id), job.execution_registry.key)
            deleting.execute()

    def vanished(self, chunk: Chunk) -> None:
        """The job is gone from Redis (restarted without its data): enqueue it again from the texts held here."""
        if chunk.submissions > VANISHED_RESUBMISSIONS:
            raise ScoringError(f"scoring chunk {chunk.label} vanished from Redis {chunk.submissions} times; "
                               f"not done: {self.not_done()}")
        log.warning("scoring chunk %s is gone from Redis (restarted?): enqueuing it again", chunk.label)
        self.submit(chunk)

    @staticmethod
    def reason(job: Job) -> str:
        result = job.latest_result()
        text = (result.exc_string if result is not None and result.exc_string else "") or ""
        lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
        return lines[-1] if lines else f"{job.get_status(refresh=False)} (no traceback recorded)"

    def watch_workers(self, progress: tqdm, pending: list[Chunk]) -> None:
        """The progress bar says how many workers score; no live worker for longer than the patience is an
        error naming the chunks not done."""
        current = time.monotonic()
        if current - self.checked_workers_at < WORKER_CHECK_SECONDS:
            return
        self.checked_workers_at = current
        workers = live_scoring_workers(self.connection)
        if workers:
            self.no_worker_since = None
            progress.set_description(f"scoring ({workers} worker{'s' if workers > 1 else ''})")
            return
        self.no_worker_since = self.no_worker_since or current
        waited = current - self.no_worker_since
        progress.set_description(f"scoring: waiting {waited:.0f} s for a worker on {SCORING_QUEUE}")
        if waited > self.patience:
            raise ScoringError(f"no worker listened on {SCORING_QUEUE} for {waited:.0f} s (start `alvar worker`, "
                               f"or set ALVAR_SCORING=local); not done: {self.not_done()}")

    def redis_answers(self) -> None:
        if self.redis_down_since is not None:
            self.redis_down_since = None
            self.backoff.succeeded()

    def redis_away(self, error: BaseException, pending: list[Chunk]) -> None:
        current = time.monotonic()
        self.redis_down_since = self.redis_down_since or current
        if current - self.redis_down_since > self.patience:
            raise ScoringError(f"Redis stayed unreachable for {current - self.redis_down_since:.0f} s "
                               f"({describe(error)}); not done: {self.not_done()}") from error
        time.sleep(self.backoff.failed(error))

    def not_done(self) -> str:
        names = [chunk.label for chunk in self.chunks if not chunk.done]
        return f"{len(names)} chunk(s): {', '.join(names)}; run the select again to score them"


def fan_out(connection: Redis, cache_file: Path, work: Sequence[tuple[Computation, dict[bytes, str]]],
            chunk_size: int, patience: float = PATIENCE_SECONDS) -> FanOut:
    """Compute ``work`` (per computation: the missing texts by cache key) on the scoring queue's workers and put
    the rows into the cache file's namespaces; returns what each chunk did."""
    chunks = [chunk for computation, missing in work for chunk in make_chunks(computation, missing, chunk_size)]
    started = time.monotonic()
    if chunks:
        log.info("scoring %d texts in %d chunks on %s", sum(len(chunk.texts) for chunk in chunks), len(chunks),
                 SCORING_QUEUE)
        Waiter(connection, cache_file, chunks, patience).run()
    return FanOut(chunks, time.monotonic() - started)
