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
    from alvar.public_data import PAIR_REGISTRY, REGISTRY

    table = Table("name", "task", "classes or subgroups (share of rows)", "rows", "licence", title="public data sets")
    table.add_column("source", overflow="fold")
    for task, datasets in (("classification", list(REGISTRY.values())), ("generation", list(PAIR_REGISTRY.values()))):
        for dataset in datasets:
            shares = ", ".join(f"{label} {share:.1%}" for label, share in dataset.shares().items())
            table.add_row(dataset.name, task, shares, f"{dataset.size:,}", escape(dataset.licence),
                          escape(dataset.source))
    render.console.print(table)


@app.command()
def prepare(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A name from `alvar datasets list`.")],
    out: Annotated[Path, typer.Option(help="Folder for pool.tsv, bootstrap.tsv and prepared.json.")],
    bootstrap_per_class: Annotated[int, typer.Option(help="Bootstrap rows of every class.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap and of the pool's sample.")] = 0,
    max_pool: Annotated[int | None, typer.Option(help="At most this many pool rows, a stratified sample (0: all; "
                                                 "default 4000, 2000 for a pair data set).")] = None,
    bootstrap_size: Annotated[int, typer.Option(help="Pair data sets: bootstrap pairs (stratified by "
                                                "subgroup).")] = 40,
    test_size: Annotated[int, typer.Option(help="Pair data sets: held-out test pairs.")] = 500,
    attribute_size: Annotated[int, typer.Option(help="Pair data sets: true pairs behind R's training file (each "
                                                "with one false pair).")] = 1000,
) -> None:
    """Write a labelled pool and a stratified bootstrap of a public data set, for `alvar simulate`; for a pair data
    set, pair files (pool, bootstrap, test) and R's training file, for `alvar simulate --task generation`."""
    from alvar.experiments.datasets import prepare as prepare_files
    from alvar.public_data import PAIR_REGISTRY, public_dataset

    if name in PAIR_REGISTRY:
        _prepare_pairs(ctx, name, out, bootstrap_size, test_size, 2000 if max_pool is None else max_pool,
                       attribute_size, seed)
        return
    dataset = public_dataset(name)
    prepared = prepare_files(dataset, command_settings(ctx), out, bootstrap_per_class, seed,
                             4000 if max_pool is None else max_pool)
    render.say(f"{dataset.name}: {prepared.rows:,} distinct rows ({prepared.repeats:,} rows repeating a text dropped, "
               f"{prepared.conflicting:,} texts with conflicting labels left out); cleaning: {dataset.cleaning}")
    render.say(f"pool {sum(prepared.pool_counts.values()):,}: {_shares(prepared.pool_counts)}")
    render.say(f"bootstrap {sum(prepared.bootstrap_counts.values()):,}: {_shares(prepared.bootstrap_counts)}")
    render.written([prepared.pool, prepared.bootstrap, prepared.card])
    render.say(f"licence {dataset.licence}; cite: {dataset.citation}")


def _prepare_pairs(ctx: typer.Context, name: str, out: Path, bootstrap_size: int, test_size: int, max_pool: int,
                   attribute_size: int, seed: int) -> None:
    from alvar.experiments.datasets import prepare_pairs
    from alvar.public_data import public_pair_dataset

    dataset = public_pair_dataset(name)
    prepared = prepare_pairs(dataset, command_settings(ctx), out, bootstrap_size, test_size, max_pool,
                             attribute_size, seed)
    render.say(f"{dataset.name}: {prepared.inputs:,} distinct inputs, one pair each ({prepared.repeats:,} rows "
               f"repeating an input left out); cleaning: {dataset.cleaning}")
    for split, counts in prepared.counts.items():
        render.say(f"{split} {sum(counts.values()):,}: {_shares(counts)}")
    render.written([prepared.pool, prepared.bootstrap, prepared.test, prepared.attribute, prepared.card])
    render.say(f"licence {dataset.licence}; cite: {dataset.citation}")
