"""Search spaces: the YAML file of a sweep, checked whole before any run (params, objective, constraints,
starting points), and what a trial samples from it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf

from mygo.config import load_config, project_path
from mygo.tracking.code_version import ROOT
from mygo.workflows.controls import CONTROLS
from mygo.workflows.pipeline import PIPELINE_STAGES
from mygo.workflows.stage_configs import check_stage_configs

SPACE_KEYS = ("include", "objective", "sampler", "pruner", "params", "start")


PARAM_TYPES = ("float", "int", "categorical")


BOUNDS = ("at_most", "at_least")


class SpaceError(ValueError):
    """A search space file that does not parse or names something unknown; the message names file and key."""


@dataclass
class SearchParam:
    name: str  # <stage>.<config key>
    spec: dict[str, Any]

    @property
    def stage(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def key(self) -> str:
        return self.name.split(".", 1)[1]


@dataclass
class SearchSpace:
    path: Path
    objective: dict[str, Any]  # metric, direction, stage and optional constraints
    sampler: dict[str, Any] = field(default_factory=dict)
    pruner: dict[str, Any] = field(default_factory=dict)
    params: list[SearchParam] = field(default_factory=list)
    start: list[dict[str, Any]] = field(default_factory=list)  # settings tried first, before the sampler's own

    @property
    def digest(self) -> str:
        """What makes two studies comparable: the parameters and the objective."""
        content = {"objective": self.objective, "params": {p.name: p.spec for p in self.params}}
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def resolve_space_path(path: str | Path) -> Path:
    """A path as given, else relative to the repository (`sweeps/selection.yaml` from any directory)."""
    path = Path(path)
    # `sweeps/x.yaml` of the code that runs: beside it in a checkout, inside the package from a wheel
    inside = project_path(path.parts[0]) / Path(*path.parts[1:]) if len(path.parts) > 1 else path
    for candidate in (path, ROOT / path, inside):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"search space file {path} not found (looked in the working directory and {ROOT})")


def _read_yaml(path: Path) -> dict:
    try:
        content = OmegaConf.to_container(OmegaConf.load(path))
    except Exception as error:  # OmegaConf raises yaml's and its own errors
        raise SpaceError(f"{path}: not a YAML mapping: {error}") from error
    if not isinstance(content, dict):
        raise SpaceError(f"{path}: not a YAML mapping")
    return content


def _check_param(path: Path, name: str, spec: object, stage_configs: dict[str, DictConfig]) -> SearchParam:
    where = f"{path}: params.{name}"
    stage = name.split(".", 1)[0]
    if stage not in PIPELINE_STAGES or "." not in name:
        raise SpaceError(f"{where}: a parameter is <stage>.<config key>, with a stage of {list(PIPELINE_STAGES)}")
    if not isinstance(spec, dict) or spec.get("type") not in PARAM_TYPES:
        raise SpaceError(f"{where}: needs type: one of {list(PARAM_TYPES)}")
    param = SearchParam(name, spec)
    if stage not in stage_configs:
        stage_configs[stage] = load_config(stage)
    if OmegaConf.select(stage_configs[stage], param.key, default="__missing__") == "__missing__":
        raise SpaceError(f"{where}: the {stage} config has no key {param.key!r}")
    if spec["type"] == "categorical":
        if not spec.get("choices"):
            raise SpaceError(f"{where}: a categorical parameter needs choices")
    elif not ("low" in spec and "high" in spec and spec["low"] <= spec["high"]):
        raise SpaceError(f"{where}: needs low <= high")
    unknown = set(spec) - {"type", "low", "high", "log", "step", "choices", "when"}
    if unknown:
        raise SpaceError(f"{where}: unknown field(s) {sorted(unknown)}")
    return param


def load_space(path: str | Path) -> SearchSpace:
    """Parse and check a search space file (and the files it includes)."""
    path = resolve_space_path(path)
    content = _read_yaml(path)
    unknown = set(content) - set(SPACE_KEYS)
    if unknown:
        raise SpaceError(f"{path}: unknown key(s) {sorted(unknown)}; keys are {list(SPACE_KEYS)}")
    merged: dict[str, Any] = {"objective": {}, "sampler": {}, "pruner": {}, "params": {}}
    for included in content.get("include") or []:
        part = load_space(path.parent / included)
        merged["params"] |= {p.name: p.spec for p in part.params}
        for key in ("objective", "sampler", "pruner"):
            merged[key] |= getattr(part, key)
    for key in ("objective", "sampler", "pruner"):
        merged[key] |= content.get(key) or {}
    merged["params"] |= content.get("params") or {}

    objective = merged["objective"]
    if not objective.get("metric"):
        raise SpaceError(f"{path}: objective.metric is required (e.g. eval/{{task}}/acc, noise/auroc)")
    objective.setdefault("direction", "maximize")
    objective.setdefault("stage", "evaluate")
    if objective["direction"] not in ("maximize", "minimize"):
        raise SpaceError(f"{path}: objective.direction must be maximize or minimize")
    if objective["stage"] not in PIPELINE_STAGES:
        raise SpaceError(f"{path}: objective.stage must be one of {list(PIPELINE_STAGES)}")
    if delta_control(objective["metric"]) and objective["stage"] != "evaluate":
        raise SpaceError(f"{path}: a delta_vs_<arm> objective needs objective.stage evaluate")
    _check_constraints(path, objective)
    if not merged["params"]:
        raise SpaceError(f"{path}: params is empty")
    stage_configs: dict[str, DictConfig] = {}
    params = [_check_param(path, name, spec, stage_configs) for name, spec in merged["params"].items()]
    for param in params:
        for condition in param.spec.get("when") or {}:
            if condition not in merged["params"]:
                raise SpaceError(f"{path}: params.{param.name}.when names unknown parameter {condition!r}")
    start = _check_start(path, content.get("start"), {param.name: param for param in params})
    return SearchSpace(path, objective, merged["sampler"], merged["pruner"], params, start)


def _check_start(path: Path, start: object, params: dict[str, SearchParam]) -> list[dict[str, Any]]:
    """`start`: a list of settings (parameter -> value) the study tries first, as written: the candidates a
    report found, the current default. A parameter left out is sampled; a value must lie in the space."""
    if start is None:
        return []
    if not isinstance(start, list) or not all(isinstance(point, dict) and point for point in start):
        raise SpaceError(f"{path}: start must be a list of mappings of parameter -> value")
    for number, point in enumerate(start):
        for name, value in point.items():
            where = f"{path}: start[{number}].{name}"
            if name not in params:
                raise SpaceError(f"{where}: not a parameter of the space")
            spec = params[name].spec
            if spec["type"] == "categorical":
                if value not in spec["choices"]:
                    raise SpaceError(f"{where}: {value!r} is not one of its choices {spec['choices']}")
            elif (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not spec["low"] <= value <= spec["high"]
            ):
                raise SpaceError(f"{where}: {value!r} is not a number in [{spec['low']}, {spec['high']}]")
    return start


def _check_constraints(path: Path, objective: dict[str, Any]) -> None:
    constraints = objective.get("constraints")
    if constraints is None:
        return
    form = "a list of {metric: <name>, at_most: <number or metric>} (or at_least)"
    if not isinstance(constraints, list) or not constraints:
        raise SpaceError(f"{path}: objective.constraints must be {form}")
    for number, constraint in enumerate(constraints):
        bounds = [key for key in BOUNDS if key in (constraint if isinstance(constraint, dict) else {})]
        if (
            len(bounds) != 1
            or set(constraint) != {"metric", bounds[0]}
            or not isinstance(constraint["metric"], str)
            or isinstance(constraint[bounds[0]], bool)
            or not isinstance(constraint[bounds[0]], int | float | str)
        ):
            raise SpaceError(f"{path}: objective.constraints[{number}] must be {form}, got {constraint!r}")


def make_sampler(space: SearchSpace) -> optuna.samplers.BaseSampler:
    name, seed = space.sampler.get("name", "tpe"), space.sampler.get("seed", 42)
    samplers = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler}
    if name not in samplers:
        raise SpaceError(f"{space.path}: sampler.name must be one of {list(samplers)}")
    return samplers[name](seed=seed)


def make_pruner(space: SearchSpace) -> optuna.pruners.BasePruner:
    pruners = {"none": optuna.pruners.NopPruner, "median": optuna.pruners.MedianPruner}
    name = space.pruner.get("name", "none")
    if name not in pruners:
        raise SpaceError(f"{space.path}: pruner.name must be one of {list(pruners)}")
    return pruners[name]()


def sample(trial: optuna.Trial, space: SearchSpace) -> dict[str, Any]:
    """The trial's settings; a parameter whose `when` does not hold is not sampled (conditional spaces)."""
    values: dict[str, Any] = {}
    for param in space.params:
        spec = param.spec
        if any(values.get(name) != wanted for name, wanted in (spec.get("when") or {}).items()):
            continue
        if spec["type"] == "float":
            values[param.name] = trial.suggest_float(
                param.name, spec["low"], spec["high"], log=spec.get("log", False), step=spec.get("step")
            )
        elif spec["type"] == "int":
            values[param.name] = trial.suggest_int(
                param.name, spec["low"], spec["high"], log=spec.get("log", False), step=spec.get("step", 1)
            )
        else:
            values[param.name] = trial.suggest_categorical(param.name, spec["choices"])
    return values


def value_sets(space: SearchSpace) -> dict[str, list[list[str]]]:
    """Per stage, override sets that together give every parameter its extreme values and every choice."""
    per_stage: dict[str, list[tuple[str, list]]] = {}
    for param in space.params:
        spec = param.spec
        values = list(spec["choices"]) if spec["type"] == "categorical" else [spec["low"], spec["high"]]
        per_stage.setdefault(param.stage, []).append((param.key, values))
    return {
        stage: [
            [f"{key}={values[min(i, len(values) - 1)]}" for key, values in params]
            for i in range(max(len(values) for _, values in params))
        ]
        for stage, params in per_stage.items()
    }


def check_sweep_configs(cfg: DictConfig, space: SearchSpace) -> None:
    """Every stage a trial runs, composed with the sweep's stage overrides and the values the space can sample."""
    stages = PIPELINE_STAGES[: PIPELINE_STAGES.index(space.objective["stage"]) + 1]
    try:
        check_stage_configs(cfg, stages, value_sets(space))
    except ValueError as error:
        raise SpaceError(f"{space.path}: {error}") from None


def delta_control(metric: str) -> str | None:
    """The control arm an objective compares against (`.../delta_vs_<arm>`), or None."""
    if "/delta_vs_" not in metric:
        return None
    control = metric.rsplit("/delta_vs_", 1)[1]
    if control not in CONTROLS:
        raise SpaceError(f"objective.metric {metric!r}: no control arm {control!r}; arms are {list(CONTROLS)}")
    return control
