"""The RQ job that turns one human annotation into k pre-labelled variation tasks.

At-least-once delivery, exactly-once effect: the job id is the generation key (project, task, annotation,
label), so a repeated webhook finds the job and adds nothing; a re-run (after a crash or a retry) first looks
in Label Studio for tasks carrying its key and imports only when there are none, in one request. The LLM's
answers are cached, so a re-run costs no tokens either.

Relabelling rule: when a person changes an annotation's label, the key changes, so a new job runs; it imports
variations for the new label and marks the source's older variations ``variation_status="stale"``, which
training, export and the "Verify variations" tab leave out. A job whose annotation no longer carries its label
(or was deleted) does nothing: the newer label has its own job.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from typing import Any

from rq import get_current_job

from alvar.backend.label_config import ChoicesControl, parse_choices_control
from alvar.backend.label_studio import label_studio_client
from alvar.backend.training_data import is_variation, latest_annotation
from alvar.generator.generation import generate
from alvar.generator.llm import ChatClient
from alvar.generator.templates import VariationPrompt
from alvar.generator.usage import record_usage
from alvar.generator.validation import Embed
from alvar.generator.variation_tasks import build_tasks, ensure_verify_tab, mark_stale, variation_tasks
from alvar.settings import Settings, load_settings

log = logging.getLogger(__name__)

_shared: dict[str, Any] = {}
_shared_lock = threading.Lock()


def generation_key(project_id: int, task_id: int, annotation_id: int, label: str) -> str:
    """The job id and the ``data.generation`` of its variations: one per (task, annotation, label)."""
    digest = hashlib.sha256(f"{project_id}\0{task_id}\0{annotation_id}\0{label}".encode()).hexdigest()[:10]
    return f"generate-{project_id}-{task_id}-{annotation_id}-{digest}"


def _chat_client(settings: Settings) -> ChatClient:
    """One client per worker process, shared by its job threads (connection pool, structured-output probe)."""
    with _shared_lock:
        if "chat" not in _shared:
            _shared["chat"] = ChatClient.from_settings(settings)
        return _shared["chat"]


def _embed(settings: Settings) -> Embed | None:
    if settings.near_duplicate_threshold is None:
        return None
    with _shared_lock:
        if "embedder" not in _shared:
            from alvar.embedder import Embedder

            _shared["embedder"] = Embedder(settings.embedding_model,
                                           cache_path=settings.cache_dir / "embeddings.sqlite")
        return _shared["embedder"].embed


def contrast_target(settings: Settings, control: ChoicesControl, label: str, task_id: int) -> str | None:
    """The class contrast variations should carry: ALVAR_CONTRAST_LABEL, else the other labels in turn (by task
    id). None when the relation is same_label, or when the target is the person's label itself (then the
    variations are same_label ones)."""
    if settings.relation != "contrast":
        return None
    if settings.contrast_label:
        if settings.contrast_label not in control.labels:
            raise ValueError(f"ALVAR_CONTRAST_LABEL {settings.contrast_label!r} is not a label of the project")
        return settings.contrast_label if settings.contrast_label != label else None
    others = [other for other in control.labels if other != label]
    return others[task_id % len(others)] if others else None


def _as_dict(item: Any) -> dict[str, Any]:
    return item if isinstance(item, dict) else item.model_dump()


def _save_meta(**values: Any) -> None:
    job = get_current_job()
    if job is not None:
        job.meta.update(values)
        job.save_meta()


def generate_variations(project_id: int, task_id: int, annotation_id: int, label: str) -> dict[str, Any]:
    """Write k variations of the task's text for ``label`` and import them as pre-labelled tasks."""
    settings = load_settings()
    key = generation_key(project_id, task_id, annotation_id, label)
    client = label_studio_client(settings)
    control = parse_choices_control(client.projects.get(id=project_id).label_config)
    task = _as_dict(client.tasks.get(id=task_id))
    outcome: dict[str, Any] = {"project": project_id, "task": task_id, "annotation": annotation_id, "label": label}
    if is_variation(task):
        return {**outcome, "status": "skipped: a variation never generates variations"}
    annotation = latest_annotation(task)
    if annotation is None or annotation.get("id") != annotation_id or \
            control.chosen_label(annotation.get("result") or []) != label:
        return {**outcome, "status": "superseded: the annotation no longer carries this label"}
    existing = variation_tasks(client, project_id, generation_key=key)
    if existing:
        outcome.update(status="already imported", task_ids=[item.id for item in existing])
    else:
        outcome.update(_generate_and_import(settings, client, control, project_id, task, annotation_id, label, key))
    outcome["stale"] = mark_stale(client, project_id, task_id, key)
    ensure_verify_tab(client, project_id)
    _save_meta(**{name: value for name, value in outcome.items() if name != "task_ids"})
    return outcome


def _generate_and_import(settings: Settings, client: Any, control: ChoicesControl, project_id: int,
                         task: dict[str, Any], annotation_id: int, label: str, key: str) -> dict[str, Any]:
    text = str((task.get("data") or {}).get(control.data_key) or "")
    target = contrast_target(settings, control, label, task["id"])
    relation = settings.relation if target is not None or settings.relation == "same_label" else "same_label"
    prompt = VariationPrompt(text=text, label=label, k=settings.variations, relation=relation,
                             description=control.description(label), target_label=target,
                             target_description=control.description(target) if target else "",
                             max_chars=settings.max_variation_chars)
    generation = generate(prompt, _chat_client(settings), _embed(settings), settings.near_duplicate_threshold)
    job = get_current_job()
    if job is not None:
        record_usage(job.connection, generation.usage)
    _save_meta(**generation.summary())
    if generation.shortfall:
        log.warning("%s: %d of %d variations (dropped: %s)", key, len(generation.variations), prompt.k,
                    dict(generation.dropped))
    project_version = client.projects.get(id=project_id).model_version
    request = build_tasks(generation, prompt, task, annotation_id, key, control, project_version)
    task_ids: list[int] = []
    if request:
        response = client.projects.import_tasks(id=project_id, request=request, return_task_ids=True)
        task_ids = list(response.task_ids or [])
    return {"status": "imported", "task_ids": task_ids, "imported": len(task_ids), **generation.summary()}

