"""The k-means part: the select stage's k-means (elbow over k_range on a sample, then the chosen k on all rows) on
benchmarks/clustering.py's synthetic features, on the GPU backends (torch, cuML where installed) and on the CPU
default (scikit-learn), with each backend's inertia over the CPU default's.
"""

from __future__ import annotations

import time

from gpu_bench.harness import Context, TimeBox, read_config


def part_kmeans(ctx: Context, box: TimeBox, metrics: dict, notes: list[str]) -> None:
    from clustering import synthetic_features  # benchmarks/clustering.py: blobs around a shared direction

    from mygo.analysis.clustering import available_backends, fit_k_range, kmeans

    sizes = ctx.sizes
    clustering = read_config("select.yaml")["clustering"]
    options = clustering["kmeans"] | sizes.kmeans
    started = time.perf_counter()
    x = synthetic_features(sizes.kmeans_rows, sizes.kmeans_dims, sizes.kmeans_blobs, seed=0)
    metrics["features_s"] = time.perf_counter() - started
    k_range = fit_k_range(tuple(options["k_range"]), len(x), options["elbow_sample"])
    settings = dict(
        k_range=k_range,
        elbow_points=options["elbow_points"],
        elbow_sample=options["elbow_sample"],
        max_iters=options["max_iters"],
        seed=clustering["seed"],
    )
    metrics["settings"] = {"rows": len(x), "dims": x.shape[1], **settings, "k_range": list(k_range)}
    available = available_backends()
    accelerated = ["torch"] + (["cuml"] if "cuml" in available else [])
    if not ctx.cuda:
        notes.append("no GPU: the torch backend runs on the CPU here")
    # The torch backend's first call would otherwise pay for CUDA's start and its kernels' loading.
    kmeans(x[:1000], k=4, auto_k=False, backend="torch", elbow_sample=1000)
    results = {}
    for backend in [*accelerated, "sklearn"]:  # the CPU default last: it is the baseline, the others the figures
        if results and box.left() <= 0:  # the first backend at least, whatever the box
            notes.append(f"time box: backend {backend} not run")
            continue
        started = time.perf_counter()
        try:
            result = kmeans(x, backend=backend, **settings)
        except Exception as error:  # noqa: BLE001 - a broken backend (a cuML install) costs its figure only
            metrics[f"error_{backend}"] = f"{type(error).__name__}: {error}"
            notes.append(f"backend {backend} failed: {metrics[f'error_{backend}']}")
            continue
        seconds = time.perf_counter() - started
        results[backend] = result
        metrics[f"seconds_{backend}"] = seconds
        metrics[f"k_{backend}"] = result.chosen_k
        metrics[f"inertia_{backend}"] = result.inertia
    metrics["backends"] = list(results)
    if "sklearn" in results:
        for backend in accelerated:
            if backend in results:
                metrics[f"inertia_ratio_{backend}"] = results[backend].inertia / results["sklearn"].inertia
                if results[backend].chosen_k != results["sklearn"].chosen_k:
                    notes.append(
                        f"{backend} chose k={results[backend].chosen_k}, sklearn k={results['sklearn'].chosen_k}"
                    )
    timed = [metrics[f"seconds_{backend}"] for backend in accelerated if backend in results]
    if timed:
        metrics["gpu_seconds"] = min(timed)
    failed = [backend for backend in (*accelerated, "sklearn") if f"error_{backend}" in metrics]
    if failed:  # after the others' figures are in: the part is failed, what it measured stays
        raise RuntimeError("; ".join(f"{backend}: {metrics[f'error_{backend}']}" for backend in failed))
