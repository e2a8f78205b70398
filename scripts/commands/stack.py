"""The stack on one machine: `alvar up`, `alvar down`, `alvar status`, and `alvar init` for a stack run elsewhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from alvar.errors import AlvarError, user_facing
from alvar.pairfiles import PairColumns
from alvar.scripts import render
from alvar.scripts.commands.options import (
    DataDir,
    LabelStudioApiKey,
    LabelStudioUrl,
    ModelDir,
    RedisUrl,
    command_settings,
    run_settings,
)
from alvar.settings import Settings, cli_option, llm_configured

app = typer.Typer()

PoolFile = Annotated[Path | None, typer.Option("--pool", help="TSV/CSV/JSONL file of texts (or of inputs, with an "
                                               "optional group column) to import as unlabeled tasks (labels or "
                                               "outputs in it are not imported).")]
BootstrapFile = Annotated[Path | None, typer.Option("--bootstrap", help="Labeled TSV/CSV/JSONL file (or input/output "
                                                    "pairs) imported as annotated tasks: the first model trains on "
                                                    "it.")]
Demo = Annotated[bool, typer.Option("--demo", help="The safety demo: pool = the 2,700 test-split titles (labels "
                                    "withheld), bootstrap = the 150 bootstrap labels (ALVAR_DATASETS or downloaded).")]
Budget = Annotated[int, typer.Option(help="Size of the first batch.")]
Task = Annotated[str, typer.Option("--task", help="Project kind: classification, generation (input -> output "
                                   "pairs), or auto: generation when the bootstrap file (else the pool file) has "
                                   "outputs and no label column.")]
InputCol = Annotated[str | None, typer.Option(help="Generative projects: the input column (default: input, else "
                                              "text); naming any pair column makes the project generative.")]
OutputCol = Annotated[str | None, typer.Option(help="Generative projects: the output column of the bootstrap "
                                               "pairs (default: output).")]
GroupCol = Annotated[str | None, typer.Option(help="Generative projects: the subgroup column (default: group).")]


def _import_files(settings: Settings, demo: bool, pool: Path | None, bootstrap: Path | None) -> tuple[Path | None,
                                                                                                         Path | None]:
    """The pool and bootstrap files: given ones, or the demo's."""
    from alvar.demo_data import demo_files

    if not demo:
        return pool, bootstrap
    if pool is not None or bootstrap is not None:
        raise AlvarError("--demo brings its own pool and bootstrap: leave out --pool and --bootstrap")
    files = demo_files(settings)
    return files.pool, files.bootstrap


def _check_task(task: str) -> None:
    """A bad --task fails before anything starts."""
    from alvar.loop.init_plan import TASKS

    if task not in TASKS:
        raise AlvarError(f"--task {task!r}: choose one of {', '.join(TASKS)}")


def _with_stack_models(ctx: typer.Context, settings: Settings) -> Settings:
    """The stack keeps its models in the data dir, unless MODEL_DIR or --model-dir says where."""
    if "model_dir" in run_settings(ctx).flags:
        return settings
    return settings.model_copy(update={"model_dir": settings.data_dir / "models"})


@app.command()
def up(
    ctx: typer.Context,
    data_dir: DataDir = None,
    demo: Demo = False,
    pool: PoolFile = None,
    bootstrap: BootstrapFile = None,
    budget: Budget = 20,
    task: Task = "auto",
    input_col: InputCol = None,
    output_col: OutputCol = None,
    group_col: GroupCol = None,
    port: Annotated[int | None, cli_option("label_studio_port", "--port")] = None,
    backend_port: Annotated[int | None, cli_option("backend_port")] = None,
    model_dir: ModelDir = None,
    redis_url: RedisUrl = None,
    label_studio_bind: Annotated[str | None, cli_option("label_studio_bind")] = None,
    database: Annotated[str | None, cli_option("label_studio_database", "--database")] = None,
) -> None:
    """Start Label Studio, Redis, the ML backend and a worker; set up the project and its first batch.

    Label Studio keeps its projects in SQLite in the data dir, or with --database in that PostgreSQL database
    (created when missing; remembered in the data dir for the next `up`).
    """
    from alvar.loop.stack import up as start_stack

    _check_task(task)
    settings = command_settings(ctx, data_dir=data_dir, redis_url=redis_url, label_studio_port=port,
                                backend_port=backend_port, label_studio_bind=label_studio_bind, model_dir=model_dir,
                                label_studio_database=database)
    if model_dir is None:
        settings = _with_stack_models(ctx, settings)
    pool, bootstrap = _import_files(settings, demo, pool, bootstrap)
    state, outcome = start_stack(settings, pool, bootstrap, budget, report=render.say, task=task,
                                 columns=PairColumns(input_col, output_col, group_col))
    render.stack_up(state, outcome, settings.data_dir)
    render.llm_note(settings, llm_configured(settings))
    render.next_steps(state, outcome, settings.data_dir)


@app.command()
def init(
    ctx: typer.Context,
    demo: Demo = False,
    pool: PoolFile = None,
    bootstrap: BootstrapFile = None,
    budget: Budget = 20,
    task: Task = "auto",
    input_col: InputCol = None,
    output_col: OutputCol = None,
    group_col: GroupCol = None,
    backend_url: Annotated[str | None, cli_option("backend_url")] = None,
    title: Annotated[str | None, typer.Option(help="Project title (an existing project of this title is reused; "
                                              "default: 'alvar safety dataset', or 'alvar generation dataset' for "
                                              "a generative project).")] = None,
    label_studio_url: LabelStudioUrl = None,
    label_studio_api_key: LabelStudioApiKey = None,
    redis_url: RedisUrl = None,
    model_dir: ModelDir = None,
) -> None:
    """Set up the project in a running Label Studio (e.g. docker compose): import, connect, first model, first batch."""
    from redis import Redis

    from alvar.labelstudio.client import label_studio_client
    from alvar.loop.init_plan import InitPlan
    from alvar.loop.initialize import initialize

    _check_task(task)
    settings = command_settings(ctx, backend_url=backend_url, label_studio_url=label_studio_url,
                                label_studio_api_key=label_studio_api_key, redis_url=redis_url, model_dir=model_dir)
    pool, bootstrap = _import_files(settings, demo, pool, bootstrap)
    if not settings.redis_url:
        raise AlvarError("alvar init needs the stack's Redis: set REDIS_URL")
    auth = (settings.basic_auth_user, settings.basic_auth_pass or "") if settings.basic_auth_user else None
    plan = InitPlan(backend_url=settings.backend_url, pool=pool, bootstrap=bootstrap, budget=budget, title=title,
                    task=task, columns=PairColumns(input_col, output_col, group_col), backend_auth=auth,
                    webhook_secret=settings.webhook_secret)
    with user_facing(RuntimeError):
        outcome = initialize(settings, label_studio_client(settings), Redis.from_url(settings.redis_url), plan,
                             report=render.say)
    render.initialized(outcome, settings.label_studio_url)
    render.llm_note(settings, llm_configured(settings))


@app.command()
def status(
    ctx: typer.Context,
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
    clusters: Annotated[bool, typer.Option("--clusters", help="Also count the pool's clusters that hold no "
                                           "labelled task yet (k-means over cached embeddings: a few seconds on "
                                           "a large pool).")] = False,
) -> None:
    """Services up or down, model version, queues, failed jobs, LLM usage, batch and verification progress.

    Exits with 1 when a service is down.
    """
    from alvar.loop.status import stack_status

    result = stack_status(command_settings(ctx, data_dir=data_dir), label_cover=clusters)
    if as_json:
        render.json_document(result.as_dict())
    else:
        render.stack_status(result)
    if not result.all_up:
        raise typer.Exit(code=1)


@app.command()
def down(ctx: typer.Context, data_dir: DataDir = None) -> None:
    """Stop the services `alvar up` started in the data dir (by PID; nothing else)."""
    from alvar.loop.stack import down as stop_stack

    render.stopped(stop_stack(command_settings(ctx, data_dir=data_dir)))
