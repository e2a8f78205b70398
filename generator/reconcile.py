"""The generation half of the reconciliation sweep (:mod:`alvar.loop.reconcile`): missed variations, queued.

Per source task and current label (each annotator's latest annotation) of a project read from Label Studio:
- the generation job is queued when the task has no variations for that label, no job for it is waiting or
  running, and no finished job settled it (a finished job that imported nothing, e.g. every answer refused, is
  settled until its result expires after 30 days; a job that failed for good is queued again);
- variation statuses are brought in line with the current labels (a deleted annotation leaves its set stale).

A generative project has no variations: for it the sweep queues the teacher's draft job
(:func:`catch_up_drafts`) of every task that carries a batch number and has no draft, no draft status and no
annotation (an enqueue lost, or a worker that died with the job), unless a finished job skipped it for good (an
empty or oversized input).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError
from redis import Redis
from rq import Queue
from rq.job import Job, JobStatus

from alvar.generator.jobs import annotation_with, generation_key, resync_source
from alvar.generator.reaction import queue_generation
from alvar.generator.teacher import draft_key, prefills, queue_draft
from alvar.generator.variation_tasks import is_out_of_line, variation_source_label
from alvar.labelstudio.choices_control import ChoicesControl
from alvar.labelstudio.client import as_dict, dm_query
from alvar.labelstudio.generation_config import GenerationControl
from alvar.labelstudio.task_data import BATCHED, VARIATIONS, DraftFields, VariationFields
from alvar.labelstudio.training_data import current_labels, is_bootstrap
from alvar.labelstudio.webhook import HumanLabel
from alvar.queues import JobPolicy, generation_queue, job_status
from alvar.settings import Settings

log = logging.getLogger(__name__)

SETTLED_OUTCOMES = ("imported", "already imported", "skipped")
# A finished draft job that left its task without a draft for good; any other (a draft lost since) runs again.
SETTLED_DRAFT_OUTCOMES = ("skipped",)


@dataclass
class GenerationCatchUp:
    """What the sweep found and did for one project's variations."""

    sources: int = 0
    queued: list[str] = field(default_factory=list)
    pending: int = 0
    restated: int = 0
    error: str | None = None


def catch_up_generation(settings: Settings, client: LabelStudio, connection: Redis, project_id: int,
                        control: ChoicesControl, annotated: list[dict[str, Any]]) -> GenerationCatchUp:
    """Queue the missing generation jobs of the project's annotated source tasks and restate their variations."""
    found = GenerationCatchUp()
    by_source = _variations_by_source(client, project_id)
    queue = generation_queue(connection)
    labelled_sources: set[int] = set()
    for task in annotated:
        labels = current_labels(task, control)
        if is_bootstrap(task):
            continue
        labelled_sources.add(task["id"])
        found.sources += bool(labels)
        have = {variation_source_label(variation) for variation in by_source.get(task["id"], [])}
        for label in labels:
            if label in have:
                continue
            outcome = _queue_missing(settings, connection, queue, project_id, task, control, label)
            if outcome["status"] == "queued":
                found.queued.append(outcome["job_id"])
            elif outcome["status"] == "already queued":
                found.pending += 1
        if _out_of_line(by_source.get(task["id"], []), labels):
            found.restated += _resync(client, connection, project_id, task["id"], control, found)
    for source, variations in by_source.items():
        if source not in labelled_sources and _out_of_line(variations, []):  # its annotations were all deleted
            found.restated += _resync(client, connection, project_id, source, control, found)
    return found


def _resync(client: LabelStudio, connection: Redis, project_id: int, task_id: int, control: ChoicesControl,
            found: GenerationCatchUp) -> int:
    try:
        return resync_source(client, connection, project_id, task_id, control)
    except ApiError as error:  # the source task was deleted meanwhile, say; the next sweep looks again
        found.error = f"task {task_id}: {type(error).__name__}: {error}"
        return 0


def _out_of_line(variations: list[Any], labels: list[str]) -> bool:
    """Whether a status disagrees with the labels as this sweep read them (re-checked under the lock)."""
    return any(is_out_of_line(variation, labels) for variation in variations)


def _variations_by_source(client: LabelStudio, project_id: int) -> dict[int, list[Any]]:
    query = dm_query(VARIATIONS)
    grouped: dict[int, list[Any]] = defaultdict(list)
    task: Any  # the SDK's pager leaves its item type open
    for task in client.tasks.list(project=project_id, query=query, fields="task_only", page_size=500):
        source = VariationFields.of(task).source_task
        if source is not None:
            grouped[source].append(task)
    return grouped


def _settled(connection: Redis, job_id: str, outcomes: tuple[str, ...] = SETTLED_OUTCOMES) -> bool:
    """A finished job whose outcome starts with one of ``outcomes`` (for variations: an import, of k, or of none
    when every answer was screened out)."""
    if job_status(connection, job_id) != JobStatus.FINISHED:
        return False
    outcome = Job.fetch(job_id, connection=connection).return_value()
    return isinstance(outcome, dict) and str(outcome.get("status", "")).startswith(outcomes)


def _queue_missing(settings: Settings, connection: Redis, queue: Queue, project_id: int, task: dict[str, Any],
                   control: ChoicesControl, label: str) -> dict[str, Any]:
    job_id = generation_key(project_id, task["id"], label)
    if _settled(connection, job_id):
        return {"status": "settled", "job_id": job_id}
    human = HumanLabel(task["id"], annotation_with(task, control, label) or 0, label, None)
    return queue_generation(connection, queue, project_id, human, JobPolicy.from_settings(settings), reason="sweep")


def _unshown_draft(task: dict[str, Any], control: GenerationControl, model_version: str | None) -> bool:
    """A draft that no prediction of the project's version pre-fills: a training switched the version while the
    draft's job wrote it, and the old version's predictions went with the draft's."""
    draft = DraftFields.of(task).draft
    predictions = [prediction for prediction in task.get("predictions") or [] if isinstance(prediction, dict)]
    return draft is not None and not any(prediction.get("model_version") == model_version
                                         and prefills(prediction, control, draft) for prediction in predictions)


def _needs_draft(connection: Redis, project_id: int, task: dict[str, Any], control: GenerationControl,
                 model_version: str | None) -> bool:
    if task.get("annotations"):
        return False
    if _unshown_draft(task, control, model_version):
        return True
    fields = DraftFields.of(task)
    return fields.draft is None and fields.draft_status is None \
        and not _settled(connection, draft_key(project_id, task["id"]), SETTLED_DRAFT_OUTCOMES)


def catch_up_drafts(settings: Settings, client: LabelStudio, connection: Redis, project_id: int,
                    control: GenerationControl) -> GenerationCatchUp:
    """Queue the draft job of each unreviewed task of a generative project's batches that has no draft and no
    draft status (unless its job is waiting or running, or finished skipping it), or whose draft no prediction of
    the project's version pre-fills (the job's re-run writes only that prediction)."""
    found = GenerationCatchUp()
    queue = generation_queue(connection)
    model_version = client.projects.get(id=project_id).model_version
    task: Any  # the SDK's pager leaves its item type open
    for task in client.tasks.list(project=project_id, query=dm_query(BATCHED), fields="all", page_size=500):
        task = as_dict(task)
        found.sources += 1
        if not _needs_draft(connection, project_id, task, control, model_version):
            continue
        outcome = queue_draft(connection, queue, project_id, task["id"], JobPolicy.from_settings(settings),
                              reason="sweep", rerun_finished=True)
        if outcome["status"] == "queued":
            found.queued.append(outcome["job_id"])
        elif outcome["status"] == "already queued":
            found.pending += 1
    return found
