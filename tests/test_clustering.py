"""Clustering on small real data with a known structure: well-separated blobs on the unit sphere."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score, silhouette_score

from mygo.analysis.clustering import (
    HDBSCAN_FIT_SAMPLE,
    HDBSCAN_PCA_COMPONENTS,
    assign_to_clusters,
    available_backends,
    available_hdbscan_backends,
    choose_elbow,
    core,
    elbow_ks,
    hdbscan,
    kmeans,
    prepare_features,
    silhouette,
    tune_hdbscan,
)
from mygo.analysis.clustering.centroids import assign_to_centres
from mygo.analysis.score_shards import load_router_data, plan_shards, write_index, write_shard

BLOBS = 8


def blobs(n: int = 1200, centers: int = BLOBS, dims: int = 32, low: float = -10) -> tuple[np.ndarray, np.ndarray]:
    x, truth = make_blobs(n, dims, centers=centers, cluster_std=1.0, center_box=(low, 10), random_state=0)
    return prepare_features(x), truth


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return blobs()


def test_prepare_features_flattens_and_normalises_rows():
    features = np.random.default_rng(0).normal(size=(50, 2, 8)) * 5
    x = prepare_features(features)
    assert x.shape == (50, 16) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1, atol=1e-6)
    np.testing.assert_allclose(x[3], features[3].ravel() / np.linalg.norm(features[3]), atol=1e-6)
    assert prepare_features(features[:, 0]).shape == (50, 8)


def test_prepare_features_keeps_zero_rows_and_rejects_bad_input():
    features = np.ones((4, 3))
    features[1] = 0
    assert not prepare_features(features)[1].any()
    with pytest.raises(ValueError, match="NaN"):
        prepare_features(np.full((4, 3), np.nan))
    with pytest.raises(ValueError, match="features must be"):
        prepare_features(np.ones(5))


def test_prepare_features_pca_reduces_then_renormalises():
    features = np.random.default_rng(0).normal(size=(200, 4, 16))
    x = prepare_features(features, pca_components=10, seed=0)
    assert x.shape == (200, 10) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1, atol=1e-5)
    assert np.array_equal(x, prepare_features(features, pca_components=10, seed=0))
    with pytest.raises(ValueError, match="pca_components=100"):
        prepare_features(features, pca_components=100)


def test_prepare_features_reads_sharded_features_as_it_reads_an_array(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    features = (rng.normal(size=(300, 4, 16)) * 3).astype(np.float16)
    for number, rows in enumerate(plan_shards(rng.integers(1, 99, 300), 64)):
        write_shard(tmp_path, number, rows, np.zeros((len(rows), 4)), features[rows])
    write_index(tmp_path, pd.DataFrame({"id": [f"s{i}" for i in range(300)], "dataset": "cot"}))
    sharded = load_router_data(tmp_path).features
    assert np.array_equal(prepare_features(sharded), prepare_features(features))
    assert np.array_equal(prepare_features(sharded, 8, seed=1), prepare_features(features, 8, seed=1))
    # Above PCA_FIT_ROWS the PCA is fitted on a sample and the rows projected a shard at a time.
    monkeypatch.setattr(core, "PCA_FIT_ROWS", 100)
    sampled = prepare_features(sharded, 8, seed=1)
    assert sampled.shape == (300, 8) and sampled.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(sampled, axis=1), 1, atol=1e-5)
    assert np.array_equal(sampled, prepare_features(features, 8, seed=1))  # the same on an array


def test_prepare_features_that_would_not_fit_in_memory_name_the_knob():
    class Huge:  # the shape of ten billion samples' features: refused before anything is read
        shape = (10**10, 16, 64)

        def __len__(self) -> int:
            return self.shape[0]

    with pytest.raises(ValueError, match="clustering.pca_components"):
        prepare_features(Huge())


def test_kmeans_above_fit_sample_fits_a_sample_and_assigns_every_row(data):
    x, truth = data
    full = kmeans(x, k=BLOBS, auto_k=False, seed=0, elbow_sample=300)
    sampled = kmeans(x, k=BLOBS, auto_k=False, seed=0, elbow_sample=300, fit_sample=600)
    assert sampled.params["fit_sample_size"] == 600 and full.params["fit_sample_size"] == len(x)
    assert adjusted_rand_score(truth, sampled.labels) > 0.99
    assert adjusted_rand_score(full.labels, sampled.labels) > 0.99
    centres = np.stack([x[sampled.labels == c].mean(axis=0) for c in range(BLOBS)])
    labels, inertia = assign_to_centres(x, centres.astype(np.float32), block=100)
    brute = ((x[:, None, :] - centres[None]) ** 2).sum(axis=2)
    assert np.array_equal(labels, brute.argmin(axis=1))
    assert inertia == pytest.approx(brute.min(axis=1).sum(), rel=1e-4)
    assert sampled.inertia == pytest.approx(full.inertia, rel=0.01)
    # At or under fit_sample rows, the fit is the one on all rows.
    assert np.array_equal(
        kmeans(x, k=BLOBS, auto_k=False, seed=0, elbow_sample=300, fit_sample=len(x)).labels, full.labels
    )


def test_kmeans_with_fixed_k_recovers_the_blobs(data):
    x, truth = data
    result = kmeans(x, k=BLOBS, auto_k=False, backend="sklearn")
    assert adjusted_rand_score(truth, result.labels) > 0.95
    assert result.labels.dtype == np.int64 and set(result.labels) == set(range(BLOBS))
    assert (result.method, result.backend, result.chosen_k, result.num_clusters) == ("kmeans", "sklearn", BLOBS, BLOBS)
    assert result.elbow == [] and result.inertia > 0


def test_kmeans_inertia_matches_scikit_learn(data):
    x, _ = data
    ours = kmeans(x, k=5, auto_k=False, backend="sklearn", elbow_sample=400).inertia
    reference = KMeans(5, n_init=1, random_state=0).fit(x).inertia_
    assert ours == pytest.approx(reference, rel=0.01) or ours < reference


@pytest.mark.parametrize("backend", [name for name in ("torch", "faiss") if name in available_backends()])
def test_other_backends_agree_with_sklearn(data, backend):
    x, truth = data
    result = kmeans(x, k=BLOBS, auto_k=False, backend=backend, elbow_sample=500)
    reference = kmeans(x, k=BLOBS, auto_k=False, backend="sklearn", elbow_sample=500)
    assert result.backend == backend and adjusted_rand_score(truth, result.labels) > 0.95
    assert result.inertia == pytest.approx(reference.inertia, rel=1e-3)


def test_auto_k_finds_the_number_of_blobs(data):
    x, _ = data
    result = kmeans(x, k_range=(4, 14), elbow_points=6, backend="sklearn")
    ks = [k for k, _ in result.elbow]
    assert ks == sorted(set(ks)) and ks[0] == 4 and ks[-1] == 14 and len(ks) == 6
    assert abs(result.chosen_k - BLOBS) <= 1
    assert result.params["elbow_ks"] == ks


def test_auto_k_on_a_subsample_equals_the_fixed_k_fit_at_the_chosen_k(data):
    x, _ = data
    auto = kmeans(x, k_range=(4, 12), elbow_sample=600, seed=3, backend="sklearn")
    fixed = kmeans(x, k=auto.chosen_k, auto_k=False, elbow_sample=600, seed=3, backend="sklearn")
    assert auto.params["elbow_sample_size"] == 600
    assert np.array_equal(auto.labels, fixed.labels) and auto.inertia == fixed.inertia


def test_kmeans_is_deterministic_for_a_seed(data):
    x, _ = data
    runs = [kmeans(x, k_range=(2, 12), elbow_sample=500, seed=7).labels for _ in range(2)]
    assert np.array_equal(*runs)


def test_elbow_grid_is_spread_geometrically_and_covers_the_range():
    assert elbow_ks((10, 100), 10) == [10, 13, 17, 22, 28, 36, 46, 60, 77, 100]
    assert elbow_ks((2, 8), 10) == [2, 3, 4, 5, 6, 7, 8]


def test_choose_elbow_picks_the_knee():
    ks = [2, 4, 6, 8, 10, 12]
    assert choose_elbow(ks, [100, 60, 20, 18, 16, 14]) == 6
    assert choose_elbow(ks[::-1], [14, 16, 18, 20, 60, 100]) == 6  # order of the points does not matter
    assert choose_elbow(ks, [5, 5, 5, 5, 5, 5]) == 2
    with pytest.raises(ValueError, match=">= 3"):
        choose_elbow([2, 3], [1.0, 0.5])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(k=5000, auto_k=False), "k=5000 must be in"),
        (dict(k=1, auto_k=False), "k=1 must be in"),
        (dict(auto_k=False), "k is required"),
        (dict(k=5), "auto_k=False to fix k"),
        (dict(k_range=(20, 10)), r"k_range=\[20, 10\] is reversed"),
        (dict(k_range=(1, 10)), "low must be >= 2"),
        (dict(k_range=(4, 5)), "at least 3 values"),
        (dict(k_range=(10, 5000)), "reduce k_range"),
        (dict(elbow_sample=50), "elbow_sample=50"),
        (dict(elbow_points=2), "elbow_points=2"),
        (dict(max_iters=0), "max_iters=0"),
        (dict(backend="gpu"), "backend='gpu' is not valid"),
    ],
)
def test_kmeans_rejects_bad_settings_by_name(data, kwargs, message):
    with pytest.raises(ValueError, match=message):
        kmeans(data[0], **kwargs)


def test_unavailable_backend_is_an_error_not_a_fallback(data):
    missing = [name for name in ("cuml", "faiss") if name not in available_backends()]
    if not missing:
        pytest.skip("every optional backend is installed")
    with pytest.raises(ValueError, match="not available here"):
        kmeans(data[0], k=3, auto_k=False, backend=missing[0])


def test_available_backends_always_has_sklearn():
    assert "sklearn" in available_backends()


def with_outliers(x: np.ndarray, count: int = 6) -> np.ndarray:
    far = prepare_features(np.random.default_rng(1).normal(size=(count, x.shape[1])))
    return np.concatenate([x, far])


def blobs_in_one_orthant() -> tuple[np.ndarray, np.ndarray]:
    """Blobs sharing a common direction (as router logits do), so random directions are far from all of them."""
    return blobs(n=800, centers=4, low=0)


def test_hdbscan_finds_the_blobs_and_marks_outliers_as_noise():
    x, truth = blobs_in_one_orthant()
    result = hdbscan(with_outliers(x), min_cluster_size=20, backend="sklearn")
    assert (result.method, result.backend, result.chosen_k, result.inertia) == ("hdbscan", "sklearn", None, None)
    assert result.num_clusters == 4 and (result.labels[-6:] == -1).all()
    assert adjusted_rand_score(truth, result.labels[:-6]) > 0.95
    cosine = hdbscan(with_outliers(x), min_cluster_size=20, metric="cosine")
    assert np.array_equal(cosine.labels, result.labels)  # unit rows: the same neighbours, the same tree


def test_hdbscan_auto_tune_records_its_grid_and_choice():
    x, _ = blobs_in_one_orthant()
    result = hdbscan(with_outliers(x), min_cluster_size=20, min_samples=10, auto_tune=True)
    tuning = result.params["auto_tune"]
    assert len(tuning["grid"]) == 9 and tuning["sample_size"] == 806 and not tuning["fallback"]
    assert (result.params["min_cluster_size"], result.params["min_samples"]) == (
        tuning["min_cluster_size"],
        tuning["min_samples"],
    )
    best = max(trial["score"] for trial in tuning["grid"] if trial["score"] is not None)
    assert tuning["score"] == best and result.num_clusters == 4


def test_hdbscan_auto_tune_on_a_subsample_scales_its_grid_and_stays_within_the_data():
    x, _ = blobs(n=2000, centers=4, low=0)
    # On a quarter of the rows, min_cluster_size 80 and min_samples 40 are tried as 20 and 10 (and x0.5, x2).
    tuning = tune_hdbscan(x, 80, 40, seed=0, backend="sklearn", sample_size=500)
    assert tuning["sample_size"] == 500 and tuning["num_clusters"] == 4
    assert {trial["min_cluster_size"] for trial in tuning["grid"]} == {40, 80, 160}
    tiny = hdbscan(x[:30], min_cluster_size=10, min_samples=20, auto_tune=True)  # 2 x 20 > 30 rows
    assert all(trial["min_samples"] <= 30 for trial in tiny.params["auto_tune"]["grid"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(metric="manhattan"), "metric='manhattan' is not valid"),
        (dict(backend="faiss"), "backend='faiss' is not valid"),
        (dict(min_cluster_size=1), "min_cluster_size=1"),
        (dict(min_samples=0), "min_samples=0"),
    ],
)
def test_hdbscan_rejects_bad_settings_by_name(data, kwargs, message):
    with pytest.raises(ValueError, match=message):
        hdbscan(data[0], **kwargs)


def test_silhouette_is_bounded_ignores_noise_and_needs_two_clusters(data):
    x, truth = data
    score = silhouette(x, truth, sample_size=500)
    assert -1 <= score <= 1 and score > 0.5
    assert silhouette(x, truth, sample_size=500) == score  # seeded sample
    noisy = truth.copy()
    noisy[:100] = -1
    assert len(x) - 100 <= 5000  # the default sample takes every clustered row
    clustered = noisy >= 0
    assert silhouette(x, noisy) == pytest.approx(silhouette_score(x[clustered], noisy[clustered], metric="cosine"))
    assert silhouette(x, noisy) != pytest.approx(silhouette_score(x, noisy, metric="cosine"))  # noise left out
    assert silhouette(x, np.zeros(len(x), dtype=int)) is None
    assert silhouette(x, np.where(truth == 0, 0, -1)) is None


def test_fit_k_range_clamps_to_what_the_pool_allows_and_keeps_a_range_that_fits():
    from mygo.analysis.clustering import fit_k_range

    assert fit_k_range((10, 100), 4000, 20000) == (10, 100)
    assert fit_k_range((10, 100), 84, 20000) == (10, 42)
    assert fit_k_range((40, 100), 84, 20000) == (40, 42)
    assert fit_k_range((50, 100), 84, 20000) == (40, 42)  # three values of k left for the elbow
    assert fit_k_range((10, 100), 4000, 50) == (10, 50)  # the elbow is fitted on its sample
    assert fit_k_range((20, 10), 84, 20000) == (20, 10)  # reversed: kmeans names it


# ----------------------------------------------------------------------------------------------- HDBSCAN at scale


def planted(n: int = 3000, centers: int = 6, dims: int = 64, outliers: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Unit-norm blobs sharing a direction, plus random-direction outliers (truth -1) at the end."""
    x, truth = blobs(n=n, centers=centers, dims=dims, low=0)
    far = prepare_features(np.random.default_rng(2).normal(size=(outliers, dims)))
    return np.concatenate([x, far]), np.concatenate([truth, np.full(outliers, -1)])


def test_hdbscan_reduces_wide_features_by_default_and_keeps_them_when_told():
    x, truth = planted(n=1200, dims=64)
    reduced = hdbscan(x, min_cluster_size=20)
    assert (reduced.params["input_dims"], reduced.params["dims"]) == (64, HDBSCAN_PCA_COMPONENTS)
    assert adjusted_rand_score(truth, reduced.labels) > 0.95 and (reduced.labels[-30:] == -1).all()
    kept = hdbscan(x, min_cluster_size=20, pca_components=None)
    assert kept.params["dims"] == 64 and adjusted_rand_score(truth, kept.labels) > 0.95
    narrow = hdbscan(x[:, :8], min_cluster_size=20)  # already narrower than the default: left as it is
    assert narrow.params["dims"] == 8


def test_hdbscan_on_a_sample_assigns_the_rest_as_a_full_fit_would():
    x, truth = planted()
    sampled = hdbscan(x, min_cluster_size=40, fit_sample=600, seed=1)
    full = hdbscan(x, min_cluster_size=40, fit_sample=None)
    assert sampled.params["fit_sample_size"] == 600 and full.params["fit_sample_size"] == len(x)
    assert sampled.num_clusters == full.num_clusters == 6
    assert adjusted_rand_score(truth, sampled.labels) > 0.95 and adjusted_rand_score(full.labels, sampled.labels) > 0.95
    assert (sampled.labels[-30:] == -1).mean() >= 0.9  # outliers outside the sample are still noise


def test_assign_to_clusters_joins_dense_rows_and_leaves_far_ones_as_noise():
    rng = np.random.default_rng(0)
    fitted = np.concatenate([rng.normal(0, 0.1, (50, 2)), rng.normal(5, 0.1, (50, 2)), [[2.5, -3.0]]])
    labels = np.array([0] * 50 + [1] * 50 + [-1])
    new = np.array([[0.0, 0.05], [5.02, 4.98], [2.5, -3.0], [20.0, 20.0]])
    assert assign_to_clusters(new, fitted, labels, min_samples=5).tolist() == [0, 1, -1, -1]
    assert (assign_to_clusters(new, fitted, np.full(101, -1), min_samples=5) == -1).all()


def test_hdbscan_backend_auto_is_sklearn_on_cpu_and_a_missing_backend_is_an_error():
    x, _ = planted(n=600)
    assert "sklearn" in available_hdbscan_backends()
    if "cuml" not in available_hdbscan_backends():
        assert hdbscan(x, min_cluster_size=20).backend == "sklearn"
        with pytest.raises(ValueError, match="backend='cuml' is not available here"):
            hdbscan(x, min_cluster_size=20, backend="cuml")
    with pytest.raises(ValueError, match="backend='torch' is not valid"):
        hdbscan(x, min_cluster_size=20, backend="torch")


@pytest.mark.skipif("fast_hdbscan" not in available_hdbscan_backends(), reason="fast_hdbscan is not installed")
def test_fast_hdbscan_backend_finds_the_same_clusters():
    x, truth = planted(n=1500)
    result = hdbscan(x, min_cluster_size=30, backend="fast_hdbscan")
    reference = hdbscan(x, min_cluster_size=30, backend="sklearn")
    assert result.backend == "fast_hdbscan" and adjusted_rand_score(reference.labels, result.labels) > 0.95
    assert adjusted_rand_score(truth, result.labels) > 0.95
    if importlib.util.find_spec("pynndescent") is None:  # above 30 dims fast_hdbscan needs it
        with pytest.raises(ValueError, match="needs pynndescent"):
            hdbscan(x, min_cluster_size=30, backend="fast_hdbscan", pca_components=None)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [(dict(pca_components=0), "pca_components=0"), (dict(fit_sample=1), "fit_sample=1")],
)
def test_hdbscan_rejects_bad_scaling_settings_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        hdbscan(planted(n=300)[0], **kwargs)


@pytest.mark.parametrize(("size", "degenerate"), [(20, 0.0), (2000, 1.0)])
def test_a_degenerate_clustering_is_logged_as_metrics_and_a_tag(tracking_store, size, degenerate):
    import mlflow

    from mygo.stages.select import warn_if_degenerate

    x, _ = planted(n=1200, centers=4)
    result = hdbscan(x, min_cluster_size=size)
    with mlflow.start_run() as run:
        warn_if_degenerate(result, len(x))
    logged = mlflow.get_run(run.info.run_id).data
    assert logged.metrics["clustering/degenerate"] == degenerate
    assert logged.metrics["clustering/noise_fraction"] == pytest.approx((result.labels < 0).mean())
    assert ("mygo.clustering_degenerate" in logged.tags) == bool(degenerate)


def test_hdbscan_clamps_a_min_cluster_size_larger_than_the_pool(caplog):
    x, _ = blobs(n=100, centers=4, low=0)
    result = hdbscan(x, min_cluster_size=400, min_samples=500)
    assert result.num_clusters <= 1 and "clamped to n=100" in caplog.text


def test_sweep_spaces_draw_clustering_only_within_the_benchmarked_budget():
    """HDBSCAN only with its reduction (PCA to <= 16 dims, a fit on <= 20k rows) and k-means with k <= 100:
    the settings benchmarks/README.md times at 270k rows, so every trial's select fits the stated budget."""
    from mygo.config import load_config
    from mygo.workflows.sweep import load_space

    defaults = load_config("select", []).clustering.hdbscan
    assert 1 <= defaults.pca_components <= HDBSCAN_PCA_COMPONENTS and 2 <= defaults.fit_sample <= HDBSCAN_FIT_SAMPLE
    bounds = {
        "select.clustering.hdbscan.pca_components": HDBSCAN_PCA_COMPONENTS,
        "select.clustering.hdbscan.fit_sample": HDBSCAN_FIT_SAMPLE,
        "select.clustering.pca_components": None,  # the global reduction may be drawn, never switched off
        "select.clustering.kmeans.k": 100,
    }
    spaces = sorted((Path(__file__).parents[1] / "sweeps").glob("*.yaml"))
    assert len(spaces) >= 5
    for path in spaces:
        for param in load_space(path).params:
            if param.name not in bounds and "clustering" in param.name:
                assert param.name.rsplit(".", 1)[-1] in {"method", "min_cluster_size", "min_samples"}, param.name
            if param.name not in bounds:
                continue
            values = param.spec.get("choices") or [param.spec["low"], param.spec["high"]]
            assert None not in values, f"{path.name}: {param.name} may switch the reduction off"
            if bounds[param.name] is not None:
                assert max(values) <= bounds[param.name], f"{path.name}: {param.name} exceeds the budget"
