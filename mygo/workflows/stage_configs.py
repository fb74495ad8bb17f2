"""Each stage's config as a pipeline (or a sweep trial) composes it: the stage's own config, the pipeline's tracking
settings, the run it builds on, the forwarded `stage_overrides.<stage>` and, for a finetune, the arm's seed."""

from __future__ import annotations

from omegaconf import DictConfig

from mygo.config import load_config, split_overrides
from mygo.stages.table import STAGES
from mygo.tracking.runs import tracking_overrides

# Each stage after the first names the run it builds on under this config key.
UPSTREAM_KEY = {entry.name: entry.upstream_key for entry in STAGES if entry.upstream_key}


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
    return (
        tracking_overrides(cfg)
        + upstream
        + split_overrides(cfg.stage_overrides.get(stage, ""))
        + seed_overrides(cfg, stage)
    )


def seed_overrides(cfg: DictConfig, stage: str, seed: int | None = None) -> list[str]:
    """A finetune's `training.seed`: the arm's seed, or (the pipeline's own) the first of `pipeline.seeds`."""
    seeds = list((cfg.get("pipeline") or {}).get("seeds") or [])
    if stage != "finetune" or (seed is None and not seeds):
        return []
    return [f"training.seed={seeds[0] if seed is None else seed}"]
