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
