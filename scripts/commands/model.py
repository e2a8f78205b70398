"""The model outside the loop: `alvar train`, `alvar predict`, `alvar evaluate` and `alvar simulate`."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from alvar.errors import user_facing
from alvar.scripts import render
from alvar.scripts.commands.options import LabelCol, ModelDir, TextCol, command_settings
from alvar.settings import cli_option
from alvar.strategies import strategy_names

app = typer.Typer()

DEFAULT_MODELS = ("learner", "embedding-lr", "tfidf-lr")


@app.command()
def train(
    ctx: typer.Context,
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

    settings = command_settings(ctx, model_dir=model_dir, base_model=base, epochs=epochs, seed=seed)
    with user_facing(ValueError):  # the learner's: one class only, no examples
        outcome = train_files(settings, data, eval_file, text_col, label_col)
    render.trained(outcome, settings.model_dir)


@app.command()
def predict(
    ctx: typer.Context,
    input_file: Annotated[Path, typer.Option("--input", help="TSV/CSV/JSONL file of texts to score.")],
    model_dir: ModelDir = None,
    out: Annotated[Path | None, typer.Option(help="JSONL output file (default: standard output).")] = None,
    version: Annotated[str | None, typer.Option(help="Saved version to use (default: the current one).")] = None,
    text_col: TextCol = None,
    label_col: LabelCol = None,
) -> None:
    """Predict labels, class probabilities and entropy for each text (JSONL: id, text, label, probabilities, entropy)."""  # noqa: E501
    from alvar.scripts.offline import predict_file

    settings = command_settings(ctx, model_dir=model_dir)
    with user_facing(FileNotFoundError):  # the model store's: no such version, none trained yet
        used, dataset, scores = predict_file(settings, input_file, out, version, text_col, label_col)
    render.predicted(len(dataset), used, out, scores)


@app.command()
def evaluate(
    ctx: typer.Context,
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
    from alvar.scripts.evaluate import evaluate as run_evaluation
    from alvar.scripts.evaluate import write_report

    chosen = [name.strip() for name in models.split(",") if name.strip()]
    with user_facing(OSError):
        evaluation = run_evaluation(command_settings(ctx), train, test, chosen, seeds, text_col, label_col)
        written = write_report(evaluation, out, train, test)
    render.evaluation(evaluation, test.name, seeds)
    render.written(written)


@app.command()
def simulate(
    ctx: typer.Context,
    pool: Annotated[Path, typer.Option(help="Labeled pool file (its labels play the annotator).")],
    bootstrap: Annotated[Path, typer.Option(help="Labeled file the learner starts from.")],
    out: Annotated[Path, typer.Option(help="Folder for summary.csv, report.md and PNG plots.")],
    eval_file: Annotated[Path | None, typer.Option("--eval", help="Labeled eval file; without it each seed splits "
                                                   "--pool into two stratified halves: pool and eval.")] = None,
    strategies: Annotated[str, typer.Option(help=f"Comma-separated, from {strategy_names()}.")] = \
        "random,topn,coreset,cluster",
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
    from alvar.scripts.simulate import simulate as run_simulation
    from alvar.scripts.simulate import write_outputs

    with user_facing(OSError):
        simulation = run_simulation(command_settings(ctx), pool, eval_file, bootstrap,
                                    [name.strip() for name in strategies.split(",") if name.strip()],
                                    rounds, per_round, seeds, learner, generator, text_col, label_col)
        written = write_outputs(simulation, out, "alvar " + shlex.join(sys.argv[1:]))
    render.simulation_report(out)
    render.written(written)
