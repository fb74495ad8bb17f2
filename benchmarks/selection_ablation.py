"""What each part of a selection buys on the fine-tuned model: the selection with one thing changed at a time, each
against random over the same training seeds, per task and out-of-domain mean, with its noise and diversity.

    python benchmarks/selection_ablation.py [--store sqlite:///mlflow.db] [--seeds 0,1,2,3,4] \\
        [--settings ablation.json] [--split val]

`ablation.json` maps a name to a list of `main` overrides (`{"no vetoes": ["select.selection.veto_signals=null"]}`);
without it, SETTINGS below (each relative to the default select config). Every setting is one `main` run with the
random control arm in the same store, so the shared stages and the random arm are reused; only the split
`--split` is evaluated (choose on val; the test split is for the default alone). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import mlflow
from trial_figures import header, row

from mygo.config import load_config
from mygo.workflows.pipeline import run_pipeline

SETTINGS = {
    "the default": [],
    "MyGO's own selection (selector=upstream)": ["select.selector=upstream"],
    "MyGO's gate and nll, mean rank": [
        "select.selection.quality_signal=rank_mean",
        "select.selection.rank_mean_of=[nll,gate]",
    ],
    "MyGO's gate as the quality signal": ["select.selection.quality_signal=gate"],
    "without the band (nll)": ["select.selection.quality_floor=0", "select.selection.quality_ceiling=0"],
    "without the overlap veto": ["select.selection.veto_signals=[relevance]"],
    "without the relevance veto": ["select.selection.veto_signals=[overlap]"],
    "without the fault limits": ["select.selection.max_prompt_copy=null", "select.selection.max_repetition=null"],
    "random order within clusters (the old default)": ["select.selection.within_cluster=random"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="sqlite:///mlflow.db")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--settings", type=Path, help="JSON: name -> list of main overrides")
    parser.add_argument("--split", default="val", choices=("val", "test"))
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    settings = json.loads(args.settings.read_text()) if args.settings else SETTINGS
    common = [f"tracking.uri={args.store}", "pipeline.controls=[random]", f"pipeline.seeds=[{args.seeds}]"]
    common.append(f"evaluate.evaluation.splits=[{args.split}]")
    rows = []
    for name, overrides in settings.items():
        pipeline = mlflow.get_run(run_pipeline(load_config("main", [*common, *overrides])))
        select_run = pipeline.data.tags["mygo.run.select"]
        rows.append(row(name, " ".join(overrides), pipeline.data.metrics, select_run, args.split, "random"))
    print(header("setting"))
    print("\n".join(rows))


if __name__ == "__main__":
    main()
