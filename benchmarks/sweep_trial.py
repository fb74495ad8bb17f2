"""A selection-only sweep trial on cached router data: `python benchmarks/sweep_trial.py [--n 270000]` (target <= 60 s).

Makes a real convert -> warmup -> score chain of the quick tiny setup in a temporary MLflow store, points
the score run's router data at synthetic data of the real default's shape (270k samples x 16 layers x
64 experts; `selection.py` builds it), then runs a real Optuna study of `--trials` selection-only trials
(objective: the selection's mean quality, so no fine-tuning). Each trial is the whole trial path: the
pipeline's reuse lookups for convert, warmup and score, select on 270k samples with the elbow k-means,
and the MLflow records. Reported: each trial run's wall time, against a bare `select` on the same data in
the same process (the baseline: what a trial cannot avoid).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import mlflow
from selection import synthetic_router_data

from mygo.config import load_config
from mygo.stages.select import run_select
from mygo.tracking.handoffs import ROUTER_DATA_PATH_TAG
from mygo.workflows.pipeline import run_pipeline
from mygo.workflows.sweep import run_sweep

QUICK_BASE = [
    "model.vocab_size=512",
    "model.training.steps=8",
    "model.training.batch_size=4",
    "model.training.block_size=32",
    "model.training.max_train_tokens=20000",
    "model.training.max_heldout_tokens=2000",
]
SPACE = """objective: {metric: selection/quality_mean_selected, direction: maximize, stage: select}
sampler: {name: tpe, seed: 0}
params:
  select.selection.percentage: {type: float, low: 0.02, high: 0.1}
"""


def stage_overrides(root: Path) -> list[str]:
    warmup = [*QUICK_BASE, f"dataset.cache_dir={root / 'cache'}", "dataset.demo.num_samples=120"]
    warmup += ["dataset.max_sequence_length=192", "training.batch_size=8", "training.micro_batch_size=4"]
    warmup += ["training.probe_samples=0", f"training.output_dir={root / 'warmup'}"]
    stages = {
        "convert": [*QUICK_BASE, f"convert.output_dir={root / 'convert'}"],
        "warmup": warmup,
        "score": [f"score.output_dir={root / 'score'}"],
        "select": [f"output_dir={root / 'select'}"],
    }
    return [f"stage_overrides.{stage}='{' '.join(values)}'" for stage, values in stages.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=270_000)
    parser.add_argument("--trials", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
        mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
        overrides = stage_overrides(root)
        parent = run_pipeline(load_config("main", [*overrides, "pipeline.until=score"]))
        score_run = mlflow.get_run(parent).data.tags["mygo.run.score"]
        synthetic = root / "router_data"
        synthetic.mkdir()
        started = time.perf_counter()
        synthetic_router_data(synthetic, args.n, 16, 64)
        print(f"synthetic router data, {args.n} samples: {time.perf_counter() - started:.1f} s")
        mlflow.MlflowClient().set_tag(score_run, ROUTER_DATA_PATH_TAG, str(synthetic))

        started = time.perf_counter()
        run_select(load_config("select", [f"upstream.score_run={score_run}", f"output_dir={root / 'bare'}"]))
        bare = time.perf_counter() - started

        space = root / "space.yaml"
        space.write_text(SPACE)
        storage = f"sqlite:///{root / 'optuna.db'}"
        settings = [f"sweep.space={space}", f"sweep.n_trials={args.trials}", f"sweep.storage={storage}"]
        sweep_parent = run_sweep(load_config("sweep", [*overrides, *settings]))
        trials = mlflow.search_runs(
            search_all_experiments=True,
            filter_string=f"tags.`mlflow.parentRunId` = '{sweep_parent}'",
            output_format="list",
        )
    print(f"{'bare select (baseline)':<44}{bare:8.1f} s")
    for trial in sorted(trials, key=lambda run: run.info.start_time):
        seconds = (trial.info.end_time - trial.info.start_time) / 1000
        tags = trial.data.tags
        reused = [stage for stage in ("convert", "warmup", "score") if tags.get(f"mygo.reused.{stage}") == "True"]
        print(
            f"{trial.info.run_name + ' (reused ' + ','.join(reused) + ')':<44}{seconds:8.1f} s"
            f"   {seconds / bare:.2f}x the bare select   (target <= 60 s)"
        )


if __name__ == "__main__":
    main()
