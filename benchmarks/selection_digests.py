"""The selected ids' digest of several select settings on one score run: run it before and after a change to the
selection code, and the two lists must be equal wherever the change was meant to keep behaviour.

    python benchmarks/selection_digests.py --score_run <id> [--store sqlite:///mlflow.db] > digests.txt

Select runs go to the experiment `benchmark-selection-digests`; each line is `<setting>\t<sha256 of the ids>`.
"""

from __future__ import annotations

import argparse
import logging

import mlflow

from mygo.config import load_config
from mygo.stages.select import run_select
from mygo.tracking.handoffs import SELECTED_IDS_TAG
from mygo.workflows.controls import control_overrides

NO_BAND = ["selection.quality_floor=0", "selection.quality_ceiling=0"]
SETTINGS = {
    "default": [],
    "random arm": control_overrides("random", 3),
    "quality_topk arm": control_overrides("quality_topk", None),
    "gate, MyGO's order": ["selection.quality_signal=gate", "selection.within_cluster=quality", *NO_BAND],
    "rank_mean, equal quota, cluster floor": [
        "selection.quality_signal=rank_mean",
        "selection.cluster_quota=equal",
        "selection.floor_scope=cluster",
    ],
    "coverage, outliers, veto 0.2": [
        *NO_BAND,
        "selection.within_cluster=coverage",
        "selection.outlier_signals=[nll]",
        "selection.outlier_z=1.5",
        "selection.veto_share=0.2",
    ],
    "equal sources, capped": ["selection.source_balance=equal", "selection.source_caps={cot:20}"],
    "proportional sources, count": ["selection.source_balance=proportional", "selection.count=150"],
    "pool quality, no limits": [
        "selection.quality_within=pool",
        "selection.max_prompt_copy=null",
        "selection.max_repetition=null",
    ],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--score_run", required=True)
    parser.add_argument("--store", default="sqlite:///mlflow.db")
    parser.add_argument("--output_dir", default="outputs/benchmark_selection_digests")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    mlflow.set_tracking_uri(args.store)
    base = [f"upstream.score_run={args.score_run}", f"output_dir={args.output_dir}"]
    base += ["tracking.experiment=benchmark-selection-digests", "tracking.system_metrics=false"]
    for name, overrides in SETTINGS.items():
        run = mlflow.get_run(run_select(load_config("select", [*base, *overrides])))
        print(f"{name}\t{run.data.tags[SELECTED_IDS_TAG]}", flush=True)


if __name__ == "__main__":
    main()
