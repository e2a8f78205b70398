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
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from redis import Redis
from rq import get_current_job
from rq.job import Job

from alvar.backend.label_config import ChoicesControl, parse_choices_control
from alvar.backend.label_studio import label_studio_client
from alvar.backend.training_data import is_variation, latest_annotation
from alvar.generator.generation import Generation, generate
from alvar.generator.llm import ChatClient
from alvar.generator.templates import VariationPrompt
from alvar.generator.usage import record_usage
from alvar.generator.validation import Embed
from alvar.generator.variation_tasks import (GENERATION_FIELD, build_tasks, ensure_verify_tab, mark_stale,
                                             variation_tasks)
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


def _ensure_verify_tab_once(client: Any, project_id: int) -> None:
    """The "Verify variations" tab, checked once per project and worker process."""
    with _shared_lock:
        ready: set[int] = _shared.setdefault("verify_tabs", set())
        if project_id not in ready:
            ensure_verify_tab(client, project_id)
            ready.add(project_id)


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


def record_failure(job: Job, connection: Redis, error_type: type[BaseException], error: BaseException,
                   traceback: Any) -> None:
    """RQ's failure callback: keep why the last attempt failed, since a job waiting to retry has no result."""
    job.meta["failures"] = int(job.meta.get("failures", 0)) + 1
    job.meta["last_error"] = f"{error_type.__name__}: {error}"[:500]
    job.save_meta()


def _save_meta(job: Job | None, **values: Any) -> None:
    if job is not None:
        job.meta.update(values)
        job.save_meta()


def _label_studio(settings: Settings) -> Any:
    """One Label Studio client per worker process (its HTTP connection pool serves every job thread)."""
    with _shared_lock:
        if "label_studio" not in _shared:
            _shared["label_studio"] = label_studio_client(settings)
        return _shared["label_studio"]


def _prompt(settings: Settings, control: ChoicesControl, task_id: int, text: str, label: str) -> VariationPrompt:
    target = contrast_target(settings, control, label, task_id)
    return VariationPrompt(text=text, label=label, k=settings.variations,
                           relation="contrast" if target is not None else "same_label",
                           description=control.description(label), target_label=target,
                           target_description=control.description(target) if target else "",
                           max_chars=settings.max_variation_chars)


def generate_variations(project_id: int, task_id: int, annotation_id: int, label: str,
                        text: str | None = None) -> dict[str, Any]:
    """Write k variations of the task's text for ``label`` and import them as pre-labelled tasks.

    With ``text`` (the webhook's copy of the task text) the LLM request starts at once and Label Studio is
    checked while it runs: is the annotation still this label, are this generation's tasks there already?
    """
    settings = load_settings()
    key = generation_key(project_id, task_id, annotation_id, label)
    client = _label_studio(settings)
    project = client.projects.get(id=project_id)
    control = parse_choices_control(project.label_config)
    outcome: dict[str, Any] = {"project": project_id, "task": task_id, "annotation": annotation_id, "label": label}
    job = get_current_job()
    connection = job.connection if job is not None else None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix=key) as llm_thread:
        pending = None
        if text and text.strip():
            pending = llm_thread.submit(_generate, settings, _prompt(settings, control, task_id, text, label),
                                       connection)
        task = _as_dict(client.tasks.get(id=task_id))
        annotation = latest_annotation(task)
        if is_variation(task):
            return {**outcome, "status": "skipped: a variation never generates variations"}
        if annotation is None or annotation.get("id") != annotation_id or \
                control.chosen_label(annotation.get("result") or []) != label:
            return {**outcome, "status": "superseded: the annotation no longer carries this label"}
        earlier = variation_tasks(client, project_id, source_task=task_id)
        existing = [item for item in earlier if item.data.get(GENERATION_FIELD) == key]
        if existing:
            outcome.update(status="already imported", task_ids=[item.id for item in existing])
        else:
            source_text = str((task.get("data") or {}).get(control.data_key) or "")
            prompt = _prompt(settings, control, task_id, source_text, label)
            generation = pending.result() if pending is not None and source_text == text else \
                _generate(settings, prompt, connection)
            request = build_tasks(generation, prompt, task, annotation_id, key, control, project.model_version)
            response = client.projects.import_tasks(id=project_id, request=request, return_task_ids=True) \
                if request else None
            task_ids = list(response.task_ids or []) if response is not None else []
            outcome.update(status="imported", task_ids=task_ids, imported=len(task_ids), **generation.summary())
    outcome["stale"] = mark_stale(client, earlier, key)
    _ensure_verify_tab_once(client, project_id)
    _save_meta(job, **{name: value for name, value in outcome.items() if name != "task_ids"})
    return outcome


def _generate(settings: Settings, prompt: VariationPrompt, connection: Redis | None) -> Generation:
    """Ask the LLM; its usage is recorded at once (a job that dies later has still spent it)."""
    generation = generate(prompt, _chat_client(settings), _embed(settings), settings.near_duplicate_threshold)
    if connection is not None:
        record_usage(connection, generation.usage)
    if generation.shortfall:
        log.warning("%d of %d variations of %r (dropped: %s)", len(generation.variations), prompt.k,
                    prompt.text[:60], dict(generation.dropped))
    return generation
