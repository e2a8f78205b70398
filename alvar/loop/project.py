"""Setting up a Label Studio project for alvar: create it, import a pool, connect the ML backend."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from label_studio_sdk import LabelStudio

from alvar.datafiles import Example
from alvar.labelstudio.task_data import pool_data
from alvar.labelstudio.task_kinds import task_kind
from alvar.settings import WEBHOOK_SECRET_HEADER


def create_project(client: LabelStudio, title: str, label_config: str) -> int:
    """A new project. A classification project's tasks are ordered by prediction score, lowest (the learner's least
    confident) first: Label Studio's "Uncertainty sampling". A generative project's score is the informativeness,
    highest first, which Label Studio cannot order by: its tasks come in order ("Sequential sampling"), and its Batch
    tabs sort by informativeness."""
    project_id = client.projects.create(title=title, label_config=label_config).id
    if project_id is None:
        raise RuntimeError(f"Label Studio created project {title!r} without an id")
    client.projects.update(id=project_id, sampling=task_kind(label_config).sampling)
    return project_id


def import_pool(client: LabelStudio, project_id: int, examples: Sequence[Example], text_key: str = "text",
                chunk_size: int = 1000) -> list[int]:
    """Import examples as unlabeled tasks (``data.<text_key>``, ``data.source_id``); return the new task ids."""
    task_ids: list[int] = []
    for start in range(0, len(examples), chunk_size):
        chunk = examples[start : start + chunk_size]
        request = [{"data": pool_data(text_key, example)} for example in chunk]
        # The SDK types the request as its own models and the answer without task_ids, which Label Studio sends.
        response = client.projects.import_tasks(id=project_id, request=request, return_task_ids=True)  # type: ignore[arg-type]
        task_ids.extend(response.task_ids or [])  # type: ignore[attr-defined]
    return task_ids


def connect_backend(client: LabelStudio, project_id: int, url: str, title: str = "alvar",
                    basic_auth: tuple[str, str] | None = None, webhook_secret: str | None = None) -> Any:
    """Connect the ML backend to the project, and let the webhook Label Studio creates for it authenticate.

    Label Studio creates the project webhook to ``<url>/webhook`` by itself, but without the backend's basic
    auth; its headers get the ``Authorization`` and the shared secret here.
    """
    auth: dict[str, Any] = {}
    headers: dict[str, str] = {}
    if basic_auth is not None:
        auth = {"auth_method": "BASIC_AUTH", "basic_auth_user": basic_auth[0], "basic_auth_pass": basic_auth[1]}
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(basic_auth).encode()).decode()
    if webhook_secret:
        headers[WEBHOOK_SECRET_HEADER] = webhook_secret
    backend = client.ml.create(project=project_id, url=url, title=title, is_interactive=False, **auth)
    webhook_url = url.rstrip("/") + "/webhook"
    hooks = [hook for hook in client.webhooks.list(project=project_id) if hook.url == webhook_url]
    if not hooks:
        raise RuntimeError(f"Label Studio created no webhook to {webhook_url}: is its SSRF protection on?")
    if headers:
        for hook in hooks:
            client.webhooks.update(id=hook.id, url=webhook_url, headers=headers)
    return backend
