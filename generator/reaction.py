"""The dispatcher's generation reaction: each human label of a source task becomes one queued generation job.

Runs inside the webhook request (Label Studio waits 1 s at most), so it only reads the payload and enqueues.
Skipped: every event of a generative project (its outputs come from the teacher, :mod:`alvar.generator.teacher`,
never from variations), variations (their annotations are reviews), bootstrap labels, skipped annotations,
annotations without a label of the project's config. The job id is the generation key (project, task, label),
whoever labelled it: a job already waiting or running for that key is not queued again, so a second annotator who
agrees, a repeated delivery or a quick A -> B -> A relabel never pays the LLM twice. The reconciliation sweep
(:mod:`alvar.loop.reconcile`) queues through :func:`queue_generation` too.
"""

from __future__ import annotations

from typing import Any

from redis import Redis
from rq import Queue
from rq.job import JobStatus

from alvar.generator.jobs import generate_variations, generation_key, record_failure
from alvar.labelstudio.choices_control import LabelConfigError
from alvar.labelstudio.task_kinds import task_kind
from alvar.labelstudio.webhook import (
    ANNOTATION_ACTIONS,
    HumanLabel,
    WebhookEvent,
    human_label,
)
from alvar.queues import DEFAULT_JOB_POLICY, JobPolicy, KeyedJob, enqueue_once, generation_queue
from alvar.settings import Settings


def queue_generation(connection: Redis, queue: Queue, project_id: int, found: HumanLabel, policy: JobPolicy,
                     reason: str = "webhook") -> dict[str, Any]:
    """Queue the generation job of (project, task, label) unless one is waiting or running already."""

    def plan(status: JobStatus | None) -> KeyedJob:
        # The text lets the job ask the LLM while it reads Label Studio; after a finished run (a label that came
        # back) the set most likely exists, so the job looks first and asks only when it must.
        text = found.text if status != JobStatus.FINISHED else None
        return KeyedJob(generate_variations, (project_id, found.task_id, found.label, text), record_failure,
                        f"{found.label!r} variations of task {found.task_id} (project {project_id})",
                        {"project": project_id, "task": found.task_id, "annotation": found.annotation_id,
                         "label": found.label, "queued_by": reason})

    # A short wait: Label Studio gives the webhook 1 s; a lock not had in time is a 503, and the sweep's turn.
    return enqueue_once(connection, queue, generation_key(project_id, found.task_id, found.label), plan, policy,
                        lock_wait=0.5)


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
        kind = task_kind(event.label_config())
        if kind.no_variations is not None:
            return {"generation": "skipped", "reason": kind.no_variations}
        try:
            control = kind.control(event.label_config())
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
