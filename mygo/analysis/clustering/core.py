"""What every clustering method shares: the result, the features it runs on, the backends and the silhouette."""

from __future__ import annotations

import importlib.util
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
    normalise_rows(x)
    if pca_components is None:
        return x
    if not 1 <= pca_components <= min(x.shape):
        raise ValueError(f"pca_components={pca_components} must be in [1, min(n, d)={min(x.shape)}]")
    from sklearn.decomposition import PCA

    x = PCA(pca_components, svd_solver="randomized", random_state=seed).fit_transform(x).astype(np.float32)
    return normalise_rows(x)


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
