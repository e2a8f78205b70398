"""What the job threads of one generation worker process share: clients, the embedder, known tabs.

Built once, on first use, each under its own lock, so the first jobs do not build them twice and no job waits
on another's HTTP call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from alvar.generator.llm import ChatClient
from alvar.generator.validation import Embed
from alvar.generator.variation_tasks import ensure_verify_tab
from alvar.labelstudio.client import label_studio_client
from alvar.settings import Settings

T = TypeVar("T")

_built: dict[str, Any] = {}
_locks: dict[str, threading.Lock] = {name: threading.Lock() for name in ("chat", "label_studio", "embedder")}
_tab_lock = threading.Lock()
_tabs_ready: set[int] = set()


def _once(name: str, build: Callable[[], T]) -> T:
    with _locks[name]:
        if name not in _built:
            _built[name] = build()
        return _built[name]


def chat_client(settings: Settings) -> ChatClient:
    """One LLM client per process: its connection pool and what it learnt about structured output."""
    return _once("chat", lambda: ChatClient.from_settings(settings))


def label_studio(settings: Settings) -> Any:
    """One Label Studio client per process: its HTTP connection pool serves every job thread."""
    return _once("label_studio", lambda: label_studio_client(settings))


def embed(settings: Settings) -> Embed | None:
    """The embedder for near-duplicate screening (model loaded once), or None when that screening is off."""
    if settings.near_duplicate_threshold is None:
        return None

    def build() -> Any:
        from alvar.embedder import settings_embedder

        embedder = settings_embedder(settings)
        embedder.encoder  # noqa: B018 - load the model here, under the lock
        return embedder

    return _once("embedder", build).embed


def ensure_verify_tab_once(client: Any, project_id: int) -> None:
    """The "Verify variations" tab, checked once per project and worker process."""
    if project_id in _tabs_ready:
        return
    with _tab_lock:
        if project_id not in _tabs_ready:
            ensure_verify_tab(client, project_id)
            _tabs_ready.add(project_id)
