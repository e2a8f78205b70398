"""The backend as alvar runs it: the ML backend's app with its two webhook reactions, training and generation.

``backend/`` and ``generator/`` never import each other; ``scripts/`` joins them: here for the webhook, and in
:mod:`alvar.loop.reconcile` for the sweep.
"""

from __future__ import annotations

from flask import Flask

from alvar.backend.app import create_app
from alvar.backend.dispatcher import ReactionFactory, TrainingReaction
from alvar.generator.reaction import GenerationReaction
from alvar.settings import Settings

REACTIONS: tuple[ReactionFactory, ...] = (TrainingReaction.from_settings, GenerationReaction.from_settings)


def backend_app(settings: Settings) -> Flask:
    """The Flask app `alvar backend` serves: every webhook event can queue a training and generation jobs."""
    return create_app(settings, REACTIONS)
