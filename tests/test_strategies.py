"""Property-based tests of every selection strategy (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alvar.entropy import entropy as entropy_of
from alvar.strategies import (
    DEFAULT_STRATEGY,
    STRATEGIES,
    BalancedKMeansStrategy,
    ClusterMarginStrategy,
    ClusterStrategy,
    Pool,
    SelectionError,
    make_strategy,
    resolve_strategies,
    resolve_strategy,
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
    n_classes = draw(st.integers(min_value=1, max_value=5))
    probabilities = rng.dirichlet(np.full(n_classes, 0.5), size=size)
    if draw(st.booleans()):  # ties: equal rows and equal top classes
        probabilities = np.round(probabilities, 1) + 1e-3
        probabilities /= probabilities.sum(axis=1, keepdims=True)
    labeled_counts = rng.integers(0, 10, size=n_classes)
    budget = draw(st.integers(min_value=1, max_value=int(eligible.sum())))
    return Pool(embeddings, entropy, eligible, labeled, probabilities, labeled_counts), budget, seed


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


CLASS_STRATEGIES = ("balanced", "deficit", "badge", "clustermargin", "balancedcluster", "balancedkmeans")


@pytest.mark.parametrize("name", CLASS_STRATEGIES)
def test_strategies_that_reason_about_classes_say_what_they_miss(name: str) -> None:
    embeddings, eligible = np.eye(4, dtype=np.float32), np.ones(4, dtype=bool)
    probabilities = np.full((4, 2), 0.5)
    with pytest.raises(SelectionError, match="class probabilities"):
        make_strategy(name).select(Pool(embeddings, np.zeros(4), eligible), 2)
    with pytest.raises(SelectionError, match="one row per pool item"):
        make_strategy(name).select(Pool(embeddings, np.zeros(4), eligible, None, probabilities[:3], np.zeros(2)), 2)
    if name in ("balanced", "deficit", "balancedcluster", "balancedkmeans"):
        with pytest.raises(SelectionError, match="counts per class"):
            make_strategy(name).select(Pool(embeddings, np.zeros(4), eligible, None, probabilities), 2)
        with pytest.raises(SelectionError, match="one count per class"):
            make_strategy(name).select(Pool(embeddings, np.zeros(4), eligible, None, probabilities, np.zeros(3)), 2)


def skewed_pool(labeled_counts: list[int]) -> Pool:
    """Three predicted classes: class 0 has the most uncertain items, class 2 the fewest and least uncertain."""
    rng = np.random.default_rng(0)
    predicted = np.repeat([0, 1, 2], [60, 30, 5])
    confidence = np.concatenate([rng.uniform(0.40, 0.50, 60), rng.uniform(0.55, 0.7, 30), rng.uniform(0.8, 0.9, 5)])
    probabilities = np.tile((1 - confidence)[:, None] / 2, (1, 3))
    probabilities[np.arange(len(predicted)), predicted] = confidence
    embeddings = rng.normal(size=(len(predicted), 8)).astype(np.float32)
    return Pool(embeddings, entropy_of(probabilities), np.ones(len(predicted), dtype=bool), None, probabilities,
                np.array(labeled_counts))


def test_balanced_visits_the_least_labelled_predicted_class_first_and_evens_the_counts() -> None:
    pool = skewed_pool([20, 12, 0])
    picks = make_strategy("balanced").select(pool, 14).indices
    predicted = pool.probabilities.argmax(axis=1)[picks]
    assert predicted[:5].tolist() == [2] * 5, "the rare, confident class first, most uncertain first"
    assert pool.entropy[picks[:5]].tolist() == sorted(pool.entropy[picks[:5]], reverse=True)
    assert np.bincount(predicted, minlength=3).tolist() == [1, 8, 5], \
        "class 2 runs out at 5; class 1 is filled up to 20; the tie at 20 goes to class 0"
    assert (make_strategy("topn").select(pool, 14).indices < 60).all(), "top-N takes only the uncertain class 0"


def test_balancedkmeans_pulls_wkmeans_toward_the_least_labelled_class_and_keeps_it_spread() -> None:
    """Two equally uncertain blobs, one predicted as a class with 100 labels and one as a class with none, plus
    a certain blob: wkmeans splits the batch between the uncertain blobs; the hybrid puts most of it in the
    unlabelled class's blob, on distinct items spread over it; ``rarity_power=0`` is wkmeans."""
    rng = np.random.default_rng(0)
    embeddings = np.vstack([rng.normal(loc=loc, size=(100, 4)) for loc in (0.0, 8.0, 16.0)]).astype(np.float32)
    top = np.concatenate([rng.uniform(0.5, 0.55, 200), rng.uniform(0.95, 0.99, 100)])
    probabilities = np.column_stack([top, 1 - top])
    probabilities[100:200] = probabilities[100:200, ::-1]  # the middle blob is predicted as class 1
    pool = Pool(embeddings, entropy_of(probabilities), np.ones(300, dtype=bool), None, probabilities,
                np.array([100, 0]))
    hybrid = make_strategy("balancedkmeans").select(pool, 10).indices
    weighted = make_strategy("wkmeans").select(pool, 10).indices
    assert ((hybrid >= 100) & (hybrid < 200)).sum() >= 8, "the class no one labelled gets most of the batch"
    assert 3 <= ((weighted >= 100) & (weighted < 200)).sum() <= 7, "wkmeans alone splits the uncertain blobs"
    spread = embeddings[hybrid[(hybrid >= 100) & (hybrid < 200)]]
    assert np.linalg.norm(spread - spread.mean(axis=0), axis=1).mean() > 1.0, "spread over the blob, not piled"
    neutral = BalancedKMeansStrategy(rarity_power=0).select(pool, 10)
    np.testing.assert_array_equal(neutral.indices, make_strategy("wkmeans").select(pool, 10).indices)


def test_balancedcluster_spreads_a_class_over_clusters_where_balanced_piles_it_up() -> None:
    """The least labelled class lies in two regions, one a little more uncertain: balanced takes all its items
    from that region, the hybrid takes from both."""
    rng = np.random.default_rng(3)
    centres = np.eye(3, 8) * 10
    embeddings = np.concatenate([centre + rng.normal(scale=0.3, size=(30, 8)) for centre in centres])
    top = np.concatenate([rng.uniform(0.50, 0.55, 30), rng.uniform(0.60, 0.65, 30), rng.uniform(0.5, 0.6, 30)])
    probabilities = np.column_stack([top, 1 - top])
    probabilities[60:] = probabilities[60:, ::-1]  # the third region is predicted class 1
    pool = Pool(embeddings.astype(np.float32), entropy_of(probabilities), np.ones(90, dtype=bool), None,
                probabilities, np.array([0, 100]))
    balanced = make_strategy("balanced").select(pool, 4).indices
    hybrid = make_strategy("balancedcluster").select(pool, 4)
    assert (balanced < 30).all()
    assert (hybrid.indices < 60).all(), "only the least labelled class"
    assert sorted(hybrid.indices[:2] // 30) == [0, 1], "first one from each of its regions"
    assert hybrid.clusters[0] != hybrid.clusters[1]


def test_deficit_aims_each_slot_at_the_class_expected_to_be_rarest() -> None:
    pool = skewed_pool([20, 12, 0])
    picks = make_strategy("deficit").select(pool, 14).indices
    expected = pool.labeled_counts + pool.probabilities[picks].sum(axis=0)
    topn = make_strategy("topn").select(pool, 14).indices
    expected_topn = pool.labeled_counts + pool.probabilities[topn].sum(axis=0)
    assert (pool.probabilities[picks[:5]].argmax(axis=1) == 2).all(), "the first slots aim at the class nobody labelled"
    assert expected.argmin() == 2 and expected[2] > expected_topn[2] + 2.5, "and keep aiming at it"
    assert expected.std() < expected_topn.std() - 1.5


def test_badge_spreads_its_picks_over_uncertain_regions() -> None:
    """Two uncertain blobs (one a little more uncertain) and a large certain one: top-N takes only the more
    uncertain blob; BADGE takes both, and at most one item the learner is sure of."""
    rng = np.random.default_rng(1)
    centres = np.eye(3, 16) * 10
    embeddings = np.concatenate([centre + rng.normal(size=(size, 16)) for centre, size in
                                 zip(centres, (40, 40, 200))]).astype(np.float32)
    top = np.concatenate([rng.uniform(0.45, 0.5, 40), rng.uniform(0.55, 0.6, 40), rng.uniform(0.99, 1.0, 200)])
    probabilities = np.column_stack([top, 1 - top])
    pool = Pool(embeddings, entropy_of(probabilities), np.ones(280, dtype=bool), None, probabilities, np.zeros(2))
    assert (make_strategy("topn").select(pool, 8).indices < 40).all()
    for seed in range(5):
        picks = make_strategy("badge", random_state=seed).select(pool, 8).indices
        assert (picks < 40).sum() >= 2 and ((picks >= 40) & (picks < 80)).sum() >= 2
        assert (picks >= 80).sum() <= 1


def test_clustermargin_takes_the_lowest_margin_item_of_each_cluster_of_its_candidates() -> None:
    """Three tight blobs of low-margin items and a blob of confident ones: the margin pool holds the three
    low-margin blobs, each becomes a cluster, and each gives its lowest-margin item, the smallest cluster first."""
    rng = np.random.default_rng(2)
    centres = np.eye(4, 8) * 10
    sizes = (20, 10, 15, 100)
    embeddings = np.concatenate([centre + rng.normal(scale=0.1, size=(size, 8)) for centre, size in
                                 zip(centres, sizes)]).astype(np.float32)
    margin = np.concatenate([rng.uniform(0.00, 0.10, 20), rng.uniform(0.10, 0.20, 10), rng.uniform(0.2, 0.3, 15),
                             rng.uniform(0.8, 0.9, 100)])
    probabilities = np.column_stack([(1 + margin) / 2, (1 - margin) / 2])
    pool = Pool(embeddings, entropy_of(probabilities), np.ones(len(margin), dtype=bool), None, probabilities,
                np.zeros(2))
    selection = ClusterMarginStrategy(n_clusters=3, margin_pool=45).select(pool, 6)
    starts = np.cumsum((0, *sizes))
    blob = np.searchsorted(starts, selection.indices, side="right") - 1
    assert blob.tolist() == [1, 2, 0, 1, 2, 0], "round-robin from the smallest cluster"
    for number in range(3):
        members = np.arange(starts[number], starts[number + 1])
        assert selection.indices[blob == number][0] == members[np.argmin(margin[members])]
    assert (selection.pool_clusters[starts[3]:] == -1).all(), "confident items are not candidates"
    only_margins = make_strategy("clustermargin").select(pool, 2).indices
    assert (only_margins < 20).all(), "the default margin pool (10 x budget) holds only the lowest margins"


def test_default_names_the_default_strategy() -> None:
    assert DEFAULT_STRATEGY in STRATEGIES
    assert resolve_strategy("default") == DEFAULT_STRATEGY
    assert make_strategy("default").name == DEFAULT_STRATEGY
    assert resolve_strategies(["random", "default", DEFAULT_STRATEGY]) == ["random", DEFAULT_STRATEGY]
    with pytest.raises(SelectionError, match="unknown strategy 'best'.*default"):
        resolve_strategies(["default", "best"])
