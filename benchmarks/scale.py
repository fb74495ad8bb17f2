"""Scale of mygo's CPU steps on a synthetic pool of N records: seconds and peak memory of each step.

    python benchmarks/scale.py --records N [--steps read,dedup,decontam,signals,select] [--cache DIR] \
        [--select OVERRIDES]

The pool: N records in the LESS layout (`<dir>/{cot,dolly,flan_v2,oasst1}/*.jsonl`), built by `dedup.py`'s
generator (demo-like lengths: answers of lognormal length, median ~60 words, Zipf-like words; 3% planted exact and
3% near duplicates, 1% hard negatives), streamed to the files so that it builds in bounded memory. It is built once
under `--cache` (default `outputs/scale/<N>`) and reused while N and the generator's settings are the same; so is
the synthetic router data the `select` step reads (`selection.py`'s: 16 layers x 64 experts float16 features, a
quality per layer and the stored signals, one row per pool record).

Each step runs in a fresh child process, so that its peak RSS (the child's `ru_maxrss`, from `os.wait4`) is its
own: the interpreter, its imports and what the step loads, nothing of the others. Seconds are the step's work in
the child, imports and the untimed loading named below left out. The steps call mygo's own code:
- `read`: `mygo.data.pool.load_pool`, as warmup and score read the pool (parse, convert, write the Arrow file a
  `Dataset` maps, check the ids);
- `dedup`: `mygo.data.dedup.deduplicate` (exact and near) with `configs/dataset/less.yaml`'s settings, on the pool
  `load_pool` gave (loading untimed, its memory counted: dedup needs it);
- `decontam`: `mygo.data.decontamination` with the demo preset's settings and tasks (the tiny target's five): the
  tasks' items loaded, then every record of the pool checked (loading the pool untimed);
- `signals`: the text signals score stores beside the model's: the idf of the pool's 4-grams
  (`NgramWeights.fit` over every message, as `mygo.stages.score.overlap_weights`), then `text_signals` (`overlap`,
  `prompt_copy`, `repetition`) over every record, a score shard (4,096 records) at a time (loading untimed);
- `select`: the select stage's work with the default `configs/select.yaml` policy but k-means at a fixed k (40):
  load the router data, the quality and vetoes, prepare the features, cluster, the text embedding of every record
  for `within_cluster: coverage` (read from the pool files), round robin choosing 5%, and the selected records
  written. The stage's diversity metrics, silhouette and plots are not run. `--select` adds Hydra overrides
  (e.g. `"clustering.pca_components=64"`, which a pool of ten million needs: its 1,024-dim features as float32 are
  41 GB).

A step that fails or runs out of memory is reported as failed with its error; the others go on. The last line is
`records=N seconds=S peak_rss_gib=R`: S the sum of the steps' seconds, R the largest peak RSS. The targets are in
issue 35: each step <= 60 min and select <= 15 min at 10M records, peak RSS <= 8 GiB at 10M.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

STEPS = ("read", "dedup", "decontam", "signals", "select")
DUPLICATES = {"exact": 0.03, "near": 0.03, "hard": 0.01}  # planted shares, as dedup.py's defaults
POOL_VERSION = 1  # bump when the generator's output changes: cached pools are rebuilt
ROUTER_VERSION = 1
SHARD_SIZE = 4096  # records per score shard (configs/score.yaml)
K = 40  # k-means at a fixed k, as selection.py's synthetic data has 40 centres
GIB = 1024**3


# ------------------------------------------------------------------------------------------------ the cache
def dedup_settings():
    """`dataset.dedup` of configs/dataset/less.yaml (over _shared.yaml) as `DedupSettings`."""
    from omegaconf import OmegaConf

    from mygo.data.dedup import DedupSettings

    configs = Path(__file__).resolve().parents[1] / "configs" / "dataset"
    merged = OmegaConf.merge(OmegaConf.load(configs / "_shared.yaml"), OmegaConf.load(configs / "less.yaml"))
    return DedupSettings.from_config(merged)


def cached(directory: Path, key: dict, build) -> bool:
    """`build(directory)` unless `directory` holds what `key` describes; True when it was reused. The key is written
    beside it last, so an interrupted build is built again."""
    marker = directory.with_name(directory.name + ".json")
    if directory.is_dir() and marker.is_file() and json.loads(marker.read_text()) == key:
        return True
    marker.unlink(missing_ok=True)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    build(directory)
    marker.write_text(json.dumps(key, indent=1))
    return False


def ensure_pool(cache: Path, records: int, seed: int) -> tuple[Path, dict]:
    """The pool under `cache/pool`, built (with progress) unless there already."""
    from dataclasses import asdict

    from dedup import build_pool  # the generator (benchmarks/dedup.py); the steps' children do not import it
    from tqdm import tqdm

    settings = dedup_settings()
    key = {"version": POOL_VERSION, "records": records, "seed": seed, **DUPLICATES, "dedup": asdict(settings)}

    def build(directory: Path) -> None:
        log(f"building a pool of {records} records in {directory}")
        started = time.perf_counter()
        with tqdm(total=records, desc="build pool", unit="record", mininterval=5) as bar:
            build_pool(directory, records, **DUPLICATES, settings=settings, seed=seed, progress=bar.update)
        log(f"built the pool in {time.perf_counter() - started:.0f} s")

    if cached(cache / "pool", key, build):
        log(f"reusing the pool in {cache / 'pool'}")
    return cache / "pool", key


def pool_index(pool: Path):
    """The score index of the pool's records, in pool order: id, dataset, length (~tokens), file, line, digest."""
    import pandas as pd

    from mygo.data.pool import RECORD_DIGEST_FIELD, discover_datasets, record_digest, record_texts

    parts = []
    for name, files in discover_datasets(pool).items():
        for path in files:
            ids, lengths, lines, digests = [], [], [], []
            for line, raw in record_texts(path):
                ids.append(json.loads(raw)["id"])
                lengths.append(min(len(raw) // 4, 2048))
                lines.append(line)
                digests.append(record_digest(raw))
            part = pd.DataFrame({"id": ids, "dataset": name, "length": lengths})
            part["file"], part["line"], part[RECORD_DIGEST_FIELD] = str(path.resolve()), lines, digests
            parts.append(part)
    return pd.concat(parts, ignore_index=True)


def ensure_router_data(cache: Path, pool: Path, pool_key: dict, layers: int, experts: int, seed: int) -> Path:
    """Synthetic router data for every pool record under `cache/router`, built unless there already."""
    from selection import synthetic_router_data

    key = {"version": ROUTER_VERSION, "pool": pool_key, "layers": layers, "experts": experts, "seed": seed}

    def build(directory: Path) -> None:
        log(f"building router data ({pool_key['records']} x {layers} x {experts}) in {directory}")
        started = time.perf_counter()
        index = pool_index(pool)
        synthetic_router_data(directory, len(index), layers, experts, seed, index=index, signals=True)
        log(f"built the router data in {time.perf_counter() - started:.0f} s")

    if cached(cache / "router", key, build):
        log(f"reusing the router data in {cache / 'router'}")
    return cache / "router"


# ------------------------------------------------------------------------------------------------ the steps
def step_read(pool: Path, router: Path | None) -> dict:
    from mygo.data.pool import load_pool

    started = time.perf_counter()
    records = load_pool(pool).records
    return {"seconds": time.perf_counter() - started, "records": len(records)}


def step_dedup(pool: Path, router: Path | None) -> dict:
    from mygo.data.dedup import deduplicate
    from mygo.data.pool import load_pool

    records = load_pool(pool).records
    loaded = rss_gib()
    started = time.perf_counter()
    report = deduplicate(records, dedup_settings())
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "pool_rss_gib": loaded, "exact": report.exact_removed, "near": report.near_removed}


def step_decontam(pool: Path, router: Path | None) -> dict:
    from mygo.config import config_dir, load_config
    from mygo.data.decontamination import DecontaminationSettings, cached_eval_items, find_contamination
    from mygo.data.pool import load_pool

    records = load_pool(pool).records
    settings = DecontaminationSettings.from_config(load_config("warmup").dataset, config_dir() / "eval_tasks")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:
        items, _ = cached_eval_items(settings.tasks, settings.task_dir, Path(cache))
    loaded = time.perf_counter()

    def texts():
        for batch in records.select_columns(["messages"]).iter(batch_size=10_000):
            for messages in batch["messages"]:
                yield " ".join(message["content"] for message in messages)

    matches, _ = find_contamination(texts(), items, settings)
    seconds = time.perf_counter() - started
    parts = {"the tasks' items": loaded - started, "the pool checked": seconds - (loaded - started)}
    return {"seconds": seconds, "parts": parts, "items": len(items), "removed": len(matches)}


def step_signals(pool: Path, router: Path | None) -> dict:
    from mygo.analysis.text_overlap import NgramWeights, message_texts
    from mygo.analysis.text_signals import text_signals
    from mygo.data.pool import load_pool

    records = load_pool(pool).records
    started = time.perf_counter()

    def texts():  # as overlap_weights reads them
        for batch in records.iter(batch_size=1000):
            yield from message_texts(batch["messages"])

    weights = NgramWeights.fit(texts())
    idf = time.perf_counter() - started
    values = {name: np.empty(len(records), dtype=np.float32) for name in ("overlap", "prompt_copy", "repetition")}
    for start in range(0, len(records), SHARD_SIZE):
        batch = records[start : start + SHARD_SIZE]["messages"]
        for name, column in text_signals(batch, weights).items():
            values[name][start : start + len(batch)] = column
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "parts": {"idf": idf, "per record": seconds - idf}}


def step_select(pool: Path, router: Path | None, overrides: list[str] = ()) -> dict:
    from mygo.analysis.clustering import prepare_features
    from mygo.analysis.score_shards import load_router_data
    from mygo.config import load_config
    from mygo.stages.select import cluster, covering_text, write_selected_records
    from mygo.stages.selection_policy import SelectionPolicy, vetoed

    cfg = load_config("select", ["upstream.score_run=scale", f"clustering.kmeans.k={K}", *overrides])
    policy = SelectionPolicy.of(cfg)
    parts, mark = {}, time.perf_counter()

    def lap(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        parts[name], mark = now - mark, now

    data = load_router_data(router)
    lap("load")
    sources = data.index["dataset"].to_numpy().astype(str)
    count, _ = policy.budget(sources)
    quality = policy.quality(data)
    vetoes = policy.vetoes(data)
    excluded = vetoed(vetoes)
    lap("quality, vetoes")
    features = prepare_features(data.features, cfg.clustering.pca_components, cfg.clustering.seed)
    lap("features")
    clustering = cluster(features, cfg)
    lap(f"k-means k={clustering.chosen_k}")
    text = covering_text(data.index, cfg)
    lap("text embedding")
    chosen = policy.choose(quality, clustering.labels, sources, excluded, features, text)
    lap(f"round robin ({cfg.selection.within_cluster})")
    with tempfile.TemporaryDirectory() as tmp:
        write_selected_records(data.index, chosen.indices, Path(tmp) / "selected_data.jsonl")
    lap("write")
    return {"seconds": sum(parts.values()), "parts": parts, "selected": len(chosen.indices), "count": count}


STEP_FUNCTIONS = {
    "read": step_read,
    "dedup": step_dedup,
    "decontam": step_decontam,
    "signals": step_signals,
    "select": step_select,
}


def rss_gib() -> float:
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024 / GIB


def child(step: str, pool: str, router: str, overrides: str) -> None:
    """Run one step and print its figures as the last line of stdout (JSON)."""
    extra = {"overrides": overrides.split()} if step == "select" and overrides else {}
    figures = STEP_FUNCTIONS[step](Path(pool), Path(router) if router else None, **extra)
    print(json.dumps(figures), flush=True)


def run_step(step: str, pool: Path, router: Path | None, logs: Path, overrides: str = "") -> dict:
    """The step in a fresh child process: its figures, `peak_rss_gib` (the child's own) and `error` when it failed."""
    command = [sys.executable, __file__, "--child", step, str(pool), str(router or ""), overrides]
    env = os.environ | {"TQDM_DISABLE": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
    out, err = logs / f"{step}.out", logs / f"{step}.err"
    started = time.perf_counter()
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr, env=env)
        _, status, usage = os.wait4(process.pid, 0)  # the child's own rusage: its peak RSS alone
    process.returncode = code = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    peak = usage.ru_maxrss * 1024 / GIB  # KiB on Linux
    if code == 0:
        return json.loads(out.read_text().strip().splitlines()[-1]) | {"peak_rss_gib": peak}
    if code < 0:
        error = f"killed by {signal.Signals(-code).name}" + (" (out of memory?)" if -code == signal.SIGKILL else "")
    else:
        lines = [line for line in err.read_text().splitlines() if line.strip()]
        error = lines[-1] if lines else f"exit status {code}"
    return {"seconds": wall, "peak_rss_gib": peak, "error": error}


def log(message: str) -> None:
    print(f"[scale] {message}", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, help="pool size N (required)")
    parser.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated, of {','.join(STEPS)}")
    parser.add_argument("--cache", type=Path, help="where the pool and router data are kept (outputs/scale/<N>)")
    parser.add_argument("--seed", type=int, default=0, help="the generator's")
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--experts", type=int, default=64)
    parser.add_argument("--select", default="", help='select\'s Hydra overrides, e.g. "clustering.pca_components=64"')
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    if not args.records or args.records < 100:
        parser.error("--records N: a pool of at least 100 records")
    steps = [step.strip() for step in args.steps.split(",") if step.strip()]
    if unknown := sorted(set(steps) - set(STEPS)):
        parser.error(f"--steps: unknown {unknown}; choose from {list(STEPS)}")
    cache = args.cache or Path("outputs") / "scale" / str(args.records)
    pool, pool_key = ensure_pool(cache, args.records, args.seed)
    router = None
    if "select" in steps:
        router = ensure_router_data(cache, pool, pool_key, args.layers, args.experts, args.seed)
    logs = cache / "logs"
    logs.mkdir(exist_ok=True)
    results = {}
    print(f"{'step':<10}{'seconds':>10}{'peak_rss_gib':>14}", flush=True)
    for step in steps:
        log(f"running {step} (output in {logs})")
        results[step] = figures = run_step(step, pool, router, logs, args.select)
        line = f"{step:<10}{figures['seconds']:>10.1f}{figures['peak_rss_gib']:>14.2f}"
        if "error" in figures:
            line += f"  FAILED: {figures['error']}"
        elif "parts" in figures:
            line += "  (" + ", ".join(f"{name} {value:.1f} s" for name, value in figures["parts"].items()) + ")"
        print(line, flush=True)
    total = sum(figures["seconds"] for figures in results.values())
    peak = max((figures["peak_rss_gib"] for figures in results.values()), default=0.0)
    print(f"records={args.records} seconds={total:.1f} peak_rss_gib={peak:.2f}", flush=True)
    if any("error" in figures for figures in results.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
