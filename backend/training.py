"""The training job: retrain the learner on what people labelled in a Label Studio project.

Runs in an RQ worker. A new version is saved in the project's own store and switched to only after training
succeeded; a failure leaves the current version serving, and RQ keeps the job with its traceback in the failed
registry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from label_studio_sdk import LabelStudio
from rq import get_current_job

from alvar.backend.generation_training import train_generation_project
from alvar.backend.learner import TransformerClassifier
from alvar.backend.model_store import project_store
from alvar.backend.publishing import publish_predictions
from alvar.job_settings import job_settings
from alvar.labelstudio.choices_control import parse_choices_control
from alvar.labelstudio.client import iter_tasks, label_studio_client
from alvar.labelstudio.generation_config import CLASSIFICATION, GENERATION
from alvar.labelstudio.task_kinds import task_kind
from alvar.labelstudio.training_data import training_set
from alvar.settings import Settings

log = logging.getLogger(__name__)


def pending_training_key(project_id: int) -> str:
    """Redis key naming the one training job of a project that has not started yet."""
    return f"alvar:training:pending:{project_id}"


def new_learner(settings: Settings, show_progress: bool = False, base_model: str | None = None,
                seed: int | None = None) -> TransformerClassifier:
    """The learner with the settings' hyper-parameters; ``base_model`` and ``seed`` override theirs."""
    return TransformerClassifier(
        base_model=base_model or settings.base_model,
        learning_rate=settings.learning_rate,
        batch_size=settings.batch_size,
        max_length=settings.max_length,
        epochs=settings.epochs,
        random_state=settings.seed if seed is None else seed,
        inference_batch_size=settings.inference_batch_size,
        num_threads=settings.torch_threads,
        show_progress=show_progress,
    )


def _release_pending_slot(project_id: int) -> None:
    """Once this job runs, the next annotations may queue another training."""
    job = get_current_job()
    if job is None:
        return
    key = pending_training_key(project_id)
    if job.connection.get(key) == job.id.encode():
        job.connection.delete(key)


def train_project(project_id: int) -> dict[str, Any]:
    """Train the project's model and switch the project to it: a classifier on its human labels and valid
    variations, or, in a generative project, the student G on its verified pairs
    (:func:`~alvar.backend.generation_training.train_generation_project`).

    Only the project's own store (``MODEL_DIR/<project>/``) is written: other projects keep their models. The
    new version's predictions for every task are imported before the project's version is set, so Label
    Studio's score column and "Uncertainty sampling" follow the new model at once; then the older versions'
    predictions are deleted from Label Studio and all but the last ``models_kept`` versions from the store.
    """
    _release_pending_slot(project_id)
    settings = job_settings()
    client = label_studio_client(settings)
    project = client.projects.get(id=project_id)
    trainer = TRAINERS[task_kind(project.label_config).name]
    summary = trainer(settings, client, project_id, project.label_config)
    job = get_current_job()
    if job is not None:
        job.meta.update(summary)
        job.save_meta()
    return summary


def _train_classifier(settings: Settings, client: LabelStudio, project_id: int,
                      label_config: str | None) -> dict[str, Any]:
    control = parse_choices_control(label_config)
    chosen = training_set(iter_tasks(client, project_id, only_annotated=True), control)
    log.info("project %s: training on %s", project_id, chosen.summary())
    learner = new_learner(settings).fit(chosen.texts, chosen.labels)
    store = project_store(settings.model_dir, project_id)
    version = store.save(learner, chosen.texts, chosen.labels, extra={"project": project_id, **chosen.summary()})
    store.switch(version)
    published = publish_predictions(client, project_id, learner, version, control)
    pruned = store.prune(settings.models_kept)
    log.info("project %s: version %s, %s predictions imported, %s older ones deleted, versions pruned: %s",
             project_id, version, published.imported, sum(published.deleted.values()), pruned)
    return {"project": project_id, "version": version, **chosen.summary(), "predictions": published.imported,
            "predictions_deleted": published.deleted, "versions_pruned": pruned,
            "training_loss": learner.training_loss_}


Trainer = Callable[[Settings, LabelStudio, int, str | None], dict[str, Any]]
# What trains a project's model, by its kind (:func:`~alvar.labelstudio.task_kinds.task_kind`).
TRAINERS: dict[str, Trainer] = {CLASSIFICATION: _train_classifier, GENERATION: train_generation_project}
