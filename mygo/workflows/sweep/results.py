"""What a study ends with on its parent run: the best trial, its tuned model's alias, Optuna's plots, the trials."""

from __future__ import annotations

import logging

import mlflow
import optuna
from optuna.trial import TrialState

from mygo.tracking import plots
from mygo.tracking.models import MODEL_VERSION_TAG, set_alias
from mygo.workflows.sweep.study import TRIAL_RUN_ATTR

logger = logging.getLogger(__name__)


BEST_ALIAS = "best"  # the registry alias of the best trial's tuned model


def alias_best_model(trial_run: str) -> str | None:
    """Point the alias `best` at the registered version of the best trial's finetune run; returns its URI.

    None when the trial stopped before finetune or its run logged no registered model (tracking.log_model or
    tracking.registered_model off)."""
    finetune = mlflow.get_run(trial_run).data.tags.get("mygo.run.finetune") if trial_run else None
    version = mlflow.get_run(finetune).data.tags.get(MODEL_VERSION_TAG) if finetune else None
    if not version:
        return None
    set_alias(version, BEST_ALIAS)
    uri = f"models:/{version.rpartition('/')[0]}@{BEST_ALIAS}"
    mlflow.set_tag("mygo.best_model", uri)
    logger.info("%s is version %s", uri, version)
    return uri


def log_study_results(study: optuna.Study) -> None:
    """The best trial and Optuna's plots, on the (active) parent run."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    counts = {state.name.lower(): len(study.get_trials(deepcopy=False, states=(state,))) for state in TrialState}
    mlflow.log_metrics({f"trials/{state}": float(count) for state, count in counts.items()})
    if not complete:
        return
    try:
        best = study.best_trial
    except ValueError:  # constrained, and no complete trial meets the constraints
        logger.warning("study %s: no complete trial meets the objective's constraints", study.study_name)
        mlflow.set_tag("mygo.best_trial", "none: no trial meets the objective's constraints")
        return
    mlflow.log_metrics({"best/objective": best.value, "best/trial_number": float(best.number)})
    mlflow.set_tags(
        {"mygo.best_trial_run": best.user_attrs.get(TRIAL_RUN_ATTR, ""), "mygo.best_trial": str(best.number)}
    )
    mlflow.log_dict({"number": best.number, "value": best.value, "params": best.params}, "best_trial.json")
    alias_best_model(best.user_attrs.get(TRIAL_RUN_ATTR, ""))
    from optuna.visualization import matplotlib as optuna_plots

    for name, plot in (
        ("optimization_history", optuna_plots.plot_optimization_history),
        ("param_importances", optuna_plots.plot_param_importances),
        ("parallel_coordinate", optuna_plots.plot_parallel_coordinate),
    ):
        try:
            axes = plot(study)
        except (ValueError, RuntimeError, ZeroDivisionError) as error:  # too few trials for this view
            logger.info("no %s plot: %s", name, error)
            continue
        figure = axes.flat[0].figure if hasattr(axes, "flat") else axes.figure
        figure.set_size_inches(9, 5)
        plots.log_figure(figure, f"plots/{name}.png")


def trials_table(study: optuna.Study) -> str:
    """Every trial of the study: number, state, objective value and its MLflow run."""
    lines = [f"{'trial':>5}  {'state':<9}{'value':>12}  {'run':<34}params"]
    for trial in study.get_trials(deepcopy=False):
        value = "-" if trial.value is None else f"{trial.value:.4g}"
        run_id = trial.user_attrs.get(TRIAL_RUN_ATTR, "-")
        lines.append(f"{trial.number:>5}  {trial.state.name.lower():<9}{value:>12}  {run_id:<34}{trial.params}")
    return "\n".join(lines)
