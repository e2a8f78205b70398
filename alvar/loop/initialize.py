"""`alvar init`: make a running Label Studio ready for the first round, idempotently.

The steps, each skipped when Label Studio already shows it done, so a second run (or a run after a crash)
picks up where the last one stopped and never duplicates anything:

1. the project (found by title, else created from ``label_config/annotate.xml``, or for a generative project
   from ``label_config/generate.xml`` with R's classes as the attribute's choices when R is trained);
2. the pool as unlabeled tasks and the bootstrap labels (or pairs) as annotated tasks, in ONE import request
   (Label Studio imports a request whole or not at all), before the backend is connected, so no webhook turns the
   bootstrap labels into LLM variations;
3. the ML backend connected with basic auth, its webhook given the shared secret, the "Verify variations" tab
   (classification only: a generative project has no variations);
4. the first model: the project's own current version, else MODEL_DIR's shared one (classification only), else a
   training job on the worker (which trains the classifier or the student G, by the project's kind);
5. the first batch, when no batch exists yet (or completing one that was cut short): the default strategy for
   classification, the cluster strategy for a generative project (the method's per-cluster selection; without G
   or R it is cluster-then-random, and the teacher drafts it all the same, so a generative project needs no
   bootstrap pairs).

The kind (``--task``): ``auto`` makes a generative project when the pool file has no label column, else a
classification one; a project found by title keeps its kind.

`alvar up` runs these after starting its services; in docker compose the ``init`` service runs `alvar init`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from label_studio_sdk import LabelStudio
from redis import Redis
from rq.job import Job, JobStatus

from alvar.attribute_model import attribute_model_path, load_judge, model_classes
from alvar.backend.dispatcher import TrainingReaction
from alvar.backend.model_store import serving
from alvar.backend.publishing import publish_predictions
from alvar.generator.variation_tasks import ensure_verify_tab
from alvar.label_config import load
from alvar.labelstudio.batches import fetch_latest_batch
from alvar.labelstudio.choices_control import parse_choices_control
from alvar.labelstudio.client import ANNOTATED, count_tasks
from alvar.labelstudio.generation_config import (
    CLASSIFICATION,
    GENERATION,
    generation_label_config,
    project_kind,
)
from alvar.loop.generation_scores import serving_student
from alvar.loop.init_plan import (
    InitError,
    InitPlan,
    check_example_files,
    check_pair_files,
    classification_tasks,
    generation_tasks,
    wanted_kind,
)
from alvar.loop.project import connect_backend, create_project
from alvar.loop.select import select_project
from alvar.projects import remember_project
from alvar.queues import training_queue
from alvar.settings import Settings
from alvar.strategies import DEFAULT_STRATEGY

PROJECT_TITLE = "alvar safety dataset"
GENERATION_TITLE = "alvar generation dataset"
GENERATION_STRATEGY = "cluster"


@dataclass
class InitOutcome:
    """The project and what this run did, step by step, for people to read."""

    project_id: int
    steps: list[str]
    model_version: str | None = None
    batch: int | None = None
    kind: str = CLASSIFICATION


Report = Callable[[str], None]


def find_project(client: LabelStudio, title: str) -> int | None:
    """The oldest project with this title (the one a previous `init` created), or None."""
    projects: Iterable[Any] = client.projects.list()
    ids = [int(project.id) for project in projects if project.title == title]
    return min(ids, default=None)


def check_files(plan: InitPlan, kind: str) -> None:
    """Read the files before anything is made: a file that cannot be imported stops `init` with its reason
    (an AlvarError) and leaves Label Studio as it was."""
    SETUPS[kind].check_files(plan)


def _import_once(client: LabelStudio, project_id: int, tasks: list[dict[str, Any]]) -> int:
    """Import pool and bootstrap in one request; return how many tasks came in."""
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
        _, learner = found.store.load_classifier(found.version, num_threads=settings.torch_threads,
                                                 precision=settings.inference_precision)
        publish_predictions(client, project_id, learner, found.version, parse_choices_control(project.label_config),
                            show_progress=True)
        return found.version
    return _train_first(client, project_id, settings, connection, plan, report, "model on the bootstrap labels")


def _train_first(client: LabelStudio, project_id: int, settings: Settings, connection: Redis, plan: InitPlan,
                 report: Report, what: str) -> str | None:
    """Queue the project's first training on the worker and wait for its version; None without annotations."""
    if count_tasks(client, project_id, ANNOTATED) == 0:
        return None
    reaction = TrainingReaction(connection, training_queue(connection), settings.retrain_every)
    queued = reaction.enqueue(project_id, reason="alvar init: first model")
    report(f"training the first {what} (job {queued['job_id']}, on the worker)")
    return str(_wait_for_training(connection, queued["job_id"], plan.training_timeout, report)["version"])


def _first_student(client: LabelStudio, project_id: int, settings: Settings, connection: Redis, plan: InitPlan,
                   report: Report) -> str | None:
    """The generative project's student G: its own current version when the project shows it, else one trained
    on the worker (the training job switches the project and publishes the version's predictions). A shared
    classifier never serves a generative project."""
    found = serving_student(settings, project_id)
    if found is not None and client.projects.get(id=project_id).model_version == found.version:
        return found.version
    return _train_first(client, project_id, settings, connection, plan, report, "student G on the bootstrap pairs")


def attribute_choices(settings: Settings) -> list[str] | None:
    """R's classes with H first (the attribute choices of a new generative project), or None when R is not
    trained yet."""
    path = attribute_model_path(settings)
    if path is None:
        return None
    judge = load_judge(settings, model_classes(path)[0])  # R's first class: H when nothing else names one
    if judge is None:
        return None
    return [judge.required, *(value for value in judge.classes_ if value != judge.required)]


def _new_classification_config(settings: Settings, report: Report) -> str:
    return load("annotate")


def _new_generation_config(settings: Settings, report: Report) -> str:
    choices = attribute_choices(settings)
    if choices is None:
        report("R is not trained yet: the attribute choices are the label config's defaults "
               "(`alvar attribute train` trains R)")
        return load("generate")
    return generation_label_config(choices)


def _project(client: LabelStudio, plan: InitPlan) -> tuple[int | None, str, str]:
    """(the project found by title or None, its kind, the title): ``auto`` without a pool reuses a project of
    either default title; a found project keeps its kind, which ``--task`` must not contradict."""
    wanted = wanted_kind(plan)
    titles = [plan.title] if plan.title else [SETUPS[wanted].title]
    if plan.task == "auto" and plan.pool is None and not plan.title:
        titles = [PROJECT_TITLE, GENERATION_TITLE]
    for title in titles:
        project_id = find_project(client, title)
        if project_id is not None:
            kind = project_kind(client.projects.get(id=project_id).label_config)
            if plan.task != "auto" and kind != plan.task:
                raise InitError(f"project {project_id} ({title!r}) is a {kind} project, not {plan.task}: "
                                "give another --title")
            return project_id, kind, title
    return None, wanted, titles[0]


def initialize(settings: Settings, client: LabelStudio, connection: Redis, plan: InitPlan,
               report: Report = print) -> InitOutcome:
    """Run the steps of the module docstring; each one only when it is not done yet; report each as it is done."""
    steps: list[str] = []

    def done(step: str) -> None:
        steps.append(step)
        report(f"- {step}")

    project_id, kind, title = _project(client, plan)
    setup = SETUPS[kind]
    setup.check_files(plan)
    if project_id is None:
        project_id = create_project(client, title, setup.label_config(settings, report))
        done(f"created {kind} project {project_id}")
    label_config = client.projects.get(id=project_id).label_config
    if count_tasks(client, project_id) == 0:
        done(f"imported {_import_once(client, project_id, setup.tasks(plan, label_config, settings))} tasks")
    if not list(client.ml.list(project=project_id)):
        connect_backend(client, project_id, plan.backend_url, basic_auth=plan.backend_auth,
                        webhook_secret=plan.webhook_secret)
        done(f"connected the ML backend at {plan.backend_url}")
    setup.tabs(client, project_id)
    remember_project(connection, project_id)  # the reconciliation sweep covers it (Label Studio's /setup does too)
    version = setup.first_model(client, project_id, settings, connection, plan, report)
    outcome = InitOutcome(project_id, steps, version, kind=kind)
    if version is None:
        done(setup.without_model.format(retrain_every=settings.retrain_every))
        if not setup.batch_without_model:
            return outcome
    latest = fetch_latest_batch(client, project_id)
    if latest is None or not latest.complete:  # none yet, or one cut short: select completes it
        batch = select_project(settings, client, project_id, setup.strategy, plan.budget, settings.seed,
                               connection=connection)
        outcome.batch = batch.batch
        done(batch.message)
    return outcome


def _no_tabs(client: LabelStudio, project_id: int) -> None:
    """A generative project's review tab comes with its first batch (:func:`~alvar.loop.select.select_project`)."""


FirstModel = Callable[[LabelStudio, int, Settings, Redis, InitPlan, Report], "str | None"]


@dataclass(frozen=True)
class KindSetup:
    """What `alvar init` does for one kind of project (:func:`~alvar.labelstudio.task_kinds.task_kind`)."""

    title: str
    """The title of a new project of the kind."""
    strategy: str
    """The first batch's strategy."""
    check_files: Callable[[InitPlan], None]
    label_config: Callable[[Settings, Report], str]
    """A new project's label config."""
    tasks: Callable[[InitPlan, str | None, Settings], list[dict[str, Any]]]
    """The pool and bootstrap tasks to import, for the project's label config."""
    tabs: Callable[[LabelStudio, int], None]
    first_model: FirstModel
    without_model: str
    """What happens without a first model ({retrain_every}: the setting)."""
    batch_without_model: bool
    """Whether the first batch is made before there is a model."""


SETUPS: dict[str, KindSetup] = {
    CLASSIFICATION: KindSetup(
        PROJECT_TITLE, DEFAULT_STRATEGY, check_example_files, _new_classification_config, classification_tasks,
        ensure_verify_tab, _first_model,
        "no labels and no model yet: label a few tasks, the first model trains after {retrain_every} annotations; "
        "then `alvar select`", batch_without_model=False),
    # Without G the batch is cluster-then-random; the teacher drafts it, and G trains once people verify enough.
    GENERATION: KindSetup(
        GENERATION_TITLE, GENERATION_STRATEGY, check_pair_files, _new_generation_config, generation_tasks,
        _no_tabs, _first_student,
        "no bootstrap pairs and no student G yet: G trains after {retrain_every} verified reviews",
        batch_without_model=True),
}
