"""What the `alvar` commands share: their common options, and the settings of one run.

The settings are built once, from the environment, the data dir's ``alvar.env`` and the global flags
(``alvar --epochs 3 train ...``, the callback in :mod:`alvar.scripts.cli`), and reach each command through the
typer context; a command's own flags (``--model-dir`` ...) go on top for that command. Nothing is written back
into the environment: a process that needs the settings gets them as its own (:meth:`Settings.as_env`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from alvar.settings import Settings, cli_option, load_settings

ModelDir = Annotated[Path | None, cli_option("model_dir")]
RedisUrl = Annotated[str | None, cli_option("redis_url")]
DataDir = Annotated[Path | None, cli_option("data_dir")]
LabelStudioUrl = Annotated[str | None, cli_option("label_studio_url")]
LabelStudioApiKey = Annotated[str | None, cli_option("label_studio_api_key")]
TextCol = Annotated[str | None, typer.Option("--text-col", help="Text column (default: text, title, input, "
                                             "else the second column after id).")]
LabelCol = Annotated[str | None, typer.Option("--label-col", help="Label column (default: label, category).")]


def _given(flags: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in flags.items() if value is not None}


@dataclass(frozen=True)
class RunSettings:
    """The settings of one `alvar` run, and the global flags they were built from (typer fills a flag from its
    environment variable too, so a setting is in ``flags`` when the flag or its variable was given)."""

    flags: dict[str, Any]
    settings: Settings

    @classmethod
    def from_flags(cls, **flags: Any) -> RunSettings:
        given = _given(flags)
        return cls(given, load_settings(**given))

    def with_flags(self, **command_flags: Any) -> Settings:
        """The run's settings with a command's own flags (those given) on top; a new ``--data-dir`` brings its
        ``alvar.env`` in below the flags and the environment."""
        given = _given(command_flags)
        return load_settings(**{**self.flags, **given}) if given else self.settings


def run_settings(ctx: typer.Context) -> RunSettings:
    run: RunSettings = ctx.obj
    return run


def command_settings(ctx: typer.Context, **flags: Any) -> Settings:
    """The settings a command runs with: the run's, with the command's own flags on top."""
    return run_settings(ctx).with_flags(**flags)
