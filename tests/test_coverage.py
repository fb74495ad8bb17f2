"""Round robin that covers (`within_cluster: coverage`): typical members over outliers, distinct texts over
repeated ones, round robin's quotas kept, and the text embedding it compares by."""

import numpy as np
import pytest

from mygo.analysis.coverage import TextAndBigrams, answer_bigrams, covering_picks, text_embedding, unit_rows
from mygo.analysis.diversity import coverage_distance, distinct_bigram_ratio
from mygo.analysis.selection import Order, apportion_capped, select, select_by_source


def blobs(rng, centres: np.ndarray, per_blob: int, spread: float = 0.05) -> np.ndarray:
    return np.concatenate([centre + spread * rng.normal(size=(per_blob, centres.shape[1])) for centre in centres])


def test_coverage_picks_one_per_region_of_a_cluster_and_covers_better_than_random_picks():
    rng = np.random.default_rng(0)
    # One cluster made of four tight regions of 40, and 8 outliers far from all of them (where broken samples sit).
    regions = np.eye(6)[:4] * 3 + 1
    outliers = rng.normal(size=(8, 6)) * 3
    features = np.concatenate([blobs(rng, regions, 40), outliers])
    labels = np.zeros(len(features), dtype=np.int64)
    rows, rounds = covering_picks(features, labels, {0: 4}, seed=0)
    assert rounds.tolist() == [0, 1, 2, 3]
    assert sorted(set((rows // 40).tolist())) == [0, 1, 2, 3]  # one per region, no outlier (rows >= 160)
    chosen = np.zeros(len(features), dtype=bool)
    chosen[rows] = True
    every = np.arange(len(features))
    randoms = []
    for seed in range(20):
        mask = np.zeros(len(features), dtype=bool)
        mask[np.random.default_rng(seed).choice(len(features), 4, replace=False)] = True
        randoms.append(coverage_distance(features, mask, every))
    assert coverage_distance(features, chosen, every) < 0.5 * np.mean(randoms)


def test_text_novelty_spreads_picks_over_texts_that_the_features_do_not_tell_apart():
    rng = np.random.default_rng(1)
    # Two clusters, alike in features within each; the texts are about three subjects, shared across clusters.
    features = np.concatenate([np.tile([1.0, 0.0], (30, 1)), np.tile([0.0, 1.0], (30, 1))])
    features += 1e-3 * rng.normal(size=features.shape)
    labels = np.repeat([0, 1], 30)
    subjects = np.tile(np.arange(3), 20)
    text = unit_rows(np.eye(3)[subjects] + 0.05 * rng.random((60, 3)))
    rows, _ = covering_picks(features, labels, {0: 2, 1: 1}, text=text, seed=0)
    assert len(set(subjects[rows].tolist())) == 3  # a subject already picked in one cluster is not picked again
    alone, _ = covering_picks(features, labels, {0: 2, 1: 1}, text=None, seed=0)
    assert np.bincount(labels[alone]).tolist() == [2, 1]


def test_bigram_novelty_prefers_answers_whose_phrasing_the_selection_lacks():
    # Three phrasings, repeated; the features tell nothing apart. Picks by bigram novelty take each phrasing once
    # before any again, and their distinct-bigram ratio beats a draw that repeats one.
    phrasings = [
        "the module reads the file and returns its lines",
        "use a context manager so the handle is closed",
        "sorting is stable so equal keys keep their order",
    ]
    answers = [phrasings[i % 3] + f" case {i}" for i in range(60)]
    bigrams = answer_bigrams(answers)
    assert len(bigrams) == 60 and (np.diff(bigrams.offsets) == 10).all()  # 9 + "case n": ten distinct bigrams
    features = np.ones((60, 2)) + 1e-3 * np.random.default_rng(0).normal(size=(60, 2))
    labels = np.repeat([0, 1], 30)
    rows, _ = covering_picks(features, labels, {0: 2, 1: 1}, text=bigrams, seed=0)
    assert sorted(row % 3 for row in rows.tolist()) == [0, 1, 2]
    repeated = [answers[0], answers[3], answers[6]]
    assert distinct_bigram_ratio([answers[r] for r in rows]) > distinct_bigram_ratio(repeated)
    subset = bigrams[np.array([4, 0])]  # rows of a subset keep their own bigrams
    assert np.array_equal(subset.hashes[: subset.offsets[1]], bigrams.hashes[bigrams.offsets[4] : bigrams.offsets[5]])
    empty = answer_bigrams(["", "word", "two words"])
    assert np.diff(empty.offsets).tolist() == [0, 1, 1]  # none, one gram of a lone word, one bigram
    picked, _ = covering_picks(np.ones((3, 2)), np.zeros(3, dtype=np.int64), {0: 3}, text=empty, seed=0)
    assert sorted(picked.tolist()) == [0, 1, 2]


def test_both_novelties_spread_picks_over_subjects_and_phrasings():
    # Four answers per (subject, phrasing): the embedding tells subjects apart, the bigrams phrasings. Two picks by
    # both novelties differ in both, where either novelty alone is blind to the other difference.
    subjects, phrasings = np.repeat(np.arange(2), 8), np.tile(np.repeat(np.arange(2), 4), 2)
    words = [["alpha beta gamma delta", "one two three four"], ["zeta eta theta iota", "five six seven eight"]]
    answers = [
        f"{words[p][0]} {words[p][1]} {i}" if s == 0 else f"{words[p][1]} {words[p][0]} {i}"
        for i, (s, p) in enumerate(zip(subjects, phrasings, strict=True))
    ]
    text = unit_rows(np.eye(2)[subjects] + 0.01 * np.random.default_rng(0).random((16, 2)))
    both = TextAndBigrams(text, answer_bigrams(answers))
    assert len(both[np.arange(4)]) == 4
    features, labels = np.ones((16, 2)), np.zeros(16, dtype=np.int64)
    rows, _ = covering_picks(features, labels, {0: 2}, text=both, seed=0)
    assert sorted(subjects[rows].tolist()) == [0, 1] and sorted(phrasings[rows].tolist()) == [0, 1]


def test_select_by_coverage_keeps_round_robins_quotas_is_seeded_and_needs_the_features():
    rng = np.random.default_rng(2)
    labels = np.repeat([0, 1, 2, -1], [60, 30, 20, 10])
    features = rng.normal(size=(len(labels), 4)) + labels[:, None]
    quality = rng.random(len(labels))
    text = text_embedding([f"word{i % 7} topic{i % 5} shared" for i in range(len(labels))])
    how = {"within_cluster": "coverage", "features": features, "text": text}
    proportional = select("round_robin", quality, labels, count=24, cluster_quota="proportional", seed=3, **how)
    groups = np.where(labels < 0, 3, labels)
    sizes = np.bincount(groups)
    expected = apportion_capped(24, sizes, sizes).tolist()
    assert np.bincount(groups[proportional.indices], minlength=4).tolist() == expected
    equal = select("round_robin", quality, labels, count=24, cluster_quota="equal", seed=3, **how)
    assert np.bincount(groups[equal.indices], minlength=4).tolist() == [6, 6, 6, 6]
    assert (equal.rounds[equal.indices] == np.repeat(np.arange(6), 4)).all()  # clusters by id each round, noise last
    again = select("round_robin", quality, labels, count=24, cluster_quota="equal", seed=3, **how)
    assert np.array_equal(again.indices, equal.indices)
    # Within sources, the per-row arrays follow the rows of each source.
    sources = np.where(np.arange(len(labels)) % 2, "a", "b")
    split = select_by_source("round_robin", quality, labels, sources, 20, "equal", order=Order(seed=3, **how))
    assert np.bincount((sources[split.indices] == "a").astype(int)).tolist() == [10, 10]
    with pytest.raises(ValueError, match="within_cluster='coverage' needs the clustering's features"):
        select("round_robin", quality, labels, count=24, within_cluster="coverage")


def test_covering_the_pool_gives_a_thinned_cluster_and_region_their_share_from_the_band():
    rng = np.random.default_rng(4)
    # Two clusters of 100, each of two 50-row regions; the band keeps 55 of cluster 0 (all of region A, 5 of region
    # B) and 20 of cluster 1.
    centres = np.array([[3.0, 0, 0, 1], [3.0, 0, 1, 0], [0, 3.0, 0, 1], [0, 3.0, 1, 0]])
    features = blobs(rng, centres, 50)
    labels = np.repeat([0, 1], 100)
    band = np.concatenate([np.arange(0, 55), np.arange(100, 110), np.arange(150, 160)])
    how = {"within_cluster": "coverage", "cluster_quota": "proportional", "seed": 0, "features": features[band]}
    alone = select("round_robin", np.zeros(len(band)), labels[band], count=20, **how)
    assert np.bincount(labels[band][alone.indices]).tolist() == [15, 5]  # the band's shares
    ground = (features, np.arange(len(labels)), labels)
    pool = select("round_robin", np.zeros(len(band)), labels[band], count=20, ground=ground, **how)
    assert np.bincount(labels[band][pool.indices]).tolist() == [10, 10]  # the pool's shares
    # Within a cluster, a region that the band thinned is covered as the pool holds it: half the picks.
    inside = band[band < 100]
    how = {"within_cluster": "coverage", "seed": 0, "features": features[inside]}
    zeros = np.zeros(len(inside), dtype=np.int64)
    alone = select("round_robin", np.zeros(len(inside)), zeros, count=4, **how)
    ground = (features, np.arange(100), np.zeros(100, dtype=np.int64))
    pool = select("round_robin", np.zeros(len(inside)), zeros, count=4, ground=ground, **how)
    assert np.bincount(inside[pool.indices] // 50, minlength=2).tolist() == [2, 2]
    assert np.bincount(inside[alone.indices] // 50, minlength=2)[1] < 2


def test_text_embedding_puts_texts_on_one_subject_together_and_survives_texts_without_words():
    texts = [
        "json dumps serialises a dict to a json string",
        "json loads parses a json string into a dict",
        "the socket module opens network connections",
        "a socket listens on a port for network connections",
    ]
    embedding = text_embedding(texts)
    assert np.allclose(np.linalg.norm(embedding, axis=1), 1, atol=1e-5)
    similarity = embedding @ embedding.T
    assert similarity[0, 1] > similarity[0, 2] and similarity[2, 3] > similarity[1, 3]
    assert text_embedding(["", "   ", ""]).shape[0] == 3
    assert text_embedding([]).shape[0] == 0


def test_the_large_pool_path_keeps_the_quotas_and_spreads_picks_over_texts_within_cells(monkeypatch):
    from mygo.analysis import coverage

    rng = np.random.default_rng(2)
    # Two clusters alike in features; the texts are about 8 subjects shared across them, 600 rows each.
    features = np.concatenate([np.tile([1.0, 0.0], (600, 1)), np.tile([0.0, 1.0], (600, 1))])
    features += 1e-3 * rng.normal(size=features.shape)
    labels = np.repeat([0, 1], 600)
    subjects = rng.integers(0, 8, len(labels))
    text = unit_rows(np.eye(8)[subjects] + 0.05 * rng.random((len(labels), 8)))
    monkeypatch.setattr(coverage, "EXACT_ROWS", 100)  # the large-pool path on a small pool
    monkeypatch.setattr(coverage, "CELL_PICKS", 2)  # 8 picks: 4 text cells
    rows, rounds = covering_picks(features, labels, {0: 4, 1: 4}, text=text, seed=0)
    assert len(set(rows.tolist())) == 8 and np.bincount(labels[rows]).tolist() == [4, 4]
    assert rounds.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert len(set(subjects[rows].tolist())) >= 7  # nearly one per subject: a subject picked once is not new
    again, _ = covering_picks(features, labels, {0: 4, 1: 4}, text=text, seed=0)
    assert np.array_equal(again, rows)  # seeded
    cells = coverage.text_cells(text, 8, seed=0)
    assert len(np.unique(cells)) == 8 and all(len(set(subjects[cells == c])) == 1 for c in np.unique(cells))
    # Without text, only the quotas and coverage: every group gives its quota, no row twice.
    alone, _ = covering_picks(features, labels, {0: 300, 1: 2}, seed=0)
    assert np.bincount(labels[alone]).tolist() == [300, 2] and len(set(alone.tolist())) == 302
