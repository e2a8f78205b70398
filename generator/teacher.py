"""The teacher's RQ job: one pre-filled output for each selected input of a generative project.

For a task of a batch, the teacher LLM (ALVAR_TEACHER_MODEL, else ALVAR_LLM_MODEL) is asked for one output that
has the regulated attribute H (:class:`~alvar.generator.templates.TeacherPrompt`). The draft is screened
(:mod:`alvar.generator.draft_screening`: blank, the assistant speaking, an echo of the input, too long, or judged
by a confident R to miss H) and asked for again, up to ALVAR_TEACHER_ATTEMPTS requests. What passed goes back into
the task: ``data.draft`` and its provenance (:class:`~alvar.labelstudio.task_data.DraftFields`), and ONE prediction
with the draft as the TextArea text under the project's model version, so Label Studio shows it pre-filled for a
person to accept, edit or reject; its score is R's informativeness of the draft (0.0 while R is not trained).
When every attempt was screened out, only ``draft_status = "screened out: <reason>"`` is written: the person
writes the output, and the task stays in its batch.

At-least-once delivery, exactly-once effect, as for variations (:mod:`alvar.generator.jobs`): the job id is
:func:`draft_key`; the write-back happens under the task's source lock after a fresh read, and only while the task
has no draft and no annotation; each of its two writes (the data, the prediction) is checked before it is made,
so a re-run after a worker died between them completes the missing one and never repeats the other. An accepted
draft is cached as the answer to its request, so such a re-run costs nothing. What each request cost is recorded
at once (:func:`~alvar.generator.usage.record_usage`) and in ``job.meta``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

from redis import Redis
from rq import Queue, get_current_job
from rq.job import Job

from alvar.attribute_model import AttributeJudge, AttributeModelError
from alvar.generator.draft_screening import screen_draft
from alvar.generator.jobs import CONFIGURATION_ERRORS, NO_CLIENT_RETRIES, record_failure
from alvar.generator.llm import OUTPUT_SCHEMA, ChatClient, Usage
from alvar.generator.source_state import source_lock
from alvar.generator.templates import TeacherPrompt
from alvar.generator.usage import record_usage
from alvar.generator.worker_resources import current_resources
from alvar.labelstudio.choices_control import interface
from alvar.labelstudio.client import as_dict
from alvar.labelstudio.generation_config import GenerationControl, parse_generation_control
from alvar.labelstudio.task_data import DRAFTED_STATUS, DraftFields, data_of, screened_out
from alvar.labelstudio.task_kinds import task_kind
from alvar.queues import DEFAULT_JOB_POLICY, JobPolicy, KeyedJob, enqueue_once, generation_queue
from alvar.settings import Settings

# Besides the variation jobs' configuration errors: an attribute value H that R does not know.
DRAFT_CONFIGURATION_ERRORS: tuple[type[Exception], ...] = (*CONFIGURATION_ERRORS, AttributeModelError)


def draft_key(project_id: int, task_id: int) -> str:
    """The job id of a task's draft, kept in ``data.draft_key``: one draft per (project, task)."""
    return f"draft-{project_id}-{task_id}"


def record_draft_failure(job: Job, connection: Redis, error_type: type[BaseException], error: BaseException,
                         traceback: Any) -> None:
    """:func:`~alvar.generator.jobs.record_failure`, with R's configuration errors failing at once too."""
    record_failure(job, connection, error_type, error, traceback)
    if issubclass(error_type, DRAFT_CONFIGURATION_ERRORS):
        job.retries_left = 0


def queue_draft(connection: Redis, queue: Queue, project_id: int, task_id: int, policy: JobPolicy = DEFAULT_JOB_POLICY,
                reason: str = "select", rerun_finished: bool = False) -> dict[str, Any]:
    """Queue the draft job of a task unless one is waiting or running, or (without ``rerun_finished``, which the
    sweep passes for a task it found without a draft) one finished already."""
    planned = KeyedJob(draft_output, (project_id, task_id), record_draft_failure,
                       f"teacher draft of task {task_id} (project {project_id})",
                       {"project": project_id, "task": task_id, "queued_by": reason})
    return enqueue_once(connection, queue, draft_key(project_id, task_id), lambda _status: planned, policy,
                        lock_wait=5, rerun_finished=rerun_finished)


def enqueue_drafts(connection: Redis, project_id: int, task_ids: Sequence[int], policy: JobPolicy = DEFAULT_JOB_POLICY,
                   reason: str = "select") -> list[str]:
    """Queue the draft job of each task that has none waiting, running or finished; the ids queued now."""
    queue = generation_queue(connection)
    outcomes = [queue_draft(connection, queue, project_id, task_id, policy, reason) for task_id in task_ids]
    return [outcome["job_id"] for outcome in outcomes if outcome["status"] == "queued"]


def attribute_hint(label_config: str, control: GenerationControl, value: str) -> str:
    """The ``hint`` of the attribute value's ``<Choice>`` (what H means, for the prompt), or ""."""
    attribute = next(tag for tag in interface(label_config).controls or () if tag.name == control.attribute_name)
    choice = attribute.labels_attrs.get(value)
    return str(choice.attr.get("hint") or "") if choice is not None else ""


def _why_not(task: dict[str, Any], control: GenerationControl, settings: Settings) -> str | None:
    """Why the task gets no teacher request; None when it should."""
    if task.get("annotations"):
        return "already reviewed"
    fields = DraftFields.of(task)
    if fields.draft is not None:
        return "already drafted"
    if fields.draft_status is not None:
        return f"already {fields.draft_status}"
    text = data_of(task).get(control.data_key)
    if not isinstance(text, str) or not text.strip():
        return "skipped: the input is empty"
    if len(text) > settings.max_text_chars:
        return f"skipped: the input is longer than ALVAR_MAX_TEXT_CHARS ({settings.max_text_chars})"
    return None


def ask_teacher(chat: ChatClient, prompt: TeacherPrompt, attempts: int, judge: AttributeJudge | None,
                confidence: float, connection: Redis | None) -> dict[str, Any]:
    """Up to ``attempts`` requests until a draft passes screening: the draft (None when none did), the reasons
    of the screened ones, and what the requests cost (recorded in Redis as each one returns)."""
    usage = Usage()
    reasons: list[str] = []
    draft = None
    for _ in range(attempts):
        messages = prompt.follow_up(reasons[-1]) if reasons else prompt.messages()
        completion = chat.complete(messages, prompt.max_tokens(), OUTPUT_SCHEMA)
        usage += completion.usage
        if connection is not None:
            record_usage(connection, completion.usage)
        candidate, reason = screen_draft(completion.content, prompt.text, prompt.max_chars, judge, confidence)
        if reason is None:
            draft = candidate
            if not completion.usage.cached:
                chat.remember(messages, json.dumps({"output": draft}, ensure_ascii=False))
            break
        reasons.append(reason)
    return {"draft": draft, "attempts": len(reasons) + (draft is not None), "reasons": reasons, **usage.as_dict()}


def prefills(prediction: Any, control: GenerationControl, draft: str) -> bool:
    """Whether a prediction (of a task, as Label Studio lists it) fills the output box with ``draft``."""
    return isinstance(prediction, dict) and control.review(prediction.get("result")).output == draft.strip()


def _replace_prediction(client: Any, task: dict[str, Any], control: GenerationControl, draft: str,
                        judge: AttributeJudge | None, model_version: str) -> bool:
    """Make the draft the task's one prediction of ``model_version``: create it unless a prediction pre-fills it
    already (this job's, or the backend's keeping it), then delete that version's other predictions (the
    student's interim output), so Label Studio pre-fills the draft. Each step is checked before it is made, so a
    re-run completes what a killed run left. True when it created the prediction."""
    predictions = [prediction for prediction in task.get("predictions") or [] if isinstance(prediction, dict)]
    created = not any(prefills(prediction, control, draft) for prediction in predictions)
    if created:
        source = str(data_of(task).get(control.data_key) or "")
        score = float(judge.informativeness([draft], [source])[0]) if judge is not None else 0.0
        client.predictions.create(task=task["id"], result=control.output_result(draft), score=score,
                                  model_version=model_version, request_options=NO_CLIENT_RETRIES)
    for prediction in predictions:
        if prediction.get("model_version") == model_version and not prefills(prediction, control, draft):
            client.predictions.delete(id=prediction["id"])
    return created


def _settle(client: Any, project_id: int, task_id: int, control: GenerationControl, asked: dict[str, Any] | None,
            fields: DraftFields, judge: AttributeJudge | None) -> dict[str, Any]:
    """With what Label Studio shows now: write the draft (or why there is none) when the task has neither and no
    annotation, then its prediction of the project's version as read now (a training may have switched it while
    the teacher wrote) when the task carries this job's draft without one. A switch after this read can still
    drop the prediction with the old version's: the sweep finds such a draft and queues this job again
    (:func:`alvar.generator.reconcile.catch_up_drafts`)."""
    model_version = client.projects.get(id=project_id).model_version
    task = as_dict(client.tasks.get(id=str(task_id)))
    if task.get("annotations"):
        return {"status": "already reviewed"}
    written = DraftFields.of(task)
    status = "already drafted"
    if written.draft is None and written.draft_status is None and asked is not None:
        client.tasks.update(id=str(task_id), data={**data_of(task), **fields.data()},
                            request_options=NO_CLIENT_RETRIES)
        written, status = fields, fields.draft_status or DRAFTED_STATUS
    if written.draft is not None and written.draft_key == fields.draft_key \
            and _replace_prediction(client, task, control, written.draft, judge, model_version or ""):
        status = DRAFTED_STATUS
    return {"status": status}


def draft_output(project_id: int, task_id: int) -> dict[str, Any]:
    """The job: ask the teacher for the task's output and pre-fill it (see the module docstring)."""
    resources = current_resources()
    settings = resources.settings
    job = get_current_job()
    connection = job.connection if job is not None else None
    client = resources.label_studio
    key = draft_key(project_id, task_id)
    outcome: dict[str, Any] = {"project": project_id, "task": task_id}
    project = client.projects.get(id=project_id)
    label_config = project.label_config or ""
    if (no_drafts := task_kind(label_config).no_drafts) is not None:
        return _record(job, {**outcome, "status": f"skipped: {no_drafts}"})
    control = parse_generation_control(label_config)
    judge = resources.judge(control.required_attribute(settings.attribute_value))
    # H as R resolves it (ALVAR_ATTRIBUTE_VALUE, else R's card, else the config): the value asked for is the one
    # screening checks.
    required = judge.required if judge is not None else control.required_attribute(settings.attribute_value)
    task = as_dict(client.tasks.get(id=str(task_id)))
    reason = _why_not(task, control, settings)
    if reason is not None and reason != "already drafted":  # a draft of this job may still lack its prediction
        return _record(job, {**outcome, "status": reason})
    asked = None
    fields = DraftFields(draft_key=key)
    if reason is None:
        prompt = TeacherPrompt(str(data_of(task)[control.data_key]), required,
                               attribute_hint(label_config, control, required), settings.max_output_chars)
        chat = resources.teacher
        asked = ask_teacher(chat, prompt, settings.teacher_attempts, judge, settings.screen_confidence, connection)
        outcome.update(asked, template=prompt.template_id, teacher_model=chat.model, r_loaded=judge is not None)
        _record(job, outcome)  # kept even when the write-back below fails and the job is retried
        status = screened_out(asked["reasons"][-1]) if asked["draft"] is None else DRAFTED_STATUS
        fields = DraftFields(draft=asked["draft"], draft_status=status, teacher_model=chat.model,
                             draft_template=prompt.template_id, draft_key=key, draft_attempts=asked["attempts"],
                             student_version=project.model_version)
    with source_lock(connection, project_id, task_id) if connection is not None else nullcontext():
        settled = _settle(client, project_id, task_id, control, asked, fields, judge)
    return _record(job, {**outcome, "status": settled["status"]})


def _record(job: Job | None, outcome: dict[str, Any]) -> dict[str, Any]:
    if job is not None:
        job.meta.update({name: value for name, value in outcome.items() if name != "draft"})
        job.save_meta()
    return outcome
