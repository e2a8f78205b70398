"""Strategies from the learner's gradients and margins: BADGE and Cluster-Margin."""

from __future__ import annotations

import logging

import numpy as np

from alvar.strategies.pool import Pool, Selection, SelectionError, eligible_or_fail, no_clusters, predicted_class

log = logging.getLogger(__name__)


class BadgeStrategy:
    """BADGE (Ash et al. 2020): k-means++ seeding on gradient embeddings.

    An item's gradient embedding is g = (p - onehot(argmax p)) (x) x, the gradient of the cross-entropy loss at the
    learner's own guess with respect to a linear last layer over the sentence embedding x (exact for the fast
    learner, logistic regression on x; a proxy for the transformer). Its norm grows with uncertainty, and k-means++
    spreads the picks: the first is the largest gradient, each next one is drawn with probability proportional to
    its squared distance from the nearest pick. The n x C x d gradients are never built: with a = p - onehot,
    <g_i, g_j> = <a_i, a_j> <x_i, x_j>, so each new pick costs one pass over the (n, C) and (n, d) arrays.
    Rank = seeding order.
    """

    name = "badge"

    def __init__(self, random_state: int = 0) -> None:
        self.random_state = random_state

    def select(self, pool: Pool, budget: int) -> Selection:
        candidates = eligible_or_fail(pool, budget)
        probabilities = pool.class_probabilities(self.name)[candidates]
        residual = probabilities.copy()
        residual[np.arange(len(candidates)), predicted_class(probabilities)] -= 1.0
        points = pool.embeddings[candidates].astype(np.float64)
        squared_norms = np.einsum("ij,ij->i", residual, residual) * np.einsum("ij,ij->i", points, points)
        rng = np.random.default_rng(self.random_state)
        nearest: np.ndarray = np.full(len(candidates), np.inf)  # distance to the nearest pick: none yet
        picked = np.zeros(len(candidates), dtype=bool)
        picks = np.empty(budget, dtype=np.int64)
        for slot in range(budget):
            picks[slot] = self._next(slot, squared_norms, nearest, picked, rng)
            picked[picks[slot]] = True
            chosen = picks[slot]
            inner = (residual @ residual[chosen]) * (points @ points[chosen])
            distances = np.maximum(squared_norms - 2.0 * inner + squared_norms[chosen], 0.0)
            nearest = np.where(picked, 0.0, np.minimum(nearest, distances))
        return no_clusters(candidates[picks])

    @staticmethod
    def _next(slot: int, squared_norms: np.ndarray, nearest: np.ndarray, picked: np.ndarray,
              rng: np.random.Generator) -> int:
        """The largest gradient first; then a draw weighted by squared distance (uniform over the items left when
        every distance is zero: all of them coincide with a pick)."""
        if slot == 0:
            return int(np.argmax(squared_norms))
        total = nearest.sum()
        if total > 0:
            return int(rng.choice(len(nearest), p=nearest / total))
        return int(rng.choice(np.flatnonzero(~picked)))


class ClusterMarginStrategy:
    """Cluster-Margin (Citovsky et al. 2021), adapted to a per-batch candidate set.

    The ``margin_pool`` (default 10 x budget) eligible items with the smallest margin p(top1) - p(top2) are
    clustered by agglomerative clustering with average linkage over their embeddings into ``n_clusters`` clusters
    (default: the budget); then the clusters are visited round-robin from the smallest (ties: the cluster with the
    lower best margin first), one item per cluster per turn, the lowest margin first within each cluster.

    Adaptation: the paper clusters the whole pool once, before the first round, and reuses the clusters. Here the
    clustering runs on the candidate set of each batch only, which keeps it O(m^2) in time and memory for m
    candidates (never the pool's n^2); the candidate set is capped at ``MAX_MARGIN_POOL`` items (logged).
    """

    name = "clustermargin"
    MAX_MARGIN_POOL = 5_000

    def __init__(self, n_clusters: int | None = None, margin_pool: int | None = None, random_state: int = 0) -> None:
        self.n_clusters = n_clusters
        self.margin_pool = margin_pool
        self.random_state = random_state

    def _sizes(self, budget: int, n_candidates: int) -> tuple[int, int]:
        """(margin pool size, number of clusters) for this budget."""
        wanted = self.margin_pool if self.margin_pool is not None else 10 * budget
        if wanted < budget:
            raise SelectionError(f"margin_pool ({wanted}) must be at least the budget ({budget})")
        cap = max(budget, self.MAX_MARGIN_POOL)
        if min(wanted, n_candidates) > cap:
            log.warning("a margin pool of %d items asked for: clustering the %d lowest-margin ones", wanted, cap)
        size = min(n_candidates, wanted, cap)
        n_clusters = self.n_clusters or budget
        if n_clusters < 1:
            raise SelectionError(f"the number of clusters must be at least 1, got {n_clusters}")
        return size, min(n_clusters, size)

    def select(self, pool: Pool, budget: int) -> Selection:
        candidates = eligible_or_fail(pool, budget)
        probabilities = pool.class_probabilities(self.name)[candidates]
        size, n_clusters = self._sizes(budget, len(candidates))
        margins = _margins(probabilities)
        lowest = np.argsort(margins, kind="stable")[:size]
        labels = _average_linkage(pool.embeddings[candidates[lowest]].astype(np.float64), n_clusters)
        picks, pick_clusters, visit = _round_robin(labels, margins[lowest], budget)
        pool_clusters = np.full(len(pool.eligible), -1)
        pool_clusters[candidates[lowest]] = visit[labels]
        return Selection(indices=candidates[lowest[picks]], clusters=pick_clusters, pool_clusters=pool_clusters)


def _margins(probabilities: np.ndarray) -> np.ndarray:
    """p(top1) - p(top2) of each row (p(top1) with one class)."""
    if probabilities.shape[1] == 1:
        return probabilities[:, 0].copy()
    top_two = -np.partition(-probabilities, 1, axis=1)[:, :2]
    return top_two[:, 0] - top_two[:, 1]


def _average_linkage(points: np.ndarray, n_clusters: int) -> np.ndarray:
    if n_clusters >= len(points):
        return np.arange(len(points))
    if n_clusters == 1:
        return np.zeros(len(points), dtype=np.int64)
    from sklearn.cluster import AgglomerativeClustering

    return AgglomerativeClustering(n_clusters=n_clusters, linkage="average").fit_predict(points)


def _round_robin(labels: np.ndarray, margins: np.ndarray, budget: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Round-robin over clusters from the smallest, the lowest margin first in each. Returns the picked rows, the
    visit number of each pick's cluster, and the visit number of every cluster label."""
    clusters, sizes = np.unique(labels, return_counts=True)
    best = np.array([margins[labels == cluster].min() for cluster in clusters])
    order = np.lexsort((clusters, best, sizes))
    visit = np.empty(labels.max() + 1, dtype=np.int64)
    visit[clusters[order]] = np.arange(len(clusters))
    rows = np.lexsort((np.arange(len(labels)), margins, visit[labels]))
    ranked_visit = visit[labels][rows]
    depth = np.arange(len(rows)) - np.searchsorted(ranked_visit, ranked_visit, side="left")
    turns = rows[np.lexsort((ranked_visit, depth))][:budget]
    return turns, visit[labels[turns]], visit
