"""Putting a model version's predictions into Label Studio and making it the project's version.

Label Studio accepts a project ``model_version`` only when predictions of that version exist, and its
Data Manager score column averages only predictions of the project's version: so predictions go first.
"""

from __future__ import annotations

from typing import Any

from label_studio_sdk import LabelStudio
from tqdm.auto import tqdm

from alvar.backend.label_config import ChoicesControl
from alvar.backend.label_studio import iter_tasks
from alvar.backend.learner import TransformerClassifier
from alvar.backend.predictor import predict_tasks


def publish_predictions(client: LabelStudio, project_id: int, learner: TransformerClassifier, version: str,
                        control: ChoicesControl, chunk_size: int = 1000, show_progress: bool = False) -> int:
    """Score every task of the project with ``version``, import the predictions, set the project's version."""
    tasks = [{"id": task["id"], "data": task["data"]} for task in iter_tasks(client, project_id, page_size=1000)]
    published = 0
    for start in tqdm(range(0, len(tasks), chunk_size), desc="predictions", disable=not show_progress):
        chunk = tasks[start : start + chunk_size]
        request: list[dict[str, Any]] = [
            {"task": task["id"], "result": prediction["result"], "score": prediction["score"],
             "model_version": version}
            for task, prediction in zip(chunk, predict_tasks(learner, version, chunk, control))
            if prediction["result"]
        ]
        if request:
            client.projects.import_predictions(id=project_id, request=request)
        published += len(request)
    client.projects.update(id=project_id, model_version=version)
    return published
