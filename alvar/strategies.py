"""Which pool items people should label next: random, top-N entropy, coreset, per-cluster uncertainty, and
entropy-weighted k-means.

Each strategy follows scikit-learn's conventions (parameters in ``__init__``, ``random_state`` for every random
choice, no hidden state) and picks exactly ``budget`` distinct items among the eligible ones.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from sklearn.cluster import KMeans, MiniBatchKMeans

from alvar.errors import AlvarError

log = logging.getLogger(__name__)

MINIBATCH_THRESHOLD = 100_000
ASSIGN_CHUNK = 65_536
SAMPLE_PER_CLUSTER = 256


class SelectionError(AlvarError, ValueError):
    """A selection that cannot be made; the message says why."""


@dataclass(frozen=True)
class Pool:
    """Everything a strategy may look at. ``eligible`` is False for labeled, batched and generated items."""

    embeddings: np.ndarray
    entropy: np.ndarray
    eligible: np.ndarray
    labeled_embeddings: np.ndarray | None = None

    def eligible_indices(self) -> np.ndarray:
        return np.flatnonzero(self.eligible)


@dataclass(frozen=True)
class Selection:
    """Picked pool positions in rank order, the cluster of each pick (-1 without clusters), and for
    clustering strategies the cluster of every eligible item (-1 for the others)."""

    indices: np.ndarray
    clusters: np.ndarray
    pool_clusters: np.ndarray | None = None


class Strategy(Protocol):
    name: str

    def select(self, pool: Pool, budget: int) -> Selection: ...


def _eligible_or_fail(pool: Pool, budget: int) -> np.ndarray:
    candidates = pool.eligible_indices()
    if budget < 1:
        raise SelectionError(f"the budget must be at least 1, got {budget}")
    if len(candidates) < budget:
        raise SelectionError(f"the budget ({budget}) is larger than the {len(candidates)} selectable items "
                             "(not labeled, not in a batch, not a generated variation)")
    return candidates


def _by_uncertainty(candidates: np.ndarray, entropy: np.ndarray) -> np.ndarray:
    """Candidates from most to least uncertain; ties keep pool order."""
    return candidates[np.argsort(-entropy[candidates], kind="stable")]


def _no_clusters(indices: np.ndarray) -> Selection:
    return Selection(indices=indices, clusters=np.full(len(indices), -1))


class RandomStrategy:
    name = "random"

    def __init__(self, random_state: int = 0) -> None:
        self.random_state = random_state

    def select(self, pool: Pool, budget: int) -> Selection:
        candidates = _eligible_or_fail(pool, budget)
        rng = np.random.default_rng(self.random_state)
        return _no_clusters(rng.choice(candidates, size=budget, replace=False))


class TopNStrategy:
    """The ``budget`` most uncertain items (highest predictive entropy)."""

    name = "topn"

    def __init__(self, random_state: int = 0) -> None:
        self.random_state = random_state

    def select(self, pool: Pool, budget: int) -> Selection:
        return _no_clusters(_by_uncertainty(_eligible_or_fail(pool, budget), pool.entropy)[:budget])


class CoresetStrategy:
    """k-center greedy: repeatedly the item farthest from everything labeled or already picked."""

    name = "coreset"

    def __init__(self, random_state: int = 0) -> None:
        self.random_state = random_state

    def select(self, pool: Pool, budget: int) -> Selection:
        candidates = _eligible_or_fail(pool, budget)
        points = pool.embeddings[candidates]
        squared_norms = np.einsum("ij,ij->i", points, points)
        nearest = np.full(len(points), np.inf, dtype=np.float64)
        if pool.labeled_embeddings is not None and len(pool.labeled_embeddings):
            for start in range(0, len(points), ASSIGN_CHUNK):
                chunk = points[start : start + ASSIGN_CHUNK]
                distances = _squared_distances(chunk, squared_norms[start : start + ASSIGN_CHUNK],
                                               pool.labeled_embeddings)
                nearest[start : start + ASSIGN_CHUNK] = distances.min(axis=1)
        picked: list[int] = []
        if not np.isfinite(nearest).any():
            first = int(np.random.default_rng(self.random_state).integers(len(points)))
            picked.append(first)
            nearest = np.minimum(nearest, _squared_distances(points, squared_norms, points[first : first + 1])[:, 0])
            nearest[first] = -np.inf
        while len(picked) < budget:
            farthest = int(np.argmax(nearest))
            picked.append(farthest)
            to_farthest = _squared_distances(points, squared_norms, points[farthest : farthest + 1])[:, 0]
            nearest = np.minimum(nearest, to_farthest)
            nearest[farthest] = -np.inf
        return _no_clusters(candidates[np.array(picked)])


def fit_kmeans(points: np.ndarray, n_clusters: int, random_state: int,
               weights: np.ndarray | None = None) -> KMeans | MiniBatchKMeans:
    """k-means centres fitted on at most ``SAMPLE_PER_CLUSTER`` points per cluster (the rule faiss uses; more
    points move the centres little), each weighted by ``weights`` when given. Pools below
    ``MINIBATCH_THRESHOLD`` are fitted with KMeans, larger ones with MiniBatchKMeans."""
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


def _squared_distances(points: np.ndarray, squared_norms: np.ndarray, centers: np.ndarray) -> np.ndarray:
    center_norms = np.einsum("ij,ij->i", centers, centers)
    distances = squared_norms[:, None] - 2.0 * (points @ centers.T) + center_norms[None, :]
    return np.maximum(distances, 0.0)


class ClusterStrategy:
    """The paper's selector: k-means over the selectable pool, then the most uncertain items of each cluster.

    ``n_clusters`` defaults to ``budget // per_cluster``. Each cluster gives its ``per_cluster`` most uncertain
    items, first one from every cluster, then a second, and so on, so every non-empty cluster is represented
    whenever ``budget >= n_clusters``. Budget left over by small clusters goes to the most uncertain remaining
    items anywhere. Pools of ``MINIBATCH_THRESHOLD`` items or more use MiniBatchKMeans.
    """

    name = "cluster"

    def __init__(self, n_clusters: int | None = None, per_cluster: int = 1, random_state: int = 0) -> None:
        self.n_clusters = n_clusters
        self.per_cluster = per_cluster
        self.random_state = random_state

    def _n_clusters(self, budget: int, n_candidates: int) -> int:
        if self.per_cluster < 1:
            raise SelectionError(f"per_cluster must be at least 1, got {self.per_cluster}")
        wanted = self.n_clusters or max(1, budget // self.per_cluster)
        if wanted < 1:
            raise SelectionError(f"the number of clusters must be at least 1, got {wanted}")
        if wanted > n_candidates:
            log.warning("%d clusters asked for but only %d selectable items: using %d clusters",
                        wanted, n_candidates, n_candidates)
            return n_candidates
        return wanted

    def cluster(self, points: np.ndarray, n_clusters: int) -> np.ndarray:
        """Cluster label of each point.

        The centres are fitted on at most ``SAMPLE_PER_CLUSTER`` points per cluster (the rule faiss uses; more
        points move the centres little), then every point goes to its nearest centre. Pools below
        ``MINIBATCH_THRESHOLD`` are fitted with KMeans, larger ones with MiniBatchKMeans.
        """
        if n_clusters == 1:
            return np.zeros(len(points), dtype=np.int64)
        model = fit_kmeans(points, n_clusters, self.random_state)
        return np.concatenate([model.predict(points[start : start + ASSIGN_CHUNK])
                               for start in range(0, len(points), ASSIGN_CHUNK)])

    def select(self, pool: Pool, budget: int) -> Selection:
        candidates = _eligible_or_fail(pool, budget)
        n_clusters = self._n_clusters(budget, len(candidates))
        labels = self.cluster(pool.embeddings[candidates], n_clusters)
        order = np.lexsort((-pool.entropy[candidates], labels))
        ranked_labels = labels[order]
        starts = np.searchsorted(ranked_labels, ranked_labels, side="left")
        depth = np.arange(len(order)) - starts
        eligible_now = depth < self.per_cluster
        rounds = order[eligible_now]
        round_depth = depth[eligible_now]
        # Within a round, clusters whose candidate is more uncertain come first.
        round_order = np.lexsort((-pool.entropy[candidates][rounds], round_depth))
        picks = rounds[round_order][:budget]
        if len(picks) < budget:
            taken = np.zeros(len(candidates), dtype=bool)
            taken[picks] = True
            rest = np.flatnonzero(~taken)
            rest = rest[np.argsort(-pool.entropy[candidates][rest], kind="stable")]
            picks = np.concatenate([picks, rest[: budget - len(picks)]])
        pool_clusters = np.full(len(pool.eligible), -1)
        pool_clusters[candidates] = labels
        return Selection(indices=candidates[picks], clusters=labels[picks], pool_clusters=pool_clusters)


class WeightedKMeansStrategy:
    """Weighted k-means (Zhdanov 2019): ``budget`` centres fitted with each item's entropy as its weight, and the
    item nearest each centre. The weights pull centres toward uncertain regions; one item per centre keeps the
    batch diverse. Ranked by the picked item's entropy, most uncertain first."""

    name = "wkmeans"
    # Added to every weight: items the learner is sure of still count a little, and an all-certain pool fits.
    WEIGHT_FLOOR = 1e-3

    def __init__(self, random_state: int = 0) -> None:
        self.random_state = random_state

    def select(self, pool: Pool, budget: int) -> Selection:
        candidates = _eligible_or_fail(pool, budget)
        points = pool.embeddings[candidates].astype(np.float64)
        weights = pool.entropy[candidates].astype(np.float64) + self.WEIGHT_FLOOR
        if budget == len(candidates):
            picks, centres = np.arange(budget), np.arange(budget)
        else:
            model = fit_kmeans(points, budget, self.random_state, weights)
            picks, centres = _nearest_distinct(points, model.cluster_centers_)
        order = np.argsort(-pool.entropy[candidates][picks], kind="stable")
        return Selection(indices=candidates[picks][order], clusters=centres[order])


def _nearest_distinct(points: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each centre, the nearest point no earlier centre took (centres taken in order of their nearest
    distance, so a point shared by two centres goes to the closer one); returns (points, their centres)."""
    squared_norms = np.einsum("ij,ij->i", points, points)
    distances = _squared_distances(points, squared_norms, centres)
    taken = np.zeros(len(points), dtype=bool)
    picks = np.empty(len(centres), dtype=np.int64)
    for centre in np.argsort(distances.min(axis=0), kind="stable"):
        column = np.where(taken, np.inf, distances[:, centre])
        picks[centre] = int(np.argmin(column))
        taken[picks[centre]] = True
    return picks, np.arange(len(centres))


STRATEGIES = {"random": RandomStrategy, "topn": TopNStrategy, "coreset": CoresetStrategy,
              "cluster": ClusterStrategy, "wkmeans": WeightedKMeansStrategy}


def make_strategy(name: str, random_state: int = 0, n_clusters: int | None = None,
                  per_cluster: int = 1) -> Strategy:
    if name not in STRATEGIES:
        raise SelectionError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    if name == "cluster":
        return ClusterStrategy(n_clusters=n_clusters, per_cluster=per_cluster, random_state=random_state)
    return STRATEGIES[name](random_state=random_state)
