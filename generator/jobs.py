"""The RQ job that turns one human label of a source task into k pre-labelled variation tasks.

At-least-once delivery, exactly-once effect. The job id is the generation key (project, task, label): one set
of variations per label a task carries, whoever gave it. The LLM request starts at once (the webhook carries the
text) while Label Studio is read. The import happens under the source task's lock
(:mod:`alvar.generator.source_state`), only while an annotator's latest annotation still carries the label, and
only when the task has no variations for that label yet; it is one request that the client never repeats by
itself. A re-run (a retry, a worker killed mid-job, the sweep) therefore finds its tasks and stops. A failed
attempt (the LLM or Label Studio unreachable) is retried; a configuration error (an unusable label config,
ALVAR_CONTRAST_LABEL, a broken prompt template) fails the job at once (:func:`record_failure`).

How many: ALVAR_VARIATION_POLICY (:mod:`alvar.generator.budget`). Under ``balance`` the job reads the project's
class counts first (cached per project in Redis, :mod:`alvar.generator.class_counts`), and every variation records
its k and why (``variation_k``, ``variation_reason``); a k of 0 imports nothing and settles the job as skipped.

Statuses follow the task's current labels (each annotator's latest annotation): every job ends by marking the
source's variations ``current`` when their label is among them and ``stale`` otherwise, which training and the
"Verify variations" tab leave out. So a second annotator who agrees changes nothing, one who disagrees adds a set
for the other label (each variation is verified on its own), and a set goes stale only when nobody's latest
annotation carries its label any more; when the label comes back, the same set is current again, no LLM call.
"""

from __future__ import annotations

import hashlib
import logging
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import nullcontext
from typing import Any

from jinja2 import TemplateError as TemplateFileError
from redis import Redis
from rq import get_current_job
from rq.job import Job

from alvar.generator.budget import BALANCE, VariationBudget, budgeted_prompt
from alvar.generator.class_counts import CountReservation, project_class_counts
from alvar.generator.generation import Generation, generate
from alvar.generator.prompts import ContrastLabelError
from alvar.generator.source_state import import_lock, source_lock
from alvar.generator.templates import TemplateError, VariationPrompt
from alvar.generator.usage import record_usage
from alvar.generator.variation_tasks import (
    build_tasks,
    sync_statuses,
    variation_source_label,
    variation_tasks,
)
from alvar.generator.worker_resources import WorkerResources, current_resources
from alvar.labelstudio.choices_control import ChoicesControl, LabelConfigError, parse_choices_control
from alvar.labelstudio.client import as_dict
from alvar.labelstudio.task_data import VariationFields
from alvar.labelstudio.training_data import (
    current_labels,
    is_bootstrap,
    is_variation,
    latest_annotation,
)

log = logging.getLogger(__name__)

# An import is never sent twice by the client itself: a lost answer is settled by the job's re-run.
NO_CLIENT_RETRIES = {"max_retries": 0}
# What no retry can fix: the project's label config, ALVAR_CONTRAST_LABEL or a prompt template must change first.
# Such a job fails at once (see record_failure); the sweep queues it again later, and it succeeds once fixed.
CONFIGURATION_ERRORS: tuple[type[Exception], ...] = (LabelConfigError, ContrastLabelError, TemplateError,
                                                      TemplateFileError)


class LabelReturned(RuntimeError):
    """Raised to have RQ run the job again: its label became current while it ran (see :func:`_settle`)."""


def generation_key(project_id: int, task_id: int, label: str) -> str:
    """The job id and the ``data.generation`` of its variations: one per (project, task, label)."""
    digest = hashlib.sha256(f"{project_id}\0{task_id}\0{label}".encode()).hexdigest()[:10]
    return f"generate-{project_id}-{task_id}-{digest}"


def record_failure(job: Job, connection: Redis, error_type: type[BaseException], error: BaseException,
                   traceback: Any) -> None:
    """RQ's failure callback, run before RQ decides on a retry: keep why the last attempt failed (a job waiting to
    retry has no result), and end the retries of a configuration error, so RQ puts the job in the failed
    registry at once, with its reason."""
    job.meta["failures"] = int(job.meta.get("failures", 0)) + 1
    job.meta["last_error"] = f"{error_type.__name__}: {error}"[:500]
    job.save_meta()
    if issubclass(error_type, CONFIGURATION_ERRORS):
        job.retries_left = 0


def _generate(resources: WorkerResources, prompt: VariationPrompt, connection: Redis | None) -> Generation:
    """Ask the LLM; what it cost is recorded at once, even when a later request of the job fails."""
    generation = Generation([], prompt.k, prompt.template_id, resources.chat.model)
    try:
        return generate(prompt, resources.chat, resources.embed, resources.settings.near_duplicate_threshold,
                        into=generation)
    finally:
        if connection is not None:
            record_usage(connection, generation.usage)


def _result(pending: Future[Generation]) -> Generation:
    """Wait in short steps: RQ's timer-based timeout can only interrupt a thread that runs Python code."""
    while not pending.done():
        wait([pending], timeout=1.0)
    return pending.result()


def _why_not(task: dict[str, Any], control: ChoicesControl, label: str) -> str | None:
    if is_variation(task):
        return "skipped: a variation never generates variations"
    if is_bootstrap(task):
        return "skipped: a bootstrap label never generates variations"
    if label not in current_labels(task, control):
        return "superseded: no annotator's latest annotation carries this label"
    return None


def _has_set(variations: list[Any], label: str) -> bool:
    return any(variation_source_label(variation) == label for variation in variations)


def generate_variations(project_id: int, task_id: int, label: str, text: str | None = None) -> dict[str, Any]:
    """Write k variations of the task's text for ``label``, import them as pre-labelled tasks, and bring the
    statuses of the source's variations in line with its current labels."""
    resources = current_resources()
    settings = resources.settings
    job = get_current_job()
    connection = job.connection if job is not None else None
    client = resources.label_studio
    project = client.projects.get(id=project_id)
    control = parse_choices_control(project.label_config or "")
    descriptions = control.descriptions()
    outcome: dict[str, Any] = {"project": project_id, "task": task_id, "label": label}
    generation: Generation | None = None
    prompt: VariationPrompt | None = None
    budget: VariationBudget | None = None
    llm = ThreadPoolExecutor(max_workers=1, thread_name_prefix=generation_key(project_id, task_id, label))
    if label not in control.labels:
        llm.shutdown()
        return {**outcome, "status": f"skipped: {label!r} is not a choice of the project"}
    with CountReservation(connection, project_id) as reservation:
        try:
            counts = project_class_counts(connection, client, project_id, control) \
                if settings.variation_policy == BALANCE else None
            pending = None
            if text and text.strip() and len(text) <= settings.max_text_chars:
                early, _ = budgeted_prompt(settings, descriptions, text, label, task_id, counts)
                pending = llm.submit(_generate, resources, early, connection) if early is not None else None
            task = as_dict(client.tasks.get(id=str(task_id)))
            reason = _why_not(task, control, label)
            if reason is None and _has_set(variation_tasks(client, project_id, source_task=task_id), label):
                reason = "already imported"
            source_text = str((task.get("data") or {}).get(control.data_key) or "")
            if reason is None and len(source_text) > settings.max_text_chars:
                reason = f"skipped: the text is longer than ALVAR_MAX_TEXT_CHARS ({settings.max_text_chars})"
            if reason is None and not source_text.strip():
                reason = "skipped: the source text is empty"
            if reason is None:
                prompt, budget = budgeted_prompt(settings, descriptions, source_text, label, task_id, counts)
                outcome["variation_reason"] = budget.reason
                if prompt is None:
                    reason = f"skipped: {budget.reason}"
                elif counts is not None:
                    reservation.reserve(prompt.variation_label, budget.k)
            if reason is None and prompt is not None:
                generation = _result(pending) if pending is not None and source_text == text else \
                    _generate(resources, prompt, connection)
                outcome.update(generation.summary())
                _record(job, outcome)  # kept even when the import below fails and the job is retried
        finally:
            llm.shutdown(wait=False, cancel_futures=True)
        with source_lock(connection, project_id, task_id) if connection is not None else nullcontext():
            outcome.update(_settle(client, project_id, task_id, label, control, prompt, generation, budget,
                                   project.model_version, connection))
        if prompt is not None and outcome["status"] == "imported":
            reservation.imported(prompt.variation_label, outcome["imported"])
        if reason is not None and reason.startswith("superseded") and outcome["status"] == "superseded" \
                and label in outcome["current_labels"]:
            # The label came back while this job ran without it (A -> B -> A): its webhook found this job running
            # and queued nothing, so this job runs again (RQ's retry) and writes the set.
            raise LabelReturned(f"{label!r} is current again on task {task_id}; the job runs again to write its set")
        if reason is not None and outcome["status"] != "imported":
            outcome["status"] = reason
        resources.ensure_verify_tab(project_id)
        _record(job, outcome)
        return outcome


def _record(job: Job | None, outcome: dict[str, Any]) -> None:
    if job is not None:
        job.meta.update({name: value for name, value in outcome.items() if name != "task_ids"})
        job.save_meta()


def _with_budget(request: list[dict[str, Any]], budget: VariationBudget | None) -> list[dict[str, Any]]:
    """The import request with the k each variation's job asked for and why, in every task's data."""
    if budget is None:
        return request
    fields = VariationFields(variation_k=budget.k, variation_reason=budget.reason).data()
    return [{**item, "data": {**item["data"], **fields}} for item in request]


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


def _settle(client: Any, project_id: int, task_id: int, label: str, control: ChoicesControl,
            prompt: VariationPrompt | None, generation: Generation | None, budget: VariationBudget | None,
            project_version: str | None, connection: Redis | None) -> dict[str, Any]:
    """Under the source's lock, with what Label Studio shows now: import the generation when its label is still
    current and has no set yet, then sync every variation's status with the current labels."""
    task = as_dict(client.tasks.get(id=task_id))
    labels = [] if is_variation(task) else current_labels(task, control)
    earlier = variation_tasks(client, project_id, source_task=task_id)
    outcome: dict[str, Any] = {"status": "already imported" if _has_set(earlier, label) else "superseded"}
    if generation is not None and prompt is not None and label in labels and not _has_set(earlier, label):
        annotation_id = annotation_with(task, control, label)
        key = generation_key(project_id, task_id, label)
        request = _with_budget(build_tasks(generation, prompt, task, annotation_id, key, control, project_version),
                              budget)
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
    outcome["stale"] = sync_statuses(client, earlier, labels)
    outcome["current_labels"] = labels
    return outcome


def annotation_with(task: dict[str, Any], control: ChoicesControl, label: str) -> int | None:
    """The most recent annotation that gives ``label`` (the variations' ``source_annotation``)."""
    giving = [a for a in task.get("annotations") or [] if control.chosen_label(a.get("result")) == label]
    latest = latest_annotation({"annotations": giving})
    return latest.get("id") if latest is not None else None


def resync_source(client: Any, connection: Redis, project_id: int, task_id: int, control: ChoicesControl) -> int:
    """Under the source's lock, with fresh reads: its variations' statuses in line with its current labels."""
    with source_lock(connection, project_id, task_id):
        task = as_dict(client.tasks.get(id=task_id))
        labels = [] if is_variation(task) else current_labels(task, control)
        return sync_statuses(client, variation_tasks(client, project_id, source_task=task_id), labels)
