"""A trial: the pipeline with the sampled settings as a child run of the study's, its objective and constraints."""

from __future__ import annotations

import os
import socket
from typing import Any

import mlflow
import optuna
from omegaconf import DictConfig

from mygo.config import load_config
from mygo.tracking.failures import error_text
from mygo.tracking.notes import report, set_note
from mygo.tracking.runs import stage_run, tracking_overrides
from mygo.workflows.controls import run_controls
from mygo.workflows.pipeline import PIPELINE_STAGES, run_stages, summary_table
from mygo.workflows.sweep.space import SearchSpace, delta_control, sample
from mygo.workflows.sweep.study import TRIAL_RUN_ATTR
from mygo.workflows.test_split import TRIAL_SPLITS


def trial_overrides(cfg: DictConfig, values: dict[str, Any]) -> list[str]:
    """main's overrides for one trial: the sweep's stage overrides, then the sampled settings."""
    per_stage = {stage: [cfg.stage_overrides.get(stage) or ""] for stage in PIPELINE_STAGES}
    for name, value in values.items():
        stage, key = name.split(".", 1)
        per_stage[stage].append(f"{key}={value}")
    per_stage["evaluate"].append(f"evaluation.splits={TRIAL_SPLITS}")  # trials never see the test split
    joined = {stage: " ".join(part for part in parts if part) for stage, parts in per_stage.items()}
    return [f"stage_overrides.{stage}='{text}'" for stage, text in joined.items() if text]


def objective_value(run_id: str, metric: str) -> float:
    """The metric of the objective stage's run; `{task}` matches the evaluated task."""
    return metric_in(mlflow.get_run(run_id).data.metrics, metric, f"run {run_id}")


def metric_in(metrics: dict[str, float], metric: str, where: str) -> float:
    """`metric` from `metrics`; `{task}` matches the evaluated task. `where` names the run(s) in the error."""
    if "{task}" in metric:
        prefix, suffix = metric.split("{task}", 1)
        found = sorted(
            k for k in metrics if k.startswith(prefix) and k.endswith(suffix) and k.count("/") == metric.count("/")
        )
        if not found:
            raise ValueError(f"{where} logged no metric matching {metric!r}")
        metric = found[0]
    if metric not in metrics:
        raise ValueError(f"{where} logged no metric {metric!r}; it has {sorted(metrics)[:10]}...")
    return metrics[metric]


def constraint_values(run_ids: list[str], constraints: list[dict[str, Any]]) -> list[float]:
    """Each constraint as Optuna takes it, <= 0 where it holds: value - bound (at_most), bound - value (at_least);
    each metric read from the first of `run_ids` that logged it (a trial's run holds the deltas against its
    control arm, its select run the noise and diversity figures)."""
    metrics: dict[str, float] = {}
    for run_id in reversed(run_ids):  # each run read once; the first one's figures win
        metrics |= mlflow.get_run(run_id).data.metrics
    where = f"runs {', '.join(run_ids)}"
    values = []
    for constraint in constraints:
        value = metric_in(metrics, constraint["metric"], where)
        kind = "at_most" if "at_most" in constraint else "at_least"
        bound = constraint[kind]
        bound = metric_in(metrics, bound, where) if isinstance(bound, str) else float(bound)
        values.append(value - bound if kind == "at_most" else bound - value)
    return values


def make_objective(cfg: DictConfig, space: SearchSpace):
    def objective(trial: optuna.Trial) -> float:
        values = sample(trial, space)
        metric = space.objective["metric"]
        control = delta_control(metric)  # eval/.../bpb/delta_vs_random: the trial runs that control arm too
        main_cfg = load_config(
            "main",
            tracking_overrides(cfg)
            + trial_overrides(cfg, values)
            + [f"pipeline.until={space.objective['stage']}", f"pipeline.controls={[control] if control else []}"]
            + [f"pipeline.seeds={list(cfg.pipeline.seeds or [])}"],
        )
        with stage_run("trial", main_cfg, run_name=f"trial-{trial.number}") as run:
            trial.set_user_attr(TRIAL_RUN_ATTR, run.info.run_id)
            mlflow.set_tags(
                {
                    "optuna.trial_number": str(trial.number),
                    "optuna.study": trial.study.study_name,
                    "mygo.worker": f"{socket.gethostname()}:{os.getpid()}",
                }
            )
            mlflow.log_params({f"trial.{name}": value for name, value in values.items()})
            try:
                rows = run_stages(main_cfg)
            except Exception as error:  # the trial's run records it (mygo.error, logs/trial.log); Optuna too
                trial.set_user_attr("error", error_text(error)[:1000])
                raise
            stage_runs = {stage: run_id for stage, run_id, _, _ in rows}
            set_note(report(f"mygo sweep trial {trial.number}: {values}", [("Stages", summary_table(rows))]))
            if control:
                run_controls(main_cfg, stage_runs)  # logs the deltas on this trial's run
                value = objective_value(run.info.run_id, metric)
            else:
                value = objective_value(stage_runs[space.objective["stage"]], metric)
            mlflow.log_metric("objective", value)
            if constraints := space.objective.get("constraints"):
                objective_run = run.info.run_id if control else stage_runs[space.objective["stage"]]
                held = constraint_values([objective_run, *reversed(stage_runs.values())], constraints)
                for number, (constraint, excess) in enumerate(zip(constraints, held, strict=True)):
                    trial.set_constraint(f"{number}:{constraint['metric']}", excess)
                mlflow.log_metric("objective/feasible", float(all(v <= 0 for v in held)))
            return value

    return objective
