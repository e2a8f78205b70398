"""The ML backend's model: Label Studio's ``LabelStudioMLBase`` shape (``setup``, ``predict``, ``fit``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from redis import Redis

from alvar.backend.dispatcher import Dispatcher, ReactionFactory
from alvar.backend.generation_predictor import GenerationPredictor
from alvar.backend.model_store import serving, serving_kind
from alvar.backend.predictor import Predictor
from alvar.labelstudio.generation_config import CLASSIFICATION, GENERATION
from alvar.labelstudio.task_kinds import task_kind
from alvar.labelstudio.webhook import project_number
from alvar.projects import remember_project
from alvar.queues import generation_queue, training_queue
from alvar.settings import Settings

log = logging.getLogger(__name__)


class AlvarModel:
    """Predicts each task's Choice with its project's current learner, or, in a generative project (a config with
    a ``<TextArea>``), its output with the project's student G; training happens in RQ jobs, never inline.

    ``fit`` hands webhook events to the reactions built from ``reactions`` (training, generation: see
    :mod:`alvar.scripts.backend_app`); the model itself queues nothing.
    """

    def __init__(self, settings: Settings, connection: Redis, reactions: Sequence[ReactionFactory] = ()) -> None:
        self.settings = settings
        self.predictor = Predictor(settings)
        self.generation = GenerationPredictor(settings, self.predictor)
        self.queue = training_queue(connection)
        self.generation_queue = generation_queue(connection)
        self.connection = connection
        self.dispatcher = Dispatcher([make(settings, connection) for make in reactions], connection)
        # Who answers /predict for each kind of project.
        self.predictors: dict[str, Callable[[Sequence[Any], Any, int | None], list[dict[str, Any]]]] = {
            CLASSIFICATION: self.predictor.predict_tasks, GENERATION: self.generation.predict_tasks}

    @property
    def model_version(self) -> str | None:
        """The shared model's current version (``MODEL_DIR/CURRENT``): what projects without their own are served."""
        return self.predictor.store.current_version()

    def serving_version(self, project: Any = None, kind: str | None = None) -> str | None:
        """The version that answers the project's predictions (its own, else the shared one), or None; with
        ``kind``, only a version of that kind (a generative project is never served the shared classifier)."""
        found = serving_kind(self.settings.model_dir, project_number(project), kind)
        return found.version if found is not None else None

    def versions(self, project: Any = None) -> dict[str, Any]:
        """What GET /versions answers: the project's saved versions and the one serving it.

        Without a project (or before the project's first training) these are the shared model's versions.
        """
        found = serving(self.settings.model_dir, project_number(project))
        store = found.store if found is not None else self.predictor.store
        return {"versions": store.versions(), "current": found.version if found is not None else None}

    def setup(self, label_config: str, project: Any = None) -> dict[str, Any]:
        """Check that the project's config has a Choices control to predict (a generative one: its output box and
        an attribute that has the value H); answer the version serving it.

        R is not loaded here (Label Studio gives /setup a few seconds): an R that does not know H is refused by
        the first /predict.
        """
        kind = task_kind(label_config)
        kind.serving_control(label_config, self.settings.attribute_value)
        if (project_id := project_number(project)) is not None:
            remember_project(self.connection, project_id)  # the reconciliation sweep covers it from now on
        return {"model_version": self.serving_version(project, kind.served_by)}

    def predict(self, tasks: list[Any], label_config: str, project: Any = None) -> list[dict[str, Any]]:
        """Score the tasks with the project's model (:func:`serving`); ``[]`` when no model serves the project.

        ``project`` is Label Studio's field (``"7.1700000000"`` or ``7``); a missing or unreadable one is served
        the shared model (a classifier: a generative project without a student of its own gets ``[]``).
        """
        kind = task_kind(label_config)
        return self.predictors[kind.name](tasks, kind.control(label_config), project_number(project))

    def fit(self, payload: Any) -> dict[str, Any]:
        """React to a webhook event: queue training and generation jobs and return at once."""
        return self.dispatcher.dispatch(payload)
