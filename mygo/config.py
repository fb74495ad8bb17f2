"""Hydra configs as data: compose a stage's config from `configs/` with command-line overrides."""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import shlex
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException, HydraException
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from mygo.knobs import validate
from mygo.stages.table import STAGE_NAMES

CONFIG_DIR_ENV = "MYGO_CONFIG_DIR"
FORWARDING = ("main", "sweep")  # configs with `stage_overrides`: `select.selection.x=1` is forwarded to select
# `stage_overrides` of main and sweep (`- stage_overrides` in their defaults): one Hydra override string per
# stage of the table, empty unless set (`stage_overrides.warmup="training.epochs=2"`).
ConfigStore.instance().store(name="stage_overrides", node={"stage_overrides": dict.fromkeys(STAGE_NAMES, "")})


PACKAGE_DIR = Path(__file__).resolve().parent


def project_path(name: str) -> Path:
    """`configs` or `sweeps` of the code that runs: inside the package when installed from a wheel (which ships
    them as package data), else beside it in the checkout (`<checkout>/configs` next to `<checkout>/mygo`)."""
    packaged = PACKAGE_DIR / name
    return packaged if packaged.is_dir() else PACKAGE_DIR.parent / name


def config_dir() -> Path:
    """The Hydra config directory: $MYGO_CONFIG_DIR, else the configs of the code that runs (`project_path`)."""
    configured = os.environ.get(CONFIG_DIR_ENV)
    path = Path(configured) if configured else project_path("configs")
    if not path.is_dir():
        raise FileNotFoundError(
            f"Hydra config directory not found: {path} (run from a checkout, install mygo with pip, "
            f"or point {CONFIG_DIR_ENV} at a configs/ directory)"
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
    return f"{key}={quoted(value)}"


def quoted(value: str) -> str:
    """A value Hydra reads as this one string (`mmlu,arc_easy` would otherwise be a sweep over two values)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def override_of(key: str, value: str) -> str:
    """`key=value` for a value given as text: quoted when Hydra would read it as more than one string."""
    plain = re.fullmatch(r"[^\s,=\[\]{}()'\"]*", value) is not None or re.fullmatch(r"\[[^\[\]]*\]", value)
    return f"{key}={value}" if plain else f"{key}={quoted(value)}"


def override_value(value: object) -> str:
    """A config value as a Hydra override reads it back: null, lists and mappings included."""
    if value is None:
        return "null"
    if isinstance(value, DictConfig | ListConfig):
        return json.dumps(OmegaConf.to_container(value)).replace('"', "")
    return str(value)


ENV_INTERPOLATION = re.compile(r"\$\{\s*oc\.(env|decode)\s*:")


def check_no_env_interpolation(overrides: list[str]) -> None:
    """Refuse `${oc.env:VAR}` in a given override: the resolved config is logged, so it would copy any environment
    variable (`AWS_SECRET_ACCESS_KEY`) into the tracking store under an innocent key (`tracking.experiment`)."""
    for override in overrides:
        if ENV_INTERPOLATION.search(override):
            key = override.partition("=")[0]
            raise ValueError(
                f"override {key}: {override.partition('=')[2]!r} reads an environment variable (oc.env), whose value "
                "would be logged with the config; give the value itself (secrets go in the environment variables "
                "mygo and its libraries read: PGPASSWORD, MYGO_OPTUNA_STORAGE, MLFLOW_TRACKING_PASSWORD, HF_TOKEN)"
            )


def load_config(stage: str, overrides: str | list[str] | None = None) -> DictConfig:
    """Compose `configs/<stage>.yaml` with overrides, resolved and checked against its knobs (`mygo.knobs`).

    Unknown keys are errors that name the nearest valid ones (struct mode), `+key=value` included: it adds no
    key the config does not declare, so a typo is never logged as a setting that did nothing.
    """
    overrides = split_overrides(overrides)
    check_no_env_interpolation(overrides)
    overrides, forwarded = _stage_settings(overrides) if stage in FORWARDING else (overrides, {})
    directory = config_dir()
    try:
        with initialize_config_dir(config_dir=str(directory), version_base="1.3"):
            parsed = OverridesParser.create().parse_overrides(overrides)
            _check_added_keys(stage, overrides, parsed, directory)
            try:
                cfg = compose(config_name=stage, overrides=overrides)
            except ConfigCompositionException as error:
                raise ValueError(_unknown_key_message(stage, overrides, parsed, error)) from error
    except HydraException as error:
        raise ValueError(f"config {stage!r} with overrides {overrides}: {error}") from error
    OmegaConf.resolve(cfg)
    for name, settings in forwarded.items():  # after any stage_overrides.<stage> string, so they win
        cfg.stage_overrides[name] = " ".join([cfg.stage_overrides[name] or "", *map(shlex.quote, settings)]).strip()
    OmegaConf.set_struct(cfg, True)
    try:
        validate(stage, cfg)
    except ValueError as error:
        raise ValueError(f"config {stage!r}: {error}") from None
    return cfg


def _stage_settings(overrides: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Split off the overrides that address a stage's key as sweep spaces do (`select.selection.quality_floor=0`):
    main and sweep forward them to that stage, as `stage_overrides.select='selection.quality_floor=0'` would."""
    own: list[str] = []
    forwarded: dict[str, list[str]] = {}
    for override in overrides:
        key = override.partition("=")[0]
        name, dot, rest = key.partition(".")
        if name in STAGE_NAMES and dot and rest and "=" in override:
            forwarded.setdefault(name, []).append(override[len(name) + 1 :])
        else:
            own.append(override)
    return own, forwarded


def config_keys(cfg: DictConfig) -> list[str]:
    """Every key of the config, inner nodes too (`selection`, `selection.percentage`)."""
    keys = []
    for flat in flatten_config(cfg):
        parts = flat.split(".")
        keys += [".".join(parts[: i + 1]) for i in range(len(parts))]
    return list(dict.fromkeys(keys))


def nearest_keys(key: str, keys: list[str]) -> list[str]:
    return difflib.get_close_matches(key, keys, n=3, cutoff=0.7)


def _is_group(key: str, directory: Path) -> bool:
    return (directory / key.replace(".", "/")).is_dir() or ConfigStore.instance().repo.get(key) is not None


def _hint(stage: str, key: str, keys: list[str]) -> str:
    near = nearest_keys(key, keys)
    hint = f"; did you mean {', '.join(near)}?" if near else ""
    if "stage_overrides" in keys:  # main, sweep: a stage's keys are set through its stage_overrides
        hint += f' (a stage\'s keys go through stage_overrides.<stage>="{key}=...")'
    return hint


def _check_added_keys(stage: str, overrides: list[str], parsed: list, directory: Path) -> None:
    """`+key=value` (and `++key=value`) add no key the config does not declare; a group (`+tuned=x`) is fine.

    Every key a stage reads is in its config (null when unset), so an added one would be a setting that does
    nothing but show up among the run's params.
    """
    added = [
        (text, override)
        for text, override in zip(overrides, parsed, strict=True)
        if (override.is_add() or override.is_force_add()) and not _is_group(override.key_or_group, directory)
    ]
    if not added:
        return
    base = compose(config_name=stage, overrides=[text for text in overrides if text not in {t for t, _ in added}])
    keys = config_keys(base)
    for text, override in added:
        key = override.key_or_group
        if override.is_force_add() and key in keys:  # `++key=value` of a key the config has: a plain override
            continue
        raise ValueError(
            f"config {stage!r}: {text} adds the key {key!r}, which the {stage} config does not declare"
            f"{_hint(stage, key, keys)}"
        )


def _unknown_key_message(stage: str, overrides: list[str], parsed: list, error: Exception) -> str:
    """Hydra's "Could not override 'x'. To append to your config use +x=..." as: the key and the nearest ones."""
    match = re.search(r"Could not override '([^']+)'", str(error))
    if not match:
        return f"config {stage!r} with overrides {overrides}: {error}"
    key = match.group(1)
    rest = [text for text, override in zip(overrides, parsed, strict=True) if override.key_or_group != key]
    try:
        keys = config_keys(compose(config_name=stage, overrides=rest))
    except HydraException:
        keys = []
    return f"config {stage!r} has no key {key!r}{_hint(stage, key, keys)}"


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
RESULT_NEUTRAL_KEYS = (
    "training.resume",
    "training.tracking_flush_s",
    "tracking.system_metrics",
    "tracking.system_metrics_interval",
)


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
