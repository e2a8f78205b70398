"""Selection in a generative project: informativeness = the entropy of R's softmax on G's interim output.

G is the student version serving the project: its own version of kind ``generation`` (the shared classifier at
the top of MODEL_DIR never scores a generative project). R is the auxiliary attribute model
(:mod:`alvar.attribute_model`). R's probabilities of each input's interim output are cached per (student version,
R), like the classifier's ``proba:`` entries, so a second `select` on the same models generates nothing again.
The existing strategies then run unchanged: the informativeness stands in for the entropy, R's probabilities for
the class probabilities, and the verified pairs' attributes for the class counts.

Without R, or without a student version, there is no informativeness: the batch is cluster-then-random (the
cluster strategy on random scores drawn from the seed), and the outcome says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from alvar.attribute_model import AttributeJudge, attribute_model_path, load_judge
from alvar.backend.model_store import GENERATION, Serving, serving_kind
from alvar.entropy import entropy
from alvar.loop.selection import SelectionRun, first_of_duplicates, pool_embeddings
from alvar.metrics import class_counts
from alvar.settings import Settings
from alvar.strategies import Pool, make_strategy, resolve_strategy
from alvar.vector_cache import VectorCache, normalize_text, text_key

FALLBACK_STRATEGY = "cluster"
NO_STUDENT = "none"


@dataclass(frozen=True)
class GenerationScores:
    """R's view of G's interim outputs for some inputs; ``fallback`` says why there is none (then both arrays
    are empty)."""

    student_version: str | None
    classes: list[str]
    probabilities: np.ndarray
    informativeness: np.ndarray
    fallback: str | None = None


@dataclass(frozen=True)
class GenerationSelection:
    """A generative project's batch and, when it is cluster-then-random, why."""

    run: SelectionRun
    fallback: str | None


def serving_student(settings: Settings, project_id: int) -> Serving | None:
    """The project's own current version when it is a student (kind ``generation``), else None."""
    found = serving_kind(settings.model_dir, project_id, GENERATION)
    return found if found is not None and found.own else None


def judge_identity(path: str) -> str:
    """What names one R in the cache: its path and, for a local directory, when its config was written (a
    retrained R at the same path is another R)."""
    config = Path(path) / "config.json"
    if config.is_file():
        return f"{config.parent.resolve()}@{config.stat().st_mtime_ns}"
    return path


def generation_scores(settings: Settings, inputs: Sequence[str], project_id: int,
                      control_required: str) -> GenerationScores:
    """R's probabilities and their entropy for G's output on each input, cached per (student version, R)."""
    found = serving_student(settings, project_id)
    judge_path = attribute_model_path(settings)
    if judge_path is None:
        return _no_scores(found, "R is not trained yet")
    if found is None:
        return _no_scores(None, "G has no version yet")
    judge = load_judge(settings, control_required)
    if judge is None:
        return _no_scores(found, "R is not trained yet")
    cache = VectorCache(settings.cache_dir / "vectors.sqlite",
                        f"inform:{found.store.root.resolve()}:{found.version}:{judge_identity(judge_path)}")
    keys = [text_key(text) for text in inputs]
    known = cache.get(keys)
    missing = sorted({key for key in keys if key not in known})
    if missing:
        by_key = {key: normalize_text(text) for key, text in zip(keys, inputs)}
        values = _judge_outputs(settings, found, judge, [by_key[key] for key in missing])
        cache.put(missing, values)
        known.update(zip(missing, values))
    n_classes = len(judge.classes_)
    probabilities = np.array([known[key] for key in keys], dtype=np.float64).reshape(len(keys), n_classes)
    return GenerationScores(found.version, list(judge.classes_), probabilities, entropy(probabilities))


def _judge_outputs(settings: Settings, found: Serving, judge: AttributeJudge, inputs: list[str]) -> np.ndarray:
    """G writes its interim output for each input (batched); R judges each output (against its input when R is a
    pair judge)."""
    _, student = found.store.load_student(found.version, inference_batch_size=settings.inference_batch_size,
                                          num_threads=settings.torch_threads)
    outputs = student.generate(inputs)
    return np.asarray(judge.predict_proba(outputs, inputs), dtype=np.float32)


def _no_scores(found: Serving | None, reason: str) -> GenerationScores:
    return GenerationScores(found.version if found is not None else None, [], np.zeros((0, 0)), np.zeros(0), reason)


def select_generation_batch(settings: Settings, inputs: Sequence[str], eligible: np.ndarray, strategy: str,
                            budget: int, seed: int, project_id: int, control_required: str,
                            labeled_inputs: Sequence[str] = (), labeled_attributes: Sequence[str] = (),
                            n_clusters: int | None = None, per_cluster: int = 1) -> GenerationSelection:
    """Pick ``budget`` of the eligible inputs by ``strategy`` on their informativeness and embeddings; duplicates
    of an earlier input are never eligible. Without R or G: cluster-then-random, ``fallback`` says why, and the
    run's entropy stays 0 (nothing measured it)."""
    strategy = resolve_strategy(strategy)
    eligible = eligible & first_of_duplicates(inputs)
    candidates = np.flatnonzero(eligible)
    scores = generation_scores(settings, [inputs[index] for index in candidates], project_id, control_required)
    uncertainty = np.zeros(len(inputs))
    ranking = uncertainty  # what the strategy ranks on: the informativeness, or random scores in the fallback
    probabilities: np.ndarray | None = None
    counts: np.ndarray | None = None
    if scores.fallback is None:
        uncertainty[candidates] = scores.informativeness
        probabilities = np.zeros((len(inputs), len(scores.classes)))
        probabilities[candidates] = scores.probabilities
        counts = np.array(class_counts(labeled_attributes, scores.classes))
    else:
        strategy = FALLBACK_STRATEGY
        ranking = np.zeros(len(inputs))
        ranking[candidates] = np.random.default_rng(seed).random(len(candidates))
    embeddings = pool_embeddings(settings, inputs)  # fanned out over the scoring queue when ALVAR_SCORING says so
    labeled = pool_embeddings(settings, labeled_inputs) if labeled_inputs and strategy == "coreset" else None
    chosen = make_strategy(strategy, random_state=seed, n_clusters=n_clusters, per_cluster=per_cluster)
    pool = Pool(embeddings, ranking, eligible, labeled, probabilities, counts)
    run = SelectionRun(scores.student_version or NO_STUDENT, strategy, chosen.select(pool, budget), uncertainty,
                       eligible)
    return GenerationSelection(run, scores.fallback)
