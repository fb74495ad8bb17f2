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
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from sklearn.cluster import KMeans

from mygo.analysis.clustering import available_backends, choose_elbow, elbow_ks, kmeans


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
    parser.add_argument("--quick", action="store_true", help="20k x 256, 20 blobs")
    args = parser.parse_args()
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
