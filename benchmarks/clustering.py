"""Elbow + final k-means at the real pool size, against scikit-learn and faiss: `python benchmarks/clustering.py`.

Features: a mixture of `--blobs` gaussian blobs of lognormal sizes around a shared direction (router logits
share a common component), each with its own spread, L2-normalised, as `mygo.clustering.prepare_features` gives.

Reported for each mygo backend: seconds for `kmeans` (elbow over k_range on a subsample + the final fit on all
rows), the chosen k, and the final inertia divided by scikit-learn `KMeans(k, n_init=1)`'s on the same features
at the same k. Speed-ups are against:
- the plain scikit-learn elbow loop, `KMeans(k, n_init=1)` on all rows for every k in k_range: too slow to run,
  so estimated as sum over k of t(k) = a + b k, fitted to the measured reference fit(s) (one measured k: t
  proportional to k, as both k-means++ seeding and each Lloyd iteration cost O(n k d); `--loop-ks 10,100`
  measures more). The same estimate is printed for the elbow grid's ks only;
- the stock faiss elbow loop (if faiss is installed): `faiss.Kmeans` with its defaults (25 iterations, trained
  on at most 256 rows per centroid) on the same k grid, plus one pass over all rows for each k's inertia;
  measured on the grid, and estimated for every k in k_range the same way.
`--quick` runs a small instance (seconds).

`--hdbscan`: the HDBSCAN path at the pool's size against K-Means on the same features. Features: router-like
[n, 16, 64] logits stored as float16 (as the score stage stores them), `--components` planted gaussian components
of lognormal sizes in a `--latent`-dimensional subspace (router logits are a linear map of the hidden state) around
a shared bias, isotropic noise on all 1024 dims, and a `--background` fraction of rows from a broad gaussian over
the same subspace (no component: the points HDBSCAN should call noise). Timed end to end from the float16 array:
`prepare_features` (float32, L2-normalise), then mygo `hdbscan` with its defaults (PCA to 16 dims, fit on a
20,000-row sample, the rest assigned) and mygo `kmeans` with the select stage's defaults (elbow over [10, 100],
its default backend). Quality against the planted components: ARI and NMI over all rows (background as one more
class, noise as one more label) and over the planted rows only, plus the noise fraction and cluster count.
`--full-fit` also fits HDBSCAN on all rows (the 16 PCA dims, no sample): the reference the sample-and-assign
path is measured against (affordable only on small instances, `--quick`).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from sklearn.cluster import KMeans

from mygo.analysis.clustering import (
    available_backends,
    available_hdbscan_backends,
    choose_elbow,
    elbow_ks,
    hdbscan,
    kmeans,
    prepare_features,
)


def synthetic_features(n: int, dims: int, blobs: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    weights = rng.lognormal(0, 1, blobs)
    labels = rng.choice(blobs, size=n, p=weights / weights.sum())
    centers = rng.standard_normal(dims, dtype=np.float32) + 0.5 * rng.standard_normal((blobs, dims), dtype=np.float32)
    spread = rng.uniform(0.5, 1.0, blobs).astype(np.float32)
    x = rng.standard_normal((n, dims), dtype=np.float32)
    x *= spread[labels, None]
    x += centers[labels]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def router_like_features(
    n: int,
    components: int,
    latent: int,
    background: float,
    spread: float,
    isotropic: float,
    layers: int = 16,
    experts: int = 64,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """[n, layers, experts] float16 router logits and their planted component per row (-1: background)."""
    rng = np.random.default_rng(seed)
    dims = layers * experts
    basis = rng.standard_normal((latent, dims), dtype=np.float32) / np.sqrt(latent)
    bias = rng.standard_normal(dims, dtype=np.float32)  # every router has a common component
    centres = bias + rng.standard_normal((components, latent), dtype=np.float32) @ basis
    weights = rng.lognormal(0, 0.7, components)
    truth = rng.choice(components, n, p=weights / weights.sum())
    truth[rng.random(n) < background] = -1
    widths = (spread * rng.uniform(0.5, 1.0, components)).astype(np.float32)
    features = np.empty((n, layers, experts), dtype=np.float16)
    for start in range(0, n, 20000):  # in chunks: float32 temporaries of 20k rows, not of the pool
        rows = truth[start : start + 20000]
        planted = rows >= 0
        offsets = rng.standard_normal((len(rows), latent), dtype=np.float32)
        offsets[planted] *= widths[rows[planted], None]
        offsets[~planted] *= 1.5  # background: wider than the spread of the centres themselves
        chunk = np.where(planted[:, None], centres[np.maximum(rows, 0)], bias) + offsets @ basis
        chunk += isotropic * rng.standard_normal(chunk.shape, dtype=np.float32)
        features[start : start + 20000] = chunk.reshape(-1, layers, experts)
    return features, truth


def quality(truth: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    planted = truth >= 0
    return {
        "ari": adjusted_rand_score(truth, labels),
        "nmi": normalized_mutual_info_score(truth, labels),
        "ari_planted": adjusted_rand_score(truth[planted], labels[planted]),
        "nmi_planted": normalized_mutual_info_score(truth[planted], labels[planted]),
        "noise": float((labels < 0).mean()),
        "clusters": int(labels.max() + 1),
    }


def hdbscan_main(args) -> None:
    print(
        f"{args.n} x 16 x 64 float16, {args.components} components in {args.latent} dims, "
        f"{args.background:.0%} background, {os.cpu_count()} CPUs, HDBSCAN backends: {available_hdbscan_backends()}"
    )
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    (features, truth), seconds = timed(
        lambda: router_like_features(
            args.n, args.components, args.latent, args.background, args.spread, args.isotropic, seed=args.seed
        )
    )
    print(f"features generated in {seconds:.1f}s; planted rows {(truth >= 0).mean():.1%}")
    x, prepare_seconds = timed(lambda: prepare_features(features))
    print(f"prepare_features (float32, L2-normalise): {prepare_seconds:.1f}s")
    rows = []
    for backend in args.hdbscan_backends.split(","):
        for size in args.min_cluster_size:
            result, seconds = timed(
                lambda backend=backend, size=size: hdbscan(x, min_cluster_size=size, seed=args.seed, backend=backend)
            )
            name = f"mygo hdbscan [{backend}] min_cluster_size={size}"
            rows.append((name, prepare_seconds + seconds, quality(truth, result.labels)))
            print(f"{name}: {seconds:.1f}s after prepare_features; {result.params}", flush=True)
            if args.full_fit:
                full, seconds = timed(
                    lambda backend=backend, size=size: hdbscan(
                        x, min_cluster_size=size, seed=args.seed, backend=backend, fit_sample=None
                    )
                )
                rows.append(("  the same, fitted on all rows", prepare_seconds + seconds, quality(truth, full.labels)))
    result, seconds = timed(lambda: kmeans(x, seed=args.seed))
    rows.append((f"mygo kmeans [{result.backend}] elbow [10, 100] (k={result.chosen_k})", prepare_seconds + seconds,
                 quality(truth, result.labels)))  # fmt: skip
    print(f"{rows[-1][0]}: {seconds:.1f}s after prepare_features", flush=True)
    if args.kmeans_k:
        result, seconds = timed(lambda: kmeans(x, k=args.kmeans_k, auto_k=False, seed=args.seed))
        rows.append((f"mygo kmeans [{result.backend}] k={args.kmeans_k}", prepare_seconds + seconds,
                     quality(truth, result.labels)))  # fmt: skip
    header = (
        f"{'method':52} {'seconds':>8} {'clusters':>8} {'noise':>6} {'ARI':>6} {'NMI':>6} {'ARI pl':>6} {'NMI pl':>6}"
    )
    print("\n(seconds: end to end from the float16 features; ARI/NMI pl: planted rows only)")
    print(header + "\n" + "-" * len(header))
    for name, seconds, q in rows:
        print(
            f"{name:52} {seconds:8.1f} {q['clusters']:8d} {q['noise']:6.3f} {q['ari']:6.3f} {q['nmi']:6.3f}"
            f" {q['ari_planted']:6.3f} {q['nmi_planted']:6.3f}"
        )
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def loop_estimate(measured: dict[int, float], ks) -> float:
    """Seconds for one fit at each of ks, from t(k) = a + b k fitted to the measured (k, seconds)."""
    timed_ks = np.array(list(measured), dtype=float)
    seconds = np.array(list(measured.values()))
    if len(timed_ks) == 1:
        a, b = 0.0, seconds[0] / timed_ks[0]
    else:
        b, a = np.polyfit(timed_ks, seconds, 1)
    return float(np.maximum(a + b * np.asarray(ks, dtype=float), 0).sum())


def sklearn_reference(x: np.ndarray, k: int, seed: int) -> tuple[float, float]:
    model, seconds = timed(lambda: KMeans(k, n_init=1, random_state=seed).fit(x))
    return float(model.inertia_), seconds


def faiss_loop(x: np.ndarray, ks: list[int], seed: int) -> tuple[dict[int, float], dict[int, float]]:
    """Stock faiss k-means at each k; returns inertia on all rows and seconds per k."""
    import faiss

    inertias, seconds = {}, {}
    for k in ks:
        start = time.perf_counter()
        model = faiss.Kmeans(x.shape[1], k, seed=seed, verbose=False)
        model.train(x)
        distances, _ = model.index.search(x, 1)
        inertias[k] = float(distances.sum(dtype=np.float64))
        seconds[k] = time.perf_counter() - start
    return inertias, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=270_000)
    parser.add_argument("--dims", type=int, default=1024)
    parser.add_argument("--blobs", type=int, default=40)
    parser.add_argument("--k-range", type=int, nargs=2, default=(10, 100))
    parser.add_argument("--elbow-points", type=int, default=10)
    parser.add_argument("--elbow-sample", type=int, default=20_000)
    parser.add_argument("--backends", default=None, help="comma-separated mygo backends (default: sklearn, faiss)")
    parser.add_argument("--loop-ks", default="", help="extra ks to time scikit-learn's full fit at, comma-separated")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="20k x 256, 20 blobs (--hdbscan: 40k rows, 50 components)")
    hdbscan_case = parser.add_argument_group("--hdbscan: the HDBSCAN path against K-Means on router-like features")
    hdbscan_case.add_argument("--hdbscan", action="store_true")
    hdbscan_case.add_argument("--components", type=int, default=100)
    hdbscan_case.add_argument("--latent", type=int, default=64)
    hdbscan_case.add_argument("--background", type=float, default=0.1)
    hdbscan_case.add_argument("--spread", type=float, default=0.5, help="components' widths over their centres' spread")
    hdbscan_case.add_argument("--isotropic", type=float, default=0.3, help="noise on every logit")
    hdbscan_case.add_argument("--min-cluster-size", type=int, nargs="+", default=[10])
    hdbscan_case.add_argument("--hdbscan-backends", default="sklearn")
    hdbscan_case.add_argument("--kmeans-k", type=int, default=None, help="also k-means at this fixed k")
    hdbscan_case.add_argument("--full-fit", action="store_true", help="also HDBSCAN fitted on all rows")
    args = parser.parse_args()
    if args.hdbscan:
        if args.quick:
            args.n, args.components = 40_000, 50
        return hdbscan_main(args)
    if args.quick:
        args.n, args.dims, args.blobs, args.elbow_sample = 20_000, 256, 20, 5_000
    k_range = tuple(args.k_range)
    found = available_backends()
    backends = args.backends.split(",") if args.backends else [name for name in ("sklearn", "faiss") if name in found]

    print(f"{args.n} x {args.dims}, {args.blobs} blobs, k_range {list(k_range)}, {os.cpu_count()} CPUs")
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    x, seconds = timed(lambda: synthetic_features(args.n, args.dims, args.blobs, args.seed))
    print(f"features generated in {seconds:.1f}s")

    rows = []
    for backend in backends:
        result, seconds = timed(
            lambda backend=backend: kmeans(
                x,
                k_range=k_range,
                seed=args.seed,
                backend=backend,
                elbow_sample=args.elbow_sample,
                elbow_points=args.elbow_points,
            )
        )
        rows.append((f"mygo kmeans [{backend}]", seconds, result.chosen_k, result.inertia))
        print(f"{rows[-1][0]}: {seconds:.1f}s, k={result.chosen_k}, {result.params['iterations']} full-data iterations")

    references = {}
    for k in sorted({row[2] for row in rows} | {int(k) for k in args.loop_ks.split(",") if k}):
        references[k] = sklearn_reference(x, k, args.seed)
        print(f"sklearn KMeans(k={k}, n_init=1) on all rows: {references[k][1]:.1f}s")
    measured = {k: seconds for k, (_, seconds) in references.items()}
    every_k, grid = range(k_range[0], k_range[1] + 1), elbow_ks(k_range, args.elbow_points)
    sklearn_loop = loop_estimate(measured, every_k)
    chosen = rows[0][2]
    rows.append(("sklearn KMeans, one fit at k", references[chosen][1], chosen, references[chosen][0]))
    rows.append(("sklearn elbow loop, every k (estimated)", sklearn_loop, None, None))
    sklearn_grid = loop_estimate(measured, grid)
    rows.append(("sklearn elbow loop, same k grid (estimated)", sklearn_grid, None, None))

    faiss_grid = faiss_full = None
    if "faiss" in found:
        inertias, per_k = faiss_loop(x, grid, args.seed)
        faiss_grid, faiss_full = sum(per_k.values()), loop_estimate(per_k, every_k)
        own_k = choose_elbow(grid, [inertias[k] for k in grid])
        rows.append((f"faiss elbow loop, grid (own k={own_k})", faiss_grid, chosen, inertias.get(chosen)))
        rows.append(("faiss elbow loop, every k (estimated)", faiss_full, None, None))

    baselines = {"sk every k": sklearn_loop, "sk grid": sklearn_grid, "faiss grid": faiss_grid}
    print_table(rows, references, {**baselines, "faiss every k": faiss_full})
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


def print_table(rows, references, baselines: dict[str, float | None]) -> None:
    """Speed-ups: a baseline's seconds / mygo's. Inertia ratio > 1: mygo's clustering is that much worse."""
    header = f"{'method':44} {'seconds':>8} {'k':>4} {'inertia/sk@k':>12}" + "".join(
        f" {'vs ' + name:>15}" for name in baselines
    )
    print("\n" + header + "\n" + "-" * len(header))
    for name, seconds, k, inertia in rows:
        ratio = f"{inertia / references[k][0]:.4f}" if inertia is not None and k in references else ""
        ours = name.startswith("mygo")
        cells = [f"{total / seconds:.1f}x" if ours and total else "" for total in baselines.values()]
        k_text = "" if k is None else str(k)
        print(f"{name:44} {seconds:8.1f} {k_text:>4} {ratio:>12}" + "".join(f" {cell:>15}" for cell in cells))


if __name__ == "__main__":
    main()
