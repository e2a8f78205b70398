"""Public data sets with skewed classes, to simulate on: `alvar datasets list` and `alvar datasets prepare`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from alvar.scripts import render
from alvar.scripts.commands.options import command_settings

if TYPE_CHECKING:
    from alvar.public_data import LabeledRow, PairRow, PublicDataset

app = typer.Typer(name="datasets", no_args_is_help=True,
                  help="Public labelled data sets with skewed classes (downloaded at run time, pinned, hashed).")


def _shares(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    return ", ".join(f"{label} {count / total:.1%}" for label, count in counts.items())


@app.command("list")
def list_datasets() -> None:
    """The registered data sets: classes and their shares, rows, licence and source."""
    from alvar.public_data import REGISTRY

    table = Table("name", "task", "classes or subgroups (share of rows)", "rows", "licence", title="public data sets")
    table.add_column("source", overflow="fold")
    for dataset in sorted(REGISTRY.values(), key=lambda found: found.task):
        shares = ", ".join(f"{label} {share:.1%}" for label, share in dataset.shares().items())
        table.add_row(dataset.name, dataset.task, shares, f"{dataset.size:,}", escape(dataset.licence),
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
    from alvar.public_data import public_dataset

    dataset = public_dataset(name)
    sizes = PrepareSizes(bootstrap_per_class, max_pool, bootstrap_size, test_size, attribute_size)
    PREPARERS[dataset.task](ctx, dataset, out, sizes, seed)


@dataclass(frozen=True)
class PrepareSizes:
    """`alvar datasets prepare`'s sizes; each kind of data set reads its own."""

    bootstrap_per_class: int
    max_pool: int | None
    bootstrap_size: int
    test_size: int
    attribute_size: int


def _prepare_labelled(ctx: typer.Context, dataset: PublicDataset[LabeledRow], out: Path, sizes: PrepareSizes,
                      seed: int) -> None:
    from alvar.experiments.datasets import prepare as prepare_files

    prepared = prepare_files(dataset, command_settings(ctx), out, sizes.bootstrap_per_class, seed,
                             4000 if sizes.max_pool is None else sizes.max_pool)
    render.say(f"{dataset.name}: {prepared.rows:,} distinct rows ({prepared.repeats:,} rows repeating a text dropped, "
               f"{prepared.conflicting:,} texts with conflicting labels left out); cleaning: {dataset.cleaning}")
    render.say(f"pool {sum(prepared.pool_counts.values()):,}: {_shares(prepared.pool_counts)}")
    render.say(f"bootstrap {sum(prepared.bootstrap_counts.values()):,}: {_shares(prepared.bootstrap_counts)}")
    render.written([prepared.pool, prepared.bootstrap, prepared.card])
    render.say(f"licence {dataset.licence}; cite: {dataset.citation}")


def _prepare_pairs(ctx: typer.Context, dataset: PublicDataset[PairRow], out: Path, sizes: PrepareSizes,
                   seed: int) -> None:
    from alvar.experiments.datasets import prepare_pairs

    prepared = prepare_pairs(dataset, command_settings(ctx), out, sizes.bootstrap_size, sizes.test_size,
                             2000 if sizes.max_pool is None else sizes.max_pool, sizes.attribute_size, seed)
    render.say(f"{dataset.name}: {prepared.inputs:,} distinct inputs, one pair each ({prepared.repeats:,} rows "
               f"repeating an input left out); cleaning: {dataset.cleaning}")
    for split, counts in prepared.counts.items():
        render.say(f"{split} {sum(counts.values()):,}: {_shares(counts)}")
    render.written([prepared.pool, prepared.bootstrap, prepared.test, prepared.attribute, prepared.card])
    render.say(f"licence {dataset.licence}; cite: {dataset.citation}")


# How each kind of data set is prepared, by the task it serves.
PREPARERS: dict[str, Callable[[typer.Context, Any, Path, PrepareSizes, int], None]] = {
    "classification": _prepare_labelled, "generation": _prepare_pairs}
