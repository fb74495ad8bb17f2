"""Cluster pool samples by their router features: k-means (k by the elbow method) or HDBSCAN.

The select stage spreads its picks across clusters, so the clusters only have to group samples that the
router treats alike; they are found in cosine geometry (`prepare_features` L2-normalises the rows, and
euclidean k-means on unit vectors is spherical k-means up to the centroid norm).

Speed, for 270k x 1024 features on a CPU:
- the elbow is measured on a seeded subsample (`elbow_sample` rows), and only the chosen k is fitted on all rows,
  warm-started from the subsample's solution at that k, so the full data needs a few Lloyd iterations, not a
  k-means++ seeding plus a cold start;
- k-means++ seeding is ours (greedy, like scikit-learn's, in float32 BLAS): scikit-learn's computes each
  candidate's distances in chunks upcast to float64, 4-10x slower on float32 features of this width;
- the Lloyd iterations are the backend's: scikit-learn's fused chunked loop is the fastest measured on CPU
  (faster than faiss and torch there, see benchmarks/README.md), hence "auto" picks it on CPU; on a GPU "auto"
  picks cuML when importable, else a batched Lloyd loop in torch.

Every backend runs the same seeding and the same subsample-then-all schedule, so they differ only in how the
iterations are computed. Results are deterministic for a seed on CPU (a GPU's atomic sums are not).
"""

from __future__ import annotations

import importlib.util
import logging
import math
from dataclasses import dataclass, field
from functools import cache
from typing import NamedTuple

import numpy as np

logger = logging.getLogger(__name__)

CLUSTERING_METHODS = ("kmeans", "hdbscan")
KMEANS_BACKENDS = ("sklearn", "faiss", "torch", "cuml")
HDBSCAN_BACKENDS = ("sklearn", "fast_hdbscan", "cuml")
# HDBSCAN by default: at most this many dimensions (PCA; fast_hdbscan's KD-tree stops at 30), fitted on at most this
# many rows (its cost grows with n^2), the PCA fitted on at most PCA_SAMPLE rows. See `hdbscan`.
HDBSCAN_PCA_COMPONENTS = 16
HDBSCAN_FIT_SAMPLE = 20000
PCA_SAMPLE = 50000
SAMPLE_FLOOR = 5  # the least min_cluster_size and min_samples a fit on a sample is given (see _fit_sample_and_assign)
HDBSCAN_METRICS = ("euclidean", "cosine")
# scikit-learn's default: stop when the centres move (sum of squared shifts) less than TOL x the mean feature variance.
TOL = 1e-4
# auto_tune: factors applied to min_cluster_size and min_samples, the most noise a setting may leave, the sample size.
TUNE_FACTORS = (0.5, 1.0, 2.0)
TUNE_MAX_NOISE = 0.5
TUNE_SAMPLE = 5000
# k-means restarts at the final k on the subsample (best inertia kept): cheap there, and it makes the final
# inertia at least as good as one scikit-learn fit on all rows rather than a draw from the seeds' spread.
FINAL_INITS = 3


@dataclass
class Clustering:
    labels: np.ndarray  # [n] int64; cluster ids 0..num_clusters-1; -1 = HDBSCAN noise
    num_clusters: int  # excluding noise
    method: str  # "kmeans" | "hdbscan"
    backend: str  # which implementation ran: "sklearn", "faiss", "torch", "cuml"
    chosen_k: int | None  # kmeans only
    elbow: list[tuple[int, float]] = field(default_factory=list)  # (k, inertia on the elbow sample), sorted by k
    inertia: float | None = None  # kmeans: sum of squared distances to the centroids, on all clustered rows
    params: dict = field(default_factory=dict)  # what was actually used


class _Fit(NamedTuple):
    centers: np.ndarray  # [k, d] float32
    labels: np.ndarray  # [n] int64
    inertia: float
    iterations: int


# ----------------------------------------------------------------------------------------------- features


def prepare_features(features: np.ndarray, pca_components: int | None = None, seed: int = 0) -> np.ndarray:
    """[n, layers, experts] or [n, d] -> [n, d'] float32 unit rows, optionally PCA-reduced (then re-normalised).

    Unit rows make euclidean distance a function of cosine similarity (|a - b|^2 = 2 - 2 cos), which is what
    compares routing patterns regardless of the logits' scale. All-zero rows stay zero.
    """
    features = np.asarray(features)
    if features.ndim not in (2, 3) or len(features) == 0:
        raise ValueError(f"features must be [n, layers, experts] or [n, d] with n > 0, got shape {features.shape}")
    x = features.reshape(len(features), -1).astype(np.float32, copy=True)
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or infinite values")
    _normalise_rows(x)
    if pca_components is None:
        return x
    if not 1 <= pca_components <= min(x.shape):
        raise ValueError(f"pca_components={pca_components} must be in [1, min(n, d)={min(x.shape)}]")
    from sklearn.decomposition import PCA

    x = PCA(pca_components, svd_solver="randomized", random_state=seed).fit_transform(x).astype(np.float32)
    return _normalise_rows(x)


def _normalise_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x /= np.maximum(norms, np.finfo(np.float32).tiny)
    return x


# ----------------------------------------------------------------------------------------------- backends


@cache
def _cuda_available() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


def _importable(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def available_backends() -> list[str]:
    """The k-means backends usable here, in the order "auto" prefers them (HDBSCAN uses sklearn or cuml)."""
    gpu = _cuda_available()
    found = {
        "sklearn": True,
        "faiss": _importable("faiss"),
        "torch": _importable("torch"),
        "cuml": gpu and _importable("cuml"),
    }
    preference = ("cuml", "torch", "sklearn", "faiss") if gpu else ("sklearn", "faiss", "torch")
    return [name for name in preference if found[name]]


def _resolve_backend(backend: str, allowed: tuple[str, ...], method: str) -> str:
    if backend == "auto":
        return next(name for name in available_backends() if name in allowed)
    if backend not in allowed:
        raise ValueError(f"{method}: backend={backend!r} is not valid; choose one of {['auto', *allowed]}")
    if backend not in available_backends():
        raise ValueError(f"{method}: backend={backend!r} is not available here; available: {available_backends()}")
    return backend


# ----------------------------------------------------------------------------------------------- k-means


def kmeans(
    x: np.ndarray,
    k: int | None = None,
    k_range: tuple[int, int] = (10, 100),
    auto_k: bool = True,
    max_iters: int = 300,
    seed: int = 0,
    backend: str = "auto",
    elbow_sample: int = 20000,
    elbow_points: int = 10,
) -> Clustering:
    """K-means on the rows of x, with k fixed (auto_k=False) or chosen by the elbow method (auto_k=True).

    Elbow: `elbow_points` k values spread geometrically over k_range (inclusive; every integer if the range is
    smaller) are fitted on a seeded subsample of at most `elbow_sample` rows; `choose_elbow` picks the knee of
    their inertias. At the chosen k the best of FINAL_INITS k-means++ restarts on the subsample (the elbow's fit
    among them) is refined by Lloyd iterations on all rows. A fixed k follows the same schedule, so auto_k and
    a fixed k give the same result at the same k. Nothing is capped: a k or k_range the data cannot support is
    an error. `elbow` holds the subsample's inertias; `inertia` is on all rows.
    """
    x = _as_matrix(x)
    n = len(x)
    _check_kmeans_args(n, k, k_range, auto_k, max_iters, elbow_sample, elbow_points)
    backend = _resolve_backend(backend, KMEANS_BACKENDS, "kmeans")
    sample = _sample_rows(n, elbow_sample, seed)
    rows = x[sample] if len(sample) < n else x
    tol = TOL * float(np.var(rows, axis=0).mean())
    ks = elbow_ks(k_range, elbow_points) if auto_k else [k]
    fits = {}
    for each in ks if auto_k else []:
        fits[each] = _fit_sample(rows, each, max_iters, tol, seed, backend)
        logger.info("kmeans k=%d on %d rows: inertia %.4g", each, len(rows), fits[each].inertia)
    chosen = choose_elbow(ks, [fits[each].inertia for each in ks]) if auto_k else k
    # Restarts are cheap on the subsample: keep the best of FINAL_INITS there (the first is the elbow's fit).
    tries = [fits.get(chosen) or _fit_sample(rows, chosen, max_iters, tol, seed, backend)]
    tries += [_fit_sample(rows, chosen, max_iters, tol, seed, backend, restart) for restart in range(1, FINAL_INITS)]
    final = min(tries, key=lambda fit: fit.inertia)
    if len(sample) < n:  # refine on all rows, warm-started from the subsample's solution
        final = _lloyd(x, final.centers, max_iters, tol, seed, backend)
    return Clustering(
        labels=final.labels,
        num_clusters=int(chosen),
        method="kmeans",
        backend=backend,
        chosen_k=int(chosen),
        elbow=[(each, fits[each].inertia) for each in ks] if auto_k else [],
        inertia=final.inertia,
        params={
            "elbow_sample_size": len(sample),
            "elbow_ks": list(ks) if auto_k else [],
            "sample_inits": FINAL_INITS,
            "iterations": final.iterations,
            "tol": TOL,
            "max_iters": max_iters,
            "seed": seed,
        },
    )


def _as_matrix(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"x must be [n, d] with n >= 2 (use prepare_features), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("x contains NaN or infinite values")
    return x


def _check_kmeans_args(n, k, k_range, auto_k, max_iters, elbow_sample, elbow_points) -> None:
    if max_iters < 1:
        raise ValueError(f"max_iters={max_iters} must be >= 1")
    if not auto_k:
        if k is None:
            raise ValueError("k is required when auto_k=False")
        if not 2 <= k <= n:
            raise ValueError(f"k={k} must be in [2, n={n}] (n = number of samples)")
        if elbow_sample < k:
            raise ValueError(f"elbow_sample={elbow_sample} must be >= k={k} (k-means is seeded on that sample)")
        return
    if k is not None:
        raise ValueError(f"k={k} was given with auto_k=True: pass auto_k=False to fix k, or k=None for the elbow")
    low, high = k_range
    if low > high:
        raise ValueError(f"k_range={list(k_range)} is reversed; give (low, high)")
    if low < 2:
        raise ValueError(f"k_range={list(k_range)}: low must be >= 2")
    if high - low < 2:
        raise ValueError(f"k_range={list(k_range)} must span at least 3 values of k to find an elbow; or fix k")
    if high > n:
        raise ValueError(f"k_range={list(k_range)}: high exceeds the number of samples n={n}; reduce k_range")
    if elbow_points < 3:
        raise ValueError(f"elbow_points={elbow_points} must be >= 3")
    if min(elbow_sample, n) < high:
        raise ValueError(f"elbow_sample={elbow_sample} must be >= k_range high={high}")


def fit_k_range(k_range: tuple[int, int], n: int, elbow_sample: int) -> tuple[int, int]:
    """k_range clamped to what `n` samples allow: high at most n // 2 (two samples a cluster on average) and the
    elbow sample, low at most high - 2 (three values of k for an elbow). A range that fits is returned as given;
    a pool too small for any elbow (n < 8) keeps its range, and `kmeans` names the problem."""
    low, high = k_range
    if low > high or n < 8:
        return low, high
    high = min(high, n // 2, max(elbow_sample, 4))
    return max(2, min(low, high - 2)), high


def elbow_ks(k_range: tuple[int, int], points: int) -> list[int]:
    """`points` integers spread geometrically over k_range (inclusive): inertia changes fastest at small k."""
    low, high = k_range
    if high - low + 1 <= points:
        return list(range(low, high + 1))
    return sorted({int(round(k)) for k in np.geomspace(low, high, points)})


def choose_elbow(ks: list[int], inertias: list[float]) -> int:
    """The knee of the inertia curve: the point farthest below the chord from the first to the last point.

    Both axes are scaled to [0, 1] first (the "kneedle" construction), so the answer does not depend on the
    units of inertia. A flat or straight curve has no knee; then the smallest k wins (ties go to the smaller k).
    """
    if len(ks) != len(inertias) or len(ks) < 3:
        raise ValueError(
            f"choose_elbow needs >= 3 (k, inertia) points of equal count, got {len(ks)} and {len(inertias)}"
        )
    order = np.argsort(ks, kind="stable")
    k = np.asarray(ks, dtype=np.float64)[order]
    inertia = np.asarray(inertias, dtype=np.float64)[order]
    span = inertia.max() - inertia.min()
    if span <= 0 or k[-1] == k[0]:
        return int(k[0])
    k_scaled = (k - k[0]) / (k[-1] - k[0])
    inertia_scaled = (inertia - inertia.min()) / span
    below_chord = (1 - k_scaled) * inertia_scaled[0] + k_scaled * inertia_scaled[-1] - inertia_scaled
    return int(k[int(np.argmax(below_chord))])


def _sample_rows(n: int, size: int, seed: int) -> np.ndarray:
    if size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def _fit_sample(x: np.ndarray, k: int, max_iters: int, tol: float, seed: int, backend: str, restart: int = 0) -> _Fit:
    # A seed per (k, restart), so that a k's result does not depend on which other ks were tried.
    centers = kmeans_plusplus(x, k, np.random.default_rng([seed, k, restart]))
    return _lloyd(x, centers, max_iters, tol, seed, backend)


def kmeans_plusplus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ seeding (as scikit-learn's: 2 + ln k candidates per centre, keep the best) in float32."""
    n = len(x)
    trials = 2 + int(math.log(k))
    norms = np.einsum("ij,ij->i", x, x)
    chosen = [int(rng.integers(n))]
    closest = _sq_distances(x, norms, [chosen[0]])[0]
    for _ in range(1, k):
        cumulative = np.cumsum(closest, dtype=np.float64)
        picks = np.searchsorted(cumulative, rng.random(trials) * cumulative[-1], side="right")
        picks = np.minimum(picks, n - 1)
        candidates = np.minimum(_sq_distances(x, norms, picks), closest)
        best = int(np.argmin(candidates.sum(axis=1, dtype=np.float64)))
        chosen.append(int(picks[best]))
        closest = candidates[best]
    return x[chosen].copy()


def _sq_distances(x: np.ndarray, norms: np.ndarray, rows) -> np.ndarray:
    """[len(rows), n] squared euclidean distances from x[rows] to every row of x."""
    distances = x[rows] @ x.T
    distances *= -2
    distances += norms
    distances += norms[rows][:, None]
    return np.maximum(distances, 0, out=distances)


def _lloyd(x: np.ndarray, centers: np.ndarray, max_iters: int, tol: float, seed: int, backend: str) -> _Fit:
    """Lloyd iterations from `centers` until the labels stop changing or the centres move less than tol."""
    if backend == "sklearn":
        return _sklearn_lloyd(x, centers, max_iters, seed)
    if backend == "torch":
        return _torch_lloyd(x, centers, max_iters, tol)
    if backend == "faiss":
        return _faiss_lloyd(x, centers, max_iters, tol)
    return _cuml_lloyd(x, centers, max_iters, seed)


def _sklearn_lloyd(x: np.ndarray, centers: np.ndarray, max_iters: int, seed: int) -> _Fit:
    from sklearn.cluster import KMeans

    model = KMeans(len(centers), init=centers, n_init=1, max_iter=max_iters, tol=TOL, random_state=seed)
    model.fit(x)
    centers = model.cluster_centers_.astype(np.float32)
    return _Fit(centers, model.labels_.astype(np.int64), float(model.inertia_), int(model.n_iter_))


def _cuml_lloyd(x: np.ndarray, centers: np.ndarray, max_iters: int, seed: int) -> _Fit:
    from cuml.cluster import KMeans

    model = KMeans(n_clusters=len(centers), init=centers, n_init=1, max_iter=max_iters, tol=TOL, random_state=seed)
    model.fit(x)
    labels = np.asarray(model.labels_, dtype=np.int64)
    centers = np.asarray(model.cluster_centers_, dtype=np.float32)
    return _Fit(centers, labels, float(model.inertia_), int(getattr(model, "n_iter_", max_iters)))


def _faiss_lloyd(x: np.ndarray, centers: np.ndarray, max_iters: int, tol: float) -> _Fit:
    """Lloyd with faiss's exact nearest-centre search; the centre update is a sparse one-hot product."""
    import faiss
    from scipy import sparse

    n, k = len(x), len(centers)
    rows = np.arange(n)
    labels = None
    for iteration in range(1, max_iters + 1):
        new_labels, distances = _faiss_assign(faiss, x, centers)
        sums = sparse.csr_matrix((np.ones(n, np.float32), (new_labels, rows)), shape=(k, n)) @ x
        counts = np.bincount(new_labels, minlength=k)
        new_centers = _update_centers(x, sums, counts, distances)
        shift = float(((new_centers - centers) ** 2).sum())
        converged = iteration > 1 and np.array_equal(labels, new_labels)
        centers, labels = new_centers, new_labels
        if converged or shift <= tol:
            break
    labels, distances = _faiss_assign(faiss, x, centers)
    return _Fit(centers, labels, float(distances.sum(dtype=np.float64)), iteration)


def _faiss_assign(faiss, x: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(centers)
    distances, labels = index.search(x, 1)
    return labels[:, 0].astype(np.int64), np.maximum(distances[:, 0], 0)


def _update_centers(x: np.ndarray, sums: np.ndarray, counts: np.ndarray, distances: np.ndarray) -> np.ndarray:
    # An emptied cluster restarts at the rows farthest from their centres (as scikit-learn does).
    sums = np.asarray(sums, dtype=np.float32)
    empty = np.flatnonzero(counts == 0)
    if len(empty):
        far = np.argsort(distances, kind="stable")[::-1][: len(empty)]
        sums[empty] = x[far]
        counts = np.where(counts == 0, 1, counts)
    return sums / counts[:, None].astype(np.float32)


def _torch_lloyd(x: np.ndarray, centers: np.ndarray, max_iters: int, tol: float) -> _Fit:
    """Batched Lloyd in torch, on the GPU when there is one (the CPU works too, more slowly than scikit-learn)."""
    import torch

    device = "cuda" if _cuda_available() else "cpu"
    rows = torch.from_numpy(x).to(device)
    current = torch.from_numpy(centers).to(device)
    k = len(centers)
    labels = None
    for iteration in range(1, max_iters + 1):
        new_labels, distances = _torch_assign(rows, current)
        sums = torch.zeros_like(current).index_add_(0, new_labels, rows)
        counts = torch.bincount(new_labels, minlength=k)
        empty = torch.nonzero(counts == 0).flatten()
        if len(empty):
            far = torch.topk(distances, len(empty)).indices
            sums[empty], counts[empty] = rows[far], 1
        new_centers = sums / counts[:, None].to(sums.dtype)
        shift = float(((new_centers - current) ** 2).sum())
        converged = iteration > 1 and torch.equal(labels, new_labels)
        current, labels = new_centers, new_labels
        if converged or shift <= tol:
            break
    labels, distances = _torch_assign(rows, current)
    inertia = float(distances.sum(dtype=torch.float64))
    return _Fit(current.cpu().numpy(), labels.cpu().numpy().astype(np.int64), inertia, iteration)


def _torch_assign(rows, centers, batch: int = 65536):
    import torch

    center_norms = (centers * centers).sum(1)
    labels, distances = [], []
    for chunk in torch.split(rows, batch):
        squared = torch.addmm(center_norms, chunk, centers.T, alpha=-2).add_((chunk * chunk).sum(1, keepdim=True))
        nearest = squared.min(1)
        labels.append(nearest.indices)
        distances.append(nearest.values.clamp_(min=0))
    return torch.cat(labels), torch.cat(distances)


# ----------------------------------------------------------------------------------------------- HDBSCAN


def available_hdbscan_backends() -> list[str]:
    """The HDBSCAN backends usable here, in the order "auto" prefers them.

    fast_hdbscan (numba, parallel Boruvka) is optional and never chosen by "auto": on 2 shared CPU cores it was
    slower than scikit-learn at the fit sample's size (benchmarks/README.md); ask for it by name on many cores.
    """
    found = ["cuml"] if _cuda_available() and _importable("cuml") else []
    return [*found, "sklearn", *(["fast_hdbscan"] if _importable("fast_hdbscan") else [])]


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
    x = _as_matrix(x)
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
        x = _normalise_rows(x.copy())
    if pca_components is not None and input_dims > pca_components and n > pca_components:
        x = _pca_reduce(x, pca_components, seed)
    fit_rows = n if fit_sample is None else min(n, fit_sample)
    if x.shape[1] > 64 and fit_rows > 20000:
        logger.warning("hdbscan on %d x %d features is slow: reduce them first (pca_components)", fit_rows, x.shape[1])
    if backend == "fast_hdbscan" and x.shape[1] > 30 and not _importable("pynndescent"):
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
        tuning = _tune_hdbscan(x, min_cluster_size, min_samples or min_cluster_size, seed, backend)
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

    rows = _sample_rows(len(x), sample, seed)
    pca = PCA(components, svd_solver="randomized", random_state=seed).fit(x[rows] if len(rows) < len(x) else x)
    reduced = (x - pca.mean_.astype(np.float32)) @ pca.components_.T.astype(np.float32)
    return np.ascontiguousarray(reduced, dtype=np.float32)


def _fit_sample_and_assign(
    x: np.ndarray, min_cluster_size: int, min_samples: int | None, size: int, seed: int, backend: str
) -> np.ndarray:
    sample = _sample_rows(len(x), size, seed)
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


def _tune_hdbscan(
    x: np.ndarray, min_cluster_size: int, min_samples: int, seed: int, backend: str, sample_size: int = TUNE_SAMPLE
) -> dict:
    n = len(x)
    rows = x[_sample_rows(n, sample_size, seed)]
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


# ----------------------------------------------------------------------------------------------- quality


def silhouette(x: np.ndarray, labels: np.ndarray, sample_size: int = 5000, seed: int = 0) -> float | None:
    """Mean cosine silhouette on a seeded sample of the clustered rows (noise, -1, left out); None below 2 clusters."""
    labels = np.asarray(labels)
    clustered = np.flatnonzero(labels >= 0)
    if len(np.unique(labels[clustered])) < 2:
        return None
    if len(clustered) > sample_size:
        clustered = np.sort(np.random.default_rng(seed).choice(clustered, sample_size, replace=False))
    found = len(np.unique(labels[clustered]))
    if not 2 <= found <= len(clustered) - 1:
        return None
    from sklearn.metrics import silhouette_score

    return float(silhouette_score(np.asarray(x)[clustered], labels[clustered], metric="cosine"))
