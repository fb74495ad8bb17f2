"""The embedded default's models (`source: builtin:tiny`): built once per tracking store, then reused.

A build is recorded in the run that made it: its metrics, its loss curve, the checkpoint as the
artifact `<kind>/` and the tag `mygo.tiny_<kind>_hash` (a digest of what decides the build). Any
later run, of any stage, that needs the same build downloads it from there instead of training again.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import mlflow
from omegaconf import DictConfig, OmegaConf

from mygo.config import config_hash
from mygo.tracking.reuse import find_finished_run

logger = logging.getLogger(__name__)

BUILTIN_SOURCE = "builtin:tiny"
BUILTIN_KINDS = ("base", "target")  # the tiny OLMoE base, the tiny Llama target


def build_hash_tag(kind: str) -> str:
    return f"mygo.tiny_{kind}_hash"


def build_run_tag(kind: str) -> str:
    return f"mygo.tiny_{kind}_run"


def build_hash(build_cfg: DictConfig) -> str:
    # The corpus is this Python's own documentation, so its version is part of what was built.
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    return config_hash(OmegaConf.create({"model": OmegaConf.to_container(build_cfg), "python": python}))


def _build(kind: str, build_cfg: DictConfig, build_dir: Path):
    from mygo.builtin.tiny import build_tiny_base, build_tiny_target  # only the embedded default needs these

    return (build_tiny_base if kind == "base" else build_tiny_target)(build_cfg, build_dir)


def builtin_model_dir(kind: str, build_cfg: DictConfig, build_dir: Path) -> Path:
    """The tiny `kind` model: reused from a run that built it with the same settings, else built and logged.

    Needs an active MLflow run: a new build is recorded in it.
    """
    if kind not in BUILTIN_KINDS:
        raise ValueError(f"unknown built-in model kind {kind!r}; kinds are {list(BUILTIN_KINDS)}")
    digest = build_hash(build_cfg)
    builder = find_finished_run(None, {build_hash_tag(kind): digest})
    if builder is not None:
        logger.info("reusing the tiny %s built by run %s", kind, builder.info.run_id)
        mlflow.set_tag(build_run_tag(kind), builder.info.run_id)
        return Path(mlflow.artifacts.download_artifacts(run_id=builder.info.run_id, artifact_path=kind))

    report = _build(kind, build_cfg, build_dir)
    for step, loss in report.loss_curve:
        mlflow.log_metric(f"{kind}/train_loss_curve", loss, step=step)
    mlflow.log_metrics(report.metrics)
    mlflow.log_artifacts(str(build_dir), kind)
    mlflow.set_tags({build_hash_tag(kind): digest, build_run_tag(kind): mlflow.active_run().info.run_id})
    return build_dir
