"""Signals as detectors ranked within sources, as the default selection ranks them, and the noise that vetoes
keep out of the default selection, over several selection seeds (the random order within clusters).

    python benchmarks/vetoes.py --score_run <run id> [--store sqlite:///mlflow.db] [--seeds 8]

Select runs only (seconds each, no model); they go to the experiment `benchmark-vetoes`. Prints markdown tables
(the README's "Overlap and vetoes"). The noise labels are read only to measure; the kinds are the pool's own.
"""

from __future__ import annotations

import argparse
import logging
import os

import mlflow
import numpy as np

from mygo.analysis.noise_metrics import noise_metrics
from mygo.analysis.quality_signals import available_signals, rank_within, signal_values
from mygo.config import load_config
from mygo.signal_table import FAULT_LIMITS
from mygo.stages.select import run_select
from mygo.stages.selection_policy import SelectionPolicy
from mygo.tracking.handoffs import router_data_of

NO_LIMITS = [f"selection.{key}=null" for key in FAULT_LIMITS]
SETTINGS = {
    "no veto": ["selection.veto_signals=null", *NO_LIMITS],
    "overlap and relevance vetoes 0.1": NO_LIMITS,
    "the same, copy limit 0.8": ["selection.max_repetition=null"],
    "the same, copy limit 0.8 and repetition limit 0.5 (the default)": [],
    "overlap veto 0.1 alone, both limits": ["selection.veto_signals=[overlap]"],
}


def ranked_with_faults_last(ranks: np.ndarray, data, cfg) -> np.ndarray:
    """The ranks, with every sample over a fault limit of `cfg` (the default select config) below all others: how
    the default selection treats them, whatever their rank (the selection policy's own veto masks)."""
    masks = [mask for key, mask in SelectionPolicy.of(cfg).vetoes(data).items() if key in FAULT_LIMITS]
    return np.where(np.logical_or.reduce(masks), -1.0, ranks) if masks else ranks


def auroc_within_source(score_run: str) -> tuple[str, list[str]]:
    data = router_data_of(mlflow.get_run(score_run))
    kinds = data.index["mygo_noise"].tolist()
    names = sorted({k for k in kinds if isinstance(k, str)})
    sources = data.index["dataset"].to_numpy()
    singles = [n for n in available_signals(data.sample_quality, data.signals) if not n.startswith("rank_")]
    ranks = {n: rank_within(signal_values(n, data.sample_quality, data.signals), sources) for n in singles}
    rows = dict(ranks)
    if {"nll", "overlap"} <= set(ranks):
        rows["lowest rank of nll, overlap"] = np.minimum(ranks["nll"], ranks["overlap"])
        rows["mean rank of nll, overlap"] = (ranks["nll"] + ranks["overlap"]) / 2
        defaults = load_config("select", [f"upstream.score_run={score_run}"])
        rows["lowest rank of nll, overlap; over a fault limit last"] = ranked_with_faults_last(
            rows["lowest rank of nll, overlap"], data, defaults
        )
    lines = ["| signal (ranked within source) | all | " + " | ".join(names) + " |", "|---" * (len(names) + 2) + "|"]
    for name, values in rows.items():
        metrics = noise_metrics(values, kinds)
        cells = [metrics["noise/auroc"]] + [metrics[f"noise/auroc/{kind}"] for kind in names]
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in cells) + " |")
    return "\n".join(lines), names


def noise_kept(score_run: str, kinds: list[str], seeds: int) -> str:
    lines = ["| selection | noise kept | " + " | ".join(kinds) + " |", "|---" * (len(kinds) + 2) + "|"]
    for name, overrides in SETTINGS.items():
        rows = []
        for seed in range(seeds):
            cfg = load_config(
                "select",
                [
                    f"upstream.score_run={score_run}",
                    "tracking.experiment=benchmark-vetoes",
                    "tracking.system_metrics=false",
                    f"selection.seed={seed}",
                    *overrides,
                ],
            )
            metrics = mlflow.get_run(run_select(cfg)).data.metrics
            rows.append([metrics["noise/fraction_selected"]] + [metrics[f"noise/fraction_selected/{k}"] for k in kinds])
        values = np.array(rows)
        mean, se = values.mean(0), values.std(0, ddof=1) / np.sqrt(len(values))
        lines.append(f"| {name} | " + " | ".join(f"{m:.3f} ± {s:.3f}" for m, s in zip(mean, se, strict=True)) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--score_run", required=True)
    parser.add_argument("--store", default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"))
    parser.add_argument("--seeds", type=int, default=8)
    args = parser.parse_args()
    os.environ["MLFLOW_TRACKING_URI"] = args.store
    mlflow.set_tracking_uri(args.store)
    logging.basicConfig(level=logging.WARNING)
    table, kinds = auroc_within_source(args.score_run)
    print(table + "\n")
    print(noise_kept(args.score_run, kinds, args.seeds))


if __name__ == "__main__":
    main()
