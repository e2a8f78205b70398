"""`alvar worker`: RQ workers for the training queue and the generation queue.

Training runs in RQ's forking ``Worker`` in this process (torch is imported once, before jobs fork). Generation
runs in a child process (spawned, so it never forks a threaded process) that keeps several jobs in flight with
worker threads (:mod:`alvar.generator.threaded_workers`). With no LLM configured, generation jobs wait in their
queue and this says so.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import socket
from collections.abc import Sequence

from rq import Worker

from alvar.backend.queues import redis_connection
from alvar.settings import GENERATION_QUEUE, TRAINING_QUEUE, Settings, llm_configured

log = logging.getLogger(__name__)

QUEUE_ALIASES = {"training": TRAINING_QUEUE, "generation": GENERATION_QUEUE}


def _configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per Label Studio and LLM request otherwise


def run_generation(settings: Settings, name: str, burst: bool) -> None:
    """The generation workers of one process (the child's entry point)."""
    from alvar.generator.threaded_workers import run_threaded_workers

    _configure_logging()
    run_threaded_workers(redis_connection(settings), [GENERATION_QUEUE], settings.generation_concurrency, name,
                         burst=burst)


def run_worker(settings: Settings, queues: Sequence[str] = ("training", "generation"), burst: bool = False,
               name: str | None = None) -> None:
    """Work until stopped (or, with ``burst``, until the queues are empty); ``queues`` are QUEUE_ALIASES keys."""
    _configure_logging()
    name = name or f"alvar-{socket.gethostname()}-{os.getpid()}"
    serves_generation = "generation" in queues and llm_configured(settings)
    if "generation" in queues and not serves_generation:
        log.warning("no LLM configured (OPENAI_BASE_URL / OPENAI_API_KEY): generation jobs wait in the %r "
                    "queue until a worker with an LLM starts", GENERATION_QUEUE)
    if "training" not in queues:
        if serves_generation:
            run_generation(settings, f"{name}-generation", burst)
        return
    generation = None
    if serves_generation:
        generation = multiprocessing.get_context("spawn").Process(
            target=run_generation, args=(settings, f"{name}-generation", burst), name="alvar-generation")
        generation.start()
    try:
        import alvar.backend.training  # noqa: F401  (torch and transformers once, before jobs fork)

        Worker([TRAINING_QUEUE], connection=redis_connection(settings), name=f"{name}-training").work(
            burst=burst, with_scheduler=True)
    finally:
        if generation is not None:
            if not burst:
                generation.terminate()
            generation.join()
