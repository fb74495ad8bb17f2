"""Every config's knobs, each declared once (`mygo.knobs.declare`): configs/<name>.yaml is written from them
(scripts/write_configs.py), composition checks against them, and the command line and MLproject take their types
from them."""

from __future__ import annotations

import importlib

from omegaconf import DictConfig

from mygo.knobs.declare import Declared, Knob, check, render, render_group
from mygo.knobs.groups import DATASET, TRACKING
from mygo.stages.table import STAGES

# Every stage's config, then the workflows'.
CONFIGS = (*(stage.config for stage in STAGES), "main", "sweep", "lineage", "compare", "reproduce")
# The knob types an option keeps (what the command line checks a value against and MLproject declares); any other
# (a mapping, a value of several types) is a string to the command line.
OPTION_TYPES = ("int", "float", "bool", "list")


def declared(name: str) -> Declared:
    """The declaration of configs/<name>.yaml."""
    if name not in CONFIGS:
        raise ValueError(f"no config named {name!r}; the configs are {list(CONFIGS)}")
    return importlib.import_module(f"mygo.knobs.{name}").CONFIG


def knob_of(config: str, key: str) -> Knob | None:
    return declared(config).knobs().get(key)


def option_type(config: str, key: str) -> str:
    """The type of a command-line option that sets `key` of `config`: its knob's (str for a group choice, a mapping
    or a value of several types)."""
    knob = knob_of(config, key)
    return knob.type if knob is not None and knob.type in OPTION_TYPES else "str"


def config_texts() -> dict[str, str]:
    """Each written config file (a path under configs/) and its text."""
    texts = {f"{name}.yaml": render(declared(name)) for name in CONFIGS}
    return texts | {
        "tracking/default.yaml": render_group(TRACKING),
        "dataset/_shared.yaml": render_group(DATASET),
    }


def validate(config: str, cfg: DictConfig) -> None:
    """A composed config against its declaration (a config without one, none)."""
    if config in CONFIGS:
        check(declared(config), cfg)


__all__ = ["CONFIGS", "TRACKING", "config_texts", "declared", "knob_of", "option_type", "validate"]
