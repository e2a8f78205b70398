"""The training job of a generative project: fine-tune the student G on the pairs people verified.

Runs in an RQ worker (:func:`alvar.backend.training.train_project` hands generative projects here). A pair is
verified when the latest annotation of its task accepts or edits the output and leaves text in the box
(:func:`alvar.labelstudio.generation_data.verified_pairs`); rejected and emptied ones never train. As for a
classifier, the new version is saved in the project's own store, its predictions are published before the project
switches to it, and a failure leaves the current version serving.
"""

from __future__ import annotations

import logging
from typing import Any

from label_studio_sdk import LabelStudio

from alvar.attribute_model import load_judge
from alvar.backend.model_store import project_store
from alvar.backend.publishing import publish_generation_predictions
from alvar.backend.student import new_student
from alvar.errors import AlvarError
from alvar.labelstudio.client import iter_tasks
from alvar.labelstudio.generation_config import parse_generation_control
from alvar.labelstudio.generation_data import review_counts, verified_pairs
from alvar.settings import Settings

log = logging.getLogger(__name__)


class NoVerifiedPairs(AlvarError):
    """A generative project with nothing to train on yet."""


def train_generation_project(settings: Settings, client: LabelStudio, project_id: int,
                             label_config: str | None) -> dict[str, Any]:
    """Train G on the project's verified pairs, switch the project to it and publish its predictions.

    R (when trained) is loaded first, so an R that does not know H fails the job before anything is saved.
    """
    control = parse_generation_control(label_config)
    judge = load_judge(settings, control.required_attribute(settings.attribute_value))
    tasks = list(iter_tasks(client, project_id, only_annotated=True))
    pairs = verified_pairs(tasks, control)
    counts = review_counts(tasks, control)
    if not pairs:
        raise NoVerifiedPairs(f"project {project_id} has no verified pair to train the student on ({counts}): "
                              "accept or edit at least one output in Label Studio, then train again")
    inputs, outputs = [pair.input for pair in pairs], [pair.output for pair in pairs]
    log.info("project %s: training the student on %s verified pairs (%s)", project_id, len(pairs), counts)
    student = new_student(settings).fit(inputs, outputs)
    store = project_store(settings.model_dir, project_id)
    version = store.save(student, inputs, outputs, extra={"project": project_id, "n_pairs": len(pairs),
                                                          "reviews": counts})
    store.switch(version)
    published = publish_generation_predictions(client, project_id, student, version, control, judge)
    pruned = store.prune(settings.models_kept)
    log.info("project %s: student %s, %s predictions imported, %s older ones deleted, versions pruned: %s",
             project_id, version, published.imported, sum(published.deleted.values()), pruned)
    return {"project": project_id, "version": version, "kind": "generation", "n_examples": len(pairs),
            "reviews": counts, "predictions": published.imported, "predictions_deleted": published.deleted,
            "versions_pruned": pruned, "training_loss": student.training_loss_, "scored_by_r": judge is not None}
