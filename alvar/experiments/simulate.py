"""`alvar simulate`: the loop without people, the gold labels playing the annotator.

From the bootstrap set, each round every strategy selects ``per_round`` items from the pool with the current
learner's entropies (the selector's own code), takes their gold labels, optionally adds k LLM variations per
new label (the generator's own code and prompt rule: ALVAR_RELATION and ALVAR_CONTRAST_LABEL apply as in the
job), retrains and scores macro-F1 on the eval set. ``fast`` learner:
logistic regression on the cached sentence embeddings (seconds a round); ``transformer``: the real learner.
"""

from __future__ import annotations

import csv
import statistics
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import Progress
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split

from alvar.classifiers import ClassifierMixin, TextClassifier
from alvar.datafiles import read_labeled
from alvar.entropy import entropy
from alvar.errors import AlvarError
from alvar.experiments.evaluate import make_model
from alvar.generator.budget import budgeted_prompt
from alvar.generator.generation import generate
from alvar.generator.llm import ChatClient
from alvar.generator.prompts import check_contrast_label
from alvar.generator.templates import VariationPrompt
from alvar.generator.validation import Embed, near_duplicate_embed, normal_form
from alvar.metrics import class_count_std, class_counts
from alvar.plots import save_figure
from alvar.settings import Settings, llm_configured
from alvar.strategies import STRATEGIES, Pool, make_strategy, resolve_strategies, strategy_names
from alvar.text_classifiers import EmbeddingLogisticRegression

# dataset_class_count_std: over the acquired labels and their variations (the paper's Table 3 measure on 600 rows).
SUMMARY_COLUMNS = ("strategy", "seed", "round", "n_labeled", "macro_f1", "class_count_std", "variation_policy",
                   "n_variations", "dataset_class_count_std")


class SimulationError(AlvarError, ValueError):
    """A simulation that cannot run; the message says why."""


@dataclass(frozen=True)
class Labeled:
    texts: list[str]
    labels: list[str]


@dataclass
class Simulation:
    classes: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    bootstrap_f1: dict[int, float] = field(default_factory=dict)
    acquired: dict[tuple[str, int], list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def distinct(data: Labeled, exclude: AbstractSet[str] = frozenset()) -> tuple[Labeled, int]:
    """The first of each text (compared in normal form) not in ``exclude``; and how many were dropped."""
    seen = set(exclude)
    kept: list[tuple[str, str]] = []
    for text, label in zip(data.texts, data.labels):
        form = normal_form(text)
        if form not in seen:
            seen.add(form)
            kept.append((text, label))
    return Labeled([text for text, _ in kept], [label for _, label in kept]), len(data.texts) - len(kept)


def halves(texts: Sequence[str], labels: Sequence[str], seed: int) -> tuple[Labeled, Labeled]:
    """Pool and eval: the two halves of one labeled file, stratified by label, a different split per seed."""
    labels = list(labels)
    counts = {label: labels.count(label) for label in set(labels)}
    stratify = list(labels) if min(counts.values()) >= 2 else None
    first, second, first_labels, second_labels = train_test_split(list(texts), list(labels), test_size=0.5,
                                                                  random_state=seed, stratify=stratify)
    return Labeled(first, first_labels), Labeled(second, second_labels)


class SimulationLearner(ClassifierMixin):
    """``fast``: logistic regression on the simulation's embeddings; ``transformer``: the loop's learner."""

    def __init__(self, kind: str, settings: Settings, random_state: int, embed: Embed) -> None:
        self.kind = kind
        self.settings = settings
        self.random_state = random_state
        self.embed = embed

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> SimulationLearner:
        if self.kind == "fast":
            model = EmbeddingLogisticRegression(self.settings.embedding_model, random_state=self.random_state)
            self.model_: TextClassifier = model.fit_vectors(self.embed(texts), labels)
        else:
            self.model_ = make_model("learner", self.settings, self.random_state).fit(list(texts), list(labels))
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(self.model_, EmbeddingLogisticRegression):
            return self.model_.predict_proba_vectors(self.embed(texts))
        return self.model_.predict_proba(list(texts))


@dataclass(frozen=True)
class VariationWriter:
    """`--generator llm`: k LLM variations of each newly labelled text, through the job's prompt builder."""

    settings: Settings
    descriptions: Mapping[str, str]
    client: ChatClient
    screen: Embed | None

    @classmethod
    def for_labels(cls, settings: Settings, labels: Sequence[str]) -> VariationWriter:
        """The labels play the project's (no descriptions); a contrast label that is not one of them fails now."""
        check_contrast_label(settings, labels)
        return cls(settings, dict.fromkeys(labels, ""), ChatClient.from_settings(settings),
                   near_duplicate_embed(settings))

    def write(self, texts: Sequence[str], labels: Sequence[str], pool_ids: Sequence[int],
              dataset: Sequence[str] = ()) -> tuple[list[str], list[str]]:
        """The variations (several requests in flight), each with the label its prompt gives them: the gold label
        or the contrast target (the pool index turns the contrast rotation, as the task id does in the job).
        Each label's k comes from ALVAR_VARIATION_POLICY; under ``balance``, from the class counts of ``dataset``
        (the labels of the simulated dataset so far) plus the variations planned for this batch's earlier
        labels, as the job reads the project's current counts."""
        prompts = self._prompts(texts, labels, pool_ids, dataset)
        with ThreadPoolExecutor(max_workers=self.settings.generation_concurrency) as pool:
            written = list(pool.map(self._one, prompts))
        pairs = [(variation, label) for variations, label in written for variation in variations]
        return [text for text, _ in pairs], [label for _, label in pairs]

    def _prompts(self, texts: Sequence[str], labels: Sequence[str], pool_ids: Sequence[int],
                 dataset: Sequence[str]) -> list[VariationPrompt]:
        classes = list(self.descriptions)
        counts = dict(zip(classes, class_counts(dataset, classes)))
        prompts = []
        for text, label, pool_id in zip(texts, labels, pool_ids):
            prompt, _ = budgeted_prompt(self.settings, self.descriptions, text, label, pool_id, counts)
            if prompt is not None:
                prompts.append(prompt)
                counts[prompt.variation_label] += prompt.k
        return prompts

    def _one(self, prompt: VariationPrompt) -> tuple[list[str], str]:
        generation = generate(prompt, self.client, self.screen, self.settings.near_duplicate_threshold)
        return generation.variations, prompt.variation_label


def simulate(settings: Settings, pool_file: Path, eval_file: Path | None, bootstrap_file: Path,
             strategies: Sequence[str], rounds: int, per_round: int, seeds: int, learner: str = "fast",
             generator: str = "none", text_col: str | None = None, label_col: str | None = None) -> Simulation:
    unknown = [name for name in strategies if name not in STRATEGIES and name != "default"]
    if unknown or not strategies:
        raise SimulationError(f"unknown strategy {', '.join(unknown) or '(none)'}: choose from {strategy_names()}")
    strategies = resolve_strategies(strategies)
    if learner not in ("fast", "transformer") or generator not in ("none", "llm"):
        raise SimulationError("--learner is fast or transformer; --generator is none or llm")
    if min(rounds, per_round, seeds) < 1:
        raise SimulationError("--rounds, --per-round and --seeds must be at least 1")
    if generator == "llm" and not llm_configured(settings):
        raise SimulationError("--generator llm needs an LLM: set OPENAI_BASE_URL and/or OPENAI_API_KEY")
    pool_data = read_labeled([pool_file], text_col, label_col)
    bootstrap = read_labeled([bootstrap_file], text_col, label_col)
    fixed_eval = read_labeled([eval_file], text_col, label_col) if eval_file is not None else None
    if len(set(bootstrap.labels)) < 2:
        raise SimulationError(f"the bootstrap set has one class only ({', '.join(set(bootstrap.labels))}): a "
                              "learner needs at least two")
    labels = sorted(set(pool_data.labels) | set(bootstrap.labels))
    writer = VariationWriter.for_labels(settings, labels) if generator == "llm" else None
    from alvar.embedder import settings_embedder

    embed = settings_embedder(settings).embed
    simulation = Simulation(classes=sorted(set(pool_data.labels)))
    known = {normal_form(text) for text in bootstrap.texts}
    with Progress(transient=True) as progress:
        task = progress.add_task("simulating", total=seeds * len(strategies) * rounds)
        for seed in range(seeds):
            if fixed_eval is not None:
                pool, evaluation = Labeled(pool_data.texts, pool_data.labels), Labeled(fixed_eval.texts,
                                                                                       fixed_eval.labels)
            else:
                pool, evaluation = halves(pool_data.texts, pool_data.labels, seed)
            pool, dropped_pool = distinct(pool, known)
            evaluation, dropped_eval = distinct(evaluation, known | {normal_form(text) for text in pool.texts})
            if seed == 0 and dropped_pool + dropped_eval:
                simulation.notes.append(f"left out {dropped_pool} pool and {dropped_eval} eval texts that repeat a "
                                        "bootstrap, pool or earlier text (so eval never scores a trained text)")
            if rounds * per_round > len(pool.texts):
                raise SimulationError(f"{rounds} rounds of {per_round} need {rounds * per_round} pool items; the pool "
                                      f"has {len(pool.texts)}")
            pool_vectors = embed(pool.texts)
            start = SimulationLearner(learner, settings, seed, embed).fit(bootstrap.texts, bootstrap.labels)
            simulation.bootstrap_f1[seed] = _macro_f1(start, evaluation)
            for strategy in strategies:
                _run_strategy(simulation, settings, strategy, seed, rounds, per_round, pool, pool_vectors, evaluation,
                              bootstrap, start, learner, writer, embed, progress, task)
    eval_labels = set(fixed_eval.labels) if fixed_eval is not None else set(pool_data.labels)
    missing = sorted(eval_labels - set(bootstrap.labels) - set(pool_data.labels))
    if missing:
        simulation.notes.append(f"eval classes no training data has ({', '.join(missing)}): their F1 is 0")
    return simulation


def _macro_f1(model: TextClassifier, evaluation: Labeled) -> float:
    """Over the classes in the eval labels or the predictions (scikit-learn's default), as `alvar evaluate`."""
    return float(f1_score(evaluation.labels, model.predict(evaluation.texts), average="macro", zero_division=0))


def _run_strategy(simulation: Simulation, settings: Settings, strategy: str, seed: int, rounds: int, per_round: int,
                  pool: Labeled, pool_vectors: np.ndarray, evaluation: Labeled, bootstrap: Any, start: TextClassifier,
                  learner: str, writer: VariationWriter | None, embed: Embed, progress: Progress,
                  task: Any) -> None:
    acquired = np.zeros(len(pool.texts), dtype=bool)
    train_texts, train_labels = list(bootstrap.texts), list(bootstrap.labels)
    model = start
    picked: list[int] = []
    variations: list[str] = []
    for round_number in range(1, rounds + 1):
        probabilities = model.predict_proba(pool.texts)
        human_counts = np.array(class_counts([*bootstrap.labels, *(pool.labels[i] for i in picked)], model.classes_))
        selection = make_strategy(strategy, random_state=1000 * seed + round_number).select(
            Pool(pool_vectors, entropy(probabilities), ~acquired, embed(train_texts), probabilities, human_counts),
            per_round)
        new = [int(index) for index in selection.indices]
        acquired[new] = True
        picked += new
        new_texts, new_labels = [pool.texts[i] for i in new], [pool.labels[i] for i in new]
        train_texts += new_texts
        train_labels += new_labels
        if writer is not None:
            variation_texts, variation_labels = writer.write(new_texts, new_labels, new, train_labels)
            train_texts += variation_texts
            train_labels += variation_labels
            variations += variation_labels
        model = SimulationLearner(learner, settings, seed, embed).fit(train_texts, train_labels)
        acquired_labels = [pool.labels[i] for i in picked]
        simulation.rows.append({"strategy": strategy, "seed": seed, "round": round_number,
                                "n_labeled": len(bootstrap.texts) + len(picked),
                                "macro_f1": round(_macro_f1(model, evaluation), 6),
                                "class_count_std": round(class_count_std(acquired_labels, simulation.classes), 4),
                                "variation_policy": settings.variation_policy if writer is not None else "none",
                                "n_variations": len(variations),
                                "dataset_class_count_std": round(
                                    class_count_std([*acquired_labels, *variations], simulation.classes), 4)})
        progress.advance(task)
    simulation.acquired[(strategy, seed)] = [pool.labels[i] for i in picked]


def write_outputs(simulation: Simulation, out: Path, command: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    summary = out / "summary.csv"
    with summary.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(SUMMARY_COLUMNS))
        writer.writeheader()
        writer.writerows(simulation.rows)
    strategies = list(dict.fromkeys(row["strategy"] for row in simulation.rows))
    last = max(row["round"] for row in simulation.rows)
    bootstrap = list(simulation.bootstrap_f1.values())
    lines = ["# Simulation", "", f"`{command}`", "",
             f"Bootstrap only: macro-F1 {100 * statistics.mean(bootstrap):.1f} ± {_sd(bootstrap, 100):.1f}. "
             f"After round {last} (mean ± sd over {len(bootstrap)} seeds):", "",
             "| strategy | n labeled | macro-F1 % | class-count std of the acquired labels | variations "
             f"({simulation.rows[0]['variation_policy']}) | class-count std of the dataset (labels + variations) |",
             "|---|---|---|---|---|---|"]
    for strategy in strategies:
        final = [row for row in simulation.rows if row["strategy"] == strategy and row["round"] == last]
        f1s, stds = [row["macro_f1"] for row in final], [row["class_count_std"] for row in final]
        made, dataset_stds = [row["n_variations"] for row in final], [row["dataset_class_count_std"] for row in final]
        lines.append(f"| {strategy} | {final[0]['n_labeled']} | {100 * statistics.mean(f1s):.1f} ± {_sd(f1s, 100):.1f} "
                     f"| {statistics.mean(stds):.1f} ± {_sd(stds):.1f} | {statistics.mean(made):.0f} "
                     f"| {statistics.mean(dataset_stds):.1f} ± {_sd(dataset_stds):.1f} |")
    lines += ["", "Acquired labels per class (mean over seeds):", "",
              "| strategy | " + " | ".join(simulation.classes) + " |", "|---|" + "---|" * len(simulation.classes)]
    for strategy in strategies:
        counts = [class_counts(labels, simulation.classes) for (name, _), labels in simulation.acquired.items()
                  if name == strategy]
        means = (f"{statistics.mean(column):.1f}" for column in zip(*counts))
        lines.append(f"| {strategy} | " + " | ".join(means) + " |")
    lines += [*(f"- {note}" for note in simulation.notes), "", "Plots: `learning_curves.png`, `class_mix.png`."]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [summary, report, *_plots(simulation, strategies, out)]


def _sd(values: Sequence[float], scale: float = 1.0) -> float:
    return scale * statistics.stdev(values) if len(values) > 1 else 0.0


def _plots(simulation: Simulation, strategies: Sequence[str], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    bootstrap = 100 * statistics.mean(simulation.bootstrap_f1.values())
    for strategy in strategies:
        rounds = sorted({row["round"] for row in simulation.rows})
        means, sds = [bootstrap], [0.0]
        for number in rounds:
            values = [100 * row["macro_f1"] for row in simulation.rows
                      if row["strategy"] == strategy and row["round"] == number]
            means.append(statistics.mean(values))
            sds.append(_sd(values))
        xs = [0, *rounds]
        axis.plot(xs, means, marker="o", label=strategy)
        axis.fill_between(xs, np.subtract(means, sds), np.add(means, sds), alpha=0.15)
    axis.set_xlabel("round")
    axis.set_ylabel("macro-F1 on eval (%)")
    axis.legend()
    curves = save_figure(figure, out / "learning_curves.png")

    figure, axis = plt.subplots(figsize=(7, 4))
    bottoms = np.zeros(len(strategies))
    for index, label in enumerate(simulation.classes):
        heights = [statistics.mean(class_counts(labels, simulation.classes)[index]
                                   for (name, _), labels in simulation.acquired.items() if name == strategy)
                   for strategy in strategies]
        axis.bar(strategies, heights, bottom=bottoms, label=label)
        bottoms += heights
    axis.set_ylabel("acquired labels (mean over seeds)")
    axis.legend(fontsize=7, ncol=2)
    mix = save_figure(figure, out / "class_mix.png")
    return [curves, mix]
