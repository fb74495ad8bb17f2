"""k-means on unit rows (spherical up to the centroid norm): k by the elbow on a subsample, then every row, warm
started; the same seeding and schedule on every backend (scikit-learn, faiss, torch, cuML)."""

from __future__ import annotations

import logging
import math

import numpy as np

from mygo.analysis.clustering.core import (
    KMEANS_BACKENDS,
    Clustering,
    Fit,
    as_matrix,
    cuda_available,
    resolve_backend,
    sample_rows,
)

logger = logging.getLogger(__name__)


# scikit-learn's default: stop when the centres move (sum of squared shifts) less than TOL x the mean feature variance.
TOL = 1e-4


# k-means restarts at the final k on the subsample (best inertia kept): cheap there, and it makes the final
# inertia at least as good as one scikit-learn fit on all rows rather than a draw from the seeds' spread.
FINAL_INITS = 3


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
    fit_sample: int | None = None,
) -> Clustering:
    """K-means on the rows of x, with k fixed (auto_k=False) or chosen by the elbow method (auto_k=True).

    Elbow: `elbow_points` k values spread geometrically over k_range (inclusive; every integer if the range is
    smaller) are fitted on a seeded subsample of at most `elbow_sample` rows; `choose_elbow` picks the knee of
    their inertias. At the chosen k the best of FINAL_INITS k-means++ restarts on the subsample (the elbow's fit
    among them) is refined by Lloyd iterations on all rows, or, when there are more than `fit_sample` (None: no
    limit), on a seeded sample of that many, every row then assigned to its nearest centre a block at a time (a
    pool of millions is clustered as well by centres fitted on a few hundred thousand rows, and the Lloyd fit on
    all of them is what runs out of memory). A fixed k follows the same schedule, so auto_k and a fixed k give the
    same result at the same k. Nothing is capped: a k or k_range the data cannot support is an error. `elbow` holds
    the subsample's inertias; `inertia` is on all rows.
    """
    x = as_matrix(x)
    n = len(x)
    _check_kmeans_args(n, k, k_range, auto_k, max_iters, elbow_sample, elbow_points)
    backend = resolve_backend(backend, KMEANS_BACKENDS, "kmeans")
    sample = sample_rows(n, elbow_sample, seed)
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
    if len(sample) < n and (fit_sample is None or n <= fit_sample):  # refine on all rows, warm-started
        final = _lloyd(x, final.centers, max_iters, tol, seed, backend)
    elif len(sample) < n:  # refine on a larger sample, then assign every row
        refined = _lloyd(
            x[sample_rows(n, max(fit_sample, len(sample)), seed + 1)], final.centers, max_iters, tol, seed, backend
        )
        final = Fit(refined.centers, *assign_to_centres(x, refined.centers), refined.iterations)
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
            "fit_sample_size": min(n, fit_sample or n),
            "iterations": final.iterations,
            "tol": TOL,
            "max_iters": max_iters,
            "seed": seed,
        },
    )


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


def _fit_sample(x: np.ndarray, k: int, max_iters: int, tol: float, seed: int, backend: str, restart: int = 0) -> Fit:
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


def assign_to_centres(x: np.ndarray, centers: np.ndarray, block: int = 65536) -> tuple[np.ndarray, float]:
    """Each row's nearest centre and the sum of squared distances to them, a block of rows at a time."""
    labels = np.empty(len(x), dtype=np.int64)
    inertia, center_norms = 0.0, np.einsum("ij,ij->i", centers, centers)
    for start in range(0, len(x), block):
        rows = x[start : start + block]
        squared = rows @ centers.T
        squared *= -2
        squared += center_norms
        squared += np.einsum("ij,ij->i", rows, rows)[:, None]
        labels[start : start + block] = squared.argmin(axis=1)
        inertia += float(np.maximum(squared.min(axis=1), 0).sum(dtype=np.float64))
    return labels, inertia


def _lloyd(x: np.ndarray, centers: np.ndarray, max_iters: int, tol: float, seed: int, backend: str) -> Fit:
    """Lloyd iterations from `centers` until the labels stop changing or the centres move less than tol."""
    if backend == "sklearn":
        return _sklearn_lloyd(x, centers, max_iters, seed)
    if backend == "torch":
        return _torch_lloyd(x, centers, max_iters, tol)
    if backend == "faiss":
        return _faiss_lloyd(x, centers, max_iters, tol)
    return _cuml_lloyd(x, centers, max_iters, seed)


def _sklearn_lloyd(x: np.ndarray, centers: np.ndarray, max_iters: int, seed: int) -> Fit:
    from sklearn.cluster import KMeans

    model = KMeans(len(centers), init=centers, n_init=1, max_iter=max_iters, tol=TOL, random_state=seed)
    model.fit(x)
    centers = model.cluster_centers_.astype(np.float32)
    return Fit(centers, model.labels_.astype(np.int64), float(model.inertia_), int(model.n_iter_))


def _cuml_lloyd(x: np.ndarray, centers: np.ndarray, max_iters: int, seed: int) -> Fit:
    from cuml.cluster import KMeans

    model = KMeans(n_clusters=len(centers), init=centers, n_init=1, max_iter=max_iters, tol=TOL, random_state=seed)
    model.fit(x)
    labels = np.asarray(model.labels_, dtype=np.int64)
    centers = np.asarray(model.cluster_centers_, dtype=np.float32)
    return Fit(centers, labels, float(model.inertia_), int(getattr(model, "n_iter_", max_iters)))


def _faiss_lloyd(x: np.ndarray, centers: np.ndarray, max_iters: int, tol: float) -> Fit:
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
    return Fit(centers, labels, float(distances.sum(dtype=np.float64)), iteration)


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


def _torch_lloyd(x: np.ndarray, centers: np.ndarray, max_iters: int, tol: float) -> Fit:
    """Batched Lloyd in torch, on the GPU when there is one (the CPU works too, more slowly than scikit-learn)."""
    import torch

    device = "cuda" if cuda_available() else "cpu"
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
    return Fit(current.cpu().numpy(), labels.cpu().numpy().astype(np.int64), inertia, iteration)


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
