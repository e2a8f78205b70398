"""What the job threads of one generation worker process share: settings, clients, the embedder, known tabs.

One :class:`WorkerResources` is made when the generation worker process starts (`alvar worker`'s generation
child) and handed to each of its worker threads (:func:`alvar.generator.threaded_workers.run_threaded_workers`). Each
thread's ``ThreadWorker`` runs every job inside :func:`serving`, so a job function reaches the resources with
:func:`current_resources` (as it reaches its RQ job with ``rq.get_current_job``): job functions take only what
RQ stores in Redis, never live objects. A job run anywhere else (the training worker's sweep, a test calling it
directly) gets fresh resources built from the worker's settings (:func:`alvar.job_settings.job_settings`).

Each resource is built on first use, under its own lock, so the first jobs do not build it twice and no job
waits on another's HTTP call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar

from label_studio_sdk import LabelStudio

from alvar.attribute_model import AttributeJudge, attribute_model_path, load_judge
from alvar.generator.llm import ChatClient
from alvar.generator.validation import Embed, near_duplicate_embed
from alvar.generator.variation_tasks import ensure_verify_tab
from alvar.job_settings import job_settings
from alvar.labelstudio.client import label_studio_client
from alvar.settings import Settings

T = TypeVar("T")

# The resources of the worker running the current job, in the thread running it (see the module docstring).
_serving: ContextVar[WorkerResources | None] = ContextVar("alvar_worker_resources", default=None)


class WorkerResources:
    """The settings of one generation worker process and what its jobs share, each built on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._built: dict[str, Any] = {}
        self._locks = {name: threading.Lock() for name in ("chat", "teacher", "label_studio", "embed")}
        self._tab_lock = threading.Lock()
        self._tabs_ready: set[int] = set()
        self._judge_lock = threading.Lock()
        self._judge: tuple[tuple[str, str, int], AttributeJudge | None] | None = None

    def _once(self, name: str, build: Callable[[], T]) -> T:
        with self._locks[name]:
            if name not in self._built:
                self._built[name] = build()
            return self._built[name]

    @property
    def chat(self) -> ChatClient:
        """The LLM client: its connection pool and what it learnt about structured output."""
        return self._once("chat", lambda: ChatClient.from_settings(self.settings))

    @property
    def teacher(self) -> ChatClient:
        """The teacher of generative projects: the LLM client, or one of its own for ALVAR_TEACHER_MODEL."""
        model = self.settings.teacher_model or self.settings.llm_model
        if model == self.settings.llm_model:
            return self.chat
        return self._once("teacher", lambda: ChatClient.from_settings(self.settings.model_copy(
            update={"llm_model": model})))

    def judge(self, required: str) -> AttributeJudge | None:
        """R with attribute value ``required``, loaded once and again only when R is written anew (`alvar
        attribute train` replaces the folder) or another value is asked for; None while R is not trained."""
        path = attribute_model_path(self.settings)
        if path is None:
            return None
        config = Path(path) / "config.json"
        key = (path, required, config.stat().st_mtime_ns if config.is_file() else 0)
        with self._judge_lock:
            if self._judge is None or self._judge[0] != key:
                self._judge = (key, load_judge(self.settings, required))
            return self._judge[1]

    @property
    def label_studio(self) -> LabelStudio:
        """The Label Studio client: its HTTP connection pool serves every job thread."""
        return self._once("label_studio", lambda: label_studio_client(self.settings))

    @property
    def embed(self) -> Embed | None:
        """The embedder for near-duplicate screening (model loaded once), or None when that screening is off."""
        return self._once("embed", lambda: near_duplicate_embed(self.settings))

    def ensure_verify_tab(self, project_id: int) -> None:
        """The project's "Verify variations" tab, checked once per project and worker process."""
        if project_id in self._tabs_ready:
            return
        with self._tab_lock:
            if project_id not in self._tabs_ready:
                ensure_verify_tab(self.label_studio, project_id)
                self._tabs_ready.add(project_id)


@contextmanager
def serving(resources: WorkerResources) -> Iterator[WorkerResources]:
    """Around a job run by a worker: in this thread, :func:`current_resources` answers ``resources``."""
    token = _serving.set(resources)
    try:
        yield resources
    finally:
        _serving.reset(token)


def current_resources() -> WorkerResources:
    """The resources of the worker running the current job; outside a serving worker, fresh ones built from the
    worker's settings (:func:`alvar.job_settings.job_settings`; each resource still built only when used)."""
    return _serving.get() or WorkerResources(job_settings())
