"""The auxiliary model R of generative projects: `alvar attribute train` and `alvar attribute show`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from alvar.scripts import render
from alvar.scripts.commands.options import LabelCol, ModelDir, TextCol, command_settings

app = typer.Typer(name="attribute", no_args_is_help=True,
                  help="The auxiliary model R that judges generated outputs against the regulated attribute H.")


@app.command()
def train(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="TSV/CSV/JSONL file of attribute-labelled texts (or, with --pairs, "
                                         "input/output pairs with a label).")],
    text_col: TextCol = None,
    label_col: LabelCol = None,
    pairs: Annotated[bool, typer.Option("--pairs", help="Train R to judge each output against its input "
                                        "(input [SEP] output).")] = False,
    input_col: Annotated[str | None, typer.Option(help="With --pairs: input column (default: input).")] = None,
    output_col: Annotated[str | None, typer.Option(help="With --pairs: output column (default: output).")] = None,
    required: Annotated[str | None, typer.Option(help="H, the label outputs must have (kept with R; "
                                                 "ALVAR_ATTRIBUTE_VALUE overrides it).")] = None,
    out: Annotated[Path | None, typer.Option(help="Folder for R (default: MODEL_DIR/attribute).")] = None,
    model_dir: ModelDir = None,
) -> None:
    """Train R with alvar's learner (ALVAR_BASE_MODEL, ALVAR_EPOCHS...) and save it where projects find it."""
    from alvar.loop.attribute import train_attribute

    settings = command_settings(ctx, model_dir=model_dir)
    trained = train_attribute(settings, file, text_col, label_col, pairs, input_col, output_col, required, out)
    mode = "pairs (input [SEP] output)" if trained.pair_input else "outputs"
    render.say(f"R judges {mode}; classes: " + ", ".join(f"{label} ({count})"
                                                         for label, count in trained.counts.items()))
    render.say(f"H: {trained.required or 'ALVAR_ATTRIBUTE_VALUE, else the label config first attribute choice'}")
    render.written([trained.path])


@app.command()
def show(ctx: typer.Context, model_dir: ModelDir = None) -> None:
    """Which R generative projects would use, its classes and H; or that R is not trained yet."""
    from alvar.loop.attribute import attribute_info

    info = attribute_info(command_settings(ctx, model_dir=model_dir))
    if info.path is None:
        render.say("R is not trained yet: scoring falls back to cluster-then-random. Train it with "
                   "`alvar attribute train FILE` or set ALVAR_ATTRIBUTE_MODEL.")
        return
    render.say(f"R: {info.path} ({'pairs: input [SEP] output' if info.pair_input else 'outputs'})")
    render.say(f"classes: {', '.join(info.classes)}")
    render.say(f"H: {info.required or 'the label config first attribute choice'}")
    if not info.known_required:
        render.error(f"H {info.required!r} is not one of R's classes: set ALVAR_ATTRIBUTE_VALUE to one of them")
        raise typer.Exit(2)
