"""Several generation jobs in flight in one worker process: RQ workers in threads.

A generation job spends nearly all its time waiting on the LLM, so one process runs ``concurrency`` RQ
``SimpleWorker``s, each in its own thread with its own name: every one is a real RQ worker, visible with
its job in RQ's registries (``alvar jobs``, ``rq info``), using RQ's own job lifecycle, retries and failure
handling. What threads cannot do is left to the main thread: it owns the signals (SIGTERM/SIGINT: each worker
finishes its job, then stops), it cleans RQ's registries (abandoned jobs are retried there; RQ's cleanup
uses SIGALRM, which only the main thread may), and it runs the scheduler that puts retried jobs back in the
queue after their back-off interval. Jobs time out by timer (``TimerDeathPenalty``) instead of SIGALRM.
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
from rq.scheduler import RQScheduler
from rq.timeouts import TimerDeathPenalty
from rq.utils import now

log = logging.getLogger(__name__)

# An idle worker thread looks for a stop request this often (seconds): its dequeue timeout.
POLL_SECONDS = 5
# How often the main thread cleans the registries (an abandoned job is retried then).
MAINTENANCE_SECONDS = 15


class ThreadWorker(SimpleWorker):
    """An RQ ``SimpleWorker`` that can live in a thread and be stopped from the main thread."""

    death_penalty_class = TimerDeathPenalty

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._holding_job = False

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
            self.last_cleaned_at = now()


def run_threaded_workers(connection: Redis, queue_names: Sequence[str], concurrency: int, name: str,
                         burst: bool = False) -> None:
    """Serve the queues with ``concurrency`` worker threads until SIGTERM/SIGINT (or, in burst mode, until the
    queues are empty)."""
    queues = [Queue(queue_name, connection=connection) for queue_name in queue_names]
    workers = [ThreadWorker(queues, connection=connection, name=f"{name}-{index}") for index in range(concurrency)]
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
    scheduler = RQScheduler(queues, connection=connection, interval=1)
    threads = [_start(worker, burst) for worker in workers]
    log.info("%d generation workers (%s-0..%d) on %s", concurrency, name, concurrency - 1, ", ".join(queue_names))
    cleaned_at = 0.0
    restarts = 0
    try:
        while any(thread.is_alive() for thread in threads) and not stop.is_set():
            if time.monotonic() - cleaned_at >= MAINTENANCE_SECONDS:
                workers[0].clean_registries()
                cleaned_at = time.monotonic()
            _schedule(scheduler)
            for index, thread in enumerate(threads):
                if not burst and not thread.is_alive() and not stop.is_set():
                    restarts += 1
                    log.warning("worker %s ended unexpectedly (see above); starting another", workers[index].name)
                    workers[index] = ThreadWorker(queues, connection=connection, name=f"{name}-{index}-r{restarts}")
                    threads[index] = _start(workers[index], burst)
            stop.wait(scheduler.interval)
    finally:
        for worker in workers:
            worker.stop()
        for thread in threads:
            thread.join()
        scheduler.release_locks()


def _start(worker: ThreadWorker, burst: bool) -> threading.Thread:
    thread = threading.Thread(target=worker.work, kwargs={"burst": burst, "logging_level": "INFO"},
                              name=worker.name, daemon=True)
    thread.start()
    return thread


def _schedule(scheduler: RQScheduler) -> None:
    """One scheduler turn: hold the queues' scheduler locks and enqueue jobs whose retry time has come."""
    if scheduler.should_reacquire_locks:
        scheduler.acquire_locks()
    if scheduler.acquired_locks:
        scheduler.heartbeat()
        scheduler.enqueue_scheduled_jobs()
