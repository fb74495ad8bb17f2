"""Hydra configs as data: compose a stage's config from `configs/` with command-line overrides."""

from __future__ import annotations

import hashlib
import os
import shlex
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict

from mygo.stages.table import STAGE_NAMES

CONFIG_DIR_ENV = "MYGO_CONFIG_DIR"
# `stage_overrides` of main and sweep (`- stage_overrides` in their defaults): one Hydra override string per
# stage of the table, empty unless set (`stage_overrides.warmup="training.epochs=2"`).
ConfigStore.instance().store(name="stage_overrides", node={"stage_overrides": dict.fromkeys(STAGE_NAMES, "")})


def config_dir() -> Path:
    """The Hydra config directory: $MYGO_CONFIG_DIR, else `configs/` beside the package."""
    configured = os.environ.get(CONFIG_DIR_ENV)
    path = Path(configured) if configured else Path(__file__).resolve().parents[1] / "configs"
    if not path.is_dir():
        raise FileNotFoundError(
            f"Hydra config directory not found: {path} (install mygo from its repository with "
            f"`pip install -e .`, or point {CONFIG_DIR_ENV} at a configs/ directory)"
        )
    return path


def split_overrides(overrides: str | list[str] | None) -> list[str]:
    """`-P overrides="a.b=1 c=2"` arrives as one string; Hydra wants a list.

    Split like a shell; a value that holds '=' or spaces (overrides forwarded to another stage,
    `convert_overrides='convert.dtype=bfloat16 convert.parity_seed=1'`) is quoted again for Hydra.
    """
    if overrides is None:
        return []
    if isinstance(overrides, str):
        return [_quote_value(override) for override in shlex.split(overrides)]
    return list(overrides)


def _quote_value(override: str) -> str:
    key, sep, value = override.partition("=")
    if not sep or value[:1] in ("[", "{", "'", '"') or not ("=" in value or " " in value):
        return override
    return f"{key}='" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def load_config(stage: str, overrides: str | list[str] | None = None) -> DictConfig:
    """Compose `configs/<stage>.yaml` with overrides, resolved; unknown keys are errors (struct mode)."""
    overrides = split_overrides(overrides)
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = compose(config_name=stage, overrides=overrides)
    except HydraException as error:
        raise ValueError(f"config {stage!r} with overrides {overrides}: {error}") from error
    OmegaConf.resolve(cfg)
    OmegaConf.set_struct(cfg, True)
    return cfg


def flatten_config(cfg: DictConfig) -> dict[str, object]:
    """{"a.b.c": value}: flat, stable param names so MLflow's Compare lines runs up."""
    flat: dict[str, object] = {}

    def visit(node, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                visit(value, f"{prefix}.{key}" if prefix else str(key))
        else:
            flat[prefix] = node

    visit(OmegaConf.to_container(cfg, resolve=True), "")
    return flat


def config_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True, sort_keys=True)


# Settings that change how a run gets done, not what it computes: left out of the config hash, so that
# a resumed run matches the one it continues and is reused like any other.
RESULT_NEUTRAL_KEYS = ("training.resume",)


def config_hash(cfg: DictConfig) -> str:
    """A short digest of the resolved config: equal hashes mean the same experiment settings."""
    if any(OmegaConf.select(cfg, key) is not None for key in RESULT_NEUTRAL_KEYS):
        cfg = cfg.copy()
        with open_dict(cfg):
            for key in RESULT_NEUTRAL_KEYS:
                parent, _, leaf = key.rpartition(".")
                node = OmegaConf.select(cfg, parent) if parent else cfg
                if node is not None and leaf in node:
                    del node[leaf]
    return hashlib.sha256(config_yaml(cfg).encode()).hexdigest()[:16]
