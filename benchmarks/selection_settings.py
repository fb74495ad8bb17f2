"""Noise kept and diversity against random of several select settings on one score run (select runs only: seconds
each, no fine-tuning), averaged over selection seeds.

    python benchmarks/selection_settings.py --score_run <id> [--store sqlite:///mlflow.db] [--seeds 3] \
        [--settings settings.json]

`settings.json` maps a name to a list of select overrides (`{"no band": ["selection.quality_floor=0", ...]}`);
without it, SETTINGS below. Select runs go to the experiment `benchmark-selection-settings`. Prints a markdown
table: noise kept (and per kind), topic coverage, distinct bigrams and coverage distance, each beside the random
selection of the same size that every select run measures. The noise and topic labels are only read to measure.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import mlflow

from mygo.config import load_config
from mygo.stages.select import run_select

NO_BAND = ["selection.quality_floor=0", "selection.quality_ceiling=0"]
SETTINGS = {
    "the default": [],
    "no band": NO_BAND,
    "no band, nll outliers (z 1.5) out": [*NO_BAND, "selection.outlier_signals=[nll]", "selection.outlier_z=1.5"],
    "coverage order, floor 0.15, veto share 0.2": [
        "selection.quality_floor=0.15",
        "selection.quality_ceiling=0",
        "selection.within_cluster=coverage",
        "selection.veto_share=0.2",
    ],
}
# (metric, its random baseline or None)
COLUMNS = (
    ("noise/fraction_selected", None),
    ("diversity/topic_coverage", "diversity/topic_coverage/random"),
    ("diversity/distinct_bigrams", "diversity/distinct_bigrams/random"),
    ("diversity/coverage_distance", "diversity/coverage_distance/random"),
)


def mean_metrics(runs: list[dict[str, float]]) -> dict[str, float]:
    keys = set().union(*runs)
    return {key: sum(run.get(key, 0.0) for run in runs) / len(runs) for key in keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--score_run", required=True)
    parser.add_argument("--store", default="sqlite:///mlflow.db")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--settings", type=Path, help="JSON: name -> list of select overrides")
    parser.add_argument("--output_dir", default="outputs/benchmark_selection_settings")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    mlflow.set_tracking_uri(args.store)
    settings = json.loads(args.settings.read_text()) if args.settings else SETTINGS
    base = [f"upstream.score_run={args.score_run}", f"output_dir={args.output_dir}"]
    base += ["tracking.experiment=benchmark-selection-settings"]
    print(
        "| setting | noise kept | topic coverage (random) | distinct bigrams (random) | coverage distance (random) "
        "| noise kept per kind |"
    )
    print("|---|---|---|---|---|---|")
    for name, overrides in settings.items():
        runs = []
        for seed in range(args.seeds):
            cfg = load_config("select", [*base, f"selection.seed={seed}", *overrides])
            runs.append(mlflow.get_run(run_select(cfg)).data.metrics)
        found = mean_metrics(runs)
        cells = [
            f"{found[metric]:.4f}" + (f" ({found[baseline]:.4f})" if baseline else "") for metric, baseline in COLUMNS
        ]
        kinds = {
            key.rsplit("/", 1)[1]: round(value, 3)
            for key, value in sorted(found.items())
            if key.startswith("noise/fraction_selected/")
        }
        print(f"| {name} | {' | '.join(cells)} | {kinds} |", flush=True)


if __name__ == "__main__":
    main()
