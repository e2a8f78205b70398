"""Strategies that look at uncertainty and the pool's spread: random, top-N entropy, coreset, the paper's
per-cluster uncertainty and entropy-weighted k-means."""

from __future__ import annotations

import numpy as np

from alvar.strategies.kmeans import ASSIGN_CHUNK, cluster_count, kmeans_labels, squared_distances, weighted_kmeans_picks
from alvar.strategies.pool import Pool, Selection, SelectionError, by_uncertainty, eligible_or_fail, no_clusters


class RandomStrategy:
    name = "random"

    def __init__(self, random_state: int = 0) -> None:
        self.random_state = random_state

    def select(self, pool: Pool, budget: int) -> Selection:
        candidates = eligible_or_fail(pool, budget)
        rng = np.random.default_rng(self.random_state)
        return no_clusters(rng.choice(candidates, size=budget, replace=False))


class TopNStrategy:
    """The ``budget`` most uncertain items (highest predictive entropy)."""

    name = "topn"

    def __init__(self, random_state: int = 0) -> None:
        self.random_state = random_state

    def select(self, pool: Pool, budget: int) -> Selection:
        return no_clusters(by_uncertainty(eligible_or_fail(pool, budget), pool.entropy)[:budget])


class CoresetStrategy:
    """k-center greedy: repeatedly the item farthest from everything labeled or already picked."""

    name = "coreset"

    def __init__(self, random_state: int = 0) -> None:
        self.random_state = random_state

    def select(self, pool: Pool, budget: int) -> Selection:
        candidates = eligible_or_fail(pool, budget)
        points = pool.embeddings[candidates]
        squared_norms = np.einsum("ij,ij->i", points, points)
        nearest = np.full(len(points), np.inf, dtype=np.float64)
        if pool.labeled_embeddings is not None and len(pool.labeled_embeddings):
            for start in range(0, len(points), ASSIGN_CHUNK):
                chunk = points[start : start + ASSIGN_CHUNK]
                distances = squared_distances(chunk, squared_norms[start : start + ASSIGN_CHUNK],
                                               pool.labeled_embeddings)
                nearest[start : start + ASSIGN_CHUNK] = distances.min(axis=1)
        picked: list[int] = []
        if not np.isfinite(nearest).any():
            first = int(np.random.default_rng(self.random_state).integers(len(points)))
            picked.append(first)
            nearest = np.minimum(nearest, squared_distances(points, squared_norms, points[first : first + 1])[:, 0])
            nearest[first] = -np.inf
        while len(picked) < budget:
            farthest = int(np.argmax(nearest))
            picked.append(farthest)
            to_farthest = squared_distances(points, squared_norms, points[farthest : farthest + 1])[:, 0]
            nearest = np.minimum(nearest, to_farthest)
            nearest[farthest] = -np.inf
        return no_clusters(candidates[np.array(picked)])


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
        return cluster_count(self.n_clusters or max(1, budget // self.per_cluster), n_candidates)

    def cluster(self, points: np.ndarray, n_clusters: int) -> np.ndarray:
        """Cluster label of each point (:func:`kmeans_labels`)."""
        return kmeans_labels(points, n_clusters, self.random_state)

    def select(self, pool: Pool, budget: int) -> Selection:
        candidates = eligible_or_fail(pool, budget)
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
        candidates = eligible_or_fail(pool, budget)
        weights = pool.entropy[candidates].astype(np.float64) + self.WEIGHT_FLOOR
        return weighted_kmeans_picks(pool, candidates, budget, weights, self.random_state)
