"""Optuna sweeps over the pipeline: search spaces as YAML, one MLflow parent run per study, a child run per trial.

A trial is the pipeline with sampled settings (`<stage>.<config key>` in the space file), run up to the
objective's stage; stages whose config did not change are reused, so a selection-only trial reuses
its warmup and score runs. Several workers (`mygo sweep` processes on one machine or many) share a
study through Optuna's RDB storage and the MLflow tracking store: the worker that creates the study
creates its parent run, the others nest their trials under it. A trial whose worker died is failed
by the heartbeat and retried (`RetryHeartbeatStaleTrialCallback`); a stopped study resumes where it stopped.

An objective may carry constraints (`objective.constraints: [{metric, at_most | at_least}]`, bounds a number or
another metric of the same run), e.g. the least noise among selections at least as diverse as a random one: each
trial records them (`Trial.set_constraint`), TPE samples with them and the best trial is the best that meets them.
"""

from __future__ import annotations

import logging
import os

import mlflow
from omegaconf import DictConfig
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState

from mygo.tracking.failures import recording_failures
from mygo.tracking.notes import report, set_note
from mygo.tracking.redaction import redact_text
from mygo.tracking.runs import configure_tracking
from mygo.workflows.sweep.objective import constraint_values, make_objective, metric_in
from mygo.workflows.sweep.results import log_study_results, trials_table
from mygo.workflows.sweep.space import SearchSpace, SpaceError, check_sweep_configs, load_space, resolve_space_path
from mygo.workflows.sweep.storage import STORAGE_ENV, default_storage, open_storage
from mygo.workflows.sweep.study import (
    PARENT_RUN_ATTR,
    TRIAL_RUN_ATTR,
    check_some_trial_completed,
    ensure_parent_run,
    open_study,
)
from mygo.workflows.test_split import evaluate_best_on_test

__all__ = [
    "PARENT_RUN_ATTR",
    "STORAGE_ENV",
    "TRIAL_RUN_ATTR",
    "SearchSpace",
    "SpaceError",
    "check_sweep_configs",
    "constraint_values",
    "ensure_parent_run",
    "load_space",
    "log_study_results",
    "metric_in",
    "open_storage",
    "resolve_space_path",
    "run_sweep",
]

logger = logging.getLogger(__name__)


def run_sweep(cfg: DictConfig) -> str:
    """Run (or join) the study until it holds `sweep.n_trials` COMPLETE trials; returns the parent run ID."""
    configure_tracking(cfg)
    space = load_space(cfg.sweep.space)
    check_sweep_configs(cfg, space)  # before the storage, the study and any run
    study_name = cfg.sweep.study or space.path.stem
    storage_url = cfg.sweep.storage or os.environ.get(STORAGE_ENV) or default_storage()
    storage = open_storage(storage_url, cfg)
    study, parent = open_study(cfg, space, storage, study_name)
    logger.info("study %s (%s): parent run %s", study_name, redact_text(storage_url), parent)
    target = cfg.sweep.n_trials
    # Under `mlflow run` in a worker that joined the study, its own run stays empty: trials go under the parent.
    with mlflow.start_run(run_id=parent), recording_failures("sweep", parent):
        done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        if done < target:
            study.optimize(
                make_objective(cfg, space),
                # Enough attempts for the failures a retry policy allows; the callback stops at the target.
                n_trials=(target - done) * (cfg.sweep.max_retry + 1),
                callbacks=[MaxTrialsCallback(target, states=(TrialState.COMPLETE,))],
                catch=(Exception,),
            )
        log_study_results(study)
        check_some_trial_completed(study)  # inside: the parent run records the failure (mygo.error, FAILED)
        if best_run := mlflow.get_run(parent).data.tags.get("mygo.best_trial_run"):
            evaluate_best_on_test(best_run)
    complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    lines = [f"study {study_name}: {complete} complete trials; parent run {parent}"]
    if complete:
        try:
            best = study.best_trial
        except ValueError:  # constrained, none feasible
            lines.append("no complete trial meets the objective's constraints")
        else:
            lines.append(f"best trial {best.number}: {best.value:.4g} with {best.params}")
    print("\n".join(lines))
    # The parent's run page: what this worker printed, and every trial of the study so far.
    title = f"mygo sweep {study_name}: {space.objective['metric']}"
    set_note(report(title, [("", "\n".join(lines)), ("Trials", trials_table(study))]), parent)
    return parent
