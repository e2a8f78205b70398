"""Choosing the next annotation batch: embed the pool, score its uncertainty, run a strategy.

Shared by `alvar select` on a file and on a Label Studio project (and by the simulation later).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from alvar.backend.model_store import ModelStore, serving
from alvar.embedder import VECTOR_CACHE_FILE, settings_embedder
from alvar.entropy import entropy
from alvar.loop.scoring_fanout import (
    Computation,
    FanOut,
    embeddings_of,
    fan_out,
    fan_out_connection,
    probabilities_of,
    probability_namespace,
)
from alvar.metrics import class_counts
from alvar.settings import Settings
from alvar.strategies import Pool, Selection, make_strategy, resolve_strategy
from alvar.vector_cache import VectorCache, normalize_text, text_key

log = logging.getLogger(__name__)


def serving_version(settings: Settings, project_id: int | None) -> tuple[ModelStore, str]:
    """The store and version serving the project (the shared one without a project)."""
    found = serving(settings.model_dir, project_id)
    if found is None:
        where = settings.model_dir if project_id is None else f"{settings.model_dir} (project {project_id} or shared)"
        raise FileNotFoundError(f"no current model version under {where}: train one first "
                                "(alvar train, or annotate in Label Studio)")
    return found.store, found.version


def uncached(settings: Settings, computation: Computation, texts: Sequence[str]) -> dict[bytes, str]:
    """The texts whose rows of ``computation`` the cache lacks, by cache key (each text once)."""
    by_key = {text_key(text): text for text in texts}
    known = VectorCache(settings.cache_dir / VECTOR_CACHE_FILE, computation.namespace).get(list(by_key))
    return {key: text for key, text in by_key.items() if key not in known}


def fill_caches(settings: Settings, scored: Sequence[str], embedded: Sequence[str],
                project_id: int | None = None) -> FanOut | None:
    """When ALVAR_SCORING fans out (:func:`fan_out_connection`): the class probabilities of ``scored`` and the
    embeddings of ``embedded`` that the caches lack, computed together by the scoring queue's workers. None when
    there is nothing to compute or scoring stays in this process (the callers then compute what is missing)."""
    store, version = serving_version(settings, project_id)
    precision = settings.inference_precision
    work = [(computation, missing)
            for computation, texts in ((probabilities_of(settings.model_dir, store.root, version, precision), scored),
                                       (embeddings_of(settings.embedding_model, precision), embedded))
            if (missing := uncached(settings, computation, texts))]
    connection = fan_out_connection(settings) if work else None
    if connection is None:
        return None
    return fan_out(connection, settings.cache_dir / VECTOR_CACHE_FILE, work, settings.scoring_chunk_size)


def pool_probabilities(settings: Settings, texts: Sequence[str],
                       project_id: int | None = None) -> tuple[str, list[str], np.ndarray]:
    """Class probabilities of each text under the version serving the project (the shared one without a project),
    cached per version: (version, its classes in column order, an (n, C) array). What the cache lacks is computed
    by the scoring queue's workers when ALVAR_SCORING says so, else here."""
    store, version = serving_version(settings, project_id)
    classes = [str(label) for label in store.metadata(version)["classes"]]
    precision = settings.inference_precision
    cache = VectorCache(settings.cache_dir / VECTOR_CACHE_FILE, probability_namespace(store.root, version, precision))
    keys = [text_key(text) for text in texts]
    known = cache.get(keys)
    missing = sorted({key for key in keys if key not in known})
    if missing:
        by_key = {key: text for key, text in zip(keys, texts)}
        connection = fan_out_connection(settings)
        if connection is not None:
            fan_out(connection, cache.path, [(probabilities_of(settings.model_dir, store.root, version, precision),
                                              {key: by_key[key] for key in missing})], settings.scoring_chunk_size)
            known.update(cache.get(missing))
        else:
            _, learner = store.load_classifier(version, inference_batch_size=settings.inference_batch_size,
                                               num_threads=settings.torch_threads, precision=precision)
            values = np.asarray(learner.predict_proba([normalize_text(by_key[key]) for key in missing]),
                                np.float32)
            cache.put(missing, values)
            known.update(zip(missing, values))
    probabilities = np.array([known[key] for key in keys], dtype=np.float64).reshape(len(keys), len(classes))
    return version, classes, probabilities


def pool_embeddings(settings: Settings, texts: Sequence[str]) -> np.ndarray:
    """Sentence embeddings of ``texts`` (cached); what the cache lacks is computed by the scoring queue's workers
    when ALVAR_SCORING says so, else here."""
    computation = embeddings_of(settings.embedding_model, settings.inference_precision)
    missing = uncached(settings, computation, texts)
    connection = fan_out_connection(settings) if missing else None
    if connection is not None:
        fan_out(connection, settings.cache_dir / VECTOR_CACHE_FILE, [(computation, missing)],
                settings.scoring_chunk_size)
    return settings_embedder(settings, show_progress=True).embed(texts)


def pool_entropy(settings: Settings, texts: Sequence[str], project_id: int | None = None) -> tuple[str, np.ndarray]:
    """Predictive entropy of each text under the version serving the project (the shared one without a project),
    from the cached probabilities (:func:`pool_probabilities`)."""
    version, _, probabilities = pool_probabilities(settings, texts, project_id)
    return version, entropy(probabilities)


def first_of_duplicates(texts: Sequence[str]) -> np.ndarray:
    """True for the first occurrence of each normalized text: a batch never holds the same text twice."""
    seen: set[bytes] = set()
    keep = np.zeros(len(texts), dtype=bool)
    for row, text in enumerate(texts):
        key = text_key(text)
        if key not in seen:
            seen.add(key)
            keep[row] = True
    return keep


@dataclass(frozen=True)
class SelectionRun:
    """A strategy's picks with what they were picked on."""

    model_version: str
    strategy: str
    selection: Selection
    entropy: np.ndarray
    eligible: np.ndarray


def select_batch(settings: Settings, texts: Sequence[str], eligible: np.ndarray, strategy: str, budget: int,
                 seed: int, n_clusters: int | None = None, per_cluster: int = 1,
                 labeled_texts: Sequence[str] = (), project_id: int | None = None,
                 labeled_labels: Sequence[str] = ()) -> SelectionRun:
    """Pick ``budget`` of the eligible texts; duplicates of an earlier text are never eligible.

    Only eligible texts are scored (the others' entropy and probabilities are left at 0): labeled tasks need no
    uncertainty. They are scored with the project's model when ``project_id`` is given (:func:`serving`), else
    the shared one. ``labeled_labels`` (the human labels so far) give the class counts that class-balancing
    strategies even out; without them the counts are zeros. ``strategy`` may be ``default``.
    """
    strategy = resolve_strategy(strategy)
    unique = first_of_duplicates(texts)
    duplicates = int((eligible & ~unique).sum())
    if duplicates:
        log.warning("%d pool text(s) repeat an earlier text and are left out of the selection", duplicates)
    eligible = eligible & unique
    candidates = np.flatnonzero(eligible)
    candidate_texts = [texts[index] for index in candidates]
    embedded = [*texts, *labeled_texts] if labeled_texts and strategy == "coreset" else texts
    fill_caches(settings, candidate_texts, embedded, project_id)
    version, classes, candidate_probabilities = pool_probabilities(settings, candidate_texts, project_id)
    probabilities = np.zeros((len(texts), len(classes)))
    probabilities[candidates] = candidate_probabilities
    uncertainty = np.zeros(len(texts))
    uncertainty[candidates] = entropy(candidate_probabilities)
    embeddings = pool_embeddings(settings, texts)
    labeled = pool_embeddings(settings, labeled_texts) if labeled_texts and strategy == "coreset" else None
    chosen = make_strategy(strategy, random_state=seed, n_clusters=n_clusters, per_cluster=per_cluster)
    counts = np.array(class_counts(labeled_labels, classes))
    unknown = len(labeled_labels) - int(counts.sum())
    if unknown or (labeled_texts and not labeled_labels):
        log.warning("%d labeled text(s) carry no label among the model's classes (%s): the class counts that "
                    "balancing strategies even out leave them out", unknown or len(labeled_texts), ", ".join(classes))
    pool = Pool(embeddings, uncertainty, eligible, labeled, probabilities, counts)
    return SelectionRun(version, strategy, chosen.select(pool, budget), uncertainty, eligible)


def cluster_table(run: SelectionRun) -> list[tuple[int, int, int, float]]:
    """(cluster, size, picked, mean entropy of its picks) for each cluster of a clustering selection."""
    clusters = run.selection.pool_clusters
    if clusters is None:
        return []
    rows = []
    for cluster in np.unique(clusters[clusters >= 0]):
        members = clusters == cluster
        picks = run.selection.indices[run.selection.clusters == cluster]
        mean = float(run.entropy[picks].mean()) if len(picks) else float("nan")
        rows.append((int(cluster), int(members.sum()), len(picks), mean))
    return rows
