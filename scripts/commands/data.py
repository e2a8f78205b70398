"""The data: `alvar select` (the next batch), `alvar export` (the dataset) and `alvar generate` (variations of one
text, to try prompts and models)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from alvar.errors import AlvarError, user_facing
from alvar.scripts import render
from alvar.scripts.commands.options import (
    DataDir,
    LabelCol,
    LabelStudioApiKey,
    LabelStudioUrl,
    ModelDir,
    TextCol,
    command_settings,
)
from alvar.settings import cli_option
from alvar.strategies import DEFAULT_STRATEGY, strategy_names

app = typer.Typer()


@app.command()
def select(
    ctx: typer.Context,
    strategy: Annotated[str, typer.Option(help=f"One of {strategy_names()}.")] = DEFAULT_STRATEGY,
    budget: Annotated[int, typer.Option(help="How many items the batch holds (exactly).")] = 20,
    clusters: Annotated[int | None, typer.Option("--clusters", help="K for cluster (default: budget / "
                                                 "per-cluster) and clustermargin (default: budget).")] = None,
    per_cluster: Annotated[int, typer.Option(help="n: most uncertain items taken from each cluster.")] = 1,
    seed: Annotated[int, typer.Option(help="random_state of the strategy.")] = 0,
    project: Annotated[int | None, typer.Option(help="Label Studio project to select in.")] = None,
    dry_run: Annotated[bool, typer.Option(help="Label Studio mode: show the batch, change nothing.")] = False,
    pool: Annotated[Path | None, typer.Option(help="File mode: TSV/CSV/JSONL pool to select from.")] = None,
    labeled: Annotated[Path | None, typer.Option(help="File mode: labeled texts (never selected; coreset's "
                                                 "start).")] = None,
    out: Annotated[Path | None, typer.Option(help="File mode: JSONL output (id, text, cluster, entropy, strategy, "
                                             "rank).")] = None,
    model_dir: ModelDir = None,
    data_dir: DataDir = None,
    label_studio_url: LabelStudioUrl = None,
    label_studio_api_key: LabelStudioApiKey = None,
    text_col: TextCol = None,
    label_col: LabelCol = None,
) -> None:
    """Select the next batch of items for people to label, by a selection strategy."""
    from alvar.labelstudio.client import label_studio_client
    from alvar.loop.select import select_file, select_project
    from alvar.loop.selection import cluster_table

    settings = command_settings(ctx, model_dir=model_dir, label_studio_url=label_studio_url,
                                label_studio_api_key=label_studio_api_key, data_dir=data_dir)
    # What a person fixes: no model trained yet (the store's FileNotFoundError), a project without tasks, no token.
    expected = (FileNotFoundError, ValueError, RuntimeError)
    if project is not None and pool is None:
        with user_facing(*expected):
            outcome = select_project(settings, label_studio_client(settings), project, strategy, budget, seed,
                                     clusters, per_cluster, dry_run)
        if outcome.run is not None:
            render.clusters(outcome.run, cluster_table(outcome.run))
        render.line(outcome.message)
        return
    if pool is None or project is not None:
        raise AlvarError("give either --project (Label Studio mode) or --pool with --out (file mode)")
    if out is None:
        raise AlvarError("file mode needs --out FILE.jsonl")
    with user_facing(*expected):
        run, rows = select_file(settings, pool, out, strategy, budget, seed, labeled, clusters, per_cluster,
                                text_col, label_col)
    render.clusters(run, cluster_table(run))
    render.line(f"{len(rows)} items by {run.strategy} (model {run.model_version}) -> {out}")


@app.command()
def export(
    ctx: typer.Context,
    project: Annotated[int, typer.Option(help="Label Studio project to export.")],
    out: Annotated[Path, typer.Option(help="Folder for the dataset files and its README.md card.")],
    formats: Annotated[str, typer.Option("--format", help="Comma-separated: tsv, jsonl, hf.")] = "tsv,jsonl,hf",
    include_unverified: Annotated[bool, typer.Option(help="Also variations nobody reviewed yet (their "
                                                     "pre-label; verified=false).")] = False,
    data_dir: DataDir = None,
    label_studio_url: LabelStudioUrl = None,
    label_studio_api_key: LabelStudioApiKey = None,
) -> None:
    """Export the dataset: human labels and reviewed-valid variations (a generative project: the verified pairs),
    with provenance and a dataset card."""
    import httpx
    from label_studio_sdk.core.api_error import ApiError

    from alvar.labelstudio.client import label_studio_client
    from alvar.loop.export import (
        ExportError,
        build_export,
        check_formats,
        project_tasks,
        write_export,
    )

    settings = command_settings(ctx, label_studio_url=label_studio_url, label_studio_api_key=label_studio_api_key,
                                data_dir=data_dir)
    chosen = [name.strip() for name in formats.split(",") if name.strip()]
    try:
        with user_facing(RuntimeError, OSError):  # a missing token; an unwritable folder
            check_formats(chosen)
            tasks, control = project_tasks(label_studio_client(settings), project)
            built = build_export(tasks, control, include_unverified)
            if not built.rows:
                raise ExportError(f"project {project} has no labelled items to export ({len(tasks)} tasks)")
            written = write_export(built, out, chosen, project)
    except httpx.TransportError as error:
        raise AlvarError(f"Label Studio at {settings.label_studio_url} cannot be reached: {error}") from error
    except ApiError as error:
        raise AlvarError(f"Label Studio answered {error.status_code}: {error.body}") from error
    render.exported(built, written)


def _label_descriptions(labels_file: Path | None) -> dict[str, str]:
    """label -> description: from a label config's ``hint``s (.xml) or a JSON object; default: the shipped config."""
    import json

    from alvar.label_config import load
    from alvar.labelstudio.choices_control import LabelConfigError, parse_choices_control

    if labels_file is not None and labels_file.suffix.lower() == ".json":
        try:
            described = json.loads(labels_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise AlvarError(f"cannot read {labels_file}: {error}") from error
        if not isinstance(described, dict):
            raise AlvarError(f"{labels_file} must hold a JSON object: label -> description")
        return {str(label): str(text) for label, text in described.items()}
    try:
        config = labels_file.read_text(encoding="utf-8") if labels_file is not None else load("annotate")
        control = parse_choices_control(config)
    except (OSError, LabelConfigError) as error:
        raise AlvarError(f"cannot read labels from {labels_file}: {error}") from error
    return control.descriptions()


@app.command()
def generate(
    ctx: typer.Context,
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
    from alvar.generator.generation import generate as run_generation
    from alvar.generator.llm import ChatClient
    from alvar.generator.prompts import variation_prompt
    from alvar.generator.validation import near_duplicate_embed

    settings = command_settings(ctx, variations=k, relation=relation, contrast_label=contrast_label,
                                llm_model=llm_model)
    prompt = variation_prompt(settings, _label_descriptions(labels), text, label)
    client = ChatClient.from_settings(settings)
    try:
        generation = run_generation(prompt, client, near_duplicate_embed(settings), settings.near_duplicate_threshold)
    except AlvarError:
        raise
    except Exception as error:  # the openai SDK's errors, after its retries: say what the endpoint answered
        raise AlvarError(f"the LLM request failed: {type(error).__name__}: {error}") from error
    if as_json:
        render.json_document(generation.variations, indent=None, ensure_ascii=False)
    else:
        render.variations(generation, prompt)
    render.generation_cost(generation, prompt.k)
    if not generation.variations:
        raise typer.Exit(code=1)
