"""The dispatcher's generation reaction: each human label of a source task becomes one queued generation job.

Runs inside the webhook request (Label Studio waits 1 s at most), so it only reads the payload and enqueues.
Skipped: every event of a generative project (its outputs come from the teacher, :mod:`alvar.generator.teacher`,
never from variations), variations (their annotations are reviews), bootstrap labels, skipped annotations,
annotations without a label of the project's config. The job id is the generation key (project, task, label),
whoever labelled it: a job already waiting or running for that key is not queued again, so a second annotator who
agrees, a repeated delivery or a quick A -> B -> A relabel never pays the LLM twice. The reconciliation sweep
(:mod:`alvar.scripts.reconcile`) queues through :func:`queue_generation` too.
"""

from __future__ import annotations

from typing import Any

from redis import Redis
from rq import Callback, Queue
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry

from alvar.generator.jobs import generate_variations, generation_key, record_failure
from alvar.labelstudio.generation_config import GENERATION
from alvar.labelstudio.label_config import LabelConfigError
from alvar.labelstudio.webhook import (
    ANNOTATION_ACTIONS,
    HumanLabel,
    WebhookEvent,
    human_label,
)
from alvar.queues import DEFAULT_JOB_POLICY, PENDING_STATUSES, JobPolicy, generation_queue, job_status
from alvar.settings import Settings


def queue_generation(connection: Redis, queue: Queue, project_id: int, found: HumanLabel, policy: JobPolicy,
                     reason: str = "webhook") -> dict[str, Any]:
    """Queue the generation job of (project, task, label) unless one is waiting or running already."""
    job_id = generation_key(project_id, found.task_id, found.label)
    # A short wait: Label Studio gives the webhook 1 s; a lock not had in time is a 503, and the sweep's turn.
    with connection.lock(f"{job_id}:queueing", timeout=10, blocking_timeout=0.5):
        status = job_status(connection, job_id)
        if status in PENDING_STATUSES:
            return {"status": "already queued", "job_id": job_id}
        if status == JobStatus.FAILED:  # queued again: no longer failed, so `alvar jobs --requeue-failed` skips it
            FailedJobRegistry(queue=queue).remove(job_id)
        # The text lets the job ask the LLM while it reads Label Studio; after a finished run (a label that came
        # back) the set most likely exists, so the job looks first and asks only when it must.
        text = found.text if status != JobStatus.FINISHED else None
        # A key's job keeps its history across runs: what the run that wrote the set asked and spent.
        earlier = Job.fetch(job_id, connection=connection).meta if status is not None else {}
        queue.enqueue(
            generate_variations, project_id, found.task_id, found.label, text,
            job_id=job_id,
            job_timeout=policy.timeout,
            retry=policy.retry(),
            on_failure=Callback(record_failure),
            result_ttl=30 * 24 * 3600,
            failure_ttl=30 * 24 * 3600,
            description=f"{found.label!r} variations of task {found.task_id} (project {project_id})",
            meta={**earlier, "project": project_id, "task": found.task_id, "annotation": found.annotation_id,
                  "label": found.label, "queued_by": reason},
        )
    return {"status": "queued", "job_id": job_id}


class GenerationReaction:
    """The webhook reaction that queues one generation job per human label of a source task."""

    def __init__(self, connection: Redis, queue: Queue, policy: JobPolicy = DEFAULT_JOB_POLICY) -> None:
        self.connection = connection
        self.queue = queue
        self.policy = policy

    @classmethod
    def from_settings(cls, settings: Settings, connection: Redis) -> GenerationReaction:
        return cls(connection, generation_queue(connection), JobPolicy.from_settings(settings))

    def __call__(self, event: WebhookEvent) -> dict[str, Any] | None:
        if event.action not in ANNOTATION_ACTIONS:
            return None
        if event.kind() == GENERATION:
            return {"generation": "skipped", "reason": "a generative project never gets variations"}
        try:
            control = event.control()
        except LabelConfigError as error:
            return {"generation": "skipped", "reason": f"no usable label config in the payload: {error}"}
        jobs = []
        for annotation, task in event.annotations():
            found = human_label(annotation, task, control)
            if isinstance(found, HumanLabel):
                jobs.append(queue_generation(self.connection, self.queue, event.project_id, found, self.policy))
            else:
                jobs.append({"status": "skipped", "reason": found})
        return {"generation": jobs}
