"""The `alvar` command."""

from __future__ import annotations

import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from alvar.datafiles import DataFileError
from alvar.scripts.services import ServiceError, ensure_redis
from alvar.settings import (
    apply_overrides,
    cli_option,
    llm_configured,
    load_settings,
    settings_signature,
)

if TYPE_CHECKING:
    from alvar.scripts.selection import SelectionRun
    from alvar.scripts.status import Progress, StackStatus
    from alvar.settings import Settings

app = typer.Typer(help="alvar: active learning-guided LLM variations for Label Studio.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
console = Console()
errors = Console(stderr=True, soft_wrap=True)

ModelDir = Annotated[Path | None, cli_option("model_dir")]
RedisUrl = Annotated[str | None, cli_option("redis_url")]
DataDir = Annotated[Path | None, cli_option("data_dir")]
TextCol = Annotated[str | None, typer.Option("--text-col", help="Text column (default: text, title, input, "
                                             "else the second column after id).")]
LabelCol = Annotated[str | None, typer.Option("--label-col", help="Label column (default: label, category).")]
DEFAULT_MODELS = ("learner", "embedding-lr", "tfidf-lr")


def _settings_options(**values: object) -> None:
    """Every setting as a global option (``alvar --epochs 3 train ...``); a flag wins over the environment."""
    apply_overrides(**values)


_settings_options.__signature__ = settings_signature()  # type: ignore[attr-defined]
app.callback()(_settings_options)


def _fail(message: str) -> typer.Exit:
    errors.print(f"[red]error:[/] {escape(message)}", highlight=False)
    return typer.Exit(code=2)


def _resolve_redis(data_dir: Path, redis_url: str | None) -> str:
    """REDIS_URL when set, else the embedded Redis of the data dir (started if needed); exported for children."""
    url = ensure_redis(data_dir, redis_url)
    os.environ["REDIS_URL"] = url
    return url


@app.command()
def backend(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 9090,
    model_dir: ModelDir = None,
    redis_url: RedisUrl = None,
    data_dir: DataDir = None,
    label_studio_url: Annotated[str | None, cli_option("label_studio_url")] = None,
    label_studio_api_key: Annotated[str | None, cli_option("label_studio_api_key")] = None,
    basic_auth_user: Annotated[str | None, cli_option("basic_auth_user")] = None,
    basic_auth_pass: Annotated[str | None, cli_option("basic_auth_pass")] = None,
    webhook_secret: Annotated[str | None, cli_option("webhook_secret")] = None,
    workers: Annotated[int, typer.Option(
        min=0, max=1, help="1: the production server (waitress: one process, ALVAR_BACKEND_THREADS threads, the "
        "request bounds); 0: Flask's development server, for debugging only.")] = 1,
) -> None:
    """Serve the Label Studio ML backend (/health, /setup, /predict, /webhook, /versions, /metrics)."""
    settings = apply_overrides(model_dir=model_dir, data_dir=data_dir, label_studio_url=label_studio_url,
                               label_studio_api_key=label_studio_api_key, basic_auth_user=basic_auth_user,
                               basic_auth_pass=basic_auth_pass, webhook_secret=webhook_secret)
    try:
        _resolve_redis(settings.data_dir, redis_url or settings.redis_url)
    except ServiceError as error:
        raise _fail(str(error)) from None
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
    redis_url: RedisUrl = None,
    data_dir: DataDir = None,
    model_dir: ModelDir = None,
    label_studio_url: Annotated[str | None, cli_option("label_studio_url")] = None,
    label_studio_api_key: Annotated[str | None, cli_option("label_studio_api_key")] = None,
    concurrency: Annotated[int | None, cli_option("generation_concurrency", "--concurrency")] = None,
    queues: Annotated[str, typer.Option(help="Comma-separated: training, generation.")] = "training,generation",
    burst: Annotated[bool, typer.Option(help="Exit when the queues are empty.")] = False,
    name: Annotated[str | None, typer.Option(help="Worker name shown in RQ's registries.")] = None,
) -> None:
    """Run RQ workers: training jobs, and generation jobs (several in flight) when an LLM is configured."""
    from alvar.scripts.worker import QUEUE_ALIASES, run_worker

    settings = apply_overrides(model_dir=model_dir, data_dir=data_dir, label_studio_url=label_studio_url,
                               label_studio_api_key=label_studio_api_key, generation_concurrency=concurrency)
    chosen = [queue.strip() for queue in queues.split(",") if queue.strip()]
    unknown = [queue for queue in chosen if queue not in QUEUE_ALIASES]
    if unknown or not chosen:
        raise _fail(f"--queues takes training and/or generation, not {', '.join(unknown) or 'nothing'}")
    try:
        _resolve_redis(settings.data_dir, redis_url or settings.redis_url)
    except ServiceError as error:
        raise _fail(str(error)) from None
    run_worker(load_settings(), queues=chosen, burst=burst, name=name)


def _label_descriptions(labels_file: Path | None) -> dict[str, str]:
    """label -> description: from a label config's ``hint``s (.xml) or a JSON object; default: the shipped config."""
    import json

    from alvar.label_config import load
    from alvar.labelstudio.label_config import LabelConfigError, parse_choices_control

    if labels_file is not None and labels_file.suffix.lower() == ".json":
        try:
            described = json.loads(labels_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise _fail(f"cannot read {labels_file}: {error}") from None
        if not isinstance(described, dict):
            raise _fail(f"{labels_file} must hold a JSON object: label -> description")
        return {str(label): str(text) for label, text in described.items()}
    try:
        config = labels_file.read_text(encoding="utf-8") if labels_file is not None else load("annotate")
        control = parse_choices_control(config)
    except (OSError, LabelConfigError) as error:
        raise _fail(f"cannot read labels from {labels_file}: {error}") from None
    return {label: control.description(label) for label in control.labels}


@app.command()
def generate(
    text: Annotated[str, typer.Option(help="The source text x.")],
    label: Annotated[str, typer.Option(help="Its (human) label.")],
    k: Annotated[int | None, cli_option("variations", "--k")] = None,
    relation: Annotated[str | None, cli_option("relation")] = None,
    contrast_label: Annotated[str | None, cli_option("contrast_label")] = None,
    labels: Annotated[Path | None, typer.Option(
        help="Label descriptions: a label config (.xml, its hints) or a JSON object label -> description "
             "(default: the shipped config).")] = None,
    llm_model: Annotated[str | None, cli_option("llm_model", "--model")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print only a JSON list of the variations.")] = False,
) -> None:
    """Write k variations of one text with the configured LLM, without Label Studio (to try prompts and models)."""
    import json

    from alvar.generator.generation import generate as run_generation
    from alvar.generator.llm import ChatClient, LLMNotConfigured
    from alvar.generator.templates import TemplateError, VariationPrompt
    from alvar.generator.worker_resources import embed

    settings = apply_overrides(variations=k, relation=relation, contrast_label=contrast_label, llm_model=llm_model)
    descriptions = _label_descriptions(labels)
    target = settings.contrast_label if settings.relation == "contrast" else None
    if settings.relation == "contrast" and target in (None, label):
        raise _fail("--relation contrast needs --contrast-label: a class other than --label for the variations")
    try:
        prompt = VariationPrompt(text=text, label=label, k=settings.variations, relation=settings.relation,
                                 description=descriptions.get(label, ""), target_label=target,
                                 target_description=descriptions.get(target or "", ""),
                                 max_chars=settings.max_variation_chars)
        generation = run_generation(prompt, ChatClient.from_settings(settings), embed(settings),
                                    settings.near_duplicate_threshold)
    except (TemplateError, LLMNotConfigured) as error:
        raise _fail(str(error)) from None
    except Exception as error:  # the openai SDK's errors, after its retries: say what the endpoint answered
        raise _fail(f"the LLM request failed: {type(error).__name__}: {error}") from None
    if as_json:
        print(json.dumps(generation.variations, ensure_ascii=False))
    else:
        table = Table(title=f"{len(generation.variations)} variations ({prompt.relation}, label "
                            f"{prompt.variation_label}, {generation.model})")
        table.add_column("#", justify="right")
        table.add_column("variation")
        for number, variation in enumerate(generation.variations, start=1):
            table.add_row(str(number), escape(variation))
        console.print(table)
    usage = generation.usage
    dropped = dict(generation.dropped) or "none"
    errors.print(f"{usage.requests} requests ({usage.cached} cached), {usage.prompt_tokens} + "
                 f"{usage.completion_tokens} tokens, ~${usage.cost_usd:.5f}; dropped: {dropped}", highlight=False)
    if generation.shortfall:
        errors.print(f"[yellow]only {len(generation.variations)} of {prompt.k} variations passed screening[/]")
    if not generation.variations:
        raise typer.Exit(code=1)


@app.command()
def jobs(
    redis_url: RedisUrl = None,
    data_dir: DataDir = None,
    limit: Annotated[int, typer.Option(help="Newest jobs shown per queue and state.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    requeue_failed: Annotated[bool, typer.Option(
        "--requeue-failed", help="Put every failed job back in its queue (it runs again from the start) and "
        "print what was requeued.")] = False,
) -> None:
    """Queued, running, retrying, failed (with the reason) and finished jobs, workers, and LLM tokens and cost."""
    import json

    from redis import Redis

    from alvar.scripts.jobs import jobs_report
    from alvar.scripts.jobs import requeue_failed as requeue
    from alvar.scripts.services import embedded_redis_url, redis_reachable

    settings = apply_overrides(data_dir=data_dir, redis_url=redis_url)
    url = settings.redis_url or embedded_redis_url(settings.data_dir.resolve())
    if not redis_reachable(url):
        raise _fail(f"no Redis answers at {url}: is the stack up (alvar up), or is REDIS_URL right?")
    if requeue_failed:
        requeued = requeue(Redis.from_url(url))
        if as_json:
            print(json.dumps({"requeued": [asdict(row) for row in requeued]}, indent=2))
            return
        for row in requeued:
            console.print(f"requeued {row.queue} {row.id}: {escape(row.description)} (had failed: "
                          f"{escape(row.reason)})")
        console.print(f"{len(requeued)} failed jobs requeued")
        return
    report = jobs_report(Redis.from_url(url), limit=limit)
    if as_json:
        print(json.dumps(report, indent=2))
        return
    counts = Table(title="queues")
    counts.add_column("queue")
    for state in ("queued", "running", "retrying", "failed", "finished"):
        counts.add_column(state, justify="right")
    for queue, by_state in report["counts"].items():
        counts.add_row(queue, *(str(count) for count in by_state.values()))
    console.print(counts)
    if report["jobs"]:
        table = Table(title="jobs (newest first)")
        for column in ("queue", "state", "job", "description", "reason / outcome", "tokens", "cost $"):
            table.add_column(column)
        for row in report["jobs"]:
            table.add_row(row["queue"], row["state"], row["id"], escape(row["description"]), escape(row["reason"]),
                          str(row["tokens"]), f"{row['cost_usd']:.5f}")
        console.print(table)
    _print_workers(report["workers"])
    usage = report["llm_usage"]
    console.print(f"LLM: {usage['requests']} requests ({usage['cached']} cached), "
                  f"{usage['prompt_tokens'] + usage['completion_tokens']} tokens, ~${usage['cost_usd']:.4f}")


def _print_workers(workers: list[dict[str, Any]]) -> None:
    table = Table(title="RQ workers")
    for column in ("worker", "queues", "state", "job", "last heartbeat", "live"):
        table.add_column(column)
    for worker in workers:
        age = worker["heartbeat_age_s"]
        table.add_row(escape(worker["name"]), ", ".join(worker["queues"]), worker["state"], worker["job"] or "-",
                      "-" if age is None else f"{age:.0f} s ago", "[green]yes[/]" if worker["live"] else "[red]no[/]")
    console.print(table)


@app.command()
def train(
    data: Annotated[list[Path], typer.Option("--data", help="Labeled TSV/CSV/JSONL file; repeat to combine.")],
    model_dir: ModelDir = None,
    base: Annotated[str | None, cli_option("base_model", "--base")] = None,
    epochs: Annotated[int | None, cli_option("epochs")] = None,
    seed: Annotated[int | None, cli_option("seed")] = None,
    eval_file: Annotated[Path | None, typer.Option("--eval", help="Labeled file to report accuracy and "
                                                   "macro-F1 on after training.")] = None,
    text_col: TextCol = None,
    label_col: LabelCol = None,
) -> None:
    """Fine-tune the learner on labeled files and save it as the current version under MODEL_DIR."""
    from alvar.scripts.offline import train_files

    settings = apply_overrides(model_dir=model_dir, base_model=base, epochs=epochs, seed=seed)
    try:
        outcome = train_files(settings, data, eval_file, text_col, label_col)
    except (DataFileError, ValueError) as error:
        raise _fail(str(error)) from None
    table = Table(title=f"version {outcome.version}")
    table.add_column("class")
    table.add_column("examples", justify="right")
    for label, count in outcome.class_counts.items():
        table.add_row(label, str(count))
    console.print(table)
    console.print(f"trained on {outcome.n_examples} examples, final loss {outcome.training_loss:.4f}; "
                  f"saved under {settings.model_dir / outcome.version}")
    if outcome.metrics:
        console.print(" ".join(f"{name} {value:.4f}" for name, value in outcome.metrics.items()))


@app.command()
def predict(
    input_file: Annotated[Path, typer.Option("--input", help="TSV/CSV/JSONL file of texts to score.")],
    model_dir: ModelDir = None,
    out: Annotated[Path | None, typer.Option(help="JSONL output file (default: standard output).")] = None,
    version: Annotated[str | None, typer.Option(help="Saved version to use (default: the current one).")] = None,
    text_col: TextCol = None,
    label_col: LabelCol = None,
) -> None:
    """Predict labels, class probabilities and entropy for each text (JSONL: id, text, label, probabilities, entropy)."""
    from alvar.scripts.offline import predict_file

    settings = apply_overrides(model_dir=model_dir)
    try:
        used, dataset, scores = predict_file(settings, input_file, out, version, text_col, label_col)
    except (DataFileError, FileNotFoundError) as error:
        raise _fail(str(error)) from None
    if out is not None:
        console.print(f"scored {len(dataset)} texts with version {used} -> {out}")
    if scores:
        errors.print(" ".join(f"{name} {value:.4f}" for name, value in scores.items()))


PoolFile = Annotated[Path | None, typer.Option("--pool", help="TSV/CSV/JSONL file of texts to import as "
                                               "unlabeled tasks (labels in it are not imported).")]
BootstrapFile = Annotated[Path | None, typer.Option("--bootstrap", help="Labeled TSV/CSV/JSONL file imported as "
                                                    "annotated tasks: the first model trains on it.")]
Demo = Annotated[bool, typer.Option("--demo", help="The safety demo: pool = the 2,700 test-split titles (labels "
                                    "withheld), bootstrap = the 150 bootstrap labels (ALVAR_DATASETS or downloaded).")]
Budget = Annotated[int, typer.Option(help="Size of the first batch (cluster strategy).")]


def _import_files(settings: Settings, demo: bool, pool: Path | None, bootstrap: Path | None) -> tuple[Path | None,
                                                                                                         Path | None]:
    """The pool and bootstrap files: given ones, or the demo's."""
    from alvar.demo_data import DemoDataError, demo_files

    if not demo:
        return pool, bootstrap
    if pool is not None or bootstrap is not None:
        raise _fail("--demo brings its own pool and bootstrap: leave out --pool and --bootstrap")
    try:
        files = demo_files(settings)
    except DemoDataError as error:
        raise _fail(str(error)) from None
    return files.pool, files.bootstrap


def _say(line: str) -> None:
    """Progress of a long command, as plain text (file names may hold rich markup characters)."""
    console.print(escape(line))


def _print_llm_note(settings: Settings) -> None:
    if llm_configured(settings):
        console.print(f"LLM: {settings.llm_model} at {settings.openai_base_url or 'api.openai.com'}")
    else:
        console.print("[yellow]No LLM configured[/]: generation jobs wait in their queue. Set OPENAI_BASE_URL "
                      "(any OpenAI-compatible endpoint) and/or OPENAI_API_KEY, then `alvar down` and `alvar up`.")


@app.command()
def up(
    data_dir: DataDir = None,
    demo: Demo = False,
    pool: PoolFile = None,
    bootstrap: BootstrapFile = None,
    budget: Budget = 20,
    port: Annotated[int | None, cli_option("label_studio_port", "--port")] = None,
    backend_port: Annotated[int | None, cli_option("backend_port")] = None,
    model_dir: ModelDir = None,
    redis_url: RedisUrl = None,
    label_studio_bind: Annotated[str | None, cli_option("label_studio_bind")] = None,
) -> None:
    """Start Label Studio, Redis, the ML backend and a worker; set up the project and its first batch."""
    from alvar.scripts.initialize import InitError
    from alvar.scripts.stack import up as start_stack

    settings = apply_overrides(data_dir=data_dir, redis_url=redis_url, label_studio_port=port,
                               backend_port=backend_port, label_studio_bind=label_studio_bind)
    if model_dir is None and "MODEL_DIR" not in os.environ:
        model_dir = settings.data_dir / "models"
    settings = apply_overrides(model_dir=model_dir)
    pool, bootstrap = _import_files(settings, demo, pool, bootstrap)
    try:
        state, outcome = start_stack(settings, pool, bootstrap, budget, report=_say)
    except (ServiceError, DataFileError, InitError) as error:
        raise _fail(str(error)) from None
    table = Table(title="alvar is up", show_header=False)
    table.add_row("Label Studio", f"{state.label_studio_url}/projects/{state.project_id}")
    table.add_row("login", f"{state.username} / {state.password}")
    table.add_row("ML backend", state.backend_url)
    table.add_row("model", outcome.model_version or "none yet")
    table.add_row("logs", str(settings.data_dir.resolve() / "logs"))
    console.print(table)
    _print_llm_note(settings)
    where = f"--data-dir {settings.data_dir}"
    if outcome.batch is not None or outcome.model_version is not None:
        console.print(f"Next: log in, open the project's [bold]Batch[/] tab and label its tasks; review the "
                      f"variations in the [bold]Verify variations[/] tab. Then: `alvar select --project "
                      f"{state.project_id} {where}` for the next batch, `alvar status {where}` to see progress.")
    console.print(f"Stop everything with: alvar down {where}")


@app.command()
def init(
    demo: Demo = False,
    pool: PoolFile = None,
    bootstrap: BootstrapFile = None,
    budget: Budget = 20,
    backend_url: Annotated[str | None, cli_option("backend_url")] = None,
    title: Annotated[str, typer.Option(help="Project title (an existing project of this title is reused).")]
    = "alvar safety dataset",
    label_studio_url: Annotated[str | None, cli_option("label_studio_url")] = None,
    label_studio_api_key: Annotated[str | None, cli_option("label_studio_api_key")] = None,
    redis_url: RedisUrl = None,
    model_dir: ModelDir = None,
) -> None:
    """Set up the project in a running Label Studio (e.g. docker compose): import, connect, first model, first batch."""
    from redis import Redis

    from alvar.labelstudio.client import label_studio_client
    from alvar.scripts.initialize import InitError, InitPlan, initialize

    settings = apply_overrides(backend_url=backend_url, label_studio_url=label_studio_url,
                               label_studio_api_key=label_studio_api_key, redis_url=redis_url, model_dir=model_dir)
    pool, bootstrap = _import_files(settings, demo, pool, bootstrap)
    if not settings.redis_url:
        raise _fail("alvar init needs the stack's Redis: set REDIS_URL")
    auth = (settings.basic_auth_user, settings.basic_auth_pass or "") if settings.basic_auth_user else None
    plan = InitPlan(backend_url=settings.backend_url, pool=pool, bootstrap=bootstrap, budget=budget, title=title,
                    backend_auth=auth, webhook_secret=settings.webhook_secret)
    try:
        outcome = initialize(settings, label_studio_client(settings), Redis.from_url(settings.redis_url), plan,
                             report=_say)
    except (DataFileError, InitError, RuntimeError) as error:
        raise _fail(str(error)) from None
    if not outcome.steps:
        console.print("nothing to do: the project is set up")
    console.print(f"project {outcome.project_id}: {settings.label_studio_url}/projects/{outcome.project_id}, "
                  f"model {outcome.model_version or 'none yet'}")
    _print_llm_note(settings)


@app.command()
def status(
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
) -> None:
    """Services up or down, model version, queues, failed jobs, LLM usage, batch and verification progress.

    Exits with 1 when a service is down.
    """
    import json

    from alvar.scripts.status import stack_status

    result = stack_status(apply_overrides(data_dir=data_dir))
    if as_json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        _print_status(result)
    if not result.all_up:
        raise typer.Exit(code=1)


def _progress(progress: Progress | None) -> str:
    return "-" if progress is None else f"{progress.done} / {progress.total}"


def _print_status(result: StackStatus) -> None:
    services = Table(title=f"alvar stack in {result.data_dir}")
    for column in ("service", "state", "pid", "where"):
        services.add_column(column)
    for name, service in result.services.items():
        services.add_row(name, "[green]up[/]" if service.up else "[red]down[/]", str(service.pid or "-"),
                         escape(service.where))
    console.print(services)
    overview = Table(show_header=False)
    overview.add_row("project", result.project_url or "-")
    overview.add_row("model version", f"{result.model_version or '-'} (backend serves {result.serving_version or '-'})")
    overview.add_row(f"batch {result.batch or '-'} labeled", _progress(result.batch_progress))
    overview.add_row("variations reviewed", _progress(result.verification))
    for queue, counts in result.queues.items():
        overview.add_row(f"queue {queue}", ", ".join(f"{state} {count}" for state, count in counts.items()))
    usage = result.llm
    tokens = usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)
    overview.add_row("LLM", f"{usage['model']}: {tokens} tokens, ~${usage.get('cost_usd', 0.0):.4f}"
                     if usage["configured"] else "none configured")
    console.print(overview)
    _print_workers([asdict(worker) for worker in result.workers])
    for job in result.failed_jobs:
        console.print(f"[red]failed[/] {job['queue']} {job['id']}: {escape(job['reason'])}")


@app.command()
def down(data_dir: DataDir = None) -> None:
    """Stop the services `alvar up` started in the data dir (by PID; nothing else)."""
    from alvar.scripts.stack import down as stop_stack

    stopped = stop_stack(apply_overrides(data_dir=data_dir))
    console.print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


@app.command()
def export(
    project: Annotated[int, typer.Option(help="Label Studio project to export.")],
    out: Annotated[Path, typer.Option(help="Folder for the dataset files and its README.md card.")],
    formats: Annotated[str, typer.Option("--format", help="Comma-separated: tsv, jsonl, hf.")] = "tsv,jsonl,hf",
    include_unverified: Annotated[bool, typer.Option(help="Also variations nobody reviewed yet (their "
                                                     "pre-label; verified=false).")] = False,
    data_dir: DataDir = None,
    label_studio_url: Annotated[str | None, cli_option("label_studio_url")] = None,
    label_studio_api_key: Annotated[str | None, cli_option("label_studio_api_key")] = None,
) -> None:
    """Export the dataset: human labels and reviewed-valid variations, with provenance and a dataset card."""
    import httpx
    from label_studio_sdk.core.api_error import ApiError

    from alvar.labelstudio.client import label_studio_client
    from alvar.labelstudio.label_config import LabelConfigError
    from alvar.scripts.export import (
        ExportError,
        build_export,
        check_formats,
        project_tasks,
        write_export,
    )

    settings = apply_overrides(label_studio_url=label_studio_url, label_studio_api_key=label_studio_api_key,
                               data_dir=data_dir)
    chosen = [name.strip() for name in formats.split(",") if name.strip()]
    try:
        check_formats(chosen)
        tasks, control = project_tasks(label_studio_client(settings), project)
        built = build_export(tasks, control, include_unverified)
        if not built.rows:
            raise ExportError(f"project {project} has no labelled items to export ({len(tasks)} tasks)")
        written = write_export(built, out, chosen, project)
    except (ExportError, LabelConfigError, RuntimeError, OSError) as error:
        raise _fail(str(error)) from None
    except httpx.TransportError as error:
        raise _fail(f"Label Studio at {settings.label_studio_url} cannot be reached: {error}") from None
    except ApiError as error:
        raise _fail(f"Label Studio answered {error.status_code}: {error.body}") from None
    origins = {origin: sum(row.origin == origin for row in built.rows) for origin in ("human", "llm")}
    console.print(f"{len(built.rows)} rows ({origins['human']} human, {origins['llm']} variations; "
                  f"{built.left_out} variations left out) -> {', '.join(str(path) for path in written)}")


@app.command()
def evaluate(
    train: Annotated[list[Path], typer.Option("--train", help="Labeled training file (an export's dataset.tsv or "
                                                "dataset.jsonl works); repeat to combine.")],
    test: Annotated[Path, typer.Option("--test", help="Labeled test file.")],
    out: Annotated[Path, typer.Option(help="Folder for report.md, runs.csv, summary.csv and PNG plots.")],
    models: Annotated[str, typer.Option(help="Comma-separated: learner, embedding-lr, tfidf-lr, or any "
                                        "transformer base (model id or path).")] = ",".join(DEFAULT_MODELS),
    seeds: Annotated[int, typer.Option(help="Seeds per model (mean and sd are reported).")] = 3,
    text_col: TextCol = None,
    label_col: LabelCol = None,
) -> None:
    """Train models outside the loop on the dataset and score them on a test set (transfer)."""
    from alvar.scripts.evaluate import EvaluationError, write_report
    from alvar.scripts.evaluate import evaluate as run_evaluation

    settings = load_settings()
    chosen = [name.strip() for name in models.split(",") if name.strip()]
    try:
        evaluation = run_evaluation(settings, train, test, chosen, seeds, text_col, label_col)
        written = write_report(evaluation, out, train, test)
    except (EvaluationError, DataFileError, OSError) as error:
        raise _fail(str(error)) from None
    table = Table(title=f"macro-F1 on {test.name} (mean ± sd over {seeds} seeds)")
    for column in ("model", "accuracy %", "macro-F1 %", "error-rate std %"):
        table.add_column(column)
    for row in evaluation.summary():
        table.add_row(row["model"], *(f"{100 * row[f'{m}_mean']:.1f} ± {100 * row[f'{m}_sd']:.1f}"
                                      for m in ("accuracy", "macro_f1", "error_rate_std")))
    console.print(table)
    for note in evaluation.notes:
        errors.print(f"[yellow]note:[/] {escape(note)}")
    console.print(f"-> {', '.join(str(path) for path in written)}")


@app.command()
def simulate(
    pool: Annotated[Path, typer.Option(help="Labeled pool file (its labels play the annotator).")],
    bootstrap: Annotated[Path, typer.Option(help="Labeled file the learner starts from.")],
    out: Annotated[Path, typer.Option(help="Folder for summary.csv, report.md and PNG plots.")],
    eval_file: Annotated[Path | None, typer.Option("--eval", help="Labeled eval file; without it each seed splits "
                                                   "--pool into two stratified halves: pool and eval.")] = None,
    strategies: Annotated[str, typer.Option(help="Comma-separated strategies.")] = "random,topn,coreset,cluster",
    rounds: Annotated[int, typer.Option(help="Selection rounds.")] = 5,
    per_round: Annotated[int, typer.Option(help="Labels acquired per round.")] = 20,
    seeds: Annotated[int, typer.Option(help="Seeds (splits, strategies and learners).")] = 5,
    learner: Annotated[str, typer.Option(help="fast (logistic regression on cached embeddings) or transformer "
                                         "(the loop's learner).")] = "fast",
    generator: Annotated[str, typer.Option(help="none, or llm: k variations of each new label from the "
                                           "configured LLM.")] = "none",
    text_col: TextCol = None,
    label_col: LabelCol = None,
) -> None:
    """Compare selection strategies on labeled data without people: gold labels play the annotator."""
    import shlex

    from alvar.scripts.simulate import SimulationError, write_outputs
    from alvar.scripts.simulate import simulate as run_simulation

    settings = load_settings()
    try:
        simulation = run_simulation(settings, pool, eval_file, bootstrap,
                                    [name.strip() for name in strategies.split(",") if name.strip()],
                                    rounds, per_round, seeds, learner, generator, text_col, label_col)
        written = write_outputs(simulation, out, "alvar " + shlex.join(sys.argv[1:]))
    except (SimulationError, DataFileError, OSError) as error:
        raise _fail(str(error)) from None
    console.print((out / "report.md").read_text())
    console.print(f"-> {', '.join(str(path) for path in written)}")


def _print_clusters(run: SelectionRun) -> None:
    from alvar.scripts.selection import cluster_table

    rows = cluster_table(run)
    if not rows:
        return
    table = Table(title=f"clusters ({run.strategy}, model {run.model_version})")
    for column in ("cluster", "size", "picked", "mean entropy of picks"):
        table.add_column(column, justify="right")
    for cluster, size, picked, mean in rows:
        table.add_row(str(cluster), str(size), str(picked), "-" if picked == 0 else f"{mean:.3f}")
    console.print(table)


@app.command()
def select(
    strategy: Annotated[str, typer.Option(help="random, topn, coreset or cluster.")] = "cluster",
    budget: Annotated[int, typer.Option(help="How many items the batch holds (exactly).")] = 20,
    clusters: Annotated[int | None, typer.Option("--clusters", help="K for cluster (default: budget / per-cluster).")] = None,
    per_cluster: Annotated[int, typer.Option(help="n: most uncertain items taken from each cluster.")] = 1,
    seed: Annotated[int, typer.Option(help="random_state of the strategy.")] = 0,
    project: Annotated[int | None, typer.Option(help="Label Studio project to select in.")] = None,
    dry_run: Annotated[bool, typer.Option(help="Label Studio mode: show the batch, change nothing.")] = False,
    pool: Annotated[Path | None, typer.Option(help="File mode: TSV/CSV/JSONL pool to select from.")] = None,
    labeled: Annotated[Path | None, typer.Option(help="File mode: labeled texts (never selected; coreset's start).")] = None,
    out: Annotated[Path | None, typer.Option(help="File mode: JSONL output (id, text, cluster, entropy, strategy, rank).")] = None,
    model_dir: ModelDir = None,
    data_dir: DataDir = None,
    label_studio_url: Annotated[str | None, cli_option("label_studio_url")] = None,
    label_studio_api_key: Annotated[str | None, cli_option("label_studio_api_key")] = None,
    text_col: TextCol = None,
    label_col: LabelCol = None,
) -> None:
    """Select the next batch: the most uncertain items of each cluster (or a baseline strategy)."""
    from alvar.scripts.select import select_file, select_project
    from alvar.strategies import SelectionError

    settings = apply_overrides(model_dir=model_dir, label_studio_url=label_studio_url,
                               label_studio_api_key=label_studio_api_key, data_dir=data_dir)
    if (project is None) == (pool is None):
        raise _fail("give either --project (Label Studio mode) or --pool with --out (file mode)")
    try:
        if pool is not None:
            if out is None:
                raise _fail("file mode needs --out FILE.jsonl")
            run, rows = select_file(settings, pool, out, strategy, budget, seed, labeled, clusters, per_cluster,
                                    text_col, label_col)
            _print_clusters(run)
            console.print(f"{len(rows)} items by {strategy} (model {run.model_version}) -> {out}")
            return
        from alvar.labelstudio.client import label_studio_client

        outcome = select_project(settings, label_studio_client(settings), project, strategy, budget, seed,
                                 clusters, per_cluster, dry_run)
    except (SelectionError, DataFileError, FileNotFoundError, ValueError, RuntimeError) as error:
        raise _fail(str(error)) from None
    if outcome.run is not None:
        _print_clusters(outcome.run)
    console.print(outcome.message)


@app.command()
def reconcile(
    project: Annotated[list[int] | None, typer.Option("--project", help="Project id (repeatable); default: every "
                                                      "project the backend has heard from.")] = None,
    redis_url: RedisUrl = None,
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Queue what lost webhooks missed: variations of human labels that have none, and due retraining."""
    import json

    from redis import Redis

    from alvar.scripts.reconcile import reconcile_projects
    from alvar.scripts.services import embedded_redis_url, redis_reachable

    settings = apply_overrides(data_dir=data_dir, redis_url=redis_url)
    url = settings.redis_url or embedded_redis_url(settings.data_dir.resolve())
    if not redis_reachable(url):
        raise _fail(f"no Redis answers at {url}: is the stack up (alvar up), or is REDIS_URL right?")
    found = reconcile_projects(settings, Redis.from_url(url), project or None)
    if as_json:
        print(json.dumps([item.as_dict() for item in found], indent=2))
        return
    table = Table(title="reconciliation")
    for column in ("project", "labelled sources", "generation queued", "already pending", "statuses fixed",
                   "human labels / trained on", "training", "error"):
        table.add_column(column)
    for item in found:
        training = (item.training or {}).get("training", "-")
        trained_on = "-" if item.trained_on is None else str(item.trained_on)
        table.add_row(str(item.project), str(item.sources), str(len(item.queued)), str(item.pending),
                      str(item.restated), f"{item.human_labels} / {trained_on}", training, escape(item.error or ""))
    console.print(table)
    if any(item.error for item in found):
        raise typer.Exit(code=1)
