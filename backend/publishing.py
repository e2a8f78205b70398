"""Putting a model version's predictions into Label Studio in place of the older versions' ones.

Label Studio accepts a project ``model_version`` only when predictions of that version exist, and its
Data Manager score column averages only predictions of the project's version: so predictions go first.
Then the predictions of the project's older alvar versions (and of Label Studio's placeholder version, the
ML backend's title) are deleted, so a project holds one alvar prediction per task however often it retrains.
Other predictions (the generator's ``llm:…`` pre-label provenance, another tool's) are left alone.

A generative project publishes its student's predictions the same way (:func:`publish_generation_predictions`):
a drafted task's prediction carries the teacher's draft, so the pre-filled output follows the project's version
while the draft the teacher imported under the older version is deleted with that version's predictions.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError
from tqdm.auto import tqdm

from alvar.attribute_model import AttributeJudge
from alvar.backend.generation_predictor import generation_predictions
from alvar.backend.learner import TransformerClassifier
from alvar.backend.model_store import is_version_name
from alvar.backend.predictor import predict_tasks
from alvar.backend.student import TextToTextStudent
from alvar.labelstudio.choices_control import ChoicesControl
from alvar.labelstudio.client import iter_tasks
from alvar.labelstudio.generation_config import GenerationControl

# Prediction deletions in flight at once: about 1.5x the throughput of one at a time against Label Studio on
# two cores, while annotators' requests still go through between them.
DELETE_CONCURRENCY = 4

# Predictions of a chunk of tasks, in task order (an entry with an empty result is not imported).
Predict = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]


@dataclass(frozen=True)
class Published:
    """What publishing a version did: predictions imported, and older versions' predictions deleted."""

    imported: int
    deleted: dict[str, int] = field(default_factory=dict)


def prediction_versions(client: LabelStudio, project_id: int) -> dict[str, int]:
    """The model versions of the project's predictions, with how many predictions each has (one query).

    Label Studio's ``/api/projects/<id>/model-versions/`` is left out of the SDK's generated API, so it goes
    through the SDK's own HTTP client (its base URL and credentials).
    """
    response = client._client_wrapper.httpx_client.request(f"api/projects/{project_id}/model-versions/",
                                                           method="GET")
    response.raise_for_status()
    return {str(version): int(count) for version, count in response.json().items()}


def _placeholder_versions(client: LabelStudio, project_id: int) -> set[str]:
    """The titles of the project's ML backends: Label Studio's project version until a model is published, which
    the generator copies onto the pre-labels it imports then."""
    return {str(backend.title) for backend in client.ml.list(project=project_id) if backend.title}


def _is_stale(version: str, current: str, placeholders: set[str]) -> bool:
    """An alvar version older than ``current`` (names begin with their creation time), or the placeholder."""
    return version != current and ((is_version_name(version) and version < current) or version in placeholders)


def delete_older_predictions(client: LabelStudio, project_id: int, current: str) -> dict[str, int]:
    """Delete the project's predictions of alvar versions older than ``current`` and of the placeholder version
    (an ML backend's title); return the counts deleted per version.

    A newer version that a concurrent training is publishing is never deleted. The predictions are deleted one
    by one (a few requests at a time), each in its own short request: Label Studio's delete-a-version endpoint
    deletes them all in one transaction, which on SQLite locks the database for the whole delete (38 s for
    3,000 predictions), and annotations saved meanwhile fail. Call this only once ``current`` is the project's
    ``model_version``.
    """
    placeholders = _placeholder_versions(client, project_id)
    stale = {version for version, count in prediction_versions(client, project_id).items()
             if count and _is_stale(version, current, placeholders)}
    if not stale:
        return {}
    # Only where the task already has the current version's prediction: a variation imported while the new
    # version was being published carries its pre-label under the old version alone, and keeps it.
    doomed = [(str(prediction["model_version"]), int(prediction["id"]))
              for task in iter_tasks(client, project_id, page_size=1000)
              if any(found.get("model_version") == current for found in task.get("predictions") or [])
              for prediction in task.get("predictions") or [] if prediction.get("model_version") in stale]
    with ThreadPoolExecutor(DELETE_CONCURRENCY, thread_name_prefix="delete-predictions") as pool:
        gone = list(pool.map(lambda found: _delete_prediction(client, found[1]), doomed))
    return dict(Counter(version for (version, _), done in zip(doomed, gone) if done))


def _delete_prediction(client: LabelStudio, prediction_id: int) -> bool:
    """Delete one prediction; False when it was gone already (deleted meanwhile, or its task was)."""
    try:
        client.predictions.delete(id=prediction_id)
    except ApiError as error:
        if error.status_code == 404:
            return False
        raise
    return True


def publish(client: LabelStudio, project_id: int, version: str, predict: Predict, chunk_size: int = 1000,
            show_progress: bool = False) -> Published:
    """Predict every task of the project with ``predict``, import the predictions as ``version``'s, set the
    project's version, and delete the predictions of the project's older alvar versions."""
    tasks = [{"id": task["id"], "data": task["data"]}
             for task in iter_tasks(client, project_id, page_size=1000, fields="task_only")]
    imported = 0
    for start in tqdm(range(0, len(tasks), chunk_size), desc="predictions", disable=not show_progress):
        chunk = tasks[start : start + chunk_size]
        request: list[dict[str, Any]] = [
            {"task": task["id"], "result": prediction["result"], "score": prediction["score"],
             "model_version": version}
            for task, prediction in zip(chunk, predict(chunk))
            if prediction["result"]
        ]
        if request:
            # The SDK types the request as its own models; it sends these dicts as they are.
            client.projects.import_predictions(id=project_id, request=request)  # type: ignore[arg-type]
        imported += len(request)
    client.projects.update(id=project_id, model_version=version)
    return Published(imported, delete_older_predictions(client, project_id, version))


def publish_predictions(client: LabelStudio, project_id: int, learner: TransformerClassifier, version: str,
                        control: ChoicesControl, chunk_size: int = 1000, show_progress: bool = False) -> Published:
    """Publish a classifier version (:func:`publish`): every task's likeliest choice."""
    return publish(client, project_id, version, lambda chunk: predict_tasks(learner, version, chunk, control),
                   chunk_size, show_progress)


def publish_generation_predictions(client: LabelStudio, project_id: int, student: TextToTextStudent, version: str,
                                   control: GenerationControl, judge: AttributeJudge | None,
                                   chunk_size: int = 1000, show_progress: bool = False) -> Published:
    """Publish a student version (:func:`publish`): every task's output (its draft when it has one) scored by
    R's entropy on G's output (0.0 without R)."""
    return publish(client, project_id, version,
                   lambda chunk: generation_predictions(student, version, chunk, control, judge),
                   chunk_size, show_progress)
