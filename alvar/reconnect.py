"""Riding out a Redis restart: back-off waits, and RQ workers that come back instead of dying.

RQ 2.12's worker retries its dequeue on ``ConnectionError`` by itself (waits doubling up to
``max_connection_wait_time``), but any other Redis call of its loop (the heartbeat after a job, the bookkeeping
around a job, maintenance) ends ``work()``, its teardown then raises, its pubsub thread logs a line every 2 s
for as long as Redis is away, and the name it leaves registered blocks a worker started again under it. The
pieces here cover that: :class:`Backoff` paces every retry loop (one log line per wait), and
:class:`ReconnectingWorker` lets a worker of the same name start again in the same or a new process.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any

import redis.exceptions
from rq import worker_registration
from rq.utils import decode_redis_hash

from alvar.processes import process_alive

log = logging.getLogger(__name__)

# What a Redis restart (or a network cut) raises; anything else is a bug and is not retried here.
REDIS_ERRORS: tuple[type[Exception], ...] = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
# Waits double from the first to the longest while failures follow each other.
FIRST_WAIT = 1.0
LONGEST_WAIT = 30.0


def describe(error: BaseException) -> str:
    """One line for the log: a Redis error's message, never a traceback."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")


class Backoff:
    """Pacing for one retry loop: each :meth:`failed` logs one line and returns how long to wait.

    A failure that follows the previous one within its wait (plus the longest wait) belongs to the same outage
    and doubles the wait; a later one starts over, so a loop that cannot report success (RQ's pubsub thread)
    still starts each outage with a short wait.
    """

    def __init__(self, what: str, level: int = logging.WARNING, first: float = FIRST_WAIT,
                 longest: float = LONGEST_WAIT) -> None:
        self.what = what
        self.level = level
        self.first = first
        self.longest = longest
        self.wait = 0.0
        self._last_failure: float | None = None
        self._down_since: float | None = None

    def failed(self, error: BaseException) -> float:
        now = time.monotonic()
        if self._last_failure is None or now - self._last_failure > self.wait + self.longest:
            self.wait = self.first
            self._down_since = now
        else:
            self.wait = min(self.wait * 2, self.longest)
        self._last_failure = now
        log.log(self.level, "%s: Redis unreachable (%s); retrying in %.0f s", self.what, describe(error), self.wait)
        return self.wait

    def succeeded(self) -> None:
        if self._down_since is not None:
            log.info("%s: Redis answers again (after %.0f s)", self.what, time.monotonic() - self._down_since)
        self.wait = 0.0
        self._last_failure = self._down_since = None


class ReconnectingWorker:
    """A mixin for RQ workers (put it before RQ's worker class) that survive Redis restarts.

    - A registration of the same name that a gone process of this machine left (SIGKILLed, or Redis was away
      when it stopped) or that an earlier run in this very process left is retired before registering: the
      worker starts again under its own name instead of failing with "There exists an active worker named".
    - An idle heartbeat registers the worker again when Redis lost its registration (restarted without its
      append-only file), so `alvar status` keeps seeing it.
    - The pubsub thread (RQ's command channel) retries with :class:`Backoff` at debug level: the dequeue loop
      already reports the outage.
    """

    max_connection_wait_time = LONGEST_WAIT  # RQ's own dequeue back-off
    connection: Any
    key: str
    name: str
    pubsub_thread: Any

    def register_birth(self) -> None:
        self._retire_predecessor()
        super().register_birth()  # type: ignore[misc]

    def _retire_predecessor(self) -> None:
        data = decode_redis_hash(self.connection.hgetall(self.key), decode_values=True)
        if not data or "death" in data:
            return
        pid = int(data.get("pid") or 0)
        if data.get("hostname") == socket.gethostname() and (pid == os.getpid() or not process_alive(pid)):
            log.info("worker %s: retiring the registration its earlier run (PID %d) left", self.name, pid)
            self.register_death()  # type: ignore[attr-defined]

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        super().heartbeat(timeout, pipeline)  # type: ignore[misc]
        if pipeline is None and not self.connection.sismember(worker_registration.REDIS_WORKER_KEYS, self.key):
            log.warning("worker %s: Redis lost this worker's registration; registering again", self.name)
            with self.connection.pipeline() as registering:
                registering.hset(self.key, mapping=self.serialize())  # type: ignore[attr-defined]
                worker_registration.register(self, registering)  # type: ignore[arg-type]
                registering.expire(self.key, timeout or self.worker_ttl + 60)  # type: ignore[attr-defined]
                registering.execute()

    def _pubsub_exception_handler(self, exc: Exception, pubsub: Any, pubsub_thread: Any) -> None:
        if not isinstance(exc, REDIS_ERRORS):
            raise exc
        backoff = self.__dict__.setdefault("_pubsub_backoff", Backoff(f"worker {self.name} (commands channel)",
                                                                      level=logging.DEBUG))
        time.sleep(backoff.failed(exc))

    def abandon(self) -> None:
        """After ``work()`` failed on Redis: stop the pubsub thread without talking to Redis (teardown could
        not), so a worker started again does not leave a thread behind."""
        if self.pubsub_thread is not None:
            self.pubsub_thread.stop()
