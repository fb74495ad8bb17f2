"""The `main` entry point: chain the stages as child runs of one pipeline run, reusing finished ones.

As in MLflow's multistep workflow example, a stage whose resolved config matches a FINISHED run
of that stage is not run again; the pipeline records which runs it reused.
"""

from __future__ import annotations

import logging

import mlflow
from omegaconf import DictConfig

from mygo.config import load_config, split_overrides
from mygo.tracking import run_or_reuse, stage_run

logger = logging.getLogger(__name__)


def stage_config(cfg: DictConfig, stage: str) -> DictConfig:
    """The stage's own config with the pipeline's tracking settings and its forwarded overrides."""
    tracking = [f"tracking.{key}={'null' if value is None else value}" for key, value in cfg.tracking.items()]
    return load_config(stage, tracking + split_overrides(cfg.stage_overrides.get(stage, "")))


def run_pipeline(cfg: DictConfig) -> str:
    from mygo.convert import run_convert

    with stage_run("pipeline", cfg, run_name="pipeline") as parent:
        convert_run, reused = run_or_reuse("convert", stage_config(cfg, "convert"), run_convert)
        mlflow.set_tags({"mygo.run.convert": convert_run, "mygo.reused.convert": str(reused)})
        print(f"convert  {convert_run}  {'reused' if reused else 'new'}")
        print(f"Compare runs with: mlflow ui --backend-store-uri {mlflow.get_tracking_uri()} --host 127.0.0.1")
        return parent.info.run_id
