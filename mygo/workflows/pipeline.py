"""The `main` entry point: chain the stages as child runs of one pipeline run, reusing finished ones.

As in MLflow's multistep workflow example, a stage whose resolved config (which includes the run
it builds on) matches a FINISHED run of that stage is not run again; the pipeline records which
runs it used and which it reused.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import mlflow
from omegaconf import DictConfig

from mygo.stages.table import STAGE_NAMES, STAGES
from mygo.tracking.notes import report, set_note
from mygo.tracking.redaction import redact_text
from mygo.tracking.reuse import run_or_reuse
from mygo.tracking.runs import stage_run
from mygo.workflows.controls import check_controls, has_arms, run_controls
from mygo.workflows.lineage import key_metrics
from mygo.workflows.stage_configs import check_stage_configs, stage_config

logger = logging.getLogger(__name__)


def stage_runners() -> dict[str, Callable[[DictConfig], str]]:
    """Each stage's runner, imported now (the table names them lazily)."""
    return {entry.name: entry.load_runner() for entry in STAGES}


PIPELINE_STAGES = STAGE_NAMES
CONTROLS_HEADING = "The selection against its controls (fine-tuned and evaluated alike)"


def forced_stages(force: str | None) -> set[str]:
    """`force=warmup`: warmup and every stage after it run again; `all`: every stage; null: none."""
    if not force:
        return set()
    if force == "all":
        return set(PIPELINE_STAGES)
    if force not in PIPELINE_STAGES:
        raise ValueError(f"pipeline.force={force!r} is not valid; choose all or one of {list(PIPELINE_STAGES)}")
    return set(PIPELINE_STAGES[PIPELINE_STAGES.index(force) :])


def summary_table(rows: list[tuple[str, str, bool, float]]) -> str:
    """Stage, run, reused or new, seconds spent here, and the run's key metrics."""
    lines = [f"{'stage':<10}{'run':<34}{'':<8}{'seconds':>8}  key metrics"]
    for stage, run_id, reused, seconds in rows:
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in key_metrics(mlflow.get_run(run_id)).items())
        lines.append(f"{stage:<10}{run_id:<34}{'reused' if reused else 'new':<8}{seconds:8.1f}  {metrics}")
    return "\n".join(lines)


def stages_until(until: str | None) -> tuple[str, ...]:
    """The stages to run: all, or up to and including `until` (a sweep with a cheap objective stops early)."""
    if not until:
        return PIPELINE_STAGES
    if until not in PIPELINE_STAGES:
        raise ValueError(f"pipeline.until={until!r} is not valid; choose one of {list(PIPELINE_STAGES)}")
    return PIPELINE_STAGES[: PIPELINE_STAGES.index(until) + 1]


def run_stages(cfg: DictConfig) -> list[tuple[str, str, bool, float]]:
    """Run or reuse each stage under the active run (recorded as `mygo.run.<stage>`, `mygo.reused.<stage>`)."""
    forced = forced_stages(cfg.pipeline.force)
    runners = stage_runners()
    rows, upstream = [], None
    for stage in stages_until(cfg.pipeline.until):
        started = time.perf_counter()
        config = stage_config(cfg, stage, upstream)
        upstream, reused = run_or_reuse(stage, config, runners[stage], force=stage in forced)
        mlflow.set_tags({f"mygo.run.{stage}": upstream, f"mygo.reused.{stage}": str(reused)})
        rows.append((stage, upstream, reused, time.perf_counter() - started))
    return rows


def run_pipeline(cfg: DictConfig) -> str:
    forced_stages(cfg.pipeline.force)  # bad settings fail before any run starts, a stage's overrides too
    check_controls(cfg.pipeline)
    stages = stages_until(cfg.pipeline.until)
    check_stage_configs(cfg, stages)
    with stage_run("pipeline", cfg, run_name="pipeline") as parent:
        rows = run_stages(cfg)
        table, comparison = summary_table(rows), ""
        print("\n" + table)
        if has_arms(cfg) and stages[-1] == "evaluate":
            comparison = run_controls(cfg, {stage: run_id for stage, run_id, _, _ in rows})
            print(f"\n{CONTROLS_HEADING}:\n" + comparison)
        uri = redact_text(mlflow.get_tracking_uri())
        ui = f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1"
        print(f"Compare runs with: {ui}")
        n_reused = sum(reused for _, _, reused, _ in rows)
        title = f"mygo pipeline: {' → '.join(stages)} ({len(rows) - n_reused} new, {n_reused} reused)"
        set_note(report(title, [("Stages", table), (CONTROLS_HEADING, comparison)], f"Compare runs with: `{ui}`"))
        return parent.info.run_id
