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

from mygo.config import load_config, split_overrides
from mygo.stages.table import STAGE_NAMES, STAGES
from mygo.tracking.redaction import redact_text
from mygo.tracking.reuse import run_or_reuse
from mygo.tracking.runs import stage_run, tracking_overrides
from mygo.workflows.lineage import key_metrics

logger = logging.getLogger(__name__)


def stage_runners() -> dict[str, Callable[[DictConfig], str]]:
    """Each stage's runner, imported now (the table names them lazily)."""
    return {entry.name: entry.load_runner() for entry in STAGES}


# Each stage after the first names the run it builds on under this config key.
UPSTREAM_KEY = {entry.name: entry.upstream_key for entry in STAGES if entry.upstream_key}
PIPELINE_STAGES = STAGE_NAMES


def stage_config(cfg: DictConfig, stage: str, upstream_run: str | None = None) -> DictConfig:
    """The stage's own config with the pipeline's tracking settings, its upstream run and forwarded overrides."""
    return load_config(stage, stage_overrides_of(cfg, stage, upstream_run))


def check_stage_configs(
    cfg: DictConfig, stages: tuple[str, ...], extra: dict[str, list[list[str]]] | None = None
) -> None:
    """Compose each stage's config with its forwarded overrides now, so that a typo in the last stage's fails before
    the first one runs (on the real presets, hours before). `extra`: more override sets to try per stage (the values
    a sweep may sample); each set is composed on top of the stage's overrides."""
    for stage in stages:
        for more in (extra or {}).get(stage) or [[]]:
            try:
                load_config(stage, stage_overrides_of(cfg, stage) + more)
            except ValueError as error:
                raise ValueError(f"stage_overrides.{stage}: {error}") from None


def stage_overrides_of(cfg: DictConfig, stage: str, upstream_run: str | None = None) -> list[str]:
    upstream = [f"{UPSTREAM_KEY[stage]}={upstream_run}"] if upstream_run else []
    return tracking_overrides(cfg) + upstream + split_overrides(cfg.stage_overrides.get(stage, ""))


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
    check_stage_configs(cfg, stages_until(cfg.pipeline.until))
    with stage_run("pipeline", cfg, run_name="pipeline") as parent:
        rows = run_stages(cfg)
        print("\n" + summary_table(rows))
        uri = redact_text(mlflow.get_tracking_uri())
        print(f"Compare runs with: mlflow ui --backend-store-uri {uri} --host 127.0.0.1")
        return parent.info.run_id
