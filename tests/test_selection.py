"""Selection strategies on hand-made pools with known answers, and at the real pool size."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from mygo.analysis.selection import (
    STRATEGIES,
    Order,
    apportion_capped,
    round_robin,
    select,
    select_by_source,
    target_count,
)
from mygo.stages.selection_policy import SelectionPolicy

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
    from mygo.stages.selection_policy import within_band

    labels = np.repeat([0, 1], 10)
    quality = np.r_[np.arange(10.0), np.arange(10.0) - 100]  # cluster 1 is all "worse", as a harder task would be
    pool_wide = within_band(quality, labels, 0.5, 0.0, "pool")
    per_cluster = within_band(quality, labels, 0.5, 0.0, "cluster")
    assert set(labels[pool_wide]) == {0}  # the pool-wide floor drops the whole harder cluster
    assert np.bincount(labels[per_cluster]).tolist() == [5, 5]  # per cluster: each keeps its better half
    assert set(per_cluster) == set(range(5, 10)) | set(range(15, 20))


def test_a_ceiling_keeps_the_best_out_as_the_floor_keeps_the_worst():
    from mygo.stages.selection_policy import within_band

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


# A skewed pool: 700 cot, 250 dolly, 50 oasst1, in shuffled order, over six global clusters.
SKEWED_SOURCES = np.random.default_rng(7).permutation(np.repeat(["cot", "dolly", "oasst1"], [700, 250, 50]))
SKEWED_QUALITY = np.random.default_rng(8).random(1000)
SKEWED_LABELS = np.random.default_rng(9).integers(0, 6, 1000)


def source_counts(chosen) -> dict[str, int]:
    names, counts = np.unique(SKEWED_SOURCES[chosen.indices], return_counts=True)
    return dict(zip(names.tolist(), counts.tolist(), strict=True))


def test_a_count_budget_is_exact_and_one_of_count_or_percentage_is_required():
    chosen = select("round_robin", QUALITY, LABELS, count=5)
    assert chosen.indices.tolist() == [3, 4, 2, 7, 0]  # round 0, then round 1's best: as percentage=5/8 would
    assert np.array_equal(chosen.indices, select("round_robin", QUALITY, LABELS, 5 / 8).indices)
    with pytest.raises(ValueError, match="give one of percentage and count"):
        select("random", QUALITY, LABELS, 0.5, count=4)
    with pytest.raises(ValueError, match="give one of percentage and count"):
        select("random", QUALITY, LABELS)
    with pytest.raises(ValueError, match=r"count=9 must be in \[1, n=8\]"):
        select("random", QUALITY, LABELS, count=9)


def test_apportion_capped_gives_what_a_full_group_cannot_take_to_the_others():
    assert apportion_capped(10, np.ones(3), np.array([1, 100, 100])).tolist() == [1, 5, 4]
    assert apportion_capped(10, np.array([7.0, 2.5, 0.5]), np.array([100, 100, 100])).tolist() == [7, 3, 0]
    assert apportion_capped(12, np.ones(3), np.array([0, 3, 100])).tolist() == [0, 3, 9]
    with pytest.raises(ValueError, match="capacity 4 is less than count=5"):
        apportion_capped(5, np.ones(2), np.array([2, 2]))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_source_balance_none_without_caps_is_the_plain_strategy(strategy):
    plain = select(strategy, SKEWED_QUALITY, SKEWED_LABELS, count=100, seed=3)
    balanced = select_by_source(
        strategy, SKEWED_QUALITY, SKEWED_LABELS, SKEWED_SOURCES, 100, "none", {}, order=Order(seed=3)
    )
    assert np.array_equal(plain.indices, balanced.indices) and np.array_equal(plain.rounds, balanced.rounds)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_proportional_balance_gives_each_source_its_pool_share(strategy):
    chosen = select_by_source(
        strategy, SKEWED_QUALITY, SKEWED_LABELS, SKEWED_SOURCES, 100, "proportional", order=Order(seed=1)
    )
    assert source_counts(chosen) == {"cot": 70, "dolly": 25, "oasst1": 5}
    assert len(set(chosen.indices.tolist())) == 100 and (chosen.rounds >= 0).sum() == 100


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_equal_balance_gives_each_source_the_same_and_what_a_small_one_lacks_to_the_others(strategy):
    chosen = select_by_source(strategy, SKEWED_QUALITY, SKEWED_LABELS, SKEWED_SOURCES, 90, "equal", order=Order(seed=1))
    assert source_counts(chosen) == {"cot": 30, "dolly": 30, "oasst1": 30}
    # oasst1 has 50: of 300, the other two share the 200 it cannot give (125 each)
    chosen = select_by_source(
        strategy, SKEWED_QUALITY, SKEWED_LABELS, SKEWED_SOURCES, 300, "equal", order=Order(seed=1)
    )
    assert source_counts(chosen) == {"cot": 125, "dolly": 125, "oasst1": 50}


def test_within_a_source_the_strategy_runs_on_that_sources_rows_over_the_global_clusters():
    chosen = select_by_source("round_robin", SKEWED_QUALITY, SKEWED_LABELS, SKEWED_SOURCES, 90, "equal")
    for source in ("cot", "dolly", "oasst1"):
        rows = np.flatnonzero(source == SKEWED_SOURCES)
        alone = round_robin(SKEWED_QUALITY[rows], SKEWED_LABELS[rows], 30)
        picked = chosen.indices[SKEWED_SOURCES[chosen.indices] == source]
        assert picked.tolist() == rows[alone.indices].tolist()  # the same picks, in the same order
        assert np.array_equal(chosen.rounds[rows], alone.rounds)
    # every source's round 0 (its best in each of the six clusters) comes before any round 1
    assert set(chosen.rounds[chosen.indices[:18]].tolist()) == {0}


def test_proportional_shares_follow_the_pool_not_a_band_that_skews_them():
    band = np.r_[np.flatnonzero(SKEWED_SOURCES == "cot")[:100], np.flatnonzero(SKEWED_SOURCES != "cot")]
    chosen = select_by_source(
        "random",
        SKEWED_QUALITY[band],
        SKEWED_LABELS[band],
        SKEWED_SOURCES[band],
        100,
        "proportional",
        pool_sources=SKEWED_SOURCES,
    )
    names, counts = np.unique(SKEWED_SOURCES[band][chosen.indices], return_counts=True)
    assert dict(zip(names.tolist(), counts.tolist(), strict=True)) == {"cot": 70, "dolly": 25, "oasst1": 5}


@pytest.mark.parametrize("balance", ["none", "proportional", "equal"])
def test_source_caps_are_respected_and_the_rest_of_the_budget_goes_elsewhere(balance):
    caps = {"cot": 40, "oasst1": 0}
    chosen = select_by_source("quality_topk", SKEWED_QUALITY, SKEWED_LABELS, SKEWED_SOURCES, 150, balance, caps)
    counts = source_counts(chosen)
    assert counts.get("cot") == 40 and "oasst1" not in counts and counts["dolly"] == 110
    assert len(chosen.indices) == 150 == len(set(chosen.indices.tolist()))


def test_caps_without_balance_cut_only_the_sources_over_their_cap():
    plain = select("quality_topk", SKEWED_QUALITY, SKEWED_LABELS, count=100)
    capped = select_by_source("quality_topk", SKEWED_QUALITY, SKEWED_LABELS, SKEWED_SOURCES, 100, "none", {"cot": 50})
    assert source_counts(plain)["cot"] > 50 and source_counts(capped)["cot"] == 50
    cot = SKEWED_SOURCES == "cot"
    best_cot = np.flatnonzero(cot)[np.argsort(-SKEWED_QUALITY[cot])[:50]]
    assert set(capped.indices[SKEWED_SOURCES[capped.indices] == "cot"]) == set(best_cot)
    best_rest = np.flatnonzero(~cot)[np.argsort(-SKEWED_QUALITY[~cot])[:50]]
    assert set(capped.indices[SKEWED_SOURCES[capped.indices] != "cot"]) == set(best_rest)


def test_caps_that_cannot_fill_the_budget_and_a_bad_balance_are_errors():
    with pytest.raises(ValueError, match="the source caps allow at most 80 of the 100 samples"):
        select_by_source("random", SKEWED_QUALITY, SKEWED_LABELS, SKEWED_SOURCES, 100, "none", {"cot": 10, "dolly": 20})
    with pytest.raises(ValueError, match="balance='even' is not valid"):
        select_by_source("random", SKEWED_QUALITY, SKEWED_LABELS, SKEWED_SOURCES, 100, "even")


def band_config(**selection):
    defaults = {
        "percentage": 0.05,
        "count": None,
        "source_balance": "none",
        "source_caps": None,
        "strategy": "random",
        "quality_floor": 0.0,
        "quality_ceiling": 0.0,
        "floor_scope": "pool",
        "within_cluster": "quality",
        "cluster_quota": "equal",
        "seed": 0,
    }
    return OmegaConf.create({"selection": defaults | selection})


def test_the_stage_budget_count_wins_caps_resolve_fractions_and_bad_ones_are_named():
    def budget_of(cfg, sources):
        return SelectionPolicy.of(cfg).budget(sources)

    assert budget_of(band_config(), SKEWED_SOURCES) == (50, {})
    caps = {"cot": 0.3, "dolly": 70}  # a fraction of the selection, rounded down (37.5), and a count
    assert budget_of(band_config(count=125, source_caps=caps), SKEWED_SOURCES) == (125, {"cot": 37, "dolly": 70})
    with pytest.raises(ValueError, match=r"selection.count=1001 is larger than the pool: the score run has 1000"):
        budget_of(band_config(count=1001), SKEWED_SOURCES)
    with pytest.raises(
        ValueError,
        match=r"selection.source_caps names \['flan'\], not a source of this pool; its "
        r"sources are \['cot', 'dolly', 'oasst1'\]",
    ):
        budget_of(band_config(source_caps={"flan": 0.5, "cot": 0.5}), SKEWED_SOURCES)
    with pytest.raises(ValueError, match="selection.source_caps=.* allow at most 60 samples of this pool"):
        budget_of(band_config(count=100, source_caps={"cot": 5, "dolly": 5}), SKEWED_SOURCES)
    # a band with too few oasst1 rows for the caps is dropped (with a warning), as one too small for the budget is
    band = band_config(count=100, source_caps={"cot": 10, "dolly": 40}, quality_floor=0.5)
    chosen = SelectionPolicy.of(band).choose(SKEWED_QUALITY, SKEWED_LABELS, SKEWED_SOURCES)
    counts = source_counts(chosen)
    assert counts == {"cot": 10, "dolly": 40, "oasst1": 50}


def test_the_policy_covers_the_pool_less_the_vetoes_when_asked_and_names_a_bad_cover():
    rng = np.random.default_rng(5)
    labels = np.repeat([0, 1], 100)
    features = rng.normal(size=(200, 4)) + 3 * labels[:, None]
    quality = np.where(labels == 0, 1.0, 0.0) + 0.1 * rng.random(200)  # cluster 1 is mostly under the floor
    excluded = np.zeros(200, dtype=bool)
    excluded[190:] = True  # vetoed rows are neither picked nor represented
    settings = {
        "strategy": "round_robin",
        "within_cluster": "coverage",
        "cluster_quota": "proportional",
        "count": 20,
        "quality_floor": 0.4,
    }
    band = SelectionPolicy.of(band_config(**settings)).choose(quality, labels, excluded=excluded, features=features)
    pool = SelectionPolicy.of(band_config(**settings, cover="pool")).choose(
        quality, labels, excluded=excluded, features=features
    )
    assert np.bincount(labels[band.indices]).tolist() == [17, 3]  # the band's shares: 100 and 20 rows
    assert np.bincount(labels[pool.indices]).tolist() == [11, 9]  # the pool's less the vetoes: 100 and 90 rows
    assert not excluded[pool.indices].any() and (quality[pool.indices] >= np.quantile(quality, 0.4)).all()
    with pytest.raises(ValueError, match=r"selection.cover='all' is not valid; choose one of \['band', 'pool'\]"):
        SelectionPolicy.of(band_config(cover="all"))


@pytest.mark.parametrize("strategy", ["round_robin", "quality_topk", "random"])
def test_a_token_budget_takes_the_strategys_first_records_up_to_the_nearest_total(strategy):
    tokens = np.random.default_rng(3).integers(5, 400, len(SKEWED_QUALITY))
    policy = SelectionPolicy.of(band_config(tokens=20_000, strategy=strategy))
    chosen = policy.choose(SKEWED_QUALITY, SKEWED_LABELS, SKEWED_SOURCES, tokens=tokens)
    taken = tokens[chosen.indices]
    assert 0.99 * 20_000 <= taken.sum() <= 20_000  # records that fit, in order: a few tokens under the budget
    # The records taken are the strategy's own, in its order: for the ranking, the best that fit.
    if strategy == "quality_topk":
        ranked = np.argsort(-SKEWED_QUALITY, kind="stable")
        first = ranked[: np.searchsorted(np.cumsum(tokens[ranked]), 20_000, side="right")]
        assert set(first) <= set(chosen.indices)
    assert (chosen.rounds >= 0).sum() == len(chosen.indices)
    with pytest.raises(ValueError, match=r"selection.tokens=999999999 is more than the pool's \d+ tokens"):
        SelectionPolicy.of(band_config(tokens=999_999_999)).choose(SKEWED_QUALITY, SKEWED_LABELS, tokens=tokens)
    with pytest.raises(ValueError, match="needs each sample's tokens"):
        policy.choose(SKEWED_QUALITY, SKEWED_LABELS, SKEWED_SOURCES)
    with pytest.raises(ValueError, match="selection.count=10 and selection.tokens=100 are both set"):
        SelectionPolicy.of(band_config(count=10, tokens=100))


def test_a_target_share_aims_part_of_the_budget_and_leaves_the_rest_to_the_untargeted_strategy():
    ranked = np.random.default_rng(4).permutation(len(SKEWED_QUALITY))
    whole = SelectionPolicy.of(band_config(count=40, target_share=1.0)).choose(
        SKEWED_QUALITY, SKEWED_LABELS, ranked=ranked
    )
    assert np.array_equal(whole.indices, ranked[:40]) and whole.strategy == "target"
    half = SelectionPolicy.of(band_config(count=40, target_share=0.5, strategy="quality_topk"))
    chosen = half.choose(SKEWED_QUALITY, SKEWED_LABELS, SKEWED_SOURCES, ranked=ranked)
    assert len(chosen.indices) == 40 == len(set(chosen.indices.tolist()))
    assert np.array_equal(chosen.indices[:20], ranked[:20]) and chosen.strategy == "target+quality_topk"
    best = [row for row in np.argsort(-SKEWED_QUALITY, kind="stable") if row not in set(ranked[:20].tolist())][:20]
    assert sorted(chosen.indices[20:].tolist()) == sorted(int(row) for row in best)  # the strategy's, less the aimed
    assert (chosen.rounds >= 0).sum() == 40
    with pytest.raises(ValueError, match="selection.target_share must be in"):
        SelectionPolicy.of(band_config(target_share=1.5))
