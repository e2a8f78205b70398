"""What `alvar init` sets up (:class:`InitPlan`): the kind its files ask for, the files read and checked before
anything is made, and their rows as the tasks of one import (the pool unlabelled, the bootstrap rows arriving
annotated)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alvar.datafiles import Example, read_dataset
from alvar.errors import AlvarError
from alvar.labelstudio.choices_control import ChoicesControl, parse_choices_control
from alvar.labelstudio.generation_config import CLASSIFICATION, GENERATION, GenerationControl, parse_generation_control
from alvar.labelstudio.task_data import BOOTSTRAP_STRATEGY, BatchFields, pair_data, pool_data
from alvar.pairfiles import Pair, PairColumns
from alvar.settings import Settings

TASKS = ("auto", CLASSIFICATION, GENERATION)
ACCEPT = "accept"


class InitError(AlvarError, RuntimeError):
    """A step of `alvar init` that cannot go on; the message says which and what to do."""


@dataclass(frozen=True)
class InitPlan:
    """What to set up: the files to import, where Label Studio reaches the backend, the first batch's size."""

    backend_url: str
    pool: Path | None = None
    bootstrap: Path | None = None
    budget: int = 20
    title: str | None = None  # None: the default title of the project's kind
    task: str = "auto"
    columns: PairColumns = PairColumns()
    backend_auth: tuple[str, str] | None = None
    webhook_secret: str | None = None
    training_timeout: float = 3600.0


def _choice(from_name: str, to_name: str, value: str) -> dict[str, Any]:
    return {"from_name": from_name, "to_name": to_name, "type": "choices", "value": {"choices": [value]}}


def bootstrap_tasks(examples: Sequence[Example], control: ChoicesControl) -> list[dict[str, Any]]:
    """Labeled examples as tasks that arrive with one annotation each; an unknown label is an error."""
    unknown = sorted({example.label for example in examples if example.label is not None} - set(control.labels))
    if unknown:
        raise InitError(f"bootstrap labels {unknown} are not choices of the project ({', '.join(control.labels)})")
    seed = BatchFields(strategy=BOOTSTRAP_STRATEGY).data()
    return [
        {"data": {**pool_data(control.data_key, example), **seed},
         "annotations": [{"result": control.choice_result(str(example.label))}]}
        for example in examples if example.label is not None
    ]


def bootstrap_pair_tasks(pairs: Sequence[Pair], control: GenerationControl, attribute: str) -> list[dict[str, Any]]:
    """Pairs with an output as tasks that arrive reviewed: the output accepted, with the required attribute."""
    seed = BatchFields(strategy=BOOTSTRAP_STRATEGY).data()
    return [
        {"data": {**pair_data(control.data_key, pair), **seed},
         "annotations": [{"result": [*control.output_result(pair.output),
                                     _choice(control.attribute_name, control.input_name, attribute),
                                     _choice(control.verdict_name, control.input_name, ACCEPT)]}]}
        for pair in pairs if pair.output is not None and pair.output.strip()
    ]


def _pool_tasks(examples: Sequence[Example], control: ChoicesControl) -> list[dict[str, Any]]:
    return [{"data": pool_data(control.data_key, example)} for example in examples]


def classification_tasks(plan: InitPlan, label_config: str | None, settings: Settings) -> list[dict[str, Any]]:
    control = parse_choices_control(label_config)
    tasks = []
    if plan.pool is not None:
        tasks += _pool_tasks(read_dataset(plan.pool).examples, control)
    if plan.bootstrap is not None:
        tasks += bootstrap_tasks(read_dataset(plan.bootstrap).examples, control)
    return tasks


def generation_tasks(plan: InitPlan, label_config: str | None, settings: Settings) -> list[dict[str, Any]]:
    """The pool's inputs (and groups) as tasks, and the bootstrap file's pairs as reviewed tasks."""
    control = parse_generation_control(label_config)
    tasks = []
    if plan.pool is not None:
        tasks += [{"data": pair_data(control.data_key, pair)} for pair in plan.columns.read(plan.pool).pairs]
    if plan.bootstrap is not None:
        tasks += bootstrap_pair_tasks(plan.columns.read(plan.bootstrap).pairs, control,
                                      control.required_attribute(settings.attribute_value))
    return tasks


def check_example_files(plan: InitPlan) -> None:
    for path in (plan.pool, plan.bootstrap):
        if path is not None:
            read_dataset(path)


def check_pair_files(plan: InitPlan) -> None:
    for path in (plan.pool, plan.bootstrap):
        if path is not None and not plan.columns.read(path).has_outputs and path == plan.bootstrap:
            raise InitError(f"{path}: the bootstrap pairs need an output in every row (columns input, output)")


def wanted_kind(plan: InitPlan) -> str:
    """The kind of a new project: ``--task``, or for ``auto`` generation when pair columns were named, or when the
    bootstrap file (without one, the pool file) has an output for every row and no label column. A pool is
    unlabelled in both kinds, so its missing label column decides nothing: a classification pool with a labelled
    bootstrap stays classification."""
    if plan.task not in TASKS:
        raise InitError(f"unknown task {plan.task!r}: choose one of {', '.join(TASKS)}")
    if plan.task != "auto":
        return plan.task
    if plan.columns.given:
        return GENERATION
    decisive = plan.bootstrap or plan.pool
    if decisive is not None and read_dataset(decisive).label_column is None and plan.columns.read(decisive).has_outputs:
        return GENERATION
    return CLASSIFICATION
