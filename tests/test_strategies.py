"""Property-based tests of every selection strategy (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alvar.strategies import (
    STRATEGIES,
    ClusterStrategy,
    Pool,
    SelectionError,
    make_strategy,
)


@st.composite
def pools(draw: st.DrawFn) -> tuple[Pool, int, int]:
    size = draw(st.integers(min_value=1, max_value=80))
    dims = draw(st.integers(min_value=2, max_value=8))
    seed = draw(st.integers(min_value=0, max_value=2**16))
    rng = np.random.default_rng(seed)
    embeddings = rng.normal(size=(size, dims)).astype(np.float32)
    if draw(st.booleans()):
        embeddings[rng.integers(size, size=size // 3)] = embeddings[0]
    entropy = rng.random(size) if draw(st.booleans()) else np.round(rng.random(size), 1)
    eligible = rng.random(size) < draw(st.floats(min_value=0.3, max_value=1.0))
    if not eligible.any():
        eligible[rng.integers(size)] = True
    labeled = rng.normal(size=(draw(st.integers(min_value=0, max_value=5)), dims)).astype(np.float32)
    budget = draw(st.integers(min_value=1, max_value=int(eligible.sum())))
    return Pool(embeddings, entropy, eligible, labeled), budget, seed


@pytest.mark.parametrize("name", sorted(STRATEGIES))
@settings(max_examples=60, deadline=None)
@given(case=pools())
def test_exact_budget_no_repeats_only_eligible_and_deterministic(name: str, case: tuple[Pool, int, int]) -> None:
    pool, budget, seed = case
    selection = make_strategy(name, random_state=seed).select(pool, budget)
    picked = selection.indices
    assert len(picked) == budget
    assert len(set(picked.tolist())) == budget
    assert pool.eligible[picked].all()
    again = make_strategy(name, random_state=seed).select(pool, budget)
    np.testing.assert_array_equal(again.indices, picked)
    np.testing.assert_array_equal(again.clusters, selection.clusters)


@settings(max_examples=60, deadline=None)
@given(case=pools(), per_cluster=st.integers(min_value=1, max_value=3), data=st.data())
def test_every_nonempty_cluster_is_represented(case: tuple[Pool, int, int], per_cluster: int,
                                               data: st.DataObject) -> None:
    pool, budget, seed = case
    n_clusters = data.draw(st.integers(min_value=1, max_value=budget))
    strategy = ClusterStrategy(n_clusters=n_clusters, per_cluster=per_cluster, random_state=seed)
    selection = strategy.select(pool, budget)
    nonempty = set(selection.pool_clusters[pool.eligible].tolist())
    assert nonempty <= set(selection.clusters.tolist())
    for cluster in nonempty:
        members = np.flatnonzero(selection.pool_clusters == cluster)
        best = members[np.argmax(pool.entropy[members])]
        chosen = selection.indices[selection.clusters == cluster]
        assert pool.entropy[chosen].max() == pool.entropy[best]


def test_topn_takes_the_most_uncertain() -> None:
    pool = Pool(np.eye(5, dtype=np.float32), np.array([0.1, 0.9, 0.5, 0.95, 0.7]),
                np.array([True, True, True, False, True]))
    assert make_strategy("topn").select(pool, 2).indices.tolist() == [1, 4]


def test_coreset_starts_far_from_the_labeled_set() -> None:
    points = np.array([[0, 0], [0.1, 0], [5, 5], [10, 0]], dtype=np.float32)
    pool = Pool(points, np.zeros(4), np.ones(4, dtype=bool), labeled_embeddings=np.array([[0, 0]], np.float32))
    assert make_strategy("coreset").select(pool, 2).indices.tolist() == [3, 2]


def test_cluster_takes_the_most_uncertain_of_each_cluster_then_fills_the_budget() -> None:
    rng = np.random.default_rng(0)
    centers = np.array([[10, 0], [0, 10], [-10, -10]], dtype=np.float32)
    points = np.concatenate([center + rng.normal(scale=0.1, size=(size, 2)) for center, size in
                             zip(centers, (20, 20, 1))]).astype(np.float32)
    entropy = rng.random(len(points))
    pool = Pool(points, entropy, np.ones(len(points), dtype=bool))
    selection = ClusterStrategy(n_clusters=3, per_cluster=2).select(pool, 6)
    assert len(selection.indices) == 6
    assert 40 in selection.indices.tolist(), "the one-item cluster is represented"
    by_cluster = {c: selection.indices[selection.clusters == c] for c in set(selection.clusters.tolist())}
    assert sorted(len(v) for v in by_cluster.values()) == [1, 2, 3]


@pytest.mark.parametrize("budget, message", [(0, "at least 1"), (4, "larger than the 3 selectable")])
def test_bad_budgets_say_why(budget: int, message: str) -> None:
    pool = Pool(np.eye(4, dtype=np.float32), np.zeros(4), np.array([True, True, True, False]))
    for name in STRATEGIES:
        with pytest.raises(SelectionError, match=message):
            make_strategy(name).select(pool, budget)


def test_more_clusters_than_items_falls_back(caplog: pytest.LogCaptureFixture) -> None:
    pool = Pool(np.eye(3, dtype=np.float32), np.array([0.2, 0.1, 0.3]), np.ones(3, dtype=bool))
    selection = ClusterStrategy(n_clusters=10).select(pool, 3)
    assert sorted(selection.indices.tolist()) == [0, 1, 2]
    assert "using 3 clusters" in caplog.text


def test_unknown_strategy() -> None:
    with pytest.raises(SelectionError, match="unknown strategy 'best'"):
        make_strategy("best")


def test_weighted_kmeans_spends_the_budget_where_the_learner_is_unsure() -> None:
    """Two equal blobs, one uncertain and one certain: the weighted centres go mostly to the uncertain blob,
    while the unweighted clusters split the batch between them."""
    rng = np.random.default_rng(0)
    unsure = rng.normal(loc=0.0, size=(200, 4))
    sure = rng.normal(loc=8.0, size=(200, 4))
    embeddings = np.vstack([unsure, sure]).astype(np.float32)
    entropy = np.concatenate([rng.uniform(0.8, 1.0, 200), rng.uniform(0.0, 0.05, 200)])
    pool = Pool(embeddings, entropy, np.ones(400, dtype=bool))
    weighted = make_strategy("wkmeans").select(pool, 10).indices
    clustered = make_strategy("cluster").select(pool, 10).indices
    assert (weighted < 200).sum() >= 9
    assert 3 <= (clustered < 200).sum() <= 7
