"""Selection strategies on hand-made pools with known answers, and at the real pool size."""

from __future__ import annotations

import numpy as np
import pytest

from mygo.analysis.selection import STRATEGIES, round_robin, select, target_count

# Three clusters and two noise points. Cluster 0: rows 0, 3, 5; cluster 1: rows 1, 4; cluster 2: row 2.
QUALITY = np.array([0.9, 0.5, 0.7, 0.95, 0.8, 0.1, 0.6, 0.99])
LABELS = np.array([0, 1, 2, 0, 1, 0, -1, -1])


def test_round_robin_takes_each_clusters_best_in_cluster_order_then_noise_last():
    chosen = round_robin(QUALITY, LABELS, count=8)
    # Round 0: best of clusters 0, 1, 2, then noise: rows 3, 4, 2, 7. Round 1: rows 0, 1, 6. Round 2: row 5.
    assert chosen.indices.tolist() == [3, 4, 2, 7, 0, 1, 6, 5]
    assert chosen.rounds.tolist() == [1, 1, 0, 0, 0, 2, 1, 0]
    assert chosen.indices.dtype == np.int64 and chosen.rounds.dtype == np.int64
    assert chosen.strategy == "round_robin"


def test_partial_last_round_takes_the_best_candidates_of_that_round():
    chosen = round_robin(QUALITY, LABELS, count=6)
    # Round 1's candidates are rows 0 (0.9), 1 (0.5), 6 (0.6): the best two are 0 and 6, not 0 and 1 by cluster id.
    assert chosen.indices.tolist() == [3, 4, 2, 7, 0, 6]
    assert chosen.rounds.tolist() == [1, -1, 0, 0, 0, -1, 1, 0]


def test_ties_in_quality_break_by_row_index_within_a_cluster():
    quality = np.array([0.5, 0.5, 0.5, 0.5])
    chosen = round_robin(quality, np.array([1, 0, 1, 0]), count=3)
    assert chosen.indices.tolist() == [1, 0, 3]


def test_noise_is_one_group_not_dropped_and_not_one_cluster_each():
    quality = np.array([0.9, 0.8, 0.7, 0.1, 0.2])
    labels = np.array([-1, -1, -1, 0, 0])
    chosen = round_robin(quality, labels, count=4)
    # Noise gives one point per round (like one cluster) after cluster 0, and is not skipped.
    assert chosen.indices.tolist() == [4, 0, 3, 1]
    assert chosen.rounds.tolist() == [0, 1, -1, 1, 0]


def test_all_noise_is_the_quality_ranking():
    quality = np.array([0.3, 0.9, 0.5])
    chosen = round_robin(quality, np.full(3, -1), count=2)
    assert chosen.indices.tolist() == [1, 2] and chosen.rounds.tolist() == [-1, 0, 1]


def test_select_round_robin_matches_the_percentage():
    chosen = select("round_robin", QUALITY, LABELS, percentage=0.75)
    assert chosen.indices.tolist() == [3, 4, 2, 7, 0, 6]


def test_quality_topk_ignores_clusters():
    chosen = select("quality_topk", QUALITY, LABELS, percentage=0.5)
    assert chosen.indices.tolist() == [7, 3, 0, 4]
    assert chosen.rounds.tolist() == [0, -1, -1, 0, 0, -1, -1, 0]
    assert chosen.strategy == "quality_topk"


def test_random_is_seeded_sized_and_unique():
    quality = np.random.default_rng(0).random(1000)
    labels = np.zeros(1000, dtype=np.int64)
    first = select("random", quality, labels, percentage=0.1, seed=3)
    again = select("random", quality, labels, percentage=0.1, seed=3)
    other = select("random", quality, labels, percentage=0.1, seed=4)
    assert len(first.indices) == 100 and len(np.unique(first.indices)) == 100
    assert np.array_equal(first.indices, again.indices) and np.array_equal(first.rounds, again.rounds)
    assert not np.array_equal(np.sort(first.indices), np.sort(other.indices))
    assert set(np.flatnonzero(first.rounds == 0)) == set(first.indices) and (first.rounds >= -1).all()


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_is_deterministic(strategy):
    rng = np.random.default_rng(1)
    quality, labels = rng.random(500), rng.integers(-1, 7, 500)
    first = select(strategy, quality, labels, percentage=0.2, seed=5)
    again = select(strategy, quality, labels, percentage=0.2, seed=5)
    assert np.array_equal(first.indices, again.indices) and np.array_equal(first.rounds, again.rounds)
    assert len(first.indices) == 100 and (first.rounds >= 0).sum() == 100


def test_target_count_rounds_and_keeps_at_least_one():
    assert target_count(120, 0.1) == 12
    assert target_count(10, 0.01) == 1
    assert target_count(7, 1.0) == 7


@pytest.mark.parametrize("percentage", [0, -0.1, 1.5, float("nan")])
def test_target_count_rejects_percentages_outside_0_1(percentage):
    with pytest.raises(ValueError, match=r"percentage must be in \(0, 1\]"):
        target_count(100, percentage)


def test_unknown_strategy_lists_the_valid_ones():
    with pytest.raises(ValueError, match="round_robin.*quality_topk.*random"):
        select("best", QUALITY, LABELS, percentage=0.5)


def test_mismatched_or_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="does not match"):
        select("round_robin", QUALITY, LABELS[:-1], percentage=0.5)
    with pytest.raises(ValueError, match="NaN"):
        select("round_robin", np.r_[QUALITY[:-1], np.nan], LABELS, percentage=0.5)
    with pytest.raises(ValueError, match="labels must be integers"):
        select("round_robin", QUALITY, LABELS - 1, percentage=0.5)


def test_round_robin_at_the_real_pool_size():
    rng = np.random.default_rng(0)
    n = 270_000
    quality, labels = rng.random(n), rng.integers(-1, 60, n)
    chosen = select("round_robin", quality, labels, percentage=0.05)
    assert len(chosen.indices) == 13_500 and len(np.unique(chosen.indices)) == 13_500
    # 61 groups of ~4400: rounds 0..220 are full, round 221 is cut by quality.
    assert (np.bincount(chosen.rounds[chosen.rounds >= 0]) <= 61).all()
    assert np.array_equal(np.sort(chosen.indices), np.flatnonzero(chosen.rounds >= 0))


def test_round_robin_in_random_order_within_clusters_keeps_the_cluster_balance_and_ignores_quality():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 50)
    quality = rng.normal(size=200)
    best_first = select("round_robin", quality, labels, 0.2)
    shuffled = select("round_robin", quality, labels, 0.2, seed=1, within_cluster="random")
    # Every cluster gives 10 either way (round robin's balance)...
    assert np.bincount(labels[shuffled.indices], minlength=4).tolist() == [10, 10, 10, 10]
    assert np.bincount(labels[best_first.indices], minlength=4).tolist() == [10, 10, 10, 10]
    # ...but best-first takes the top 10 of each cluster and random order does not rank by quality at all.
    assert quality[best_first.indices].min() > np.median(quality)
    assert abs(quality[shuffled.indices].mean() - quality.mean()) < 0.3
    again = select("round_robin", quality, labels, 0.2, seed=1, within_cluster="random")
    other = select("round_robin", quality, labels, 0.2, seed=2, within_cluster="random")
    assert np.array_equal(again.indices, shuffled.indices) and not np.array_equal(other.indices, shuffled.indices)
    with pytest.raises(ValueError, match="within_cluster='best' is not valid"):
        select("round_robin", quality, labels, 0.2, within_cluster="best")


def test_a_floor_per_cluster_drops_each_clusters_worst_not_a_whole_harder_cluster():
    from mygo.stages.select import within_band

    labels = np.repeat([0, 1], 10)
    quality = np.r_[np.arange(10.0), np.arange(10.0) - 100]  # cluster 1 is all "worse", as a harder task would be
    pool_wide = within_band(quality, labels, 0.5, 0.0, "pool")
    per_cluster = within_band(quality, labels, 0.5, 0.0, "cluster")
    assert set(labels[pool_wide]) == {0}  # the pool-wide floor drops the whole harder cluster
    assert np.bincount(labels[per_cluster]).tolist() == [5, 5]  # per cluster: each keeps its better half
    assert set(per_cluster) == set(range(5, 10)) | set(range(15, 20))


def test_a_ceiling_keeps_the_best_out_as_the_floor_keeps_the_worst():
    from mygo.stages.select import within_band

    labels = np.repeat([0, 1], 10)
    quality = np.r_[np.arange(10.0), np.arange(10.0) - 100]
    middle = within_band(quality, labels, 0.3, 0.3, "cluster")
    assert set(middle) == set(range(3, 7)) | set(range(13, 17))  # each cluster's middle: neither tail
    assert set(within_band(quality, labels, 0.0, 0.5, "pool")) == set(range(10, 20))  # the best half is out


def test_proportional_quotas_give_each_cluster_its_share_so_a_small_cluster_of_outliers_gets_no_more():
    labels = np.r_[np.zeros(80, dtype=int), np.ones(16, dtype=int), np.full(4, 2)]  # cluster 2: four outliers
    quality = np.random.default_rng(0).random(100)
    equal = select("round_robin", quality, labels, 0.3)
    proportional = select("round_robin", quality, labels, 0.3, cluster_quota="proportional")
    assert np.bincount(labels[equal.indices]).tolist() == [13, 13, 4]  # equal: all four outliers are in
    assert np.bincount(labels[proportional.indices]).tolist() == [24, 5, 1]
    best_of_cluster_1 = np.flatnonzero(labels == 1)[np.argsort(-quality[labels == 1])[:5]]
    assert set(best_of_cluster_1) <= set(proportional.indices)  # each cluster still gives its best first
    assert proportional.rounds[proportional.indices].max() == 23 and len(set(proportional.indices)) == 30
    with pytest.raises(ValueError, match="cluster_quota='even' is not valid"):
        select("round_robin", quality, labels, 0.3, cluster_quota="even")
