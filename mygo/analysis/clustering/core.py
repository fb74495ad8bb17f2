"""What every clustering method shares: the result, the features it runs on, the backends and the silhouette."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import NamedTuple

import numpy as np

CLUSTERING_METHODS = ("kmeans", "hdbscan")


KMEANS_BACKENDS = ("sklearn", "faiss", "torch", "cuml")


HDBSCAN_BACKENDS = ("sklearn", "fast_hdbscan", "cuml")


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


class Fit(NamedTuple):
    centers: np.ndarray  # [k, d] float32
    labels: np.ndarray  # [n] int64
    inertia: float
    iterations: int


PCA_FIT_ROWS = 200_000  # rows `prepare_features` fits its PCA on (all of a smaller pool)
BLOCK_ROWS = 65_536  # rows read at a time from features in memory (sharded features come a shard at a time)


def prepare_features(features, pca_components: int | None = None, seed: int = 0) -> np.ndarray:
    """[n, layers, experts] or [n, d] -> [n, d'] float32 unit rows, optionally PCA-reduced (then re-normalised).

    Unit rows make euclidean distance a function of cosine similarity (|a - b|^2 = 2 - 2 cos), which is what
    compares routing patterns regardless of the logits' scale. All-zero rows stay zero. `features` is an array or
    the router data's `ShardedFeatures`; it is read a block at a time, so the only copy is the [n, d'] result: with
    PCA the raw features are never whole in memory, the PCA being fitted on a seeded sample of PCA_FIT_ROWS rows
    (on all rows of a smaller pool, with the same result as fitting and projecting them at once).
    """
    n, d = len(features), int(np.prod(features.shape[1:])) if len(features.shape) > 1 else 0
    if len(features.shape) not in (2, 3) or n == 0:
        raise ValueError(f"features must be [n, layers, experts] or [n, d] with n > 0, got shape {features.shape}")
    if pca_components is not None and not 1 <= pca_components <= min(n, d):
        raise ValueError(f"pca_components={pca_components} must be in [1, min(n, d)={min(n, d)}]")
    if pca_components is None or n <= PCA_FIT_ROWS:
        _check_fits(n, d, "the L2-normalised features")
        x = np.empty((n, d), dtype=np.float32)
        for rows, block in feature_blocks(features):
            x[rows] = _unit_block(block)
        if pca_components is None:
            return x
        return normalise_rows(_pca(pca_components, seed).fit_transform(x).astype(np.float32))
    _check_fits(n, pca_components, "the PCA-reduced features")
    pca = _pca(pca_components, seed).fit(_unit_block(features[sample_rows(n, PCA_FIT_ROWS, seed)]))
    x = np.empty((n, pca_components), dtype=np.float32)
    for rows, block in feature_blocks(features):
        x[rows] = normalise_rows(pca.transform(_unit_block(block)).astype(np.float32))
    return x


def feature_blocks(features) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(rows, their features), a block at a time: an array's consecutive rows, or `ShardedFeatures`' shards."""
    if hasattr(features, "shards"):
        yield from features.shards()
        return
    for start in range(0, len(features), BLOCK_ROWS):
        stop = min(start + BLOCK_ROWS, len(features))
        yield np.arange(start, stop), np.asarray(features[start:stop])


def _unit_block(block: np.ndarray) -> np.ndarray:
    x = block.reshape(len(block), -1).astype(np.float32, copy=True)
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or infinite values")
    return normalise_rows(x)


def _pca(components: int, seed: int):
    from sklearn.decomposition import PCA

    return PCA(components, svd_solver="randomized", random_state=seed)


def _check_fits(n: int, d: int, what: str) -> None:
    """An [n, d] float32 matrix over half of this machine's memory is an error naming the knob that shrinks it."""
    needed = n * d * 4
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if needed > memory / 2:
        raise ValueError(
            f"{what} of {n} samples x {d} dims take {needed / 2**30:.1f} GiB as float32, over half of this "
            f"machine's {memory / 2**30:.1f} GiB: reduce them with clustering.pca_components (64 dims: "
            f"{n * 64 * 4 / 2**30:.1f} GiB)"
        )


def normalise_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x /= np.maximum(norms, np.finfo(np.float32).tiny)
    return x


@cache
def cuda_available() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


def importable(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def available_backends() -> list[str]:
    """The k-means backends usable here, in the order "auto" prefers them (HDBSCAN uses sklearn or cuml)."""
    gpu = cuda_available()
    found = {
        "sklearn": True,
        "faiss": importable("faiss"),
        "torch": importable("torch"),
        "cuml": gpu and importable("cuml"),
    }
    preference = ("cuml", "torch", "sklearn", "faiss") if gpu else ("sklearn", "faiss", "torch")
    return [name for name in preference if found[name]]


def resolve_backend(backend: str, allowed: tuple[str, ...], method: str) -> str:
    if backend == "auto":
        return next(name for name in available_backends() if name in allowed)
    if backend not in allowed:
        raise ValueError(f"{method}: backend={backend!r} is not valid; choose one of {['auto', *allowed]}")
    if backend not in available_backends():
        raise ValueError(f"{method}: backend={backend!r} is not available here; available: {available_backends()}")
    return backend


def as_matrix(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"x must be [n, d] with n >= 2 (use prepare_features), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("x contains NaN or infinite values")
    return x


def sample_rows(n: int, size: int, seed: int) -> np.ndarray:
    if size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


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
