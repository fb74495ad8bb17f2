"""Selection quality on the embedded default: how well each signal tells injected noise from clean data, per
noise kind, and how much noise each 5% selection keeps, for MyGO's upstream objective and the tuned default.

    python benchmarks/selection_quality.py [--store sqlite:///bench.db] [--objectives upstream,default]

Each objective warms up once (reused when the store already holds the same run) and scores the pool with
every signal (IFD on); select then runs round robin, quality top-k and random by each signal. Prints
markdown tables (the README's "Selection quality" section). The noise labels are only read to measure.
"""

from __future__ import annotations

import argparse
import logging
import os
import time

import mlflow

from mygo.config import load_config
from mygo.stages.score import run_score
from mygo.stages.select import run_select
from mygo.stages.warmup import run_warmup
from mygo.tracking.reuse import run_or_reuse

SIGNALS = ("gate", "nll", "ifd", "relevance", "overlap", "rank_mean", "rank_min")
KINDS = ("cut_off_answer", "mismatched_answer", "random_chars", "repeated_token", "shuffled_words")
SELECTIONS = [("round_robin", s) for s in SIGNALS] + [("quality_topk", s) for s in SIGNALS] + [("random", "gate")]


def warm_and_score(objective: str) -> tuple[str, str, float]:
    overrides = [] if objective == "default" else [f"objective={objective}"]
    started = time.perf_counter()
    warmup, _ = run_or_reuse("warmup", load_config("warmup", overrides), run_warmup)
    seconds = mlflow.get_run(warmup).data.metrics.get("warmup/seconds", time.perf_counter() - started)
    score, _ = run_or_reuse(
        "score", load_config("score", [f"upstream.warmup_run={warmup}", "score.ifd=true"]), run_score
    )
    return warmup, score, seconds


def auroc_table(rows: dict[str, dict[str, float]]) -> str:
    lines = ["| objective | signal | all | " + " | ".join(KINDS) + " |", "|---" * (len(KINDS) + 3) + "|"]
    for objective, metrics in rows.items():
        for signal in SIGNALS:
            values = [metrics.get(f"noise/auroc/{signal}")] + [metrics.get(f"noise/auroc/{signal}/{k}") for k in KINDS]
            cells = " | ".join("-" if v is None else f"{v:.3f}" for v in values)
            lines.append(f"| {objective} | {signal} | {cells} |")
    return "\n".join(lines)


def selection_table(score_runs: dict[str, str]) -> str:
    lines = [
        "| objective | strategy | signal | noise kept | " + " | ".join(KINDS) + " |",
        "|---" * (len(KINDS) + 4) + "|",
    ]
    for objective, score in score_runs.items():
        # Each strategy as MyGO has it (selector=upstream: no band, pool-wide quality), by each signal; then the
        # default selection (configs/select.yaml: NLL ranked within sources, the band, clusters by size).
        runs = [
            (
                strategy,
                signal,
                ["selector=upstream", f"selection.strategy={strategy}", f"selection.quality_signal={signal}"],
            )
            for strategy, signal in SELECTIONS
        ]
        runs.append(("default", "nll", []))
        for strategy, signal, extra in runs:
            config = load_config("select", [f"upstream.score_run={score}", *extra])
            metrics = mlflow.get_run(run_or_reuse("select", config, run_select)[0]).data.metrics
            kinds = " | ".join(f"{metrics.get(f'noise/fraction_selected/{k}', 0.0):.3f}" for k in KINDS)
            shown = "-" if strategy == "random" else signal
            lines.append(f"| {objective} | {strategy} | {shown} | {metrics['noise/fraction_selected']:.3f} | {kinds} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"))
    parser.add_argument(
        "--objectives", default="upstream,default", help="comma-separated: upstream, corruption, default"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ["MLFLOW_TRACKING_URI"] = args.store
    mlflow.set_tracking_uri(args.store)
    rows, score_runs = {}, {}
    for objective in args.objectives.split(","):
        warmup, score, seconds = warm_and_score(objective)
        print(f"{objective}: warmup {warmup} ({seconds:.0f} s), score {score}")
        rows[objective] = mlflow.get_run(score).data.metrics
        score_runs[objective] = score
    print("\nNoise AUROC (clean vs noisy; 0.5 is chance), all noise and per kind:\n")
    print(auroc_table(rows))
    print("\nInjected noise kept by 5% selections (pool: 0.150), overall and per kind:\n")
    print(selection_table(score_runs))


if __name__ == "__main__":
    main()
