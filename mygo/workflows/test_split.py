"""The test split, scored once: sweep trials choose on `eval/<task>/val/...`; only the best trial meets the test set.

A sweep's `best/objective` is the best of many validation figures, so it is optimistic; the best trial's
adapter is evaluated again on the test split alone, as a child of the sweep's run, and that figure is
logged as `best/eval/<task>/test/<metric>`, the one to report.
"""

from __future__ import annotations

import mlflow
from omegaconf import OmegaConf, open_dict

from mygo.stages.evaluate import run_evaluate
from mygo.tracking.reuse import run_or_reuse

TRIAL_SPLITS = "[val]"  # what a trial's evaluate scores (the objective must be a validation figure)
TEST_RUN_TAG = "mygo.best_trial_test_run"


def evaluate_best_on_test(best_trial_run: str) -> str | None:
    """The best trial's evaluate settings on the test split (reused like any stage), logged on the active run."""
    evaluate_id = mlflow.get_run(best_trial_run).data.tags.get("mygo.run.evaluate")
    if not evaluate_id:
        return None  # the objective stage came before evaluate
    cfg = OmegaConf.create(mlflow.artifacts.load_text(f"runs:/{evaluate_id}/config/resolved.yaml"))
    with open_dict(cfg):
        cfg.evaluation.splits = ["test"]
    test_id, _ = run_or_reuse("evaluate", cfg, run_evaluate)
    metrics = mlflow.get_run(test_id).data.metrics
    mlflow.log_metrics({f"best/{key}": value for key, value in metrics.items() if "/test/" in key})
    mlflow.set_tag(TEST_RUN_TAG, test_id)
    return test_id
