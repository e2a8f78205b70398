"""`alvar worker`: a supervisor of the RQ workers for the training, generation and scoring queues.

The command's own process is a supervisor. It starts child processes from a fork server (a single-threaded process
that imported torch, transformers and sentence-transformers once, :data:`CHILD_PRELOAD`: each child starts in a
fraction of a second instead of paying seconds of imports, also when it is started again, and no child inherits a
threaded parent): one for training, which runs in RQ's forking ``Worker`` (torch is imported once, before jobs fork);
``ALVAR_WORKER_PROCESSES`` (``--processes``) for generation, each keeping several jobs in flight with worker
threads (:mod:`alvar.generator.threaded_workers`); as many for scoring, each a non-forking RQ worker that keeps
its models loaded between the chunks of a pool (:mod:`alvar.backend.pool_scoring`) and beats every few seconds
while a chunk runs, so the chunk of a killed one is noticed and run again within seconds.
A child that exits when it was not asked to (killed, out of memory, a crash) is started again, after a wait
that doubles while it keeps dying young. SIGTERM/SIGINT is passed on to the children, which finish their
running jobs and stop; the supervisor waits for them. The supervisor also runs the scheduler turn (jobs whose
retry time has come go back in their queue) and, every ``ALVAR_RECONCILE_INTERVAL`` seconds, queues the
reconciliation sweep. Every loop here and in the children waits out a Redis restart
(:class:`~alvar.reconnect.Backoff`) instead of dying. With no LLM configured, generation jobs wait in their
queue and this says so.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, SimpleWorker, Worker
from rq.job import Job
from rq.scheduler import RQScheduler

from alvar.job_settings import jobs_use
from alvar.queues import redis_connection
from alvar.reconnect import REDIS_ERRORS, Backoff, ReconnectingWorker, describe
from alvar.settings import GENERATION_QUEUE, SCORING_QUEUE, TRAINING_QUEUE, Settings, llm_configured

log = logging.getLogger(__name__)

QUEUE_ALIASES = {"training": TRAINING_QUEUE, "generation": GENERATION_QUEUE, "scoring": SCORING_QUEUE}
# What the children import before their first job (about 8 s of CPU for each child that imports it itself): the
# fork server imports it once and every child is forked from it.
CHILD_PRELOAD = ["alvar.backend.training", "alvar.backend.pool_scoring", "alvar.generator.threaded_workers",
                 "alvar.generator.worker_resources", "sentence_transformers"]
# A child that ran at least this long before it died is started again after the shortest wait.
STABLE_SECONDS = 60.0
LONGEST_RESTART_WAIT = 60.0
# The training worker's heartbeat: it blocks on the queue this long minus 15 s between heartbeats when idle
# (RQ's default, 420 s, would leave `alvar status` unable to tell a live worker from a dead one for minutes).
TRAINING_WORKER_TTL = 60
# Its RQ maintenance (registry cleanup) every this many seconds.
TRAINING_MAINTENANCE_SECONDS = 60
# A chunk whose scoring worker stopped beating counts as abandoned after ALVAR_SCORING_HEARTBEAT_TTL seconds (40;
# RQ's own default is the job's timeout plus a minute); the worker beats eight times as often while a chunk runs.
# The margin covers a worker starved of CPU for a while and clocks of machines that differ by seconds (keep them
# NTP-synced).
SCORING_BEATS_PER_TTL = 8
# Idle, it blocks on the queue this long minus 15 s between heartbeats; its maintenance (which settles the
# chunks of dead workers) runs this often.
SCORING_WORKER_TTL = 30
SCORING_MAINTENANCE_SECONDS = 10
# A supervisor without a queue's scheduler lock asks for it again this often. A killed supervisor's lock lapses 61 s
# after its last heartbeat; RQ's own fallback asks only every 120 s, so the retries of jobs a killed worker left
# behind waited up to three minutes for the next supervisor's scheduler.
SCHEDULER_LOCK_RETRY_SECONDS = 5.0


def _configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per Label Studio and LLM request otherwise


class WarmStop:
    """A mixin for RQ workers (before RQ's worker class) that takes a repeated SIGTERM as the same warm stop (the
    supervisor passes on the SIGTERM a child may have had already, from a signal to the process group): SIGINT
    twice still stops at once, as in RQ."""

    stop_requested = False

    def request_stop(self, signum: int, frame: Any) -> None:
        self.stop_requested = True
        try:
            super().request_stop(signum, frame)  # type: ignore[misc]
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)


class SteadyHeartbeats:
    """A mixin for RQ workers (before RQ's worker class): a job's heartbeat that finds Redis away is skipped, and
    the job goes on (RQ would end the worker's loop and leave the job running unwatched); the heartbeat resumes
    when Redis is back."""

    name: str

    def maintain_heartbeats(self, job: Any) -> None:
        try:
            super().maintain_heartbeats(job)  # type: ignore[misc]
        except REDIS_ERRORS as error:
            log.warning("worker %s: no heartbeat while job %s runs (%s)", self.name, job.id, describe(error))


class TrainingWorker(WarmStop, SteadyHeartbeats, ReconnectingWorker, Worker):
    """RQ's forking worker (a heartbeat every 30 s while the forked job runs), made to survive a Redis restart
    while a training job runs."""


def run_training(settings: Settings, name: str, burst: bool) -> None:
    """The training child: RQ's forking worker, started again in this process when Redis ends its loop."""
    _configure_logging()
    import alvar.backend.training  # noqa: F401  (torch and transformers once, before jobs fork)

    _run_worker_loop(settings, name, burst, "training", lambda connection: TrainingWorker(
        [TRAINING_QUEUE], connection=connection, name=name, worker_ttl=TRAINING_WORKER_TTL,
        maintenance_interval=TRAINING_MAINTENANCE_SECONDS))


def _run_worker_loop(settings: Settings, name: str, burst: bool, role: str,
                     make: Callable[[Redis], TrainingWorker | ScoringWorker]) -> None:
    """Run the worker ``make`` builds until it is asked to stop (or, with ``burst``, its queue is empty); a new
    one of the same name when Redis ended its loop, once Redis answers again."""
    connection = redis_connection(settings)
    stop = threading.Event()
    backoff = Backoff(f"{role} worker {name}")
    while _redis_answers(connection, backoff, stop):
        try:
            worker = make(connection)
        except REDIS_ERRORS as error:
            _stop_on_signals(stop).wait(backoff.failed(error))
            continue
        try:
            worker.work(burst=burst)
        except REDIS_ERRORS as error:
            worker.abandon()
            wait = backoff.failed(error)
        else:
            if worker.stop_requested or burst:
                return
            wait = backoff.failed(RuntimeError("the worker's loop ended on an error, see above"))
        _stop_on_signals(stop).wait(wait)


class ScoringWorker(WarmStop, SteadyHeartbeats, ReconnectingWorker, SimpleWorker):
    """RQ's non-forking worker (the models stay loaded between chunks) with a short heartbeat: a thread beats
    SCORING_BEATS_PER_TTL times per ``heartbeat_ttl`` while a chunk runs, and RQ settles a chunk that went
    ``heartbeat_ttl`` seconds without a beat as abandoned (it runs once more)."""

    def __init__(self, *args: Any, heartbeat_ttl: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.heartbeat_ttl = heartbeat_ttl

    def get_heartbeat_ttl(self, job: Job) -> int:
        return self.heartbeat_ttl

    def perform_job(self, job: Job, queue: Queue) -> bool:
        running = threading.Event()
        beating = threading.Thread(target=self._beat, args=(job, running), name=f"{self.name}-beat", daemon=True)
        beating.start()
        try:
            return bool(super().perform_job(job, queue))
        finally:
            running.set()
            beating.join()

    def _beat(self, job: Job, done: threading.Event) -> None:
        while not done.wait(self.heartbeat_ttl / SCORING_BEATS_PER_TTL):
            self.maintain_heartbeats(job)


def run_scoring(settings: Settings, name: str, burst: bool) -> None:
    """A scoring child: RQ's non-forking worker, started again in this process when Redis ends its loop."""
    _configure_logging()
    import alvar.backend.pool_scoring  # noqa: F401  (torch and transformers once, before the first chunk)

    _run_worker_loop(settings, name, burst, "scoring", lambda connection: ScoringWorker(
        [SCORING_QUEUE], connection=connection, name=name, worker_ttl=SCORING_WORKER_TTL,
        maintenance_interval=SCORING_MAINTENANCE_SECONDS, heartbeat_ttl=settings.scoring_heartbeat_ttl))


def _stop_on_signals(stop: threading.Event) -> threading.Event:
    """SIGTERM/SIGINT set ``stop`` (between two runs of a worker, whose own handlers RQ installs in ``work()``)."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def _redis_answers(connection: Redis, backoff: Backoff, stop: threading.Event) -> bool:
    """Wait (with back-off) until Redis answers PING; False when a stop came first."""
    while not _stop_on_signals(stop).is_set():
        try:
            connection.ping()
        except REDIS_ERRORS as error:
            stop.wait(backoff.failed(error))
            continue
        backoff.succeeded()
        return True
    return False


def run_generation(settings: Settings, name: str, burst: bool) -> None:
    """The generation child: several worker threads in one process, sharing one WorkerResources."""
    from alvar.generator.threaded_workers import run_threaded_workers
    from alvar.generator.worker_resources import WorkerResources

    _configure_logging()
    run_threaded_workers(redis_connection(settings), [GENERATION_QUEUE], settings.generation_concurrency, name,
                         WorkerResources(settings), burst=burst)


def run_child(target: Callable[[Settings, str, bool], None], settings: Settings, name: str, burst: bool) -> None:
    """A child process's start: the jobs it runs read the supervisor's settings, flags included
    (:func:`alvar.job_settings.job_settings`); then ``target``."""
    with jobs_use(settings):
        target(settings, name, burst)


def child_context() -> multiprocessing.context.ForkServerContext:
    """Where children come from: the fork server, which imports :data:`CHILD_PRELOAD` when it starts."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(CHILD_PRELOAD)
    return context


@dataclass
class Child:
    """One supervised child process and its restart bookkeeping."""

    role: str
    target: Callable[[Settings, str, bool], None]
    name: str
    process: BaseProcess | None = None
    started_at: float = 0.0
    wait: float = 0.0
    restart_at: float | None = None
    done: bool = False

    def start(self, settings: Settings, burst: bool) -> None:
        self.process = child_context().Process(
            target=run_child, args=(self.target, settings, self.name, burst), name=f"alvar-{self.role}")
        self.process.start()
        self.started_at = time.monotonic()
        self.restart_at = None
        log.info("%s worker process started (PID %s)", self.role, self.process.pid)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()

    def check(self, burst: bool) -> None:
        """After the child exited: done (burst, exit code 0), or a restart time that backs off."""
        if self.process is None or self.alive or self.done or self.restart_at is not None:
            return
        code = self.process.exitcode
        if burst and code == 0:
            self.done = True
            return
        ran = time.monotonic() - self.started_at
        self.wait = 1.0 if ran >= STABLE_SECONDS or not self.wait else min(self.wait * 2, LONGEST_RESTART_WAIT)
        self.restart_at = time.monotonic() + self.wait
        how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        log.warning("%s worker process (PID %s) ended unexpectedly (%s) after %.0f s; starting it again in %.0f s",
                    self.role, self.process.pid, how, ran, self.wait)


class Supervisor:
    """The parent process: children, signals, the scheduler turn and the periodic sweep."""

    def __init__(self, settings: Settings, children: list[Child], queue_names: list[str], burst: bool) -> None:
        self.settings = settings
        self.children = children
        self.queue_names = queue_names
        self.burst = burst
        self.stop = threading.Event()
        self.connection = redis_connection(settings)
        self.scheduler = RQScheduler([Queue(name, connection=self.connection) for name in queue_names],
                                     connection=self.connection, interval=1)
        self.next_sweep = 0.0
        self.next_turn = 0.0
        self.next_lock_try = 0.0

    def run(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.stop.set())
        backoff = Backoff(f"worker supervisor (PID {os.getpid()})")
        for child in self.children:
            child.start(self.settings, self.burst)
        try:
            while not self.stop.is_set() and not all(child.done for child in self.children):
                self._tend_children()
                if time.monotonic() >= self.next_turn:
                    try:
                        self._maintain()
                        backoff.succeeded()
                    except RedisError as error:  # connection lost, and also MISCONF, OOM, a lock not had in time
                        self.next_turn = time.monotonic() + backoff.failed(error)
                self.stop.wait(1.0)
        finally:
            self._stop_children()

    def _tend_children(self) -> None:
        for child in self.children:
            child.check(self.burst)
            if child.restart_at is not None and time.monotonic() >= child.restart_at:
                child.start(self.settings, self.burst)

    def _maintain(self) -> None:
        """One scheduler turn (hold the queues' scheduler locks, enqueue jobs whose retry time has come) and,
        when due, the reconciliation sweep. A lock another scheduler holds is asked for again every
        :data:`SCHEDULER_LOCK_RETRY_SECONDS` (the held ones are kept by the heartbeat)."""
        if self.scheduler.acquired_locks != set(self.queue_names) and time.monotonic() >= self.next_lock_try:
            self.scheduler.acquire_locks()
            self.next_lock_try = time.monotonic() + SCHEDULER_LOCK_RETRY_SECONDS
        if self.scheduler.acquired_locks:
            self.scheduler.heartbeat()
            self.scheduler.enqueue_scheduled_jobs()
        if self._sweeps and time.monotonic() >= self.next_sweep:
            from alvar.loop.reconcile import enqueue_sweep

            outcome = enqueue_sweep(self.connection, self.settings)
            log.info("reconciliation sweep: %s", outcome.get("sweep"))
            self.next_sweep = time.monotonic() + self.settings.reconcile_interval

    @property
    def _sweeps(self) -> bool:
        """The sweep runs on the training queue: a supervisor that serves it queues one every interval."""
        return not self.burst and self.settings.reconcile_interval > 0 and TRAINING_QUEUE in self.queue_names

    def _stop_children(self) -> None:
        running = [child.process for child in self.children if child.process is not None and child.alive]
        if running:
            log.info("stopping: the worker processes finish their running jobs first")
        for process in running:
            process.terminate()
        for process in running:
            process.join()
        try:
            self.scheduler.release_locks()
        except REDIS_ERRORS as error:
            log.warning("scheduler locks not released (%s); they lapse within a minute", describe(error))


def _children(role: str, target: Callable[[Settings, str, bool], None], name: str, count: int) -> list[Child]:
    """``count`` children of one role: named ``<name>-<role>`` when alone, ``<name>-<role>-p<i>`` otherwise."""
    if count == 1:
        return [Child(role, target, f"{name}-{role}")]
    return [Child(role, target, f"{name}-{role}-p{index}") for index in range(count)]


def run_worker(settings: Settings, queues: Sequence[str] = ("training", "generation", "scoring"),
               burst: bool = False, name: str | None = None) -> None:
    """Work until stopped (or, with ``burst``, until the queues are empty); ``queues`` are QUEUE_ALIASES keys.
    Training gets one process; generation and scoring ``settings.worker_processes`` each."""
    _configure_logging()
    name = name or f"alvar-{socket.gethostname()}-{os.getpid()}"
    serves_generation = "generation" in queues and llm_configured(settings)
    if "generation" in queues and not serves_generation:
        log.warning("no LLM configured (OPENAI_BASE_URL / OPENAI_API_KEY): generation jobs wait in the %r "
                    "queue until a worker with an LLM starts", GENERATION_QUEUE)
    children = []
    if "training" in queues:
        children.append(Child("training", run_training, f"{name}-training"))
    if serves_generation:
        children += _children("generation", run_generation, name, settings.worker_processes)
    if "scoring" in queues:
        children += _children("scoring", run_scoring, name, settings.worker_processes)
    served = [QUEUE_ALIASES[queue] for queue in queues if queue != "generation" or serves_generation]
    if children:
        Supervisor(settings, children, served, burst).run()


def healthcheck() -> None:
    """The compose worker's healthcheck: exits non-zero, naming the queue, unless each queue this container
    should serve (generation only with an LLM configured) has a live RQ worker of this container."""
    from alvar.loop.jobs import unserved_queues, worker_rows
    from alvar.settings import load_settings

    settings = load_settings()
    required = [TRAINING_QUEUE, GENERATION_QUEUE, SCORING_QUEUE] if llm_configured(settings) else \
        [TRAINING_QUEUE, SCORING_QUEUE]
    missing = unserved_queues(worker_rows(redis_connection(settings)), required, hostname=socket.gethostname())
    if missing:
        raise SystemExit(f"no live worker of this container ({socket.gethostname()}) serves {', '.join(missing)}")
