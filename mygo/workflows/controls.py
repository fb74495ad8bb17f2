"""Control arms: beside the selection, what the same fine-tuning buys from other data of the same size.

Each arm is fine-tuned and evaluated with the pipeline's own finetune and evaluate settings, once per seed of
`pipeline.seeds` (the finetune's `training.seed`; a random arm's draw too). Arm runs are stage runs like any
other, tagged `mygo.arm` and `mygo.seed`, and reused when a finished one matches. The pipeline's own finetune
and evaluate are the selection arm's first seed.

- random: a random selection of the same size (LESS's and MyGO's baseline);
- quality_topk: the highest-quality samples, no clustering (what diversity adds);
- full: the whole pool (what selecting at all costs or buys; slow on a real pool);
- base: the target without fine-tuning, evaluated once.

The select settings of random, quality_topk and full are presets, `configs/control/<arm>.yaml`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import mlflow
from omegaconf import DictConfig, OmegaConf

from mygo.config import config_dir, load_config, override_value
from mygo.stages.table import stage as stage_entry
from mygo.tracking.reuse import run_or_reuse
from mygo.tracking.runs import UPSTREAM_TAG
from mygo.workflows.compare import ARM_TAG, REFERENCE_ARM, SEED_TAG, ArmRuns, format_comparison, log_comparison
from mygo.workflows.stage_configs import seed_overrides, stage_overrides_of

logger = logging.getLogger(__name__)

CONTROLS = ("random", "quality_topk", "full", "base")


def control_dir() -> Path:
    return config_dir() / "control"


def control_preset(arm: str) -> tuple[list[str], bool]:
    """The select overrides of a control arm (placed after the pipeline's own, so they win) and whether its
    draw is anew per seed, from `configs/control/<arm>.yaml`. A preset decides every knob of `selection`:
    it sets it or names it under `inherit`; a knob it leaves undecided is an error naming the file and knob."""
    path = control_dir() / f"{arm}.yaml"
    preset = OmegaConf.load(path)
    knobs = set(load_config("select").selection)
    settings = dict(preset.get("selection") or {})
    inherited = list(preset.get("inherit") or [])
    undecided = sorted(knobs - set(settings) - set(inherited))
    unknown = sorted((set(settings) | set(inherited)) - knobs)
    both = sorted(set(settings) & set(inherited))
    for problem, names in (
        ("decides nothing about", undecided),
        ("names unknown", unknown),
        ("both sets and inherits", both),
    ):
        if names:
            raise ValueError(
                f"{path}: {problem} selection knob(s) {names}; a control preset sets every knob of "
                "configs/select.yaml's selection or lists it under inherit"
            )
    overrides = [f"selection.{key}={override_value(preset.selection[key])}" for key in settings]
    return overrides, bool(preset.get("seeded", False))


def control_overrides(arm: str, seed: int | None) -> list[str]:
    overrides, seeded = control_preset(arm)
    if seeded and seed is not None:
        overrides = [o for o in overrides if not o.startswith("selection.seed=")] + [f"selection.seed={seed}"]
    return overrides


def check_controls(pipeline: DictConfig) -> None:
    unknown = [c for c in pipeline.controls or [] if c not in CONTROLS]
    if unknown:
        raise ValueError(f"pipeline.controls: {unknown} not valid; choose from {list(CONTROLS)}")
    seeds = list(pipeline.seeds or [])
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"pipeline.seeds: {seeds} repeats a seed")


def has_arms(cfg: DictConfig) -> bool:
    return bool(cfg.pipeline.controls) or len(cfg.pipeline.seeds or []) > 1


def _tag(run_id: str, arm: str, seed: int | None) -> None:
    client = mlflow.MlflowClient()
    client.set_tag(run_id, ARM_TAG, arm)
    if seed is not None:
        client.set_tag(run_id, SEED_TAG, str(seed))


def _stage(cfg: DictConfig, stage: str, upstream: str, extra: list[str], arm: str, seed: int | None) -> str:
    config = load_config(stage, stage_overrides_of(cfg, stage, upstream) + extra)
    run_id, reused = run_or_reuse(stage, config, stage_entry(stage).load_runner())
    logger.info("arm %s, seed %s: %s run %s (%s)", arm, seed, stage, run_id, "reused" if reused else "new")
    _tag(run_id, arm, seed)
    return run_id


def run_arms(cfg: DictConfig, stage_runs: dict[str, str]) -> ArmRuns:
    """Fine-tune and evaluate every arm over every seed; `stage_runs`: the pipeline's own run of each stage."""
    seeds = [int(seed) for seed in cfg.pipeline.seeds or []] or [None]
    arms: ArmRuns = {}

    def finetune_and_evaluate(arm: str, select_run: str, seed: int | None) -> None:
        finetune = _stage(cfg, "finetune", select_run, seed_overrides(cfg, "finetune", seed), arm, seed)
        evaluate = _stage(cfg, "evaluate", finetune, [], arm, seed)
        arms.setdefault(arm, {})[seed or 0] = evaluate

    for seed in seeds:
        finetune_and_evaluate(REFERENCE_ARM, stage_runs["select"], seed)
    for arm in cfg.pipeline.controls or []:
        if arm == "base":  # as the selection arm's first finetune was evaluated (its chat template), adapter off
            first = mlflow.get_run(arms[REFERENCE_ARM][seeds[0] or 0]).data.tags[UPSTREAM_TAG]
            arms["base"] = {0: _stage(cfg, "evaluate", first, ["evaluation.base_only=true"], arm, None)}
            continue
        for seed in seeds:
            select = _stage(cfg, "select", stage_runs["score"], control_overrides(arm, seed), arm, seed)
            finetune_and_evaluate(arm, select, seed)
    return arms


def run_controls(cfg: DictConfig, stage_runs: dict[str, str]) -> str:
    """The arms, their comparison logged on the active run, and the comparison as text (for the summary)."""
    arms = run_arms(cfg, stage_runs)
    rows = log_comparison(arms, f"selection against {', '.join(cfg.pipeline.controls) or 'itself'} over seeds")
    return format_comparison(rows)
