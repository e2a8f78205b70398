"""The fields alvar writes into a Label Studio task's ``data``, and reads back: the one place they are named.

A task's ``data`` is one JSON object: the text under the label config's data key (``$text``) and, beside it,
three groups of alvar's fields, each a dataclass whose attributes are the data keys of the same names:

- :class:`PoolFields`, on every task alvar imports;
- :class:`BatchFields`, written by `alvar select` onto the tasks of a batch (and ``strategy="bootstrap"`` onto
  the seed labels `alvar init` imports); a variation carries its source's batch, round and strategy;
- :class:`VariationFields`, on every task the generator writes;
- :class:`DraftFields`, written by the teacher job onto a generative project's task.

``Group(...).data()`` gives the fields to merge into a task's ``data`` (an update replaces ``data`` whole);
``Group.of(task)`` reads them back from a task (a dict or an SDK object), None for each field a task lacks or
holds with another type, so a task edited by hand or sent by a client never breaks a reader.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Protocol, Self

from alvar.datafiles import Example
from alvar.labelstudio.client import dm_filter

LLM_ORIGIN = "llm"
CURRENT_STATUS = "current"
STALE_STATUS = "stale"
BOOTSTRAP_STRATEGY = "bootstrap"
DRAFTED_STATUS = "drafted"
SCREENED_OUT_STATUS = "screened out"


def data_of(task: Any) -> Mapping[str, Any]:
    """A task's ``data`` (of a dict or an SDK object), or an empty mapping when a client sent something else."""
    data = task.get("data") if isinstance(task, Mapping) else getattr(task, "data", None)
    return data if isinstance(data, Mapping) else {}


def _int(value: Any) -> int | None:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


# How each declared field type is read from JSON (the annotations are strings: `from __future__ import annotations`).
_READERS: dict[str, Callable[[Any], Any]] = {"int | None": _int, "float | None": _float, "str | None": _text}


@dataclass(frozen=True, kw_only=True)
class _Fields:
    """A group of task data fields: each attribute of a subclass is the data key of the same name."""

    def data(self) -> dict[str, Any]:
        """The fields to merge into a task's ``data``; those that are None are left out."""
        return {name: value for name, value in asdict(self).items() if value is not None}

    @classmethod
    def of(cls, task: Any) -> Self:
        """The fields as the task's ``data`` holds them."""
        data = data_of(task)
        return cls(**{field.name: _READERS[str(field.type)](data.get(field.name)) for field in fields(cls)})


@dataclass(frozen=True, kw_only=True)
class PoolFields(_Fields):
    """What alvar imports with each text: ``source_id``, the example's id in the file it came from (for a
    variation, its source's followed by ``~v<n>``), and ``group``, a generative pool input's subgroup (the
    file's group column: a targeted group, a topic), when it has one."""

    source_id: str | None = None
    group: str | None = None


class PoolInput(Protocol):
    """One input of a generative pool file, as :class:`alvar.pairfiles.Pair` holds it (its reference output is
    never imported: people write or verify the outputs)."""

    @property
    def id(self) -> str: ...

    @property
    def input(self) -> str: ...

    @property
    def group(self) -> str | None: ...


def pool_data(data_key: str, example: Example) -> dict[str, Any]:
    """A pool task's ``data``: the example's text under the label config's data key, and its ``source_id``."""
    return {data_key: example.text, **PoolFields(source_id=example.id).data()}


def pair_data(data_key: str, pair: PoolInput) -> dict[str, Any]:
    """A generative pool task's ``data``: the input under the config's data key, its ``source_id`` and, when the
    file has one, its ``group``."""
    return {data_key: pair.input, **PoolFields(source_id=pair.id, group=pair.group).data()}


@dataclass(frozen=True, kw_only=True)
class BatchFields(_Fields):
    """What `alvar select` writes onto each task it picks. A batch is a round (``round`` equals ``batch``);
    ``cluster`` and ``entropy`` are the task's at selection; ``strategy`` is how the task came to be labelled
    (the selection strategy, or ``"bootstrap"`` for a seed label); ``batch_size`` is how many tasks the batch
    has, so a batch is written completely once that many tasks carry its number."""

    batch: int | None = None
    round: int | None = None
    cluster: int | None = None
    entropy: float | None = None
    strategy: str | None = None
    batch_size: int | None = None

    def carried(self) -> BatchFields:
        """What a variation carries of its source's: its batch, round and strategy."""
        return BatchFields(batch=self.batch, round=self.round, strategy=self.strategy)


@dataclass(frozen=True, kw_only=True)
class VariationFields(_Fields):
    """What the generator writes onto each variation: ``origin="llm"``; ``prelabel``, the label it is
    pre-labelled with (its source's label, or the contrast target); ``variation_status``, ``"current"`` or
    ``"stale"`` once no annotator's latest annotation carries ``source_label`` any more; the source task,
    annotation, text and label it was written from; the relation, template and LLM model that wrote it;
    ``generation``, the key of the job that imported it; ``variation_k``, how many variations the job asked for
    (ALVAR_VARIATION_POLICY), and ``variation_reason``, why that many (``"fixed: k 5"``, ``"balance: medical-advice
    12 vs mean 30.0 → k 20"``)."""

    origin: str | None = LLM_ORIGIN
    prelabel: str | None = None
    variation_status: str | None = CURRENT_STATUS
    source_task: int | None = None
    source_annotation: int | None = None
    source_text: str | None = None
    source_label: str | None = None
    relation: str | None = None
    template: str | None = None
    llm_model: str | None = None
    generation: str | None = None
    variation_k: int | None = None
    variation_reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class DraftFields(_Fields):
    """What the teacher job writes onto a generative task: ``draft``, its screened output (shown pre-filled, as a
    prediction, for a person to accept, edit or reject); ``draft_status``, ``"drafted"`` or ``"screened out:
    <reason>"`` when no attempt passed screening (then there is no ``draft``); the ``teacher_model``, the
    prompt's ``draft_template`` (its name and hash), ``draft_key``, the job that wrote it
    (``draft-<project>-<task>``), ``draft_attempts``, how many teacher requests it took, and
    ``student_version``, the student model serving the project when the draft was written."""

    draft: str | None = None
    draft_status: str | None = None
    teacher_model: str | None = None
    draft_template: str | None = None
    draft_key: str | None = None
    draft_attempts: int | None = None
    student_version: str | None = None


def screened_out(reason: str) -> str:
    """The ``draft_status`` of a task none of whose teacher drafts passed screening."""
    return f"{SCREENED_OUT_STATUS}: {reason}"


def _key(group: type[_Fields], name: str) -> str:
    """``data.<name>`` for a Data Manager filter; a name that is not a field of ``group`` fails at import."""
    if name not in {field.name for field in fields(group)}:
        raise AttributeError(f"{group.__name__} has no field {name!r}")
    return f"data.{name}"


VARIATIONS = dm_filter(_key(VariationFields, "origin"), "equal", LLM_ORIGIN)
CURRENT_VARIATIONS = dm_filter(_key(VariationFields, "variation_status"), "equal", CURRENT_STATUS)
BATCHED = dm_filter(_key(BatchFields, "batch"), "greater", 0, "Number")
BATCH_COLUMN = _key(BatchFields, "batch")
ENTROPY_COLUMN = _key(BatchFields, "entropy")
DRAFTED = dm_filter(_key(DraftFields, "draft_status"), "equal", DRAFTED_STATUS)


def variations_of(source_task: int) -> dict[str, Any]:
    """The Data Manager filter on the variations written from ``source_task`` (with :data:`VARIATIONS`)."""
    return dm_filter(_key(VariationFields, "source_task"), "equal", source_task, "Number")


def in_batch(batch: int) -> dict[str, Any]:
    """The Data Manager filter on the tasks that carry batch number ``batch`` (variations too)."""
    return dm_filter(BATCH_COLUMN, "equal", batch, "Number")
