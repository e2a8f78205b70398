"""The services and their queues: `alvar backend`, `alvar worker`, `alvar jobs` and `alvar reconcile`."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer
from redis import Redis

from alvar.errors import AlvarError
from alvar.malloc_arenas import limit_arenas
from alvar.scripts import render
from alvar.scripts.commands.options import (
    DataDir,
    LabelStudioApiKey,
    LabelStudioUrl,
    ModelDir,
    RedisUrl,
    command_settings,
)
from alvar.settings import Settings, cli_option

app = typer.Typer()


def _with_redis(settings: Settings) -> Settings:
    """The settings with the Redis a service uses: REDIS_URL when set, else the data dir's embedded Redis
    (started if needed)."""
    from alvar.loop.services import ensure_redis

    return settings.model_copy(update={"redis_url": ensure_redis(settings.data_dir, settings.redis_url)})


def _stack_redis(settings: Settings) -> Redis:
    """The Redis of a running stack (REDIS_URL, else the data dir's embedded one); it must answer."""
    from alvar.loop.services import embedded_redis_url, redis_reachable

    url = settings.redis_url or embedded_redis_url(settings.data_dir.resolve())
    if not redis_reachable(url):
        raise AlvarError(f"no Redis answers at {url}: is the stack up (alvar up), or is REDIS_URL right?")
    return Redis.from_url(url)


@app.command()
def backend(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 9090,
    model_dir: ModelDir = None,
    redis_url: RedisUrl = None,
    data_dir: DataDir = None,
    label_studio_url: LabelStudioUrl = None,
    label_studio_api_key: LabelStudioApiKey = None,
    basic_auth_user: Annotated[str | None, cli_option("basic_auth_user")] = None,
    basic_auth_pass: Annotated[str | None, cli_option("basic_auth_pass")] = None,
    webhook_secret: Annotated[str | None, cli_option("webhook_secret")] = None,
    workers: Annotated[int, typer.Option(
        min=0, max=1, help="1: the production server (waitress: one process, ALVAR_BACKEND_THREADS threads, the "
        "request bounds); 0: Flask's development server, for debugging only.")] = 1,
) -> None:
    """Serve the Label Studio ML backend (/health, /setup, /predict, /webhook, /versions, /metrics)."""
    settings = _with_redis(command_settings(
        ctx, model_dir=model_dir, redis_url=redis_url, data_dir=data_dir, label_studio_url=label_studio_url,
        label_studio_api_key=label_studio_api_key, basic_auth_user=basic_auth_user, basic_auth_pass=basic_auth_pass,
        webhook_secret=webhook_secret))
    limit_arenas(settings.backend_malloc_arenas)  # before torch and the request threads allocate anything
    from alvar.backend.app import configure_logging
    from alvar.scripts.backend_app import backend_app

    configure_logging()
    app = backend_app(settings)
    if workers == 0:
        app.run(host=host, port=port, threaded=True)
        return
    from alvar.backend.server import serve

    serve(app, settings, host, port)


@app.command()
def worker(
    ctx: typer.Context,
    redis_url: RedisUrl = None,
    data_dir: DataDir = None,
    model_dir: ModelDir = None,
    label_studio_url: LabelStudioUrl = None,
    label_studio_api_key: LabelStudioApiKey = None,
    concurrency: Annotated[int | None, cli_option("generation_concurrency", "--concurrency")] = None,
    processes: Annotated[int | None, cli_option("worker_processes", "--processes")] = None,
    queues: Annotated[str, typer.Option(help="Comma-separated: training, generation, scoring.")] = \
        "training,generation,scoring",
    burst: Annotated[bool, typer.Option(help="Exit when the queues are empty.")] = False,
    name: Annotated[str | None, typer.Option(help="Worker name shown in RQ's registries.")] = None,
) -> None:
    """Run RQ workers: training jobs, pool scoring chunks, and generation jobs (several in flight) when an LLM is
    configured; --processes N runs N processes each for generation and scoring (training: one)."""
    from alvar.loop.worker import QUEUE_ALIASES, run_worker

    settings = command_settings(ctx, redis_url=redis_url, data_dir=data_dir, model_dir=model_dir,
                                label_studio_url=label_studio_url, label_studio_api_key=label_studio_api_key,
                                generation_concurrency=concurrency, worker_processes=processes)
    chosen = [queue.strip() for queue in queues.split(",") if queue.strip()]
    unknown = [queue for queue in chosen if queue not in QUEUE_ALIASES]
    if unknown or not chosen:
        raise AlvarError(f"--queues takes training, generation and/or scoring, not {', '.join(unknown) or 'nothing'}")
    run_worker(_with_redis(settings), queues=chosen, burst=burst, name=name)


@app.command()
def jobs(
    ctx: typer.Context,
    redis_url: RedisUrl = None,
    data_dir: DataDir = None,
    limit: Annotated[int, typer.Option(help="Newest jobs shown per queue and state.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    requeue_failed: Annotated[bool, typer.Option(
        "--requeue-failed", help="Put every failed job back in its queue (it runs again from the start) and "
        "print what was requeued.")] = False,
) -> None:
    """Queued, running, retrying, failed (with the reason) and finished jobs, workers, and LLM tokens and cost."""
    from alvar.loop.jobs import jobs_report
    from alvar.loop.jobs import requeue_failed as requeue

    connection = _stack_redis(command_settings(ctx, data_dir=data_dir, redis_url=redis_url))
    if requeue_failed:
        requeued = requeue(connection)
        if as_json:
            render.json_document({"requeued": [asdict(row) for row in requeued]})
        else:
            render.requeued(requeued)
        return
    report = jobs_report(connection, limit=limit)
    if as_json:
        render.json_document(report)
    else:
        render.jobs(report)


@app.command()
def reconcile(
    ctx: typer.Context,
    project: Annotated[list[int] | None, typer.Option("--project", help="Project id (repeatable); default: every "
                                                      "project the backend has heard from.")] = None,
    redis_url: RedisUrl = None,
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Queue what lost webhooks missed: variations of human labels that have none, and due retraining."""
    from alvar.loop.reconcile import reconcile_projects

    settings = command_settings(ctx, data_dir=data_dir, redis_url=redis_url)
    found = reconcile_projects(settings, _stack_redis(settings), project or None)
    if as_json:
        render.json_document([item.as_dict() for item in found])
        return
    render.reconciliation(found)
    if any(item.error for item in found):
        raise typer.Exit(code=1)
