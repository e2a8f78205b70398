"""`alvar simulate --task generation`: the generative loop without teacher or people, the reference outputs
standing in for both.

From the bootstrap pairs, each round every strategy selects ``per_round`` pool inputs with the existing
strategies (:mod:`alvar.strategies`, unchanged): the uncertainty of an input is the informativeness, the entropy of
the auxiliary model R's softmax on the student G's output for it, the embeddings are the inputs', the class
probabilities R's and the class counts those of R's judgements of the labelled pairs. The chosen inputs' reference
outputs join the training pairs, G retrains, and the held-out test pairs measure R-satisfaction (share of G's
outputs R judges = H), chrF and distinct-2, overall and per subgroup, with their spread across subgroups.

``fast`` student: :class:`alvar.text_generators.NearestNeighbourGenerator` on cached embeddings (seconds a round);
``transformer``: the loop's student G (``backend/student.py``). R: a logistic regression on pair embeddings
trained on an attribute file (input, output, label), or a real R (``--attribute-model``).
"""

from __future__ import annotations

import csv
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import Progress

from alvar.embedder import Embedder, settings_embedder
from alvar.entropy import entropy
from alvar.experiments.generation_models import GenerationSimulationError, Judge, Student, load_judge, make_student
from alvar.generation_metrics import group_scores, scores, spread
from alvar.pairfiles import PairFile, read_pairs
from alvar.plots import save_figure
from alvar.settings import Settings
from alvar.strategies import (
    STRATEGIES,
    Pool,
    kmeans_labels,
    make_strategy,
    resolve_strategies,
    resolve_strategy,
    strategy_names,
)

MEASURED = ("satisfaction", "chrf", "distinct_2")
SUMMARY_COLUMNS = ("strategy", "seed", "round", "n_labeled", "mean_informativeness",
                   *(f"{measure}{suffix}" for measure in MEASURED for suffix in ("", "_std", "_range")))
GROUP_COLUMNS = ("strategy", "seed", "round", "group", "n_test", "n_acquired", *MEASURED)
INPUT_CLUSTERS = 8
"""Subgroups when the test pairs have no group column: k-means clusters of the test inputs."""
POOL_SHARE = 0.8
"""Each seed selects from its own random share of the pool, so that every strategy's result varies over seeds."""


@dataclass(frozen=True)
class Split:
    """The pairs one simulation runs on."""

    pool: PairFile
    bootstrap: PairFile
    test: PairFile


@dataclass
class GenerationSimulation:
    required: str
    judge: str
    student: str
    groups: list[str]
    group_source: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    group_rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def read_split(pool_file: Path, bootstrap_file: Path, test_file: Path, input_col: str | None = None,
               output_col: str | None = None, group_col: str | None = None) -> Split:
    """The three pair files; each must have an output per input (the reference that plays teacher and person)."""
    files = [read_pairs(path, input_col, output_col, group_col) for path in (pool_file, bootstrap_file, test_file)]
    for pairs in files:
        if not pairs.has_outputs:
            raise GenerationSimulationError(f"{pairs.path}: every row needs a reference output (column "
                                            f"{output_col or 'output'}); the reference plays teacher and person")
    return Split(*files)


def subgroups(test: PairFile, embed: Any, seed: int) -> tuple[list[str], str]:
    """The test pairs' subgroups: their group column, else k-means clusters of their inputs."""
    if test.has_groups:
        return test.groups, f"the group column {test.group_column!r}"
    clusters = kmeans_labels(embed(test.inputs), min(INPUT_CLUSTERS, len(test)), seed)
    return [f"cluster-{label}" for label in clusters], f"{INPUT_CLUSTERS} k-means clusters of the test inputs"


def simulate_generation(settings: Settings, split: Split, strategies: Sequence[str], rounds: int, per_round: int,
                        seeds: int, student: str = "fast", attribute_file: Path | None = None,
                        attribute_model: str | None = None, required: str | None = None,
                        embedder: Embedder | None = None) -> GenerationSimulation:
    unknown = [name for name in strategies if name not in STRATEGIES and name != "default"]
    if unknown or not strategies:
        raise GenerationSimulationError(f"unknown strategy {', '.join(unknown) or '(none)'}: choose from "
                                        f"{strategy_names()}")
    resolved = resolve_strategies(strategies)
    labels: dict[str, str] = {}
    for name in strategies:
        labels.setdefault(resolve_strategy(name), name)
    if student not in ("fast", "transformer"):
        raise GenerationSimulationError("--student is fast or transformer")
    if min(rounds, per_round, seeds) < 1:
        raise GenerationSimulationError("--rounds, --per-round and --seeds must be at least 1")
    drawn = max(1, round(POOL_SHARE * len(split.pool)))
    if rounds * per_round > drawn:
        raise GenerationSimulationError(f"{rounds} rounds of {per_round} need {rounds * per_round} pool inputs; each "
                                        f"seed draws {POOL_SHARE:.0%} of the pool: {drawn}")
    embed = (embedder or settings_embedder(settings)).embed
    judge, value, described = load_judge(settings, attribute_file, attribute_model, required, embed)
    groups, group_source = subgroups(split.test, embed, settings.seed)
    simulation = GenerationSimulation(value, described, student, sorted(set(groups)), group_source,
                                      notes=[f"each seed draws its own {POOL_SHARE:.0%} of the {len(split.pool)} pool "
                                             f"pairs ({drawn}); bootstrap and test pairs are the same for every seed"])
    vectors = embed(split.pool.inputs)
    with Progress(transient=True) as progress:
        task = progress.add_task("simulating", total=seeds * len(resolved) * rounds)
        for seed in range(seeds):
            drawn_rows = np.sort(np.random.default_rng(seed).choice(len(split.pool), size=drawn, replace=False))
            seed_split = replace(split, pool=replace(split.pool, pairs=[split.pool.pairs[i] for i in drawn_rows]))
            start = make_student(student, settings, seed, embed)
            start.fit(split.bootstrap.inputs, split.bootstrap.outputs)
            _measure(simulation, judge, start, seed_split, groups, "bootstrap", seed, 0, [])
            for strategy in resolved:
                _run_strategy(simulation, settings, judge, seed_split, groups, vectors[drawn_rows], embed,
                              _Run(labels[strategy], strategy, seed, rounds, per_round, student), progress, task)
    return simulation


@dataclass(frozen=True)
class _Run:
    label: str
    strategy: str
    seed: int
    rounds: int
    per_round: int
    student: str


def _run_strategy(simulation: GenerationSimulation, settings: Settings, judge: Judge, split: Split,
                  groups: Sequence[str], pool_vectors: np.ndarray, embed: Any, run: _Run, progress: Progress,
                  task: Any) -> None:
    acquired = np.zeros(len(split.pool), dtype=bool)
    picked: list[int] = []
    inputs, outputs = list(split.bootstrap.inputs), list(split.bootstrap.outputs)
    model = make_student(run.student, settings, run.seed, embed)
    model.fit(inputs, outputs)
    for round_number in range(1, run.rounds + 1):
        probabilities = judge.predict_proba(model.generate(split.pool.inputs), split.pool.inputs)
        informativeness = entropy(probabilities)
        judged = np.argmax(judge.predict_proba(outputs, inputs), axis=1)
        counts = np.bincount(judged, minlength=len(judge.classes_))
        pool = Pool(pool_vectors, informativeness, ~acquired, embed(inputs), probabilities, counts)
        selection = make_strategy(run.strategy, random_state=1000 * run.seed + round_number).select(pool, run.per_round)
        new = [int(index) for index in selection.indices]
        acquired[new] = True
        picked += new
        inputs += [split.pool.inputs[i] for i in new]
        outputs += [split.pool.outputs[i] for i in new]
        model = make_student(run.student, settings, run.seed, embed)
        model.fit(inputs, outputs)
        row = _measure(simulation, judge, model, split, groups, run.label, run.seed, round_number, picked)
        row["mean_informativeness"] = round(float(informativeness[new].mean()), 6)
        progress.advance(task)


def _measure(simulation: GenerationSimulation, judge: Judge, model: Student, split: Split, groups: Sequence[str],
             strategy: str, seed: int, round_number: int, picked: Sequence[int]) -> dict[str, Any]:
    """Score G on the test pairs: overall and per subgroup, recorded in the simulation."""
    generated = model.generate(split.test.inputs)
    satisfied = _satisfies(judge, simulation.required, generated, split.test.inputs)
    overall = scores(generated, split.test.outputs, satisfied)
    table = group_scores(generated, groups, split.test.outputs, satisfied)
    spreads = spread(table)
    row: dict[str, Any] = {"strategy": strategy, "seed": seed, "round": round_number,
                           "n_labeled": len(split.bootstrap) + len(picked), "mean_informativeness": ""}
    for measure in MEASURED:
        row[measure] = round(overall[measure], 6)
        row[f"{measure}_std"] = round(spreads[measure]["std"], 6)
        row[f"{measure}_range"] = round(spreads[measure]["range"], 6)
    simulation.rows.append(row)
    acquired = Counter(split.pool.pairs[i].group for i in picked) if split.pool.has_groups else Counter()
    sizes = Counter(groups)
    for group, values in table.items():
        simulation.group_rows.append({"strategy": strategy, "seed": seed, "round": round_number, "group": group,
                                      "n_test": sizes[group], "n_acquired": acquired.get(group, 0),
                                      **{measure: round(values[measure], 6) for measure in MEASURED}})
    return row


def _satisfies(judge: Judge, required: str, outputs: Sequence[str], inputs: Sequence[str]) -> np.ndarray:
    probabilities = judge.predict_proba(outputs, inputs)
    return np.asarray(judge.classes_)[np.argmax(probabilities, axis=1)] == required


def _mean_sd(values: Sequence[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _final(simulation: GenerationSimulation, strategy: str) -> list[dict[str, Any]]:
    last = max(row["round"] for row in simulation.rows)
    return [row for row in simulation.rows if row["strategy"] == strategy and row["round"] == last]


def _cell(rows: Sequence[dict[str, Any]], key: str, scale: float) -> str:
    mean, sd = _mean_sd([scale * row[key] for row in rows])
    return f"{mean:.1f} ± {sd:.1f}"


SCALES = {"satisfaction": 100.0, "chrf": 1.0, "distinct_2": 100.0}
HEADERS = {"satisfaction": "R-satisfaction %", "chrf": "chrF", "distinct_2": "distinct-2 %"}


def evenness_sentence(simulation: GenerationSimulation) -> str:
    """Plainly: is cluster more even across subgroups than random (lower chrF and satisfaction spread)?"""
    strategies = {row["strategy"] for row in simulation.rows}
    if not {"cluster", "random"} <= strategies:
        return "Evenness: run both cluster and random to compare their spread across subgroups."
    cluster, random = _final(simulation, "cluster"), _final(simulation, "random")
    parts = []
    for measure, unit in (("chrf", "chrF points"), ("satisfaction", "satisfaction points")):
        scale = SCALES[measure]
        mine, theirs = _mean_sd([scale * row[f"{measure}_std"] for row in cluster]), \
            _mean_sd([scale * row[f"{measure}_std"] for row in random])
        by_seed = {row["seed"]: scale * row[f"{measure}_std"] for row in random}
        lower = sum(scale * row[f"{measure}_std"] < by_seed[row["seed"]] for row in cluster)
        verdict = "more even" if mine[0] < theirs[0] else "not more even"
        change = f"{abs(theirs[0] - mine[0]):.2f} {'lower' if mine[0] < theirs[0] else 'higher'}"
        if theirs[0] > 0:
            change += f" ({abs(theirs[0] - mine[0]) / theirs[0]:.0%})"
        parts.append(f"on {HEADERS[measure].replace(' %', '')} cluster is {verdict} than random: its spread (std "
                     f"across {len(simulation.groups)} subgroups) is {mine[0]:.2f} ± {mine[1]:.2f} against "
                     f"{theirs[0]:.2f} ± {theirs[1]:.2f} {unit}, {change}, and lower in {lower} of {len(cluster)} "
                     f"seed{'s' if len(cluster) > 1 else ''}")
    return "Evenness after the last round: " + "; ".join(parts) + "."


def write_outputs(simulation: GenerationSimulation, out: Path, command: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    summary, groups_csv = out / "summary.csv", out / "groups.csv"
    _write_csv(summary, SUMMARY_COLUMNS, simulation.rows)
    _write_csv(groups_csv, GROUP_COLUMNS, simulation.group_rows)
    strategies = [name for name in dict.fromkeys(row["strategy"] for row in simulation.rows) if name != "bootstrap"]
    seeds = len({row["seed"] for row in simulation.rows})
    last = max(row["round"] for row in simulation.rows)
    boot = [row for row in simulation.rows if row["strategy"] == "bootstrap"]
    header = "| strategy | n labeled | " + " | ".join(
        f"{HEADERS[measure]} | {HEADERS[measure].replace(' %', '')} spread (std) | "
        f"{HEADERS[measure].replace(' %', '')} spread (max-min)" for measure in MEASURED) + " |"
    rule = "|---|---|" + "---|---|---|" * len(MEASURED)
    lines = ["# Generation simulation", "", f"`{command}`", "",
             f"Student: {simulation.student}; {simulation.judge}; H = `{simulation.required}`. Subgroups: "
             f"{simulation.group_source} ({len(simulation.groups)}). Spread = std and max-min of the subgroups' "
             "values (lower = more even).", "",
             f"After round {last} (mean ± sd over {seeds} seed{'s' if seeds > 1 else ''}):", "", header, rule,
             _table_row("bootstrap only", boot)]
    lines += [_table_row(strategy, _final(simulation, strategy)) for strategy in strategies]
    lines += ["", evenness_sentence(simulation), "", "Per round (mean over seeds):", "",
              "| strategy | round | n labeled | " + " | ".join(HEADERS[m] for m in MEASURED) + " | chrF spread (std) |"
              " satisfaction spread (std, points) |", "|---|---|---|" + "---|" * (len(MEASURED) + 2)]
    for strategy in strategies:
        for number in range(1, last + 1):
            rows = [row for row in simulation.rows if row["strategy"] == strategy and row["round"] == number]
            lines.append(f"| {strategy} | {number} | {rows[0]['n_labeled']} | " + " | ".join(
                f"{statistics.mean(SCALES[m] * row[m] for row in rows):.1f}" for m in MEASURED)
                + f" | {statistics.mean(row['chrf_std'] for row in rows):.2f}"
                + f" | {statistics.mean(100 * row['satisfaction_std'] for row in rows):.2f} |")
    lines += ["", f"chrF per subgroup after round {last} (mean over seeds):", "",
              "| strategy | " + " | ".join(simulation.groups) + " |", "|---|" + "---|" * len(simulation.groups)]
    for strategy in ["bootstrap", *strategies]:
        rows = [row for row in simulation.group_rows if row["strategy"] == strategy
                and row["round"] == (0 if strategy == "bootstrap" else last)]
        lines.append(f"| {strategy} | " + " | ".join(
            f"{statistics.mean(row['chrf'] for row in rows if row['group'] == group):.1f}"
            for group in simulation.groups) + " |")
    lines += ["", *(f"- {note}" for note in simulation.notes), "",
              "Files: `summary.csv` (one row per strategy, seed and round), `groups.csv` (per subgroup), "
              "`generation.png`."]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [summary, groups_csv, report, _plot(simulation, strategies, out)]


def _table_row(name: str, rows: Sequence[dict[str, Any]]) -> str:
    cells = [f"{_cell(rows, measure, SCALES[measure])} | {_cell(rows, f'{measure}_std', SCALES[measure])} | "
             f"{_cell(rows, f'{measure}_range', SCALES[measure])}" for measure in MEASURED]
    return f"| {name} | {rows[0]['n_labeled']} | " + " | ".join(cells) + " |"


def _write_csv(path: Path, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)


def _plot(simulation: GenerationSimulation, strategies: Sequence[str], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    last = max(row["round"] for row in simulation.rows)
    figure, (bars, curves) = plt.subplots(1, 2, figsize=(13, 4.5))
    width = 0.8 / max(1, len(strategies))
    positions = np.arange(len(simulation.groups))
    top = 0.0
    for offset, strategy in enumerate(strategies):
        heights = [statistics.mean(row["chrf"] for row in simulation.group_rows
                                   if row["strategy"] == strategy and row["round"] == last and row["group"] == group)
                   for group in simulation.groups]
        bars.bar(positions + offset * width, heights, width, label=strategy)
        top = max(top, *heights)
    bars.set_xticks(positions + width * (len(strategies) - 1) / 2, simulation.groups, rotation=25, ha="right")
    bars.set_ylabel("chrF on the test pairs")
    bars.set_title(f"chrF per subgroup after round {last} (mean over seeds)")
    bars.set_ylim(0, 1.2 * top)
    bars.legend(fontsize=8, loc="upper center", ncol=len(strategies))
    start = statistics.mean(row["chrf_std"] for row in simulation.rows if row["strategy"] == "bootstrap")
    for strategy in strategies:
        rounds = list(range(1, last + 1))
        means = [start, *(statistics.mean(row["chrf_std"] for row in simulation.rows
                                          if row["strategy"] == strategy and row["round"] == number)
                          for number in rounds)]
        curves.plot([0, *rounds], means, marker="o", label=strategy)
    curves.set_xlabel("round")
    curves.set_ylabel("chrF spread across subgroups (std)")
    curves.set_title("evenness over rounds (lower = more even)")
    curves.legend(fontsize=8)
    path = save_figure(figure, out / "generation.png")
    return path
