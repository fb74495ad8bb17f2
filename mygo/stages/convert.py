"""The convert stage: OLMoE checkpoint -> Select-MoE, with parity figures logged to MLflow.

Where the converted model lives: it is saved to `<convert.output_dir>/<run id>/model` and that path
is recorded as the run's tag `mygo.model_path`. Below `convert.max_artifact_mb` (the tiny default)
it is also logged as the run's `model/` artifact, so another machine with the same tracking store
can fetch it; a multi-GB conversion is referenced by the recorded path only (shared storage).
"""

from __future__ import annotations

import logging
from pathlib import Path

import mlflow
import torch
from omegaconf import DictConfig
from transformers import AutoTokenizer

from mygo.atomic import atomic_directory
from mygo.models import (
    SelectMoeConfig,
    check_conversion_parity,
    convert_olmoe_to_select_moe,
    load_olmoe,
    parameter_counts,
)
from mygo.models.configuration_select_moe import select_moe_settings
from mygo.tracking.builds import BUILTIN_SOURCE, build_run_tag, builtin_model_dir
from mygo.tracking.handoffs import MODEL_ARTIFACT, MODEL_PATH_TAG
from mygo.tracking.runs import stage_run

logger = logging.getLogger(__name__)

TINY_BASE_RUN_TAG = build_run_tag("base")


class ParityError(RuntimeError):
    """The converted model does not reproduce its source."""


def check_parity(parity: dict[str, float], tolerance: float) -> None:
    problems = []
    if parity["shared_weights_bit_identical"] != 1.0:
        problems.append("a weight shared with the source changed")
    for key in ("bypass_logits_max_abs_diff", "roundtrip_logits_max_abs_diff"):
        if parity[key] > tolerance:
            problems.append(f"{key}={parity[key]:.3g} > {tolerance:g}")
    if problems:
        raise ParityError("conversion parity failed: " + "; ".join(problems))


def _directory_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def run_convert(cfg: DictConfig) -> str:
    """Convert, check parity, save, and log; returns the MLflow run ID."""
    if cfg.convert.dtype not in cfg.convert.parity_tolerance:
        raise ValueError(
            f"convert.dtype={cfg.convert.dtype!r} is not supported; choose one of {list(cfg.convert.parity_tolerance)}"
        )
    select_moe = select_moe_settings(cfg.select_moe)
    SelectMoeConfig(**select_moe)  # bad gate settings fail here, before minutes of loading or building
    with stage_run("convert", cfg, run_name=f"convert-{cfg.model.name}") as run:
        run_dir = Path(cfg.convert.output_dir) / run.info.run_id
        source = cfg.model.source
        if source == BUILTIN_SOURCE:
            source = str(builtin_model_dir("base", cfg.model, run_dir / "base"))

        olmoe = load_olmoe(source, dtype=getattr(torch, cfg.convert.dtype)).eval()
        tokenizer = AutoTokenizer.from_pretrained(source)
        converted = convert_olmoe_to_select_moe(olmoe, **select_moe).eval()

        counts = parameter_counts(converted)
        mlflow.log_metrics({"params/total": counts["total"], "params/quality_gate": counts["quality_gate"]})
        parity = check_conversion_parity(olmoe, converted, seed=cfg.convert.parity_seed)
        mlflow.log_metrics({f"parity/{key}": value for key, value in parity.items()})
        logger.info("parity: %s", parity)
        check_parity(parity, cfg.convert.parity_tolerance[cfg.convert.dtype])

        model_dir = run_dir / "model"
        with atomic_directory(model_dir) as saving:  # a killed save leaves no half model to be loaded later
            converted.save_pretrained(saving)
            tokenizer.save_pretrained(saving)
        mlflow.set_tag(MODEL_PATH_TAG, str(model_dir.resolve()))
        log_artifact = cfg.convert.log_model_artifact
        if log_artifact == "auto":
            log_artifact = _directory_mb(model_dir) <= cfg.convert.max_artifact_mb
        if log_artifact:
            mlflow.log_artifacts(str(model_dir), MODEL_ARTIFACT)
        return run.info.run_id
