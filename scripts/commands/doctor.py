"""`alvar doctor`: both environments against their locks, and whether Label Studio imports in its own."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Annotated

import typer

from alvar.loop.label_studio_env import (
    check_environment,
    ensure_label_studio_venv,
    fix_hint,
    import_problem,
    label_studio_lock,
    locked_versions,
    normalized,
)
from alvar.scripts import render
from alvar.scripts.commands.options import command_settings

app = typer.Typer()


def alvar_drift(lock: Path) -> list[str]:
    """How this process's environment differs from alvar's lock: ``transformers 5.25.0 (lock: 5.24.0)``."""
    installed = {normalized(dist.metadata["Name"]): dist.version for dist in metadata.distributions()}
    return [f"{name} {installed.get(name, 'missing')} (lock: {version})"
            for name, version in sorted(locked_versions(lock).items()) if installed.get(name) != version]


@app.command()
def doctor(
    ctx: typer.Context,
    repair: Annotated[bool, typer.Option("--repair", help="Rebuild or repair Label Studio's environment from its "
                                         "lock when it differs or cannot import Label Studio.")] = False,
) -> None:
    """Check alvar's and Label Studio's environments against their locks, and that Label Studio imports (seconds).

    Exit code 1 when Label Studio's environment differs from its lock or cannot import Label Studio."""
    settings = command_settings(ctx)
    alvar_lock = label_studio_lock().with_name("alvar.txt")
    drift = alvar_drift(alvar_lock)
    render.unwrapped(f"alvar's environment: {'differs from' if drift else 'matches'} {alvar_lock}")
    for line in drift:
        render.unwrapped(f"  {line}")
    venv, lock = settings.label_studio_venv, settings.label_studio_lock or label_studio_lock()
    check = check_environment(venv, lock)
    if repair and not check.matches:
        # A build or repair ends with Label Studio imported in the environment, or raises.
        ensure_label_studio_venv(venv, lock, log=render.unwrapped)
        check, problem = check_environment(venv, lock), None
    else:
        problem = None if check.missing_python else import_problem(venv)
        if repair and problem is not None:
            # Right versions that cannot import mean a damaged file: only a reinstall of every package mends that.
            ensure_label_studio_venv(venv, lock, log=render.unwrapped, reinstall=True)
            check, problem = check_environment(venv, lock), None
    if check.matches and problem is None:
        render.unwrapped(f"Label Studio's environment: {venv} matches {lock} and imports Label Studio")
        return
    render.unwrapped(f"Label Studio's environment at {venv}: " + "; ".join(
        part for part in (None if check.matches else check.describe(), problem) if part))
    render.unwrapped(f"  fix: {fix_hint(venv)}")
    raise typer.Exit(1)
