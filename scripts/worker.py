"""`alvar worker`: an RQ worker serving the training and generation queues."""

from __future__ import annotations

import logging

from rq import Worker

from alvar.backend.queues import all_queue_names, redis_connection
from alvar.settings import Settings


def run_worker(settings: Settings, burst: bool = False, name: str | None = None) -> bool:
    """Work until stopped (or, with ``burst``, until the queues are empty). Jobs fork from this process."""
    import alvar.backend.training  # noqa: F401  (import torch and transformers once, before jobs fork)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    worker = Worker(all_queue_names(), connection=redis_connection(settings), name=name)
    return worker.work(burst=burst, with_scheduler=True)
