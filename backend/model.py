"""The ML backend's model: Label Studio's ``LabelStudioMLBase`` shape (``setup``, ``predict``, ``fit``)."""

from __future__ import annotations

import logging
from typing import Any

from redis import Redis

from alvar.backend.dispatcher import Dispatcher, TrainingReaction
from alvar.backend.label_config import parse_choices_control
from alvar.backend.predictor import Predictor
from alvar.backend.queues import generation_queue, training_queue
from alvar.generator.reaction import GenerationReaction
from alvar.settings import Settings

log = logging.getLogger(__name__)


class AlvarModel:
    """Predicts each task's Choice with the current learner; training happens in RQ jobs, never inline."""

    def __init__(self, settings: Settings, connection: Redis) -> None:
        self.settings = settings
        self.predictor = Predictor(settings)
        self.queue = training_queue(connection)
        self.generation_queue = generation_queue(connection)
        self.dispatcher = Dispatcher([
            TrainingReaction(connection, self.queue, settings.retrain_every),
            GenerationReaction(connection, self.generation_queue, settings.generation_timeout),
        ])

    @property
    def model_version(self) -> str | None:
        return self.predictor.store.current_version()

    def setup(self, label_config: str) -> dict[str, Any]:
        """Check that the project's config has a Choices control to predict; answer the current version."""
        parse_choices_control(label_config)
        return {"model_version": self.model_version}

    def predict(self, tasks: list[Any], label_config: str) -> list[dict[str, Any]]:
        return self.predictor.predict_tasks(tasks, parse_choices_control(label_config))

    def fit(self, payload: Any) -> dict[str, Any]:
        """React to a webhook event: queue training and generation jobs and return at once."""
        return self.dispatcher.dispatch(payload)
