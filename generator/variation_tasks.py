"""Variations as Label Studio tasks: what each one carries, finding them again, retiring stale ones.

A variation is a task in the source's project: ``data`` holds its text, the variation fields
(:class:`~alvar.labelstudio.task_data.VariationFields`: ``origin="llm"``, the source task, annotation, text and
label, the relation, template, LLM model and the generation key), a ``source_id`` and the source's batch, round
and strategy; one set exists per (source task, source label), current while an annotator's latest annotation
carries that label; it comes with a prediction that pre-selects its ``prelabel``. Label Studio 1.23.2's labeling
UI shows only predictions of the project's model version, so the pre-label is imported twice: as ``llm:<model>``
(provenance) and, when the project has a model version, under that version (what reviewers see; every later
training publishes it again under the new version, see ``alvar.backend.predictor``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from label_studio_sdk import LabelStudio

from alvar.generator.generation import Generation
from alvar.generator.templates import VariationPrompt
from alvar.labelstudio.choices_control import ChoicesControl
from alvar.labelstudio.client import COMPACT_COLUMNS, dm_filter, dm_query
from alvar.labelstudio.task_data import (
    CURRENT_STATUS,
    CURRENT_VARIATIONS,
    STALE_STATUS,
    VARIATIONS,
    BatchFields,
    PoolFields,
    VariationFields,
    variations_of,
)

VERIFY_TAB = "Verify variations"


def llm_model_version(model: str) -> str:
    return f"llm:{model}"


def variation_tasks(client: LabelStudio, project_id: int, source_task: int) -> list[Any]:
    """Every variation of one source task (of any generation)."""
    query = dm_query(VARIATIONS, variations_of(source_task))
    return list(client.tasks.list(project=project_id, query=query, page_size=500))


def build_tasks(generation: Generation, prompt: VariationPrompt, source: Mapping[str, Any],
                annotation_id: int | None, generation_key: str, control: ChoicesControl,
                project_version: str | None) -> list[dict[str, Any]]:
    """The import request: one task per variation, each with its pre-label prediction(s)."""
    carried = BatchFields.of(source).carried()
    source_id = PoolFields.of(source).source_id or source["id"]
    versions = [llm_model_version(generation.model)]
    if project_version and project_version not in versions:
        versions.append(project_version)
    label = prompt.variation_label
    tasks = []
    for number, text in enumerate(generation.variations, start=1):
        fields = VariationFields(prelabel=label, source_task=source["id"], source_annotation=annotation_id,
                                 source_text=prompt.text, source_label=prompt.label, relation=prompt.relation,
                                 template=generation.template_id, llm_model=generation.model,
                                 generation=generation_key)
        data = {control.data_key: text, **fields.data(), **PoolFields(source_id=f"{source_id}~v{number}").data(),
                **carried.data()}
        predictions = [{"result": control.choice_result(label), "score": 1.0, "model_version": version}
                       for version in versions]
        tasks.append({"data": data, "predictions": predictions})
    return tasks


def variation_source_label(task: Any) -> str | None:
    """The human label a variation was written for (its pre-label may differ: contrast variations)."""
    return VariationFields.of(task).source_label


def wanted_status(variation: Any, current_labels: Sequence[str]) -> str:
    """A variation is ``current`` while its source label is one of the source's current labels, ``stale``
    otherwise (and ``current`` again when the label comes back)."""
    return CURRENT_STATUS if variation_source_label(variation) in current_labels else STALE_STATUS


def is_out_of_line(variation: Any, current_labels: Sequence[str]) -> bool:
    return VariationFields.of(variation).variation_status != wanted_status(variation, current_labels)


def sync_statuses(client: LabelStudio, variations: Sequence[Any], current_labels: Sequence[str]) -> int:
    """Bring each of a source's variations to its :func:`wanted_status`; return how many became stale."""
    retired = 0
    for task in variations:
        if not is_out_of_line(task, current_labels):
            continue
        status = VariationFields(variation_status=wanted_status(task, current_labels))
        client.tasks.update(id=task.id, data={**dict(task.data), **status.data()})
        retired += status.variation_status == STALE_STATUS
    return retired


def ensure_verify_tab(client: LabelStudio, project_id: int) -> None:
    """The Data Manager tab listing current variations nobody has reviewed yet; created once."""
    if any((view.data or {}).get("title") == VERIFY_TAB for view in client.views.list(project=project_id)):
        return
    filters: Sequence[dict[str, Any]] = (
        VARIATIONS,
        CURRENT_VARIATIONS,
        dm_filter("total_annotations", "equal", 0, "Number"),
    )
    client.views.create(project=project_id, data={
        "title": VERIFY_TAB,
        "filters": {"conjunction": "and", "items": list(filters)},
        "ordering": ["tasks:id"],
        "hiddenColumns": COMPACT_COLUMNS,
    })
