"""Diversity of 5% selections on the embedded default: round robin (the method) against random and quality top-k
selections of the same size, with the noise each keeps.

    python benchmarks/diversity.py [--store sqlite:///bench.db] [--score_run ID] [--percentage 0.05]

Without --score_run the tuned default warms up and scores the demo pool (IFD on, as in
`benchmarks/selection_quality.py`; reused when the store holds the same runs); the demo pool must name its
topics (`mygo_topic`, demo pool format 2). Select then runs each strategy by the default signal, random with
more seeds (one random draw is one sample of a spread), round robin with more clusters than the elbow picks and
round robin by each other quality signal.
Prints a markdown table (the README's "Diversity" section) and the issue's targets. Topic and noise labels are only
read to measure.
"""

from __future__ import annotations

import argparse
import logging
import os

import mlflow
import numpy as np

from mygo.config import load_config
from mygo.stages.score import run_score
from mygo.stages.select import run_select
from mygo.stages.warmup import run_warmup
from mygo.tracking.reuse import run_or_reuse
from mygo.workflows.controls import NO_BAND

STRATEGIES = ("round_robin", "random", "quality_topk")
COLUMNS = {
    "topic coverage": "diversity/topic_coverage",
    "coverage distance": "diversity/coverage_distance",
    "cluster entropy": "diversity/cluster_entropy",
    "distinct bigrams": "diversity/distinct_bigrams",
    "source mix distance": "diversity/source_mix_distance",
    "noise kept": "noise/fraction_selected",
}


def default_score_run() -> str:
    warmup, _ = run_or_reuse("warmup", load_config("warmup", []), run_warmup)
    overrides = [f"upstream.warmup_run={warmup}", "score.ifd=true"]
    score, _ = run_or_reuse("score", load_config("score", overrides), run_score)
    return score


def select_metrics(score_run: str, percentage: float, strategy: str, *extra: str) -> dict[str, float]:
    overrides = [f"upstream.score_run={score_run}", f"selection.percentage={percentage}"]
    overrides += [f"selection.strategy={strategy}", *extra]
    if strategy != "round_robin":  # the baselines draw from the whole pool, as the control arms do
        overrides += NO_BAND
    run, _ = run_or_reuse("select", load_config("select", overrides), run_select)
    return mlflow.get_run(run).data.metrics


def row(name: str, metrics: dict[str, float], spread: dict[str, float] | None = None) -> str:
    cells = []
    for key in COLUMNS.values():
        value = metrics.get(key)
        text = "-" if value is None else f"{value:.3f}"
        cells.append(text + (f" ± {spread[key]:.3f}" if spread and key in spread else ""))
    return f"| {name} | " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"))
    parser.add_argument("--score_run", default=None, help="a FINISHED score run of a pool with topics")
    parser.add_argument("--percentage", type=float, default=0.05)
    parser.add_argument("--random_seeds", type=int, default=5, help="random selections beyond seed 42")
    parser.add_argument("--ks", default="100,200", help="round robin with these fixed k too (comma-separated)")
    parser.add_argument("--signals", default="gate,nll,ifd", help="round robin by these quality signals too")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ["MLFLOW_TRACKING_URI"] = args.store
    mlflow.set_tracking_uri(args.store)
    score_run = args.score_run or default_score_run()
    by_strategy = {strategy: select_metrics(score_run, args.percentage, strategy) for strategy in STRATEGIES}
    if "diversity/topic_coverage" not in by_strategy["round_robin"]:
        print(f"score run {score_run}: its pool names no topics (mygo_topic): topic coverage is not measured")
    draws = [by_strategy["random"]]
    draws += [
        select_metrics(score_run, args.percentage, "random", f"selection.seed={seed}")
        for seed in range(args.random_seeds)
    ]
    mean = {key: float(np.mean([d[key] for d in draws])) for key in COLUMNS.values() if key in draws[0]}
    std = {key: float(np.std([d[key] for d in draws])) for key in mean}

    print(f"score run {score_run}; {args.percentage:.0%} selections by the default signal\n")
    print("| selection | " + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    chosen_k = int(by_strategy["round_robin"]["clustering/chosen_k"])
    print(row(f"round robin (elbow: k = {chosen_k})", by_strategy["round_robin"]))
    print(row("random (seed 42)", by_strategy["random"]))
    print(row(f"random (mean ± sd of {len(draws)} seeds)", mean, std))
    print(row("quality top-k", by_strategy["quality_topk"]))
    for k in [int(k) for k in args.ks.split(",") if k]:
        print(
            row(
                f"round robin, k = {k}",
                select_metrics(score_run, args.percentage, "round_robin", f"clustering.kmeans.k={k}"),
            )
        )
    for signal in [s for s in args.signals.split(",") if s]:
        by_signal = select_metrics(score_run, args.percentage, "round_robin", f"selection.quality_signal={signal}")
        print(row(f"round robin by {signal}", by_signal))

    robin, rand, topk = by_strategy["round_robin"], by_strategy["random"], by_strategy["quality_topk"]
    measured = [key for key in COLUMNS.values() if key.startswith("diversity/") and key in robin]
    same = all(robin[f"{key}/random"] == rand[key] and robin[f"{key}/topk"] == topk[key] for key in measured)
    print(f"\nround robin's in-run baselines (/random, /topk) equal the random and top-k runs: {same}")
    topic = "diversity/topic_coverage"
    targets = {
        "topic coverage >= random's": robin.get(topic, np.nan) >= rand.get(topic, np.inf),
        "topic coverage >= 1.2 x top-k's": robin.get(topic, np.nan) >= 1.2 * topk.get(topic, np.inf),
        "coverage distance <= random's": robin["diversity/coverage_distance"] <= rand["diversity/coverage_distance"],
        "noise kept <= 3%": robin["noise/fraction_selected"] <= 0.03 + 1e-9,
    }
    for target, met in targets.items():
        print(f"- round robin {target}: {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
