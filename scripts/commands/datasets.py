"""Public data sets with skewed classes, to simulate on: `alvar datasets list` and `alvar datasets prepare`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from alvar.scripts import render
from alvar.scripts.commands.options import command_settings

app = typer.Typer(name="datasets", no_args_is_help=True,
                  help="Public labelled data sets with skewed classes (downloaded at run time, pinned, hashed).")


def _shares(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    return ", ".join(f"{label} {count / total:.1%}" for label, count in counts.items())


@app.command("list")
def list_datasets() -> None:
    """The registered data sets: classes and their shares, rows, licence and source."""
    from alvar.public_data import REGISTRY

    table = Table("name", "classes (share of rows)", "rows", "licence", title="public data sets")
    table.add_column("source", overflow="fold")
    for dataset in REGISTRY.values():
        shares = ", ".join(f"{label} {share:.1%}" for label, share in dataset.shares().items())
        table.add_row(dataset.name, shares, f"{dataset.size:,}", dataset.licence, escape(dataset.source))
    render.console.print(table)


@app.command()
def prepare(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A name from `alvar datasets list`.")],
    out: Annotated[Path, typer.Option(help="Folder for pool.tsv, bootstrap.tsv and prepared.json.")],
    bootstrap_per_class: Annotated[int, typer.Option(help="Bootstrap rows of every class.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap and of the pool's sample.")] = 0,
    max_pool: Annotated[int, typer.Option(help="At most this many pool rows, a stratified sample (0: all).")] = 4000,
) -> None:
    """Write a labelled pool and a stratified bootstrap of a public data set, for `alvar simulate`."""
    from alvar.public_data import public_dataset
    from alvar.scripts.datasets import prepare as prepare_files

    dataset = public_dataset(name)
    prepared = prepare_files(dataset, command_settings(ctx), out, bootstrap_per_class, seed, max_pool)
    render.say(f"{dataset.name}: {prepared.rows:,} distinct rows ({prepared.repeats:,} rows repeating a text dropped, "
               f"{prepared.conflicting:,} texts with conflicting labels left out); cleaning: {dataset.cleaning}")
    render.say(f"pool {sum(prepared.pool_counts.values()):,}: {_shares(prepared.pool_counts)}")
    render.say(f"bootstrap {sum(prepared.bootstrap_counts.values()):,}: {_shares(prepared.bootstrap_counts)}")
    render.written([prepared.pool, prepared.bootstrap, prepared.card])
    render.say(f"licence {dataset.licence}; cite: {dataset.citation}")
