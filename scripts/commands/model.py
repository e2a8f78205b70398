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
from alvar.settings import Settings, cli_option
from alvar.strategies import strategy_names

app = typer.Typer()

DEFAULT_MODELS = ("learner", "embedding-lr", "tfidf-lr")
InputCol = Annotated[str | None, typer.Option(help="Generation: input column (default: input, else text).")]
OutputCol = Annotated[str | None, typer.Option(help="Generation: output column (default: output).")]
GroupCol = Annotated[str | None, typer.Option(help="Generation: subgroup column (default: group; without one, the "
                                              "subgroups are k-means clusters of the inputs).")]


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
    from alvar.loop.offline import train_files

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
    from alvar.loop.offline import predict_file

    settings = command_settings(ctx, model_dir=model_dir)
    with user_facing(FileNotFoundError):  # the model store's: no such version, none trained yet
        used, dataset, scores = predict_file(settings, input_file, out, version, text_col, label_col)
    render.predicted(len(dataset), used, out, scores)


@app.command()
def evaluate(
    ctx: typer.Context,
    train: Annotated[list[Path], typer.Option("--train", help="Labeled training file (an export's dataset.tsv or "
                                                "dataset.jsonl works; generation: pairs); repeat to combine.")],
    test: Annotated[Path, typer.Option(help="Labeled test file (generation: pairs with reference outputs).")],
    out: Annotated[Path, typer.Option(help="Folder for report.md, runs.csv, summary.csv and PNG plots.")],
    models: Annotated[str | None, typer.Option(help="Comma-separated: learner, embedding-lr, tfidf-lr, or any "
                                               "transformer base (model id or path). Generation: student, "
                                               f"nearest-neighbour or a text-to-text base (default: student,"
                                               f"nearest-neighbour); classification default: "
                                               f"{','.join(DEFAULT_MODELS)}.")] = None,
    seeds: Annotated[int | None, typer.Option(help="Seeds per model (mean and sd are reported; default 3, "
                                              "generation 1).")] = None,
    text_col: TextCol = None,
    label_col: LabelCol = None,
    task: Annotated[str, typer.Option(help="classification, or generation: students trained on (input, output) "
                                      "pairs.")] = "classification",
    secondary_model: Annotated[str | None, typer.Option(help="Generation: the student that never was in the loop "
                                                        "(a text-to-text base; default nearest-neighbour).")] = None,
    attribute_file: Annotated[Path | None, typer.Option(help="Generation: R's training rows (input, output, label) "
                                                        "for the fast R that measures satisfaction.")] = None,
    attribute_model: Annotated[str | None, typer.Option(help="Generation: a trained R (model id or path).")] = None,
    attribute_value: Annotated[str | None, cli_option("attribute_value")] = None,
    input_col: InputCol = None,
    output_col: OutputCol = None,
    group_col: GroupCol = None,
) -> None:
    """Train models outside the loop on the dataset and score them on a test set (transfer)."""
    settings = command_settings(ctx, attribute_value=attribute_value)
    if task == "generation":
        chosen = _names(models or f"student,{secondary_model or 'nearest-neighbour'}")
        _evaluate_generation(settings, train, test, out, chosen, seeds or 1, attribute_file, attribute_model,
                             (input_col, output_col, group_col))
        return
    if task != "classification":
        raise typer.BadParameter("classification or generation", param_hint="--task")
    from alvar.experiments.evaluate import evaluate as run_evaluation
    from alvar.experiments.evaluate import write_report

    chosen = _names(models or ",".join(DEFAULT_MODELS))
    with user_facing(OSError):
        evaluation = run_evaluation(settings, train, test, chosen, seeds or 3, text_col, label_col)
        written = write_report(evaluation, out, train, test)
    render.evaluation(evaluation, test.name, seeds or 3)
    render.written(written)


def _evaluate_generation(settings: Settings, train: list[Path], test: Path, out: Path, models: list[str],
                         seeds: int, attribute_file: Path | None, attribute_model: str | None,
                         columns: tuple[str | None, str | None, str | None]) -> None:
    from alvar.experiments.generation_evaluate import evaluate_generation, write_report

    with user_facing(OSError):
        evaluation = evaluate_generation(settings, train, test, models, seeds, attribute_file, attribute_model,
                                         columns)
        written = write_report(evaluation, out, train, test)
    render.line((out / "report.md").read_text())
    render.written(written)


@app.command()
def simulate(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="Folder for summary.csv, report.md and PNG plots.")],
    pool: Annotated[Path | None, typer.Option(help="Labeled pool file (its labels play the annotator).")] = None,
    bootstrap: Annotated[Path | None, typer.Option(help="Labeled file the learner starts from (generation: the "
                                                   "bootstrap pairs).")] = None,
    eval_file: Annotated[Path | None, typer.Option("--eval", help="Labeled eval file; without it each seed splits "
                                                   "--pool into two stratified halves: pool and eval (generation: "
                                                   "the held-out test pairs).")] = None,
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
    task: Annotated[str, typer.Option(help="classification, or generation: (input, output) pairs, the reference "
                                      "output playing teacher and person.")] = "classification",
    pairs: Annotated[Path | None, typer.Option(help="Generation: the pool pairs (id, input, output[, group]), or a "
                                               "folder `alvar datasets prepare` wrote (pool.tsv, bootstrap.tsv, "
                                               "test.tsv, attribute.tsv).")] = None,
    student: Annotated[str, typer.Option(help="Generation: fast (nearest neighbour on cached embeddings) or "
                                         "transformer (the loop's student G).")] = "fast",
    attribute_file: Annotated[Path | None, typer.Option(help="Generation: R's training rows (input, output, "
                                                        "label) for the fast R.")] = None,
    attribute_model: Annotated[str | None, typer.Option(help="Generation: a trained R (sequence-classification "
                                                        "model id or path) instead of the fast R.")] = None,
    attribute_value: Annotated[str | None, cli_option("attribute_value")] = None,
    input_col: InputCol = None,
    output_col: OutputCol = None,
    group_col: GroupCol = None,
) -> None:
    """Compare selection strategies without people: gold labels (or, for generation, reference outputs) play the
    annotator."""
    settings = command_settings(ctx, attribute_value=attribute_value)
    if task == "generation":
        _simulate_generation(settings, out, pairs, bootstrap, eval_file, attribute_file, attribute_model,
                             _names(strategies), (rounds, per_round, seeds), student, (input_col, output_col,
                                                                                       group_col))
        return
    if task != "classification":
        raise typer.BadParameter("classification or generation", param_hint="--task")
    if pool is None or bootstrap is None:
        raise typer.BadParameter("a classification simulation needs --pool and --bootstrap", param_hint="--pool")
    from alvar.experiments.simulate import simulate as run_simulation
    from alvar.experiments.simulate import write_outputs

    with user_facing(OSError):
        simulation = run_simulation(settings, pool, eval_file, bootstrap, _names(strategies), rounds, per_round, seeds,
                                    learner, generator, text_col, label_col)
        written = write_outputs(simulation, out, "alvar " + shlex.join(sys.argv[1:]))
    render.simulation_report(out)
    render.written(written)


def _names(listed: str) -> list[str]:
    return [name.strip() for name in listed.split(",") if name.strip()]


def _in_folder(given: Path | None, folder: Path | None, name: str) -> Path | None:
    """An option's file, else the file of that name in a prepared folder."""
    if given is not None or folder is None:
        return given
    return folder / name


def _simulate_generation(settings: Settings, out: Path, pairs: Path | None, bootstrap: Path | None,
                         test: Path | None, attribute_file: Path | None, attribute_model: str | None,
                         strategies: list[str], sizes: tuple[int, int, int], student: str,
                         columns: tuple[str | None, str | None, str | None]) -> None:
    from alvar.experiments.generation_simulate import read_split, simulate_generation, write_outputs

    if pairs is None:
        raise typer.BadParameter("a generation simulation needs --pairs (a pair file or a prepared folder)",
                                 param_hint="--pairs")
    folder = pairs if pairs.is_dir() else None
    pool_file = _in_folder(None, folder, "pool.tsv") or pairs
    bootstrap = _in_folder(bootstrap, folder, "bootstrap.tsv")
    test = _in_folder(test, folder, "test.tsv")
    if attribute_model is None:
        attribute_file = _in_folder(attribute_file, folder, "attribute.tsv")
    if bootstrap is None or test is None:
        raise typer.BadParameter("give --bootstrap and --eval (pair files), or --pairs a prepared folder",
                                 param_hint="--bootstrap")
    rounds, per_round, seeds = sizes
    with user_facing(OSError):
        split = read_split(pool_file, bootstrap, test, *columns)
        simulation = simulate_generation(settings, split, strategies, rounds, per_round, seeds, student,
                                         attribute_file, attribute_model)
        written = write_outputs(simulation, out, "alvar " + shlex.join(sys.argv[1:]))
    render.simulation_report(out)
    render.written(written)
