"""The `alvar` command: every setting as a global option, the commands (one module per concept in
:mod:`alvar.scripts.commands`, joined here at the top level: `alvar up`, `alvar train` ...), and the one place
where an :class:`~alvar.errors.AlvarError` ends a command with ``error: <message>`` and exit code 2."""

from __future__ import annotations

import inspect
from typing import Any

import typer

from alvar.errors import AlvarError
from alvar.scripts import render
from alvar.scripts.commands import attribute, coverage, data, datasets, doctor, model, services, stack
from alvar.scripts.commands.options import RunSettings
from alvar.settings import settings_signature


class AlvarApp(typer.Typer):
    """The command line: an AlvarError that any command (or the settings callback) raises is printed as
    ``error: <message>`` and exits with code 2; any other exception is a bug and keeps its traceback."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except AlvarError as error:
            render.error(str(error))
            raise SystemExit(2) from None


app = AlvarApp(help="alvar: active learning-guided LLM variations for Label Studio.", no_args_is_help=True,
               pretty_exceptions_enable=False)


def _run_settings(ctx: typer.Context, **flags: Any) -> None:
    """Every setting as a global option (``alvar --epochs 3 train ...``); a flag wins over the environment."""
    ctx.obj = RunSettings.from_flags(**flags)


_context = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
_run_settings.__signature__ = settings_signature().replace(  # type: ignore[attr-defined]
    parameters=[_context, *settings_signature().parameters.values()])
app.callback()(_run_settings)

for commands in (stack.app, services.app, model.app, data.app, coverage.app, datasets.app, attribute.app, doctor.app):
    app.add_typer(commands)
