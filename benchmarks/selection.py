"""A whole `select` on cached router data: `python benchmarks/selection.py [--n 270000]` (target <= 60 s).

Builds synthetic router data of the real default's shape (270k samples x 16 layers x 64 experts,
float16 shards, an index and a JSONL pool) once in a temporary directory, then times what the
select stage does with it: load the shards, prepare the features, k-means with the elbow method
over k in [10, 100], round robin, and writing the selected records byte for byte.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mygo.analysis.clustering import kmeans, prepare_features
from mygo.analysis.score_shards import load_router_data, plan_shards, write_index, write_shard
from mygo.analysis.selection import select
from mygo.stages.select import write_selected_records


def synthetic_router_data(
    directory: Path,
    samples: int,
    layers: int,
    experts: int,
    seed: int = 0,
    index: pd.DataFrame | None = None,
    signals: bool = False,
) -> None:
    """Router logits drawn around 40 centres of uneven size, the pool file they index, the shards.

    `index`: the rows of a pool already written (id, dataset, length, file, line; `samples` of them) instead of a
    pool file of its own. `signals`: each sample also gets the stored signals the default selection ranks and
    vetoes by (nll, relevance, overlap, prompt_copy, repetition), drawn at random. Written a shard at a time."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, layers, experts)).astype(np.float32)
    members = rng.choice(40, size=samples, p=rng.dirichlet(np.ones(40)))
    if index is None:
        pool_file = directory / "pool" / "cot" / "cot_data.jsonl"
        pool_file.parent.mkdir(parents=True)
        with pool_file.open("w") as handle:
            for i in range(samples):
                record = {"dataset": "cot", "id": f"cot_{i}", "messages": [{"role": "user", "content": f"q{i}"}]}
                handle.write(json.dumps(record) + "\n")
        index = pd.DataFrame(
            {"id": [f"cot_{i}" for i in range(samples)], "dataset": "cot", "length": rng.integers(20, 2048, samples)}
        )
        index["file"], index["line"] = str(pool_file), np.arange(1, samples + 1)
    elif len(index) != samples:
        raise ValueError(f"an index of {len(index)} rows for {samples} samples")
    for number, rows in enumerate(plan_shards(index["length"].to_numpy(), 4096)):
        features = centres[members[rows]] + 0.5 * rng.standard_normal((len(rows), layers, experts), dtype=np.float32)
        quality = rng.random((len(rows), layers), dtype=np.float32)
        drawn = synthetic_signals(rng, len(rows)) if signals else None
        write_shard(directory, number, rows, quality, features.astype(np.float16), drawn)
    write_index(directory, index)


def synthetic_signals(rng: np.random.Generator, count: int) -> dict[str, np.ndarray]:
    """Stored signals in plausible ranges, next to none past the default fault limits (prompt_copy 0.8,
    repetition 0.5)."""
    return {
        "nll": rng.lognormal(0.3, 0.5, count),
        "relevance": rng.uniform(-0.2, 0.8, count),
        "overlap": rng.beta(2, 5, count),
        "prompt_copy": rng.beta(1, 12, count),
        "repetition": rng.beta(1, 15, count),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=270_000)
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--experts", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        synthetic_router_data(directory, args.n, args.layers, args.experts)
        times = {}
        start = time.perf_counter()
        data = load_router_data(directory)
        times["load shards"] = time.perf_counter() - start
        mark = time.perf_counter()
        features = prepare_features(data.features)
        times["prepare features"] = time.perf_counter() - mark
        mark = time.perf_counter()
        clustering = kmeans(features, k_range=(10, 100), auto_k=True, seed=0)
        times[f"k-means elbow + final ({clustering.backend}, k={clustering.chosen_k})"] = time.perf_counter() - mark
        mark = time.perf_counter()
        chosen = select("round_robin", data.sample_quality, clustering.labels, 0.05, seed=0)
        times["round robin"] = time.perf_counter() - mark
        mark = time.perf_counter()
        write_selected_records(data.index, chosen.indices, directory / "selected_data.jsonl")
        times["write selected records"] = time.perf_counter() - mark
        total = time.perf_counter() - start
    for step, seconds in times.items():
        print(f"{step:<52}{seconds:8.1f} s")
    print(f"{'select on ' + str(args.n) + ' samples, total':<52}{total:8.1f} s   (target <= 60 s)")


if __name__ == "__main__":
    main()
