"""k-means as the strategies use it: centres fitted on a sample of the pool (MiniBatchKMeans for large pools),
every point assigned in chunks, and the pool item nearest each centre."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from alvar.strategies.pool import Pool, Selection, SelectionError

if TYPE_CHECKING:
    from sklearn.cluster import KMeans, MiniBatchKMeans

log = logging.getLogger(__name__)

MINIBATCH_THRESHOLD = 100_000
ASSIGN_CHUNK = 65_536
SAMPLE_PER_CLUSTER = 256


def fit_kmeans(points: np.ndarray, n_clusters: int, random_state: int,
               weights: np.ndarray | None = None) -> KMeans | MiniBatchKMeans:
    """k-means centres fitted on at most ``SAMPLE_PER_CLUSTER`` points per cluster (the rule faiss uses; more
    points move the centres little), each weighted by ``weights`` when given. Pools below
    ``MINIBATCH_THRESHOLD`` are fitted with KMeans, larger ones with MiniBatchKMeans."""
    from sklearn.cluster import KMeans, MiniBatchKMeans  # here: the CLI lists strategy names without sklearn

    sample_size = min(len(points), SAMPLE_PER_CLUSTER * n_clusters)
    rng = np.random.default_rng(random_state)
    sample = slice(None) if sample_size == len(points) else np.sort(
        rng.choice(len(points), size=sample_size, replace=False))
    if len(points) < MINIBATCH_THRESHOLD:
        method = "KMeans"
        model: KMeans | MiniBatchKMeans = KMeans(n_clusters=n_clusters, random_state=random_state, n_init=1,
                                                 max_iter=30)
    else:
        method = "MiniBatchKMeans"
        model = MiniBatchKMeans(n_clusters=n_clusters, random_state=random_state, batch_size=4096, n_init=1,
                                max_iter=50)
    log.info("%d items: %s with %d clusters fitted on %d of them", len(points), method, n_clusters, sample_size)
    model.fit(points[sample], sample_weight=None if weights is None else weights[sample])
    return model


def squared_distances(points: np.ndarray, squared_norms: np.ndarray, centers: np.ndarray) -> np.ndarray:
    center_norms = np.einsum("ij,ij->i", centers, centers)
    distances = squared_norms[:, None] - 2.0 * (points @ centers.T) + center_norms[None, :]
    return np.maximum(distances, 0.0)


def cluster_count(wanted: int, n_candidates: int) -> int:
    """``wanted`` clusters, or one per candidate when there are fewer candidates (logged)."""
    if wanted < 1:
        raise SelectionError(f"the number of clusters must be at least 1, got {wanted}")
    if wanted > n_candidates:
        log.warning("%d clusters asked for but only %d selectable items: using %d clusters",
                    wanted, n_candidates, n_candidates)
        return n_candidates
    return wanted


def kmeans_labels(points: np.ndarray, n_clusters: int, random_state: int) -> np.ndarray:
    """Cluster label of each point.

    The centres are fitted on at most ``SAMPLE_PER_CLUSTER`` points per cluster (the rule faiss uses; more
    points move the centres little), then every point goes to its nearest centre. Pools below
    ``MINIBATCH_THRESHOLD`` are fitted with KMeans, larger ones with MiniBatchKMeans.
    """
    if n_clusters == 1:
        return np.zeros(len(points), dtype=np.int64)
    model = fit_kmeans(points, n_clusters, random_state)
    return np.concatenate([model.predict(points[start : start + ASSIGN_CHUNK])
                           for start in range(0, len(points), ASSIGN_CHUNK)])


def weighted_kmeans_picks(pool: Pool, candidates: np.ndarray, budget: int, weights: np.ndarray,
                           random_state: int) -> Selection:
    """``budget`` centres fitted over the candidates with these weights, the candidate nearest each centre, ranked
    by entropy (most uncertain first)."""
    points = pool.embeddings[candidates].astype(np.float64)
    if budget == len(candidates):
        picks, centres = np.arange(budget), np.arange(budget)
    else:
        model = fit_kmeans(points, budget, random_state, weights)
        picks, centres = nearest_distinct(points, model.cluster_centers_)
    order = np.argsort(-pool.entropy[candidates][picks], kind="stable")
    return Selection(indices=candidates[picks][order], clusters=centres[order])


def nearest_distinct(points: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each centre, the nearest point no earlier centre took (centres taken in order of their nearest
    distance, so a point shared by two centres goes to the closer one); returns (points, their centres)."""
    squared_norms = np.einsum("ij,ij->i", points, points)
    distances = squared_distances(points, squared_norms, centres)
    taken = np.zeros(len(points), dtype=bool)
    picks = np.empty(len(centres), dtype=np.int64)
    for centre in np.argsort(distances.min(axis=0), kind="stable"):
        column = np.where(taken, np.inf, distances[:, centre])
        picks[centre] = int(np.argmin(column))
        taken[picks[centre]] = True
    return picks, np.arange(len(centres))
