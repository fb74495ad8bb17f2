"""How well quality tells the demo pool's injected noise from clean samples (pools with a `mygo_noise` field)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from sklearn.metrics import roc_auc_score


def noise_mask(kinds: Iterable[object]) -> np.ndarray | None:
    """True for injected samples (a noise kind is a string; clean is None or NaN); None if not both are present."""
    noisy = np.array([isinstance(kind, str) for kind in kinds], dtype=bool)
    return noisy if noisy.any() and (~noisy).any() else None


def noise_auroc(quality: np.ndarray, noisy: np.ndarray) -> float:
    """Quality as a detector of clean samples: 1.0 ranks every clean sample above every noisy one, 0.5 is chance."""
    return float(roc_auc_score(~noisy, quality))


def pool_noise_metrics(quality: np.ndarray, noisy: np.ndarray) -> dict[str, float]:
    return {"noise/auroc": noise_auroc(quality, noisy), "noise/fraction_pool": float(noisy.mean())}


def clean_or_kind(kinds: Iterable[object]) -> np.ndarray:
    """Each sample's noise kind, 'clean' where none was injected."""
    return np.array([kind if isinstance(kind, str) else "clean" for kind in kinds], dtype=object)


def auroc_by_kind(quality: np.ndarray, kinds: Iterable[object]) -> dict[str, float]:
    """Quality as a detector of clean samples against each noise kind alone (clean vs that kind)."""
    labels = clean_or_kind(kinds)
    clean = labels == "clean"
    result = {}
    for kind in sorted(set(labels) - {"clean"}):
        chosen = clean | (labels == kind)
        result[kind] = noise_auroc(quality[chosen], labels[chosen] == kind)
    return result


def noise_metrics(quality: np.ndarray, kinds: Iterable[object], prefix: str = "noise/auroc") -> dict[str, float]:
    """`<prefix>` over all noise and `<prefix>/<kind>` per kind; empty for a pool without both clean and noisy."""
    kinds = list(kinds)
    noisy = noise_mask(kinds)
    if noisy is None:
        return {}
    metrics = {prefix: noise_auroc(quality, noisy)}
    metrics |= {f"{prefix}/{kind}": value for kind, value in auroc_by_kind(quality, kinds).items()}
    return metrics


def mean_by_kind(values: np.ndarray, kinds: Iterable[object]) -> dict[str, float]:
    """Mean of `values` for clean samples and for each noise kind."""
    labels = clean_or_kind(kinds)
    return {kind: float(values[labels == kind].mean()) for kind in sorted(set(labels))}


def fraction_by_kind(kinds: Iterable[object]) -> dict[str, float]:
    """Share of each noise kind (and of clean samples) in a set of samples."""
    labels = clean_or_kind(kinds)
    return {kind: float((labels == kind).mean()) for kind in sorted(set(labels))}
