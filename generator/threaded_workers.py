"""Several generation jobs in flight in one worker process: RQ workers in threads.

A generation job spends nearly all its time waiting on the LLM, so one process runs ``concurrency`` RQ
``SimpleWorker``s, each in its own thread with its own name: every one is a real RQ worker, visible with
its job in RQ's registries (``alvar jobs``, ``rq info``), using RQ's own job lifecycle, retries and failure
handling. What threads cannot do is left to the main thread: it owns the signals (SIGTERM/SIGINT: each worker
finishes its job, then stops), it cleans RQ's registries (abandoned jobs are retried there; RQ's cleanup
uses SIGALRM, which only the main thread may), it refreshes the heartbeat of each worker that is running a
job (a ``SimpleWorker`` beats only between jobs, and `alvar status` judges workers by their heartbeat), and it
starts a worker thread again, under the same name, when one ended on an error. Jobs time out by timer
(``TimerDeathPenalty``) instead of SIGALRM. The scheduler that puts retried jobs back in the queue runs in
`alvar worker`'s supervisor (:mod:`alvar.loop.worker`). The threads' jobs share one
:class:`~alvar.generator.worker_resources.WorkerResources` (settings, clients, embedder), made when the process
starts.

A Redis restart stops none of this: an idle thread's dequeue retries by itself (RQ), a thread whose loop ended
on Redis starts again once Redis answers, and the main thread's turn waits with :class:`~alvar.reconnect.Backoff`.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Sequence
from typing import Any

from redis import Redis
from rq import Queue, SimpleWorker
from rq.exceptions import StopRequested
from rq.job import Job
from rq.timeouts import TimerDeathPenalty
from rq.utils import now, utcformat

from alvar.generator.worker_resources import WorkerResources, serving
from alvar.reconnect import REDIS_ERRORS, Backoff, ReconnectingWorker, describe

log = logging.getLogger(__name__)

# An idle worker thread looks for a stop request this often (seconds): its dequeue timeout. The main thread
# refreshes the heartbeat of busy workers as often.
POLL_SECONDS = 5
# How often the main thread cleans the registries (an abandoned job is retried then).
MAINTENANCE_SECONDS = 15
# A worker thread that ran at least this long before it ended starts again after the shortest wait.
STABLE_SECONDS = 60.0


class ThreadWorker(ReconnectingWorker, SimpleWorker):
    """An RQ ``SimpleWorker`` that can live in a thread and be stopped from the main thread; its jobs reach the
    process's :class:`~alvar.generator.worker_resources.WorkerResources`."""

    death_penalty_class = TimerDeathPenalty

    def __init__(self, *args: Any, resources: WorkerResources, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.resources = resources
        self._holding_job = False
        self._running_job: Job | None = None

    @property
    def dequeue_timeout(self) -> int:
        return POLL_SECONDS

    def _install_signal_handlers(self) -> None:
        """Signals reach the main thread only; it calls :meth:`stop` instead."""

    def stop(self) -> None:
        self._stop_requested = True

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None) -> Any:
        self._holding_job = False
        return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)

    def perform_job(self, job: Job, queue: Queue) -> bool:
        """RQ runs the job here, in this thread: :func:`~alvar.generator.worker_resources.current_resources`
        answers this worker's resources while it runs."""
        self._running_job = job
        try:
            with serving(self.resources):
                return bool(super().perform_job(job, queue))
        finally:
            self._running_job = None

    def get_heartbeat_ttl(self, job: Job) -> int:
        """ALVAR_GENERATION_HEARTBEAT_TTL when set (the main thread then beats for the job, see
        :meth:`beat_if_busy`), else RQ's."""
        ttl = self.resources.settings.generation_heartbeat_ttl
        return super().get_heartbeat_ttl(job) if ttl is None else ttl

    def reorder_queues(self, reference_queue: Queue) -> None:
        """Called by RQ right after a job was dequeued: from here on the job runs before the worker stops."""
        self._holding_job = True
        super().reorder_queues(reference_queue)

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        """RQ heartbeats between dequeue attempts (no arguments): a stop request ends the loop there."""
        if self._stop_requested and not self._holding_job and timeout is None and pipeline is None:
            raise StopRequested()
        super().heartbeat(timeout, pipeline)

    def clean_registries(self) -> None:
        """Only the main thread cleans (see the module's docstring); the threads just note that it is done."""
        if threading.current_thread() is threading.main_thread():
            super().clean_registries()
        else:
            self.last_cleaned_at = now()  # type: ignore[assignment]  # rq 2.12 types it as None

    def beat_if_busy(self) -> None:
        """From the main thread: a fresh ``last_heartbeat`` while a job runs. With ALVAR_GENERATION_HEARTBEAT_TTL
        set, the job's heartbeat too, so a job that runs longer than that TTL is not taken for abandoned; without it
        the expiry RQ set when the job started (its timeout plus a minute) is left as it is."""
        if self._holding_job:
            self.connection.hset(self.key, "last_heartbeat", utcformat(now()))
        job = self._running_job
        if job is None or self.resources.settings.generation_heartbeat_ttl is None:
            return
        try:
            self.maintain_heartbeats(job)
        except AttributeError:
            pass  # the job ended between the look and the beat (its thread cleared RQ's execution): nothing to keep


class Slot:
    """One worker thread, and when to start it again after it ended."""

    def __init__(self, worker: ThreadWorker, burst: bool, wait: float = 0.0) -> None:
        self.worker = worker
        self.burst = burst
        self.failed = False
        self.wait = wait
        self.restart_at: float | None = None
        self.started_at = time.monotonic()
        self.thread = threading.Thread(target=self._work, name=worker.name, daemon=True)
        self.thread.start()

    def _work(self) -> None:
        try:
            self.worker.work(burst=self.burst, logging_level="INFO")
        except REDIS_ERRORS as error:
            self.failed = True
            self.worker.abandon()
            log.warning("worker %s stopped on a Redis error (%s); it starts again when Redis answers",
                        self.worker.name, describe(error))

    def ended_for_good(self) -> bool:
        """Done: (burst) the queues were empty."""
        return not self.thread.is_alive() and self.burst and not self.failed

    def due_for_restart(self) -> bool:
        """Whether the thread ended on an error and its wait is over; the first call after it ended sets the
        wait (doubling while the thread keeps ending within ``STABLE_SECONDS``)."""
        if self.thread.is_alive() or self.ended_for_good():
            return False
        current = time.monotonic()
        if self.restart_at is None:
            ran = current - self.started_at
            self.wait = 1.0 if ran >= STABLE_SECONDS or not self.wait else min(self.wait * 2, 30.0)
            self.restart_at = current + self.wait
            if not self.failed:
                log.warning("worker %s ended unexpectedly (see above); starting it again in %.0f s",
                            self.worker.name, self.wait)
        return current >= self.restart_at


def _start(queues: list[Queue], connection: Redis, name: str, resources: WorkerResources, burst: bool,
           wait: float = 0.0) -> Slot:
    return Slot(ThreadWorker(queues, connection=connection, name=name, resources=resources), burst, wait)


def run_threaded_workers(connection: Redis, queue_names: Sequence[str], concurrency: int, name: str,
                         resources: WorkerResources, burst: bool = False) -> None:
    """Serve the queues with ``concurrency`` worker threads until SIGTERM/SIGINT (or, in burst mode, until the
    queues are empty); their jobs share ``resources``."""
    queues = [Queue(queue_name, connection=connection) for queue_name in queue_names]
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
    names = [f"{name}-{index}" for index in range(concurrency)]
    slots: list[Slot | None] = [None] * concurrency
    backoff = Backoff(f"generation workers {name}")
    log.info("%d generation workers (%s-0..%d) on %s", concurrency, name, concurrency - 1, ", ".join(queue_names))
    cleaned_at = beaten_at = float("-inf")
    try:
        while not stop.is_set() and not all(slot is not None and slot.ended_for_good() for slot in slots):
            wait = 1.0
            try:
                connection.ping()
                for index, slot in enumerate(slots):
                    if slot is None:
                        slots[index] = _start(queues, connection, names[index], resources, burst)
                    elif slot.due_for_restart():
                        slots[index] = _start(queues, connection, names[index], resources, burst, slot.wait)
                started = [slot for slot in slots if slot is not None]
                if time.monotonic() - cleaned_at >= MAINTENANCE_SECONDS:
                    started[0].worker.clean_registries()
                    cleaned_at = time.monotonic()
                if time.monotonic() - beaten_at >= POLL_SECONDS:
                    for slot in started:
                        if slot.thread.is_alive():
                            slot.worker.beat_if_busy()
                    beaten_at = time.monotonic()
                backoff.succeeded()
            except REDIS_ERRORS as error:
                wait = backoff.failed(error)
            stop.wait(wait)
    finally:
        running = [slot for slot in slots if slot is not None]
        for slot in running:
            slot.worker.stop()
        for slot in running:
            slot.thread.join()
