"""LLM tokens and estimated cost, summed over every generation job that used this Redis.

Each job also keeps its own usage in ``job.meta``; the totals answer "what has this cost so far?" at once.
"""

from __future__ import annotations

from typing import cast

from redis import Redis

from alvar.generator.llm import Usage

USAGE_KEY = "alvar:llm:usage"
_COUNTERS = ("requests", "cached", "prompt_tokens", "completion_tokens")


def record_usage(connection: Redis, usage: Usage) -> None:
    with connection.pipeline() as pipeline:
        for name in _COUNTERS:
            pipeline.hincrby(USAGE_KEY, name, getattr(usage, name))
        pipeline.hincrbyfloat(USAGE_KEY, "cost_usd", usage.cost_usd)
        pipeline.execute()


def total_usage(connection: Redis) -> Usage:
    counters = cast(dict[bytes, bytes], connection.hgetall(USAGE_KEY))  # a sync client's answer
    stored = {key.decode(): value.decode() for key, value in counters.items()}
    return Usage(**{name: int(stored.get(name, 0)) for name in _COUNTERS},
                 cost_usd=float(stored.get("cost_usd", 0.0)))
