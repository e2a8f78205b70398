"""The settings a queued job runs with: those of the worker that runs it.

Jobs are queued with ids only (a project, a task, a label), so the worker hands its settings down: `alvar worker`
builds them once from the environment and its flags and runs its jobs inside :func:`jobs_use`; a job reads them
with :func:`job_settings`. RQ's forking worker forks each job from the thread that entered :func:`jobs_use`, so
the job's process sees the same value. Outside a worker (a test calling a job function) they come from the
environment.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from alvar.settings import Settings, load_settings

_worker_settings: ContextVar[Settings | None] = ContextVar("alvar_worker_settings", default=None)


@contextmanager
def jobs_use(settings: Settings) -> Iterator[None]:
    """Run the jobs started in this block (this thread, and processes forked from it) with ``settings``."""
    token = _worker_settings.set(settings)
    try:
        yield
    finally:
        _worker_settings.reset(token)


def job_settings() -> Settings:
    """The running worker's settings; the environment's when no worker gave any."""
    return _worker_settings.get() or load_settings()
