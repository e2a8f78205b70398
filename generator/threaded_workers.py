"""Several generation jobs in flight in one worker process: RQ workers in threads.

A generation job spends nearly all its time waiting on the LLM, so one process runs ``concurrency`` RQ
``SimpleWorker``s, each in its own thread with its own name: every one is a real RQ worker, visible with
its job in RQ's registries (``alvar jobs``, ``rq info``), using RQ's own job lifecycle, retries and failure
handling. What threads cannot do is left to the main thread: it owns the signals (SIGTERM/SIGINT: each worker
finishes its job, then stops), and it runs the scheduler that puts retried jobs back in the queue after their
back-off interval. Jobs time out by timer (``TimerDeathPenalty``) instead of SIGALRM.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Sequence
from typing import Any

from redis import Redis
from rq import Queue, SimpleWorker
from rq.exceptions import StopRequested
from rq.scheduler import RQScheduler
from rq.timeouts import TimerDeathPenalty

log = logging.getLogger(__name__)

# An idle worker thread looks for a stop request this often (seconds): its dequeue timeout.
POLL_SECONDS = 5


class ThreadWorker(SimpleWorker):
    """An RQ ``SimpleWorker`` that can live in a thread and be stopped from the main thread."""

    death_penalty_class = TimerDeathPenalty

    @property
    def dequeue_timeout(self) -> int:
        return POLL_SECONDS

    def _install_signal_handlers(self) -> None:
        """Signals reach the main thread only; it calls :meth:`stop` instead."""

    def stop(self) -> None:
        self._stop_requested = True

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        """RQ heartbeats between dequeue attempts (no arguments): a stop request ends the loop there."""
        if self._stop_requested and timeout is None and pipeline is None:
            raise StopRequested()
        super().heartbeat(timeout, pipeline)


def run_threaded_workers(connection: Redis, queue_names: Sequence[str], concurrency: int, name: str,
                         burst: bool = False, maintenance_interval: int = 60) -> int:
    """Serve the queues with ``concurrency`` worker threads until SIGTERM/SIGINT (or, in burst mode, until the
    queues are empty); return the number of workers that ran."""
    queues = [Queue(queue_name, connection=connection) for queue_name in queue_names]
    workers = [ThreadWorker(queues, connection=connection, name=f"{name}-{index}",
                            maintenance_interval=maintenance_interval) for index in range(concurrency)]
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
    scheduler = RQScheduler(queues, connection=connection, interval=1)
    threads = [threading.Thread(target=worker.work, kwargs={"burst": burst, "logging_level": "INFO"},
                                name=worker.name, daemon=True) for worker in workers]
    for thread in threads:
        thread.start()
    log.info("%d generation workers (%s-0..%d) on %s", concurrency, name, concurrency - 1, ", ".join(queue_names))
    try:
        while any(thread.is_alive() for thread in threads) and not stop.is_set():
            _schedule(scheduler)
            stop.wait(scheduler.interval)
    finally:
        for worker in workers:
            worker.stop()
        for thread in threads:
            thread.join()
        scheduler.release_locks()
    return len(workers)


def _schedule(scheduler: RQScheduler) -> None:
    """One scheduler turn: hold the queues' scheduler locks and enqueue jobs whose retry time has come."""
    if scheduler.should_reacquire_locks:
        scheduler.acquire_locks()
    if scheduler.acquired_locks:
        scheduler.heartbeat()
        scheduler.enqueue_scheduled_jobs()
