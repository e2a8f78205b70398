"""Variations as Label Studio tasks: what each one carries, finding them again, retiring stale ones.

A variation is a task in the source's project: ``data`` holds its text, ``origin="llm"``, the source task,
annotation, text and label, the relation, template, LLM model, the generation key and the source's batch and
round; one set exists per (source task, source label), current while an annotator's latest annotation carries
that label; it comes with a prediction that pre-selects ``data.prelabel``. Label Studio 1.23.2's labeling UI shows
only predictions of the project's model version, so the pre-label is imported twice: as ``llm:<model>``
(provenance) and, when the project has a model version, under that version (what reviewers see; every later
training publishes it again under the new version, see ``alvar.backend.predictor``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from label_studio_sdk import LabelStudio

from alvar.generator.generation import Generation
from alvar.generator.templates import VariationPrompt
from alvar.labelstudio.client import COMPACT_COLUMNS, dm_filter, dm_query
from alvar.labelstudio.label_config import ChoicesControl
from alvar.labelstudio.training_data import (
    CURRENT_STATUS,
    LLM_ORIGIN,
    ORIGIN_FIELD,
    PRELABEL_FIELD,
    STALE_STATUS,
    STATUS_FIELD,
)

VERIFY_TAB = "Verify variations"
GENERATION_FIELD = "generation"
SOURCE_TASK_FIELD = "source_task"
SOURCE_LABEL_FIELD = "source_label"
CARRIED_FROM_SOURCE = ("batch", "round", "strategy")


def llm_model_version(model: str) -> str:
    return f"llm:{model}"


def variation_tasks(client: LabelStudio, project_id: int, source_task: int) -> list[Any]:
    """Every variation of one source task (of any generation)."""
    query = dm_query(dm_filter(f"data.{ORIGIN_FIELD}", "equal", LLM_ORIGIN),
                   dm_filter(f"data.{SOURCE_TASK_FIELD}", "equal", source_task, "Number"))
    return list(client.tasks.list(project=project_id, query=query, page_size=500))


def build_tasks(generation: Generation, prompt: VariationPrompt, source: Mapping[str, Any], annotation_id: int,
                generation_key: str, control: ChoicesControl, project_version: str | None) -> list[dict[str, Any]]:
    """The import request: one task per variation, each with its pre-label prediction(s)."""
    source_data = source.get("data") or {}
    versions = [llm_model_version(generation.model)]
    if project_version and project_version not in versions:
        versions.append(project_version)
    label = prompt.variation_label
    tasks = []
    for number, text in enumerate(generation.variations, start=1):
        data = {
            control.data_key: text,
            ORIGIN_FIELD: LLM_ORIGIN,
            PRELABEL_FIELD: label,
            STATUS_FIELD: CURRENT_STATUS,
            SOURCE_TASK_FIELD: source["id"],
            "source_annotation": annotation_id,
            "source_text": prompt.text,
            SOURCE_LABEL_FIELD: prompt.label,
            "relation": prompt.relation,
            "template": generation.template_id,
            "llm_model": generation.model,
            GENERATION_FIELD: generation_key,
            "source_id": f"{source_data.get('source_id', source['id'])}~v{number}",
            **{key: source_data[key] for key in CARRIED_FROM_SOURCE if key in source_data},
        }
        predictions = [{"result": control.choice_result(label), "score": 1.0, "model_version": version}
                       for version in versions]
        tasks.append({"data": data, "predictions": predictions})
    return tasks


def variation_source_label(task: Any) -> str | None:
    """The human label a variation was written for (its pre-label may differ: contrast variations)."""
    data = task.data if hasattr(task, "data") else task.get("data")
    return (data or {}).get(SOURCE_LABEL_FIELD)


def sync_statuses(client: LabelStudio, variations: Sequence[Any], current_labels: Sequence[str]) -> int:
    """A source's variations are ``current`` while their source label is one of the task's current labels,
    ``stale`` otherwise (and ``current`` again when the label comes back). Returns how many became stale."""
    retired = 0
    for task in variations:
        data = dict(task.data)
        wanted = CURRENT_STATUS if data.get(SOURCE_LABEL_FIELD) in current_labels else STALE_STATUS
        if data.get(STATUS_FIELD) == wanted:
            continue
        client.tasks.update(id=task.id, data={**data, STATUS_FIELD: wanted})
        retired += wanted == STALE_STATUS
    return retired


def ensure_verify_tab(client: LabelStudio, project_id: int) -> None:
    """The Data Manager tab listing current variations nobody has reviewed yet; created once."""
    if any((view.data or {}).get("title") == VERIFY_TAB for view in client.views.list(project=project_id)):
        return
    filters: Sequence[dict[str, Any]] = (
        dm_filter(f"data.{ORIGIN_FIELD}", "equal", LLM_ORIGIN),
        dm_filter(f"data.{STATUS_FIELD}", "equal", CURRENT_STATUS),
        dm_filter("total_annotations", "equal", 0, "Number"),
    )
    client.views.create(project=project_id, data={
        "title": VERIFY_TAB,
        "filters": {"conjunction": "and", "items": list(filters)},
        "ordering": ["tasks:id"],
        "hiddenColumns": COMPACT_COLUMNS,
    })
