"""Talking to Label Studio through its SDK."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from label_studio_sdk import LabelStudio

from alvar.settings import Settings


def label_studio_client(settings: Settings) -> LabelStudio:
    if not settings.label_studio_api_key:
        raise RuntimeError("LABEL_STUDIO_API_KEY is not set: the backend needs a token to read Label Studio")
    return LabelStudio(base_url=settings.label_studio_url, api_key=settings.label_studio_api_key, timeout=120)


def as_dict(item: Any) -> dict[str, Any]:
    """An SDK object as the plain dict Label Studio's JSON would give."""
    return item if isinstance(item, dict) else item.model_dump()


def iter_tasks(client: LabelStudio, project_id: int, only_annotated: bool = False,
               page_size: int = 500) -> Iterator[dict[str, Any]]:
    """Every task of a project with its annotations, page by page."""
    pager = client.tasks.list(project=project_id, fields="all", only_annotated=only_annotated or None,
                              page_size=page_size)
    for task in pager:
        yield as_dict(task)
