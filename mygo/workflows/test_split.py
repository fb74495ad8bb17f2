"""The test split, scored once: sweep trials choose on `eval/<task>/val/...`; only the best trial meets the test set.

A sweep's `best/objective` is the best of many validation figures, so it is optimistic; the best trial's
adapter is evaluated again on the test split alone, as a child of the sweep's run, and that figure is
logged as `best/eval/<task>/test/<metric>`, the one to report. A trial that ran control arms over seeds has
every arm and seed evaluated on test, and their comparison logged on the sweep's run as main logs one
(`eval/<task>/test/<metric>/delta_vs_<arm>`, `comparison/table.txt`).
"""

from __future__ import annotations

import mlflow
from omegaconf import OmegaConf, open_dict

from mygo.stages.evaluate import run_evaluate
from mygo.tracking.reuse import run_or_reuse
from mygo.workflows.compare import ARM_TAG, REFERENCE_ARM, SEED_TAG, arms_of, log_comparison

TRIAL_SPLITS = "[val]"  # what a trial's evaluate scores (the objective must be a validation figure)
TEST_RUN_TAG = "mygo.best_trial_test_run"


def on_test(evaluate_id: str) -> str:
    """An evaluate run's settings on the test split alone (reused like any stage run)."""
    cfg = OmegaConf.create(mlflow.artifacts.load_text(f"runs:/{evaluate_id}/config/resolved.yaml"))
    with open_dict(cfg):
        cfg.evaluation.splits = ["test"]
    test_id, _ = run_or_reuse("evaluate", cfg, run_evaluate)
    source = mlflow.get_run(evaluate_id).data.tags
    for tag in (ARM_TAG, SEED_TAG):
        if tag in source:
            mlflow.MlflowClient().set_tag(test_id, tag, source[tag])
    return test_id


def evaluate_best_on_test(best_trial_run: str) -> str | None:
    """The best trial's evaluate runs (every arm and seed) on the test split, logged on the active run; returns
    the selection's first-seed test run."""
    trial = mlflow.get_run(best_trial_run)
    if not trial.data.tags.get("mygo.run.evaluate"):
        return None  # the objective stage came before evaluate
    arms = {arm: {seed: on_test(run_id) for seed, run_id in seeds.items()} for arm, seeds in arms_of(trial).items()}
    test_id = arms[REFERENCE_ARM][min(arms[REFERENCE_ARM])]
    metrics = mlflow.get_run(test_id).data.metrics
    mlflow.log_metrics({f"best/{key}": value for key, value in metrics.items() if "/test/" in key})
    mlflow.set_tag(TEST_RUN_TAG, test_id)
    if len(arms) > 1 or len(arms[REFERENCE_ARM]) > 1:
        log_comparison(arms, "the best trial on the test split")
    return test_id
