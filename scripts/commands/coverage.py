"""`alvar coverage`: a picture of the pool, its labels, variations and current batch, and a per-cluster table."""

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
from alvar.strategies import DEFAULT_CLUSTERS

app = typer.Typer()


@app.command()
def coverage(
    ctx: typer.Context,
    project: Annotated[int | None, typer.Option(help="Label Studio project to draw.")] = None,
    pool: Annotated[Path | None, typer.Option(help="File mode: TSV/CSV/JSONL pool (its labels are not read).")] = None,
    labeled: Annotated[Path | None, typer.Option(help="File mode: labelled texts; their label column gives the "
                                                 "classes (joined to the pool when it lacks them).")] = None,
    variations: Annotated[Path | None, typer.Option(help="File mode: labelled file of generated variations.")] = None,
    batch: Annotated[Path | None, typer.Option(help="File mode: the current batch (`alvar select --out` JSONL), "
                                               "outlined.")] = None,
    out: Annotated[Path, typer.Option(help="Folder for coverage.png and clusters.csv.")] = Path("coverage"),
    clusters: Annotated[int, typer.Option("--clusters", help="K of the k-means over the pool.")] = DEFAULT_CLUSTERS,
    seed: Annotated[int, typer.Option(help="random_state of the k-means.")] = 0,
    model_dir: ModelDir = None,
    data_dir: DataDir = None,
    label_studio_url: LabelStudioUrl = None,
    label_studio_api_key: LabelStudioApiKey = None,
    text_col: TextCol = None,
    label_col: LabelCol = None,
) -> None:
    """Where the labels are: the pool in 2-D by class, variations and the current batch marked; per cluster its
    size, labelled tasks, variations and mean entropy."""
    import httpx
    from label_studio_sdk.core.api_error import ApiError

    from alvar.labelstudio.client import label_studio_client
    from alvar.loop.coverage import check_clusters, compute_coverage, file_pool, project_pool
    from alvar.scripts.coverage_output import print_table, write_outputs

    settings = command_settings(ctx, model_dir=model_dir, label_studio_url=label_studio_url,
                                label_studio_api_key=label_studio_api_key, data_dir=data_dir)
    if (project is None) == (pool is None):
        raise AlvarError("give either --project (Label Studio mode) or --pool (file mode)")
    file_only = {"--labeled": labeled, "--variations": variations, "--batch": batch}
    given = [flag for flag, value in file_only.items() if value is not None]
    if project is not None and given:
        raise AlvarError(f"{', '.join(given)}: file mode only (a project has its own labels, variations and batch)")
    try:
        with user_facing(RuntimeError, OSError):  # a missing token; an unreadable file or unwritable folder
            if project is not None:
                chosen = project_pool(label_studio_client(settings), project)
            else:
                chosen = file_pool(pool, labeled, variations, batch, text_col, label_col)  # type: ignore[arg-type]
            check_clusters(len(chosen.pool), clusters)
            result = compute_coverage(settings, chosen, clusters, seed)
            written = write_outputs(result, out)
    except httpx.TransportError as error:
        raise AlvarError(f"Label Studio at {settings.label_studio_url} cannot be reached: {error}") from error
    except ApiError as error:
        raise AlvarError(f"Label Studio answered {error.status_code}: {error.body}") from error
    print_table(result)
    render.written(written)
