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


def elbow_curve(elbow: list[tuple[int, float]], chosen_k: int | None):
    """K-means inertia over k, with the chosen knee marked."""
    figure, axes = plt.subplots(figsize=(7, 4))
    ks, inertias = zip(*elbow, strict=True)
    axes.plot(ks, inertias, marker="o")
    if chosen_k is not None:
        axes.axvline(chosen_k, color="tab:red", linestyle="--", label=f"chosen k = {chosen_k}")
        axes.legend()
    axes.set_xlabel("k")
    axes.set_ylabel("inertia (on the elbow sample)")
    axes.set_title("elbow method")
    figure.tight_layout()
    return figure


def cluster_sizes(labels: np.ndarray, selected: np.ndarray):
    """Members per cluster, and how many of them were selected (largest clusters first)."""
    figure, axes = plt.subplots(figsize=(8, 4))
    clusters, counts = np.unique(labels, return_counts=True)
    order = np.argsort(-counts)
    chosen = np.array([selected[labels == c].sum() for c in clusters])
    positions = np.arange(len(clusters))
    axes.bar(positions, counts[order], color="tab:gray", label="members")
    axes.bar(positions, chosen[order], color="tab:blue", label="selected")
    step = max(1, len(clusters) // 20)
    axes.set_xticks(positions[::step], [("noise" if c < 0 else str(c)) for c in clusters[order]][::step])
    axes.set_xlabel("cluster (largest first)")
    axes.set_ylabel("samples")
    axes.set_title(f"{len(clusters)} clusters")
    axes.legend()
    figure.tight_layout()
    return figure


def quality_selected_vs_all(quality: np.ndarray, selected: np.ndarray):
    figure, axes = plt.subplots(figsize=(7, 4))
    bins = np.linspace(float(quality.min()), float(quality.max()) + 1e-9, 40)
    axes.hist(quality, bins=bins, alpha=0.5, density=True, label=f"pool ({len(quality)})", color="tab:gray")
    axes.hist(quality[selected], bins=bins, alpha=0.6, density=True, label=f"selected ({selected.sum()})")
    axes.set_xlabel("per-sample quality (mean good_ratio)")
    axes.set_ylabel("density")
    axes.set_title("quality: selected vs pool")
    axes.legend()
    figure.tight_layout()
    return figure


def noise_selected_vs_pool(noise, selected: np.ndarray):
    """Share of each noise kind (and of clean samples) in the pool and in the selection, side by side."""
    kinds = np.array([kind if isinstance(kind, str) else "clean" for kind in noise], dtype=object)
    names = ["clean"] + sorted(set(kinds) - {"clean"})
    pool = [float((kinds == name).mean()) for name in names]
    chosen = [float((kinds[selected] == name).mean()) if selected.any() else 0.0 for name in names]
    figure, axes = plt.subplots(figsize=(8, 4))
    x = np.arange(len(names))
    axes.bar(x - 0.2, pool, width=0.4, label=f"pool ({len(kinds)})", color="tab:gray")
    axes.bar(x + 0.2, chosen, width=0.4, label=f"selected ({int(selected.sum())})")
    axes.set_xticks(x, names, rotation=20)
    axes.set_yscale("log")
    axes.set_ylabel("share (log scale)")
    axes.set_title("injected noise: selection vs pool")
    axes.legend()
    figure.tight_layout()
    return figure


def projection_2d(points: np.ndarray, labels: np.ndarray, selected: np.ndarray):
    """A 2-D PCA projection of the features, coloured by cluster; selected samples outlined."""
    figure, axes = plt.subplots(figsize=(7, 6))
    centered = points - points.mean(axis=0)
    _, _, components = np.linalg.svd(centered, full_matrices=False)
    xy = centered @ components[:2].T
    axes.scatter(xy[:, 0], xy[:, 1], c=labels, cmap="tab20", s=6, alpha=0.6, linewidths=0)
    axes.scatter(xy[selected, 0], xy[selected, 1], facecolors="none", edgecolors="black", s=14, linewidths=0.5)
    axes.set_xlabel("PC 1")
    axes.set_ylabel("PC 2")
    axes.set_title("router-logit features (PCA), by cluster; selected outlined")
    figure.tight_layout()
    return figure


def metric_curve(history: list[dict[str, float]], key: str, title: str):
    """One logged metric over training steps (e.g. the fine-tuning loss)."""
    figure, axes = plt.subplots(figsize=(7, 4))
    points = [(row["step"], row[key]) for row in history if key in row]
    if points:
        steps, values = zip(*points, strict=True)
        axes.plot(steps, values, marker=".", color="tab:blue")
    axes.set_xlabel("step")
    axes.set_ylabel(key)
    axes.set_title(title)
    figure.tight_layout()
    return figure


def accuracy_bars(scores: dict[str, float], title: str, chance: float | None = None):
    """Accuracy per task or subject, lowest first, with the chance level when there is one."""
    names = sorted(scores, key=scores.get)
    figure, axes = plt.subplots(figsize=(7, max(2.5, 0.25 * len(names) + 1)))
    axes.barh(names, [scores[name] for name in names], color="tab:blue")
    if chance is not None:
        axes.axvline(chance, color="tab:red", linestyle="--", label=f"chance ({chance:.2f})")
        axes.legend(fontsize="small")
    axes.set_xlim(0, 1)
    axes.set_xlabel("accuracy")
    axes.set_title(title)
    figure.tight_layout()
    return figure


def arm_comparison(estimates: dict[str, dict[str, tuple[float, float]]], title: str):
    """One panel per figure: each arm's mean with its standard error over seeds (none with one seed).

    estimates: figure -> arm -> (mean, stderr)."""
    figures = list(estimates)
    columns = min(3, len(figures)) or 1
    rows = (len(figures) + columns - 1) // columns or 1
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.4 * rows), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for panel, key in zip(axes.flat, figures, strict=False):
        arms = list(estimates[key])
        means = [estimates[key][arm][0] for arm in arms]
        errors = [0.0 if np.isnan(estimates[key][arm][1]) else estimates[key][arm][1] for arm in arms]
        panel.bar(range(len(arms)), means, yerr=errors, capsize=4, color=colours[: len(arms)])
        panel.set_xticks(range(len(arms)), arms, rotation=20, fontsize="small")
        low, high = (
            min(m - e for m, e in zip(means, errors, strict=True)),
            max(m + e for m, e in zip(means, errors, strict=True)),
        )
        margin = (high - low) * 0.3 or abs(high) * 0.05 or 1.0
        panel.set_ylim(low - margin, high + margin)  # differences, not absolute levels, are the point
        panel.set_title(key.removeprefix("eval/"), fontsize="small")
    for panel in list(axes.flat)[len(figures) :]:
        panel.axis("off")
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def selection_vs_pool(groupings: dict[str, np.ndarray], selections: dict[str, np.ndarray], most: int = 40):
    """Each grouping's share of the pool (grey bars, largest first) and of each selection (one line each):
    a selection that follows the bars mirrors the pool; one that stays flat spreads evenly; zeros are what it
    missed. groupings: name -> [n] label per sample; selections: name -> [n] boolean mask. Groupings with more
    than `most` values show the `most` largest."""
    figure, all_axes = plt.subplots(len(groupings), 1, figsize=(10, 3.2 * len(groupings)), squeeze=False)
    for axes, (name, values) in zip(all_axes[:, 0], groupings.items(), strict=True):
        values = np.asarray(values).astype(str)
        names, counts = np.unique(values, return_counts=True)
        order = np.argsort(-counts, kind="stable")[:most]
        shown = names[order]
        x = np.arange(len(shown))
        axes.bar(x, counts[order] / len(values), color="tab:gray", alpha=0.5, label="pool")
        for (label, mask), marker in zip(selections.items(), "os^vD", strict=False):
            chosen = values[mask]
            share = np.array([(chosen == value).mean() for value in shown]) if len(chosen) else np.zeros(len(shown))
            present = len(np.unique(chosen)) / len(names)
            axes.plot(x, share, marker=marker, markersize=3, linewidth=1, label=f"{label} ({present:.0%} present)")
        labels = [value if len(value) <= 18 else value[:17] + "…" for value in shown]
        axes.set_xticks(x, labels, rotation=90 if len(shown) > 8 else 0, fontsize="x-small")
        more = f", the {len(shown)} largest of {len(names)}" if len(names) > len(shown) else ""
        axes.set_title(f"by {name}{more}", fontsize="small")
        axes.set_ylabel("share")
        axes.legend(fontsize="x-small")
    figure.suptitle("selection vs pool")
    figure.tight_layout()
    return figure
