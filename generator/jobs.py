"""The RQ job that turns one human annotation into k pre-labelled variation tasks.

At-least-once delivery, exactly-once effect. The job id is the generation key (project, task, annotation,
label). The LLM request starts at once (the webhook carries the text) while Label Studio is read. The import
happens under the source task's lock (:mod:`alvar.generator.source_state`), only while the job's label is still
the task's latest, and only when no task carries the key yet; it is one request that the client never
repeats by itself. A re-run (a retry, a worker killed mid-job) therefore finds its tasks and stops, and the
LLM's answers are cached, so it costs no tokens either.

Relabelling rule: a changed label is a new key and a new job; under the lock it imports the new label's
variations and marks the source's other variations ``variation_status="stale"`` (and its own ``current``
again, for a label that comes back), which training and the "Verify variations" tab leave out. A job whose
annotation no longer carries its label, or was deleted, imports nothing: the newer label has its own job.
"""

from __future__ import annotations

import hashlib
import logging
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import nullcontext
from typing import Any

from redis import Redis
from rq import get_current_job
from rq.job import Job

from alvar.backend.label_config import ChoicesControl, parse_choices_control
from alvar.backend.label_studio import as_dict
from alvar.backend.training_data import is_variation, latest_annotation
from alvar.generator.generation import Generation, generate
from alvar.generator.source_state import import_lock, is_latest, source_lock
from alvar.generator.templates import TemplateError, VariationPrompt
from alvar.generator.usage import record_usage
from alvar.generator.variation_tasks import GENERATION_FIELD, build_tasks, retire_others, variation_tasks
from alvar.generator.worker_resources import chat_client, embed, ensure_verify_tab_once, label_studio
from alvar.settings import Settings, load_settings

log = logging.getLogger(__name__)

# An import is never sent twice by the client itself: a lost answer is settled by the job's re-run.
NO_CLIENT_RETRIES = {"max_retries": 0}


def generation_key(project_id: int, task_id: int, annotation_id: int, label: str) -> str:
    """The job id and the ``data.generation`` of its variations: one per (task, annotation, label)."""
    digest = hashlib.sha256(f"{project_id}\0{task_id}\0{annotation_id}\0{label}".encode()).hexdigest()[:10]
    return f"generate-{project_id}-{task_id}-{annotation_id}-{digest}"


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


def record_failure(job: Job, connection: Redis, error_type: type[BaseException], error: BaseException,
                   traceback: Any) -> None:
    """RQ's failure callback: keep why the last attempt failed, since a job waiting to retry has no result."""
    job.meta["failures"] = int(job.meta.get("failures", 0)) + 1
    job.meta["last_error"] = f"{error_type.__name__}: {error}"[:500]
    job.save_meta()


def _prompt(settings: Settings, control: ChoicesControl, task_id: int, text: str, label: str) -> VariationPrompt:
    target = contrast_target(settings, control, label, task_id)
    return VariationPrompt(text=text, label=label, k=settings.variations,
                           relation="contrast" if target is not None else "same_label",
                           description=control.description(label), target_label=target,
                           target_description=control.description(target) if target else "",
                           max_chars=settings.max_variation_chars)


def _generate(settings: Settings, prompt: VariationPrompt, connection: Redis | None) -> Generation:
    """Ask the LLM; what it cost is recorded at once, even when a later request of the job fails."""
    generation = Generation([], prompt.k, prompt.template_id, chat_client(settings).model)
    try:
        return generate(prompt, chat_client(settings), embed(settings), settings.near_duplicate_threshold,
                        into=generation)
    finally:
        if connection is not None:
            record_usage(connection, generation.usage)


def _result(pending: Future[Generation]) -> Generation:
    """Wait in short steps: RQ's timer-based timeout can only interrupt a thread that runs Python code."""
    while not pending.done():
        wait([pending], timeout=1.0)
    return pending.result()


def _why_not(task: dict[str, Any], control: ChoicesControl, annotation_id: int, label: str) -> str | None:
    if is_variation(task):
        return "skipped: a variation never generates variations"
    annotation = latest_annotation(task)
    if annotation is None or annotation.get("id") != annotation_id or \
            control.chosen_label(annotation.get("result") or []) != label:
        return "superseded: the annotation no longer carries this label"
    return None


def generate_variations(project_id: int, task_id: int, annotation_id: int, label: str,
                        text: str | None = None) -> dict[str, Any]:
    """Write k variations of the task's text for ``label`` and import them as pre-labelled tasks."""
    settings = load_settings()
    key = generation_key(project_id, task_id, annotation_id, label)
    job = get_current_job()
    connection = job.connection if job is not None else None
    client = label_studio(settings)
    project = client.projects.get(id=project_id)
    control = parse_choices_control(project.label_config)
    outcome: dict[str, Any] = {"project": project_id, "task": task_id, "annotation": annotation_id, "label": label}
    llm = ThreadPoolExecutor(max_workers=1, thread_name_prefix=key)
    try:
        pending = None
        if text and text.strip():
            pending = llm.submit(_generate, settings, _prompt(settings, control, task_id, text, label), connection)
        task = as_dict(client.tasks.get(id=task_id))
        reason = _why_not(task, control, annotation_id, label)
        if reason is not None:
            return {**outcome, "status": reason}
        source_text = str((task.get("data") or {}).get(control.data_key) or "")
        try:
            prompt = _prompt(settings, control, task_id, source_text, label)
        except TemplateError as error:
            return {**outcome, "status": f"skipped: {error}"}
        generation = _result(pending) if pending is not None and source_text == text else \
            _generate(settings, prompt, connection)
    finally:
        llm.shutdown(wait=False, cancel_futures=True)
    outcome.update(generation.summary())
    with source_lock(connection, project_id, task_id) if connection is not None else nullcontext():
        if connection is not None and not is_latest(connection, project_id, task_id, annotation_id, label):
            outcome["status"] = "superseded: a newer label of the task arrived while the LLM wrote"
        else:
            outcome.update(_import_once(client, project_id, task, annotation_id, key, control, prompt, generation,
                                        project.model_version, connection))
    ensure_verify_tab_once(client, project_id)
    if job is not None:
        job.meta.update({name: value for name, value in outcome.items() if name != "task_ids"})
        job.save_meta()
    return outcome


def restore_predictions(client: Any, project_id: int, task_ids: list[int],
                         request: list[dict[str, Any]]) -> None:
    """Import the pre-labels that an import lost (another client imported at the same moment)."""
    missing = []
    for task_id, item in zip(task_ids, request):
        present = {prediction.model_version for prediction in client.tasks.get(id=task_id).predictions or []}
        missing += [{**prediction, "task": task_id} for prediction in item["predictions"]
                    if prediction["model_version"] not in present]
    if missing:
        log.warning("project %s: Label Studio dropped %d pre-labels of tasks %s on import; importing them again",
                    project_id, len(missing), task_ids)
        client.projects.import_predictions(id=project_id, request=missing)


def _import_once(client: Any, project_id: int, task: dict[str, Any], annotation_id: int, key: str,
                 control: ChoicesControl, prompt: VariationPrompt, generation: Generation,
                 project_version: str | None, connection: Redis | None) -> dict[str, Any]:
    """Import the variations unless tasks with this key exist; retire the source's other variations."""
    earlier = variation_tasks(client, project_id, source_task=task["id"])
    existing = [item.id for item in earlier if item.data.get(GENERATION_FIELD) == key]
    outcome: dict[str, Any] = {"status": "already imported", "task_ids": existing}
    if not existing:
        request = build_tasks(generation, prompt, task, annotation_id, key, control, project_version)
        task_ids: list[int] = []
        if request:
            with import_lock(connection, project_id) if connection is not None else nullcontext():
                response = client.projects.import_tasks(id=project_id, request=request, return_task_ids=True,
                                                        request_options=NO_CLIENT_RETRIES)
            task_ids = list(response.task_ids or [])
            expected = sum(len(item["predictions"]) for item in request)
            if (response.prediction_count or 0) < expected:
                restore_predictions(client, project_id, task_ids, request)
        outcome = {"status": "imported", "task_ids": task_ids, "imported": len(task_ids)}
    outcome["stale"] = retire_others(client, earlier, key)
    return outcome
