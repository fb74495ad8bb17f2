"""HDBSCAN at pool size: PCA-reduced, fitted on a sample, every other row assigned by mutual reachability."""

from __future__ import annotations

import logging

import numpy as np

from mygo.analysis.clustering.core import (
    HDBSCAN_BACKENDS,
    Clustering,
    as_matrix,
    cuda_available,
    importable,
    normalise_rows,
    sample_rows,
    silhouette,
)

logger = logging.getLogger(__name__)


# HDBSCAN by default: at most this many dimensions (PCA; fast_hdbscan's KD-tree stops at 30), fitted on at most this
# many rows (its cost grows with n^2), the PCA fitted on at most PCA_SAMPLE rows. See `hdbscan`.
HDBSCAN_PCA_COMPONENTS = 16


HDBSCAN_FIT_SAMPLE = 20000


PCA_SAMPLE = 50000


SAMPLE_FLOOR = 5  # the least min_cluster_size and min_samples a fit on a sample is given (see _fit_sample_and_assign)


HDBSCAN_METRICS = ("euclidean", "cosine")


# auto_tune: factors applied to min_cluster_size and min_samples, the most noise a setting may leave, the sample size.
TUNE_FACTORS = (0.5, 1.0, 2.0)


TUNE_MAX_NOISE = 0.5


TUNE_SAMPLE = 5000


def available_hdbscan_backends() -> list[str]:
    """The HDBSCAN backends usable here, in the order "auto" prefers them.

    fast_hdbscan (numba, parallel Boruvka) is optional and never chosen by "auto": on 2 shared CPU cores it was
    slower than scikit-learn at the fit sample's size (benchmarks/README.md); ask for it by name on many cores.
    """
    found = ["cuml"] if cuda_available() and importable("cuml") else []
    return [*found, "sklearn", *(["fast_hdbscan"] if importable("fast_hdbscan") else [])]


def _resolve_hdbscan_backend(backend: str) -> str:
    if backend == "auto":
        return available_hdbscan_backends()[0]
    if backend not in HDBSCAN_BACKENDS:
        raise ValueError(f"hdbscan: backend={backend!r} is not valid; choose one of {['auto', *HDBSCAN_BACKENDS]}")
    if backend not in available_hdbscan_backends():
        available = available_hdbscan_backends()
        raise ValueError(f"hdbscan: backend={backend!r} is not available here; available: {available}")
    return backend


def hdbscan(
    x: np.ndarray,
    min_cluster_size: int = 10,
    min_samples: int | None = None,
    metric: str = "euclidean",
    auto_tune: bool = False,
    seed: int = 0,
    backend: str = "auto",
    pca_components: int | None = HDBSCAN_PCA_COMPONENTS,
    fit_sample: int | None = HDBSCAN_FIT_SAMPLE,
) -> Clustering:
    """HDBSCAN (scikit-learn's, cuML's on a GPU, or fast_hdbscan's); points in no dense region get label -1 (noise).

    HDBSCAN's cost grows with n^2 and with the dimension (scikit-learn's: 113 s for 8k x 1024 on 2 cores), so by
    default it runs where it is affordable and the rest follows:
    - rows wider than `pca_components` are PCA-reduced to it first (PCA fitted on a seeded sample of at most
      PCA_SAMPLE rows; not re-normalised, see `_pca_reduce`); None keeps every dimension;
    - with more than `fit_sample` rows, HDBSCAN runs on a seeded sample of that many, with min_cluster_size and
      min_samples scaled by the sample fraction (they count neighbours, which thin out with the sample), and
      every other row is assigned by `assign_to_clusters`; None fits all rows. A cluster needs about
      min_cluster_size rows of the pool either way, but none smaller than SAMPLE_FLOOR / fraction rows (68 of
      270k with a 20k sample) is found: the sample's values are never scaled below SAMPLE_FLOOR.

    metric "cosine" L2-normalises the rows and runs euclidean, which orders every pair the same way
    (|a - b|^2 = 2 - 2 cos) and so keeps the fast tree-based neighbour search.

    auto_tune tries min_cluster_size and min_samples at TUNE_FACTORS times the given values (min_samples
    defaults to min_cluster_size, as in scikit-learn) on a seeded subsample of at most TUNE_SAMPLE rows, both
    scaled by the subsample fraction, and keeps the setting with the best cosine silhouette times the clustered
    fraction (noise counts as silhouette 0), among those that find >= 2 clusters and leave at most TUNE_MAX_NOISE
    noise. The grid and the choice go to `params["auto_tune"]`; when no setting qualifies the given values are kept.
    """
    x = as_matrix(x)
    n = len(x)
    if metric not in HDBSCAN_METRICS:
        raise ValueError(f"hdbscan: metric={metric!r} is not valid; choose one of {list(HDBSCAN_METRICS)}")
    if min_cluster_size < 2:
        raise ValueError(f"min_cluster_size={min_cluster_size} must be >= 2")
    if min_samples is not None and min_samples < 1:
        raise ValueError(f"min_samples={min_samples} must be >= 1 or None")
    if min_cluster_size > n or (min_samples or 0) > n:
        # Clamped like k-means' k_range, so that one space serves pools of any size; the result is then one
        # cluster at most, which the select stage flags as degenerate.
        logger.warning("hdbscan: min_cluster_size=%s, min_samples=%s clamped to n=%d", min_cluster_size, min_samples, n)
        min_cluster_size = min(min_cluster_size, n)
        min_samples = None if min_samples is None else min(min_samples, n)
    if pca_components is not None and pca_components < 1:
        raise ValueError(f"pca_components={pca_components} must be >= 1 or None")
    if fit_sample is not None and fit_sample < 2:
        raise ValueError(f"fit_sample={fit_sample} must be >= 2 or None")
    backend = _resolve_hdbscan_backend(backend)
    input_dims = x.shape[1]
    if metric == "cosine":
        x = normalise_rows(x.copy())
    if pca_components is not None and input_dims > pca_components and n > pca_components:
        x = _pca_reduce(x, pca_components, seed)
    fit_rows = n if fit_sample is None else min(n, fit_sample)
    if x.shape[1] > 64 and fit_rows > 20000:
        logger.warning("hdbscan on %d x %d features is slow: reduce them first (pca_components)", fit_rows, x.shape[1])
    if backend == "fast_hdbscan" and x.shape[1] > 30 and not importable("pynndescent"):
        # Above 30 dimensions fast_hdbscan leaves its KD-tree for pynndescent's approximate neighbours.
        raise ValueError(f"hdbscan: backend='fast_hdbscan' on {x.shape[1]} dims needs pynndescent; reduce to <= 30")
    params: dict = {
        "min_cluster_size": min_cluster_size,
        "min_samples": min_samples,
        "metric": metric,
        "input_dims": input_dims,
        "dims": int(x.shape[1]),
        "fit_sample_size": fit_rows,
    }
    if auto_tune:
        tuning = tune_hdbscan(x, min_cluster_size, min_samples or min_cluster_size, seed, backend)
        params.update(min_cluster_size=tuning["min_cluster_size"], min_samples=tuning["min_samples"])
        params["auto_tune"] = tuning
    if fit_rows == n:
        labels = _hdbscan_labels(x, params["min_cluster_size"], params["min_samples"], backend)
    else:
        labels = _fit_sample_and_assign(x, params["min_cluster_size"], params["min_samples"], fit_rows, seed, backend)
    return Clustering(
        labels=labels,
        num_clusters=int(labels.max() + 1),
        method="hdbscan",
        backend=backend,
        chosen_k=None,
        params=params,
    )


def _pca_reduce(x: np.ndarray, components: int, seed: int, sample: int = PCA_SAMPLE) -> np.ndarray:
    """PCA to `components` dimensions, fitted on a seeded sample of rows (the directions settle long before 270k
    rows; projecting all of them is one matrix product).

    Not re-normalised: the projection keeps distances along the kept directions and shrinks the rest, so a row
    whose routing lies mostly outside them (an outlier) lands near the mean, away from the clusters; re-normalising
    would stretch it back onto the sphere among them (it made outliers cluster members in the tests).
    """
    from sklearn.decomposition import PCA

    rows = sample_rows(len(x), sample, seed)
    pca = PCA(components, svd_solver="randomized", random_state=seed).fit(x[rows] if len(rows) < len(x) else x)
    reduced = (x - pca.mean_.astype(np.float32)) @ pca.components_.T.astype(np.float32)
    return np.ascontiguousarray(reduced, dtype=np.float32)


def _fit_sample_and_assign(
    x: np.ndarray, min_cluster_size: int, min_samples: int | None, size: int, seed: int, backend: str
) -> np.ndarray:
    sample = sample_rows(len(x), size, seed)
    fraction = size / len(x)
    # Scaled by the fraction, but not below SAMPLE_FLOOR (or the given value, if smaller): at 270k rows the default
    # 10 would scale to min_samples 1 and min_cluster_size 2 on a 20k sample, single linkage that called 93% of
    # the pool noise in 338 specks (benchmarks/README.md).
    given_samples = min_samples or min_cluster_size
    on_sample_size = min(size, max(min(min_cluster_size, SAMPLE_FLOOR), round(min_cluster_size * fraction)))
    on_sample_samples = min(size, max(min(given_samples, SAMPLE_FLOOR), round(given_samples * fraction)))
    logger.info("hdbscan on %d of %d rows: min_cluster_size %d, min_samples %d", size, len(x), on_sample_size,
                on_sample_samples)  # fmt: skip
    sample_labels = _hdbscan_labels(x[sample], on_sample_size, on_sample_samples, backend)
    labels = np.empty(len(x), dtype=np.int64)
    labels[sample] = sample_labels
    rest = np.ones(len(x), dtype=bool)
    rest[sample] = False
    labels[rest] = assign_to_clusters(x[rest], x[sample], sample_labels, on_sample_samples)
    return labels


def assign_to_clusters(x: np.ndarray, fitted: np.ndarray, fitted_labels: np.ndarray, min_samples: int) -> np.ndarray:
    """Labels for new rows from an HDBSCAN fit on `fitted`, by mutual reachability, as HDBSCAN itself links points.

    A row's core distance is the distance to its min_samples-th nearest fitted row, and its mutual reachability to
    a fitted row q is max(distance, its core distance, q's). It joins the cluster of the fitted row it reaches
    most easily (among its min_samples + 1 nearest), unless that row is noise or the reach exceeds the cluster's
    sparsest member's core distance: a row less dense than everything the cluster holds is noise, as a new point
    far from every cluster (or in the background) should be.
    """
    from sklearn.neighbors import NearestNeighbors

    k = min(len(fitted), min_samples + 1)
    index = NearestNeighbors(n_neighbors=k).fit(fitted)
    # Fitted rows' core distances: their own row is their 0th neighbour, as in HDBSCAN's min_samples.
    fitted_core = index.kneighbors(fitted, n_neighbors=min(len(fitted), min_samples))[0][:, -1]
    clustered = fitted_labels >= 0
    if not clustered.any():
        return np.full(len(x), -1, dtype=np.int64)
    cutoff = np.full(int(fitted_labels.max()) + 1, -np.inf)
    np.maximum.at(cutoff, fitted_labels[clustered], fitted_core[clustered])
    distances, neighbours = index.kneighbors(x)
    core = distances[:, min(min_samples, k) - 1]
    reach = np.maximum(np.maximum(distances, core[:, None]), fitted_core[neighbours])
    best = np.argmin(reach, axis=1)
    nearest = neighbours[np.arange(len(x)), best]
    labels = fitted_labels[nearest].astype(np.int64)
    reached = reach[np.arange(len(x)), best]
    labels[(labels >= 0) & (reached > cutoff[np.maximum(labels, 0)])] = -1
    return labels


def _hdbscan_labels(x: np.ndarray, min_cluster_size: int, min_samples: int | None, backend: str) -> np.ndarray:
    if backend == "cuml":
        from cuml.cluster import HDBSCAN

        model = HDBSCAN(min_cluster_size=min_cluster_size, min_samples=min_samples, metric="euclidean")
    elif backend == "fast_hdbscan":
        from fast_hdbscan import HDBSCAN

        model = HDBSCAN(min_cluster_size=min_cluster_size, min_samples=min_samples)
    else:
        from sklearn.cluster import HDBSCAN

        model = HDBSCAN(min_cluster_size=min_cluster_size, min_samples=min_samples, metric="euclidean", copy=False)
    return np.asarray(model.fit(x).labels_, dtype=np.int64)


def tune_hdbscan(
    x: np.ndarray, min_cluster_size: int, min_samples: int, seed: int, backend: str, sample_size: int = TUNE_SAMPLE
) -> dict:
    n = len(x)
    rows = x[sample_rows(n, sample_size, seed)]
    fraction = len(rows) / n
    grid, best = [], None
    for size_factor in TUNE_FACTORS:
        for samples_factor in TUNE_FACTORS:
            size = min(n, max(2, round(min_cluster_size * size_factor)))
            samples = min(n, max(1, round(min_samples * samples_factor)))
            on_sample = (min(len(rows), max(2, round(size * fraction))), max(1, round(samples * fraction)))
            labels = _hdbscan_labels(rows, *on_sample, backend)
            trial = _score_trial(rows, labels, seed)
            grid.append({"min_cluster_size": size, "min_samples": samples, **trial})
            if trial["score"] is not None and (best is None or trial["score"] > best["score"]):
                best = grid[-1]
    chosen = best or {"min_cluster_size": min_cluster_size, "min_samples": min_samples}
    return {**chosen, "sample_size": len(rows), "fallback": best is None, "grid": grid}


def _score_trial(rows: np.ndarray, labels: np.ndarray, seed: int) -> dict:
    """Silhouette x clustered fraction (noise scores 0); None with < 2 clusters or too much noise."""
    noise = float((labels < 0).mean())
    score = silhouette(rows, labels, seed=seed)
    usable = score is not None and noise <= TUNE_MAX_NOISE
    return {
        "num_clusters": int(labels.max() + 1),
        "noise_fraction": noise,
        "silhouette": score,
        "score": score * (1 - noise) if usable else None,
    }
