"""The dispatcher's generation reaction: each human annotation's label becomes one queued generation job.

Runs inside the webhook request (Label Studio waits 1 s at most), so it only reads the payload and enqueues.
Skipped: variations (their annotations are reviews), cancelled (skipped) annotations, annotations without a
label. A repeated delivery (the same annotation and label as the task's latest) enqueues nothing; a label that
differs from the task's latest is queued, even one that was there before (A, B, then A again).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from redis import Redis
from rq import Callback, Queue, Retry

from alvar.backend.dispatcher import ANNOTATION_ACTIONS, WebhookEvent
from alvar.backend.label_config import LabelConfigError, parse_choices_control
from alvar.backend.training_data import is_variation
from alvar.generator.jobs import generate_variations, generation_key, record_failure
from alvar.generator.source_state import record_latest

# A failed job (LLM or Label Studio unreachable after the SDKs' own retries) runs again later, three times.
JOB_RETRY_INTERVALS = (30, 120, 600)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


class GenerationReaction:
    def __init__(self, connection: Redis, queue: Queue, job_timeout: int = 300) -> None:
        self.connection = connection
        self.queue = queue
        self.job_timeout = job_timeout

    def __call__(self, event: WebhookEvent) -> dict[str, Any] | None:
        if event.action not in ANNOTATION_ACTIONS:
            return None
        project = event.payload.get("project")
        label_config = project.get("label_config") if isinstance(project, Mapping) else None
        try:
            control = parse_choices_control(label_config)
        except LabelConfigError as error:
            return {"generation": "skipped", "reason": f"no usable label config in the payload: {error}"}
        tasks = {task.get("id"): task for task in _as_list(event.payload.get("task")) if isinstance(task, Mapping)}
        jobs = []
        for annotation in _as_list(event.payload.get("annotation", event.payload.get("annotations"))):
            jobs.append(self._react(event.project_id, annotation, tasks, control))
        return {"generation": jobs}

    def _react(self, project_id: int, annotation: Any, tasks: Mapping[Any, Any], control: Any) -> dict[str, Any]:
        if not isinstance(annotation, Mapping) or not isinstance(annotation.get("id"), int):
            return {"status": "skipped", "reason": "the annotation has no id"}
        task_ref = annotation.get("task")
        task_id = task_ref.get("id") if isinstance(task_ref, Mapping) else task_ref
        task = tasks.get(task_id, task_ref if isinstance(task_ref, Mapping) else {})
        if not isinstance(task_id, int):
            return {"status": "skipped", "reason": "the annotation names no task"}
        if is_variation(task):
            return {"status": "skipped", "reason": "a variation's review generates nothing", "task": task_id}
        if annotation.get("was_cancelled"):
            return {"status": "skipped", "reason": "the annotation was skipped", "task": task_id}
        label = control.chosen_label(annotation.get("result") or [])
        if label is None:
            return {"status": "skipped", "reason": f"no {control.from_name} chosen", "task": task_id}
        job_id = generation_key(project_id, task_id, annotation["id"], label)
        if not record_latest(self.connection, project_id, task_id, annotation["id"], label):
            return {"status": "already queued", "job_id": job_id}
        text = (task.get("data") or {}).get(control.data_key) if isinstance(task, Mapping) else None
        self.queue.enqueue(
            generate_variations, project_id, task_id, annotation["id"], label, text if isinstance(text, str) else None,
            job_id=job_id,
            job_timeout=self.job_timeout,
            retry=Retry(max=len(JOB_RETRY_INTERVALS), interval=list(JOB_RETRY_INTERVALS)),
            on_failure=Callback(record_failure),
            result_ttl=30 * 24 * 3600,
            failure_ttl=30 * 24 * 3600,
            description=f"{label!r} variations of task {task_id} (project {project_id})",
            meta={"project": project_id, "task": task_id, "annotation": annotation["id"], "label": label},
        )
        return {"status": "queued", "job_id": job_id}
