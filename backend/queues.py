"""The RQ queues and the Redis connection they share."""

from __future__ import annotations

from redis import Redis
from rq import Queue

from alvar.settings import GENERATION_QUEUE, TRAINING_QUEUE, Settings


def redis_connection(settings: Settings) -> Redis:
    """Redis at REDIS_URL; `alvar up`, `alvar backend` and `alvar worker` set it to the embedded server otherwise."""
    if not settings.redis_url:
        raise RuntimeError("REDIS_URL is not set: start the stack with `alvar up`, or set REDIS_URL")
    return Redis.from_url(settings.redis_url)


def training_queue(connection: Redis) -> Queue:
    return Queue(TRAINING_QUEUE, connection=connection)


def generation_queue(connection: Redis) -> Queue:
    return Queue(GENERATION_QUEUE, connection=connection)


def all_queue_names() -> list[str]:
    """The queues `alvar worker` serves, in priority order."""
    return [TRAINING_QUEUE, GENERATION_QUEUE]
