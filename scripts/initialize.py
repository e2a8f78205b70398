"""`alvar init`: make a running Label Studio ready for the first round, idempotently.

The steps, each skipped when Label Studio already shows it done, so a second run (or a run after a crash)
picks up where the last one stopped and never duplicates anything:

1. the project (found by title, else created from ``label_config/annotate.xml``);
2. the pool as unlabeled tasks and the bootstrap labels as annotated tasks, in ONE import request (Label Studio
   imports a request whole or not at all), before the backend is connected, so no webhook turns the bootstrap
   labels into LLM variations;
3. the ML backend connected with basic auth, its webhook given the shared secret, the "Verify variations" tab;
4. the first model: the project's own current version, else MODEL_DIR's shared one, else a training job on
   the worker;
5. the first cluster batch, when no batch exists yet (or completing one that was cut short).

`alvar up` runs these after starting its services; in docker compose the ``init`` service runs `alvar init`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from label_studio_sdk import LabelStudio
from redis import Redis
from rq.job import Job, JobStatus

from alvar.backend.dispatcher import TrainingReaction
from alvar.backend.model_store import serving
from alvar.backend.publishing import publish_predictions
from alvar.datafiles import Example, read_dataset
from alvar.errors import AlvarError
from alvar.generator.variation_tasks import ensure_verify_tab
from alvar.label_config import load
from alvar.labelstudio.batches import fetch_latest_batch
from alvar.labelstudio.client import ANNOTATED, count_tasks
from alvar.labelstudio.label_config import ChoicesControl, parse_choices_control
from alvar.labelstudio.task_data import BOOTSTRAP_STRATEGY, BatchFields, pool_data
from alvar.projects import remember_project
from alvar.queues import training_queue
from alvar.scripts.project import connect_backend, create_project
from alvar.scripts.select import select_project
from alvar.settings import Settings
from alvar.strategies import DEFAULT_STRATEGY

PROJECT_TITLE = "alvar safety dataset"


class InitError(AlvarError, RuntimeError):
    """A step of `alvar init` that cannot go on; the message says which and what to do."""


@dataclass(frozen=True)
class InitPlan:
    """What to set up: the files to import, where Label Studio reaches the backend, the first batch's size."""

    backend_url: str
    pool: Path | None = None
    bootstrap: Path | None = None
    budget: int = 20
    title: str = PROJECT_TITLE
    backend_auth: tuple[str, str] | None = None
    webhook_secret: str | None = None
    training_timeout: float = 3600.0


@dataclass
class InitOutcome:
    """The project and what this run did, step by step, for people to read."""

    project_id: int
    steps: list[str]
    model_version: str | None = None
    batch: int | None = None


Report = Callable[[str], None]


def find_project(client: LabelStudio, title: str) -> int | None:
    """The oldest project with this title (the one a previous `init` created), or None."""
    projects: Iterable[Any] = client.projects.list()
    ids = [int(project.id) for project in projects if project.title == title]
    return min(ids, default=None)


def bootstrap_tasks(examples: Sequence[Example], control: ChoicesControl) -> list[dict[str, Any]]:
    """Labeled examples as tasks that arrive with one annotation each; an unknown label is an error."""
    unknown = sorted({example.label for example in examples if example.label is not None} - set(control.labels))
    if unknown:
        raise InitError(f"bootstrap labels {unknown} are not choices of the project ({', '.join(control.labels)})")
    seed = BatchFields(strategy=BOOTSTRAP_STRATEGY).data()
    return [
        {"data": {**pool_data(control.data_key, example), **seed},
         "annotations": [{"result": control.choice_result(str(example.label))}]}
        for example in examples if example.label is not None
    ]


def _pool_tasks(examples: Sequence[Example], control: ChoicesControl) -> list[dict[str, Any]]:
    return [{"data": pool_data(control.data_key, example)} for example in examples]


def _import_once(client: LabelStudio, project_id: int, plan: InitPlan, control: ChoicesControl) -> int:
    """Import pool and bootstrap in one request; return how many tasks came in."""
    tasks = []
    if plan.pool is not None:
        tasks += _pool_tasks(read_dataset(plan.pool).examples, control)
    if plan.bootstrap is not None:
        tasks += bootstrap_tasks(read_dataset(plan.bootstrap).examples, control)
    if not tasks:
        return 0
    # The SDK types the request as its own models and the answer without task_ids, which Label Studio sends.
    response = client.projects.import_tasks(id=project_id, request=tasks, return_task_ids=True)  # type: ignore[arg-type]
    return len(response.task_ids or [])  # type: ignore[attr-defined]


def _wait_for_training(connection: Redis, job_id: str, timeout: float, report: Report) -> dict[str, Any]:
    """Wait for the worker to finish the training job; its failure reason becomes an InitError."""
    started = time.monotonic()
    last_note = 0.0
    while time.monotonic() - started < timeout:
        job = Job.fetch(job_id, connection=connection)
        status = job.get_status()
        if status == JobStatus.FINISHED:
            return dict(job.return_value() or {})
        if status in (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED):
            result = job.latest_result()
            reason = (result.exc_string or "").strip().splitlines()[-1:] if result else []
            raise InitError(f"training job {job_id} {status.value}: {' '.join(reason) or 'no reason recorded'} "
                            "(see `alvar jobs`)")
        if time.monotonic() - last_note >= 30:
            report(f"  training job {job_id}: {status.value} ({time.monotonic() - started:.0f} s)")
            last_note = time.monotonic()
        time.sleep(1.0)
    raise InitError(f"training job {job_id} did not finish in {timeout:.0f} s: is `alvar worker` running? "
                    "(see `alvar jobs` and the worker's log)")


def _first_model(client: LabelStudio, project_id: int, settings: Settings, connection: Redis, plan: InitPlan,
                 report: Report) -> str | None:
    """Make the version that serves the project (its own, else MODEL_DIR's shared one) the project's version,
    training the project's own first when there is neither.

    None when there is nothing to train on yet. (Connecting the backend already sets the project's
    ``model_version`` to the backend's placeholder name, so only MODEL_DIR tells whether a model exists.)
    """
    project = client.projects.get(id=project_id)
    found = serving(settings.model_dir, project_id)
    if found is not None and project.model_version == found.version:
        return found.version
    if found is not None:
        report(f"publishing the predictions of model {found.version} (from {found.store.root})")
        _, learner = found.store.load(found.version, num_threads=settings.torch_threads)
        publish_predictions(client, project_id, learner, found.version, parse_choices_control(project.label_config),
                            show_progress=True)
        return found.version
    if count_tasks(client, project_id, ANNOTATED) == 0:
        return None
    reaction = TrainingReaction(connection, training_queue(connection), settings.retrain_every)
    queued = reaction.enqueue(project_id, reason="alvar init: first model")
    report(f"training the first model on the bootstrap labels (job {queued['job_id']}, on the worker)")
    return str(_wait_for_training(connection, queued["job_id"], plan.training_timeout, report)["version"])


def initialize(settings: Settings, client: LabelStudio, connection: Redis, plan: InitPlan,
               report: Report = print) -> InitOutcome:
    """Run the steps of the module docstring; each one only when it is not done yet; report each as it is done."""
    steps: list[str] = []

    def done(step: str) -> None:
        steps.append(step)
        report(f"- {step}")

    project_id = find_project(client, plan.title)
    if project_id is None:
        project_id = create_project(client, plan.title, load("annotate"))
        done(f"created project {project_id}")
    control = parse_choices_control(client.projects.get(id=project_id).label_config)
    if count_tasks(client, project_id) == 0:
        done(f"imported {_import_once(client, project_id, plan, control)} tasks")
    if not list(client.ml.list(project=project_id)):
        connect_backend(client, project_id, plan.backend_url, basic_auth=plan.backend_auth,
                        webhook_secret=plan.webhook_secret)
        done(f"connected the ML backend at {plan.backend_url}")
    ensure_verify_tab(client, project_id)
    remember_project(connection, project_id)  # the reconciliation sweep covers it (Label Studio's /setup does too)
    version = _first_model(client, project_id, settings, connection, plan, report)
    outcome = InitOutcome(project_id, steps, version)
    if version is None:
        done("no labels and no model yet: label a few tasks, the first model trains after "
             f"{settings.retrain_every} annotations; then `alvar select`")
        return outcome
    latest = fetch_latest_batch(client, project_id)
    if latest is None or not latest.complete:  # none yet, or one cut short: select completes it
        batch = select_project(settings, client, project_id, DEFAULT_STRATEGY, plan.budget, settings.seed)
        outcome.batch = batch.batch
        done(batch.message)
    return outcome
