"""Which pool items people should label next: random, top-N entropy, coreset, per-cluster uncertainty,
entropy-weighted k-means, predicted-class balancing, deficit filling, BADGE and Cluster-Margin.

Each strategy follows scikit-learn's conventions (parameters in ``__init__``, ``random_state`` for every random
choice, no hidden state) and picks exactly ``budget`` distinct items among the eligible ones, in rank order (the
item the strategy wants labelled most first).
"""

from __future__ import annotations

from collections.abc import Sequence

from alvar.strategies.balanced import BalancedClusterStrategy, BalancedKMeansStrategy, BalancedStrategy, DeficitStrategy
from alvar.strategies.diversity import (
    ClusterStrategy,
    CoresetStrategy,
    RandomStrategy,
    TopNStrategy,
    WeightedKMeansStrategy,
)
from alvar.strategies.gradient import BadgeStrategy, ClusterMarginStrategy
from alvar.strategies.kmeans import ASSIGN_CHUNK, fit_kmeans, kmeans_labels
from alvar.strategies.pool import Pool, Selection, SelectionError, Strategy

__all__ = [
    "ASSIGN_CHUNK", "DEFAULT_CLUSTERS", "DEFAULT_STRATEGY", "STRATEGIES", "BadgeStrategy", "BalancedClusterStrategy",
    "BalancedKMeansStrategy", "BalancedStrategy", "ClusterMarginStrategy", "ClusterStrategy", "CoresetStrategy",
    "DeficitStrategy", "Pool", "RandomStrategy", "Selection", "SelectionError", "Strategy", "TopNStrategy",
    "WeightedKMeansStrategy", "fit_kmeans", "kmeans_labels", "make_strategy", "resolve_strategies",
    "resolve_strategy", "strategy_names",
]

DEFAULT_STRATEGY = "balanced"
"""What `alvar select` uses without ``--strategy``, and what the name ``default`` stands for."""
# K of `alvar coverage`: that of `alvar select`'s default batch (budget 20, one task per cluster), so both speak of
# clusters of one size.
DEFAULT_CLUSTERS = 20

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
