"""Figures logged to MLflow as artifacts: what people would rather look at than read."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: training machines have no display

import matplotlib.pyplot as plt  # noqa: E402
import mlflow  # noqa: E402
import numpy as np  # noqa: E402


def log_figure(figure, artifact_file: str) -> None:
    mlflow.log_figure(figure, artifact_file)
    plt.close(figure)


def good_ratio_histogram(quality: np.ndarray, noise: list[str | None] | None, title: str):
    """Per-sample mean good_ratio; split into clean and injected samples when the pool says which are which."""
    figure, axes = plt.subplots(figsize=(7, 4))
    bins = np.linspace(float(quality.min()), float(quality.max()) + 1e-9, 40)
    if noise is None:
        axes.hist(quality, bins=bins, color="tab:blue")
    else:
        noisy = np.array([kind is not None for kind in noise])
        axes.hist(quality[~noisy], bins=bins, alpha=0.6, label=f"clean ({(~noisy).sum()})", color="tab:blue")
        axes.hist(quality[noisy], bins=bins, alpha=0.6, label=f"injected noise ({noisy.sum()})", color="tab:red")
        axes.legend()
    axes.set_xlabel("per-sample mean good_ratio")
    axes.set_ylabel("samples")
    axes.set_title(title)
    figure.tight_layout()
    return figure


def per_layer_curves(history: list[dict[str, float]], prefix: str = "quality_gate/layer_"):
    """Mean good_ratio of each layer over training steps."""
    figure, axes = plt.subplots(figsize=(7, 4))
    keys = sorted({key for row in history for key in row if key.startswith(prefix)})
    for key in keys:
        points = [(row["step"], row[key]) for row in history if key in row]
        steps, values = zip(*points, strict=True)
        axes.plot(steps, values, label=key[len(prefix) :].split("/")[0].replace("_", " "))
    axes.set_xlabel("step")
    axes.set_ylabel("mean good_ratio over real tokens")
    axes.set_title("quality gate per layer")
    if keys:
        axes.legend(fontsize="small", ncol=2)
    figure.tight_layout()
    return figure


def per_layer_bars(scores: np.ndarray, title: str):
    """Mean per-sample good_ratio of each layer (scores: [samples, layers])."""
    figure, axes = plt.subplots(figsize=(7, 4))
    layers = np.arange(scores.shape[1])
    axes.bar(layers, scores.mean(axis=0), yerr=scores.std(axis=0), color="tab:blue", capsize=3)
    axes.set_xlabel("layer")
    axes.set_ylabel("mean good_ratio")
    axes.set_title(title)
    figure.tight_layout()
    return figure
