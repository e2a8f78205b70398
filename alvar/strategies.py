"""Which pool items people should label next: random, top-N entropy, coreset, per-cluster uncertainty,
entropy-weighted k-means, predicted-class balancing, deficit filling, BADGE and Cluster-Margin.

Each strategy follows scikit-learn's conventions (parameters in ``__init__``, ``random_state`` for every random
choice, no hidden state) and picks exactly ``budget`` distinct items among the eligible ones, in rank order (the
item the strategy wants labelled most first).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from alvar.errors import AlvarError

if TYPE_CHECKING:
    from sklearn.cluster import KMeans, MiniBatchKMeans

log = logging.getLogger(__name__)

MINIBATCH_THRESHOLD = 100_000
ASSIGN_CHUNK = 65_536
SAMPLE_PER_CLUSTER = 256
DEFAULT_STRATEGY = "balanced"
"""What `alvar select` uses without ``--strategy``, and what the name ``default`` stands for."""
# K of `alvar coverage`: that of `alvar select`'s default batch (budget 20, one task per cluster), so both speak of
# clusters of one size.
DEFAULT_CLUSTERS = 20


class SelectionError(AlvarError, ValueError):
    """A selection that cannot be made; the message says why."""


@dataclass(frozen=True)
class Pool:
    """Everything a strategy may look at. ``eligible`` is False for labeled, batched and generated items.

    ``probabilities`` (n, C) are the learner's class probabilities, rows aligned with ``embeddings``;
    ``labeled_counts`` (C,) the human labels per class so far, in the same column order. Strategies that reason
    about classes need them (a :class:`SelectionError` says so when they are missing).
    """

    embeddings: np.ndarray
    entropy: np.ndarray
    eligible: np.ndarray
    labeled_embeddings: np.ndarray | None = None
    probabilities: np.ndarray | None = None
    labeled_counts: np.ndarray | None = None

    def eligible_indices(self) -> np.ndarray:
        return np.flatnonzero(self.eligible)

    def class_probabilities(self, strategy: str) -> np.ndarray:
        """The (n, C) probabilities, checked against the pool's size."""
        if self.probabilities is None:
            raise SelectionError(f"the {strategy} strategy needs the learner's class probabilities of the pool")
        probabilities = np.asarray(self.probabilities, dtype=np.float64)
        if probabilities.ndim != 2 or len(probabilities) != len(self.eligible) or probabilities.shape[1] < 1:
            raise SelectionError(f"the class probabilities have shape {probabilities.shape}; the {strategy} "
                                 f"strategy needs one row per pool item ({len(self.eligible)}) and a column per class")
        return probabilities

    def class_counts(self, strategy: str) -> np.ndarray:
        """The (C,) labels per class so far, checked against the probabilities' columns."""
        n_classes = self.class_probabilities(strategy).shape[1]
        if self.labeled_counts is None:
            raise SelectionError(f"the {strategy} strategy needs the labeled items' counts per class "
                                 "(zeros when nothing is labeled yet)")
        counts = np.asarray(self.labeled_counts, dtype=np.float64)
        if counts.shape != (n_classes,):
            raise SelectionError(f"the labeled counts have shape {counts.shape}; the {strategy} strategy needs "
                                 f"one count per class ({n_classes})")
        return counts


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


def _squared_distances(points: np.ndarray, squared_norms: np.ndarray, centers: np.ndarray) -> np.ndarray:
    center_norms = np.einsum("ij,ij->i", centers, centers)
    distances = squared_norms[:, None] - 2.0 * (points @ centers.T) + center_norms[None, :]
    return np.maximum(distances, 0.0)


def _cluster_count(wanted: int, n_candidates: int) -> int:
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
        return _cluster_count(self.n_clusters or max(1, budget // self.per_cluster), n_candidates)

    def cluster(self, points: np.ndarray, n_clusters: int) -> np.ndarray:
        """Cluster label of each point (:func:`kmeans_labels`)."""
        return kmeans_labels(points, n_clusters, self.random_state)

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
        weights = pool.entropy[candidates].astype(np.float64) + self.WEIGHT_FLOOR
        return _weighted_kmeans_picks(pool, candidates, budget, weights, self.random_state)


def _weighted_kmeans_picks(pool: Pool, candidates: np.ndarray, budget: int, weights: np.ndarray,
                           random_state: int) -> Selection:
    """``budget`` centres fitted over the candidates with these weights, the candidate nearest each centre, ranked
    by entropy (most uncertain first)."""
    points = pool.embeddings[candidates].astype(np.float64)
    if budget == len(candidates):
        picks, centres = np.arange(budget), np.arange(budget)
    else:
        model = fit_kmeans(points, budget, random_state, weights)
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


def _predicted_class(probabilities: np.ndarray) -> np.ndarray:
    """The learner's likeliest class of each row (ties go to the first class)."""
    return np.argmax(probabilities, axis=1)


class BalancedStrategy:
    """Uncertainty balanced over the learner's predicted classes.

    The eligible items are grouped by their predicted class. The batch is filled by visiting, each time, the class
    with the fewest items so far (its human labels plus this batch's picks; ties go to the first class), and taking
    that class's next most uncertain item; a class with no items left is skipped. A class the learner rarely
    predicts, and that is rarely labelled, therefore gets its most uncertain items first. Rank = visit order.
    """

    name = "balanced"

    def __init__(self, random_state: int = 0) -> None:
        self.random_state = random_state

    def select(self, pool: Pool, budget: int) -> Selection:
        candidates = _eligible_or_fail(pool, budget)
        counts = pool.class_counts(self.name)
        predicted = _predicted_class(pool.class_probabilities(self.name)[candidates])
        queues = [_by_uncertainty(candidates[predicted == label], pool.entropy) for label in range(len(counts))]
        visits = _balanced_visits(counts, np.array([len(queue) for queue in queues]), budget)
        taken = np.zeros(len(counts), dtype=np.int64)
        picks = np.empty(budget, dtype=np.int64)
        for slot, label in enumerate(visits):
            picks[slot] = queues[label][taken[label]]
            taken[label] += 1
        return _no_clusters(picks)


def _balanced_visits(counts: np.ndarray, sizes: np.ndarray, budget: int) -> np.ndarray:
    """The class each of ``budget`` slots goes to: each time the class with the fewest items so far (``counts``
    plus this batch's slots; ties go to the first class) among those with items left (``sizes``)."""
    counts = counts.astype(np.float64).copy()
    taken = np.zeros(len(counts), dtype=np.int64)
    visits = np.empty(budget, dtype=np.int64)
    for slot in range(budget):
        label = int(np.argmin(np.where(taken < sizes, counts, np.inf)))
        visits[slot] = label
        taken[label] += 1
        counts[label] += 1
    return visits


class BalancedKMeansStrategy:
    """Weighted k-means whose weights also favour the classes labelled least: the hybrid of
    :class:`WeightedKMeansStrategy` and :class:`BalancedStrategy`.

    An item's weight is its entropy times its predicted class's rarity, ``(mean count / class count) **
    rarity_power`` (counts = human labels per class + 1), so the centres are pulled toward uncertain items of the
    classes labelled least, and one item per centre keeps the batch spread over the pool. ``rarity_power`` 0 is
    ``wkmeans``; 3 was the best of 1, 2 and 3 on the simulations (docs/selection.md) over seeds 0-4 (on seeds 5-9, which
    did not choose it, it fell behind ``balanced``). Ranked by entropy, most uncertain first.
    """

    name = "balancedkmeans"

    def __init__(self, rarity_power: float = 3.0, random_state: int = 0) -> None:
        self.rarity_power = rarity_power
        self.random_state = random_state

    def select(self, pool: Pool, budget: int) -> Selection:
        candidates = _eligible_or_fail(pool, budget)
        counts = pool.class_counts(self.name).astype(np.float64) + 1.0
        predicted = _predicted_class(pool.class_probabilities(self.name)[candidates])
        rarity = (counts.mean() / counts[predicted]) ** self.rarity_power
        weights = (pool.entropy[candidates].astype(np.float64) + WeightedKMeansStrategy.WEIGHT_FLOOR) * rarity
        return _weighted_kmeans_picks(pool, candidates, budget, weights, self.random_state)


class BalancedClusterStrategy:
    """A hybrid of predicted-class balancing and the paper's clusters: classes are visited as in
    :class:`BalancedStrategy` (the least labelled first), and the visited class gives its most uncertain item
    from a k-means cluster (``n_clusters``, default the budget) that this batch does not hold yet; only when
    every cluster holding the class's items is taken does it give its most uncertain item anywhere. Balancing
    evens the classes; the clusters keep a class's picks from piling up in one region. Rank = visit order."""

    name = "balancedcluster"

    def __init__(self, n_clusters: int | None = None, random_state: int = 0) -> None:
        self.n_clusters = n_clusters
        self.random_state = random_state

    def select(self, pool: Pool, budget: int) -> Selection:
        candidates = _eligible_or_fail(pool, budget)
        counts = pool.class_counts(self.name).copy()
        predicted = _predicted_class(pool.class_probabilities(self.name)[candidates])
        n_clusters = _cluster_count(self.n_clusters or budget, len(candidates))
        clusters = kmeans_labels(pool.embeddings[candidates], n_clusters, self.random_state)
        order = np.argsort(-pool.entropy[candidates], kind="stable")
        available = np.ones(len(candidates), dtype=bool)
        held = np.zeros(n_clusters, dtype=bool)
        picks = np.empty(budget, dtype=np.int64)
        for slot in range(budget):
            left = np.bincount(predicted[available], minlength=len(counts)) > 0
            label = int(np.argmin(np.where(left, counts, np.inf)))
            of_class = order[available[order] & (predicted[order] == label)]
            fresh = of_class[~held[clusters[of_class]]]
            picks[slot] = fresh[0] if len(fresh) else of_class[0]
            available[picks[slot]] = False
            held[clusters[picks[slot]]] = True
            counts[label] += 1
        pool_clusters = np.full(len(pool.eligible), -1)
        pool_clusters[candidates] = clusters
        return Selection(indices=candidates[picks], clusters=clusters[picks], pool_clusters=pool_clusters)


class DeficitStrategy:
    """Deficit filling: one slot at a time, aimed at the class the labels so far and this batch lack most.

    The expected count of a class is its human labels plus the summed probabilities of this batch's picks. Each
    slot aims at the class with the lowest expected count (ties go to the first class) and takes the remaining
    eligible item with the highest entropy x p(that class): uncertain, and likely of the missing class.
    """

    name = "deficit"

    def __init__(self, random_state: int = 0) -> None:
        self.random_state = random_state

    def select(self, pool: Pool, budget: int) -> Selection:
        candidates = _eligible_or_fail(pool, budget)
        expected = pool.class_counts(self.name).copy()
        probabilities = pool.class_probabilities(self.name)[candidates]
        uncertainty = pool.entropy[candidates].astype(np.float64)
        available = np.ones(len(candidates), dtype=bool)
        picks = np.empty(budget, dtype=np.int64)
        for slot in range(budget):
            target = int(np.argmin(expected))
            score = np.where(available, uncertainty * probabilities[:, target], -np.inf)
            picks[slot] = int(np.argmax(score))
            available[picks[slot]] = False
            expected += probabilities[picks[slot]]
        return _no_clusters(candidates[picks])


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
        candidates = _eligible_or_fail(pool, budget)
        probabilities = pool.class_probabilities(self.name)[candidates]
        residual = probabilities.copy()
        residual[np.arange(len(candidates)), _predicted_class(probabilities)] -= 1.0
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
        return _no_clusters(candidates[picks])

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
        candidates = _eligible_or_fail(pool, budget)
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

STRATEGIES = {
    "random": RandomStrategy, "topn": TopNStrategy, "coreset": CoresetStrategy, "cluster": ClusterStrategy,
    "wkmeans": WeightedKMeansStrategy, "balancedkmeans": BalancedKMeansStrategy, "balanced": BalancedStrategy,
    "deficit": DeficitStrategy, "badge": BadgeStrategy, "clustermargin": ClusterMarginStrategy,
    "balancedcluster": BalancedClusterStrategy,
}


def resolve_strategy(name: str) -> str:
    """The strategy a name stands for: ``default`` is :data:`DEFAULT_STRATEGY`; an unknown name fails."""
    resolved = DEFAULT_STRATEGY if name == "default" else name
    if resolved not in STRATEGIES:
        raise SelectionError(f"unknown strategy {name!r}; choose one of {strategy_names()}")
    return resolved


def resolve_strategies(names: Sequence[str]) -> list[str]:
    """Each name resolved (:func:`resolve_strategy`), each strategy once, in the order first named."""
    if not names:
        raise SelectionError(f"no strategy named; choose from {strategy_names()}")
    return list(dict.fromkeys(resolve_strategy(name) for name in names))


def strategy_names() -> str:
    """The names a person may give, for help texts and errors."""
    return ", ".join([*STRATEGIES, f"default (= {DEFAULT_STRATEGY})"])


def make_strategy(name: str, random_state: int = 0, n_clusters: int | None = None,
                  per_cluster: int = 1) -> Strategy:
    """The named strategy; ``n_clusters`` sets cluster's K and clustermargin's number of clusters."""
    name = resolve_strategy(name)
    if name == "cluster":
        return ClusterStrategy(n_clusters=n_clusters, per_cluster=per_cluster, random_state=random_state)
    if name == "clustermargin":
        return ClusterMarginStrategy(n_clusters=n_clusters, random_state=random_state)
    if name == "balancedcluster":
        return BalancedClusterStrategy(n_clusters=n_clusters, random_state=random_state)
    return STRATEGIES[name](random_state=random_state)
