"""Diversity of a selection: the measures on arrays with known answers, and every select run's record of them
(its own selection beside random and quality top-k ones of the same size) on a real scored tiny pool."""

import json
import logging

import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.neighbors import NearestNeighbors

from mygo.analysis.diversity import (
    cluster_entropy_ratio,
    coverage_distance,
    coverage_rows,
    distinct_bigram_ratio,
    diversity_metrics,
    mix_distance,
    topic_coverage,
)
from mygo.config import load_config
from mygo.stages.score import run_score
from mygo.stages.select import run_select
from mygo.tracking.diversity import SKIPPED_TAG
from mygo.tracking.handoffs import router_data_of
from mygo.tracking.runs import get_run
from mygo.workflows.controls import control_overrides
from tests.helpers import artifact_paths, scored_copy, use_store

MEASURES = ("cluster_entropy", "coverage_distance", "source_mix_distance", "distinct_bigrams")


# ------------------------------------------------------------------------------------------- the measures
def test_cluster_entropy_is_relative_to_the_pool():
    labels = np.array([0, 0, 0, 1] * 10)
    even = np.zeros(40, dtype=bool)
    even[[0, 3, 4, 7]] = True  # two of each cluster: more even than the pool's 3:1
    assert cluster_entropy_ratio(labels, even) == pytest.approx(
        np.log(2) / -(0.75 * np.log(0.75) + 0.25 * np.log(0.25))
    )
    assert cluster_entropy_ratio(labels, labels == 0) == 0.0  # one cluster only
    assert cluster_entropy_ratio(labels, np.ones(40, dtype=bool)) == pytest.approx(1.0)
    assert cluster_entropy_ratio(np.zeros(40, dtype=int), even) is None  # a pool of one cluster has no spread


def test_coverage_distance_is_the_mean_cosine_distance_to_the_nearest_selected_sample():
    axes = np.eye(3, dtype=np.float32) * np.array([[1.0], [5.0], [2.0]], dtype=np.float32)  # lengths do not matter
    first = np.array([True, False, False])
    assert coverage_distance(axes, first, np.arange(3)) == pytest.approx(2 / 3)  # 0, 1, 1
    assert coverage_distance(axes, np.ones(3, dtype=bool), np.arange(3)) == pytest.approx(0.0)
    # Against scikit-learn's exact cosine neighbours, on more rows than one block, [n, layers, experts] features.
    rng = np.random.default_rng(0)
    features = rng.standard_normal((5000, 4, 8)).astype(np.float32)
    selected = rng.random(5000) < 0.05
    rows = coverage_rows(5000, seed=1, size=3000)
    flat = features.reshape(5000, -1)
    distances, _ = NearestNeighbors(n_neighbors=1, metric="cosine").fit(flat[selected]).kneighbors(flat[rows])
    assert coverage_distance(features, selected, rows) == pytest.approx(distances.mean(), abs=1e-5)


def test_coverage_rows_are_all_or_a_fixed_seeded_sample():
    np.testing.assert_array_equal(coverage_rows(50, seed=0, size=100), np.arange(50))
    sample = coverage_rows(1000, seed=3, size=100)
    assert len(np.unique(sample)) == 100 and (np.diff(sample) > 0).all()
    np.testing.assert_array_equal(sample, coverage_rows(1000, seed=3, size=100))


def test_source_mix_distance_topic_coverage_and_distinct_bigrams():
    sources = np.array(["cot", "dolly"] * 4)
    assert mix_distance(sources, np.array([True, True, False, False] * 2)) == 0.0
    assert mix_distance(sources, sources == "cot") == pytest.approx(0.5)
    topics = ["json", "json", "re", None, float("nan"), "os"]
    assert topic_coverage(topics, np.array([1, 1, 0, 1, 1, 0], dtype=bool)) == pytest.approx(1 / 3)
    assert topic_coverage([None, float("nan")], np.ones(2, dtype=bool)) is None
    assert distinct_bigram_ratio(["A b a b", "b a"]) == pytest.approx(2 / 4)  # (a b) (b a) (a b) | (b a)
    assert distinct_bigram_ratio(["one", ""]) is None


def test_diversity_metrics_leave_out_what_is_undefined_and_refuse_one_sample():
    labels = np.array([0, 1, 0, 1])
    features = np.eye(4, dtype=np.float32)
    sources = np.array(["cot", "cot", "cot", "dolly"])
    selected = np.array([True, True, False, False])
    metrics = diversity_metrics(selected, labels, features, np.arange(4), sources, ["a b c"])
    assert set(metrics) == {*MEASURES, "source_share/cot", "source_share/dolly"}  # no topics given
    assert metrics["source_share/dolly"] == 0.0 and metrics["distinct_bigrams"] == 1.0
    with pytest.raises(ValueError, match="a selection of 1 sample"):
        diversity_metrics(np.array([True, False, False, False]), labels, features, np.arange(4), sources, [])


# ------------------------------------------------------------------------------------ through the stages
@pytest.fixture(scope="module")
def scored(scored_template, tmp_path_factory):
    """The session's scored store (demo pool, topics known), plus a copy of that pool without topics scored."""
    store = scored_copy(scored_template, tmp_path_factory)
    root, warmup = store["root"], store["warmup_run"]
    with pytest.MonkeyPatch.context() as patch:
        use_store(store["uri"], patch)
        untopical = tmp_path_factory.mktemp("untopical")
        for path in sorted((root / "cache" / "demo_pool").glob("*/*/*.jsonl")):
            records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
            (untopical / path.parent.name).mkdir(parents=True)
            lines = [json.dumps({k: v for k, v in r.items() if k != "mygo_topic"}) + "\n" for r in records]
            (untopical / path.parent.name / path.name).write_text("".join(lines), encoding="utf-8")
        overrides = [f"upstream.warmup_run={warmup}", f"score.output_dir={root / 'score'}"]
        no_topics = run_score(load_config("score", [*overrides, f"upstream.dataset_overrides='data_dir={untopical}'"]))
    return store | {"no_topics_run": no_topics}


def selected_with(scored, *overrides: str, score_run: str | None = None):
    base = [f"upstream.score_run={score_run or scored['score_run']}", f"output_dir={scored['root'] / 'select'}"]
    cfg = load_config("select", [*base, "selection.percentage=0.1", "clustering.kmeans.k=4", *overrides])
    return get_run(run_select(cfg))


def test_every_select_run_measures_its_selection_beside_random_and_topk(store):
    run = selected_with(store)
    metrics = run.data.metrics
    for measure in (*MEASURES, "topic_coverage", "source_share/cot"):
        for suffix in ("", "/random", "/topk"):
            assert f"diversity/{measure}{suffix}" in metrics
    assert "plots/diversity.png" in artifact_paths(run.info.run_id)
    assert sum(v for k, v in metrics.items() if k.startswith("diversity/source_share/") and k.count("/") == 2) == (
        pytest.approx(1.0)
    )

    # The logged topic coverage is what the selection's records say.
    table = pd.read_parquet(
        mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="selection/samples.parquet")
    )
    topics = router_data_of(get_run(store["score_run"])).index["mygo_topic"]
    assert (table["id"] == router_data_of(get_run(store["score_run"])).index["id"]).all()
    expected = topics[table["selected"].to_numpy()].nunique() / topics.nunique()
    assert metrics["diversity/topic_coverage"] == pytest.approx(expected)

    # The baselines are the random and quality top-k strategies at the same size and seed over the whole pool
    # (no quality band, as the control arms), measured alike.
    for suffix, arm in (("random", "random"), ("topk", "quality_topk")):
        baseline = selected_with(store, *control_overrides(arm, None)).data.metrics
        for measure in (*MEASURES, "topic_coverage"):
            assert metrics[f"diversity/{measure}/{suffix}"] == pytest.approx(baseline[f"diversity/{measure}"])


def test_coverage_is_averaged_over_the_configured_fixed_sample(store):
    full = selected_with(store).data.metrics["diversity/coverage_distance"]
    sampled = [selected_with(store, "diversity.coverage_sample=7").data.metrics for _ in range(2)]
    assert sampled[0]["diversity/coverage_distance"] == sampled[1]["diversity/coverage_distance"] != full


def test_a_pool_without_topics_logs_no_topic_metrics(store):
    metrics = selected_with(store, score_run=store["no_topics_run"]).data.metrics
    assert "diversity/coverage_distance" in metrics and "diversity/distinct_bigrams/topk" in metrics
    assert not [key for key in metrics if "topic" in key]


def test_a_selection_of_one_sample_logs_no_diversity_and_says_why(store, caplog):
    with caplog.at_level(logging.WARNING, logger="mygo.tracking.diversity"):
        run = selected_with(store, "selection.percentage=0.001")
    assert run.data.metrics["selection/num_selected"] == 1
    assert not [key for key in run.data.metrics if key.startswith("diversity/")]
    assert "1 sample(s); diversity needs at least 2" in run.data.tags[SKIPPED_TAG]
    assert "diversity needs at least 2" in caplog.text
    assert "plots/diversity.png" not in artifact_paths(run.info.run_id)
