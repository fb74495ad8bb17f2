"""Optuna sweeps over the pipeline: search spaces as YAML, one MLflow parent run per study, a child run per trial.

A trial is the pipeline with sampled settings (`<stage>.<config key>` in the space file), run up to the
objective's stage; stages whose config did not change are reused, so a selection-only trial reuses
its warmup and score runs. Several workers (`mygo sweep` processes on one machine or many) share a
study through Optuna's RDB storage and the MLflow tracking store: the worker that creates the study
creates its parent run, the others nest their trials under it. A trial whose worker died is failed
by the heartbeat and retried (`RetryHeartbeatStaleTrialCallback`); a stopped study resumes where it stopped.

An objective may carry constraints (`objective.constraints: [{metric, at_most | at_least}]`, bounds a number or
another metric of the same run), e.g. the least noise among selections at least as diverse as a random one: each
trial records them (`Trial.set_constraint`), TPE samples with them and the best trial is the best that meets them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import optuna
from omegaconf import DictConfig, OmegaConf
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState
from sqlalchemy.exc import ArgumentError, IntegrityError, ProgrammingError, SQLAlchemyError

from mygo.config import load_config, project_path
from mygo.tracking import plots
from mygo.tracking.code_version import ROOT
from mygo.tracking.failures import error_text, recording_failures
from mygo.tracking.models import MODEL_VERSION_TAG, set_alias
from mygo.tracking.notes import report, set_note
from mygo.tracking.redaction import redact_text
from mygo.tracking.runs import STAGE_TAG, configure_tracking, stage_run, tracking_overrides
from mygo.workflows.controls import CONTROLS, run_controls
from mygo.workflows.pipeline import PIPELINE_STAGES, run_stages, summary_table
from mygo.workflows.stage_configs import check_stage_configs
from mygo.workflows.test_split import TRIAL_SPLITS, evaluate_best_on_test

logger = logging.getLogger(__name__)

SPACE_KEYS = ("include", "objective", "sampler", "pruner", "params", "start")
PARAM_TYPES = ("float", "int", "categorical")
PARENT_RUN_ATTR = "mlflow_parent_run"
SPACE_DIGEST_ATTR = "space_digest"
TRIAL_RUN_ATTR = "mlflow_run"
BEST_ALIAS = "best"  # the registry alias of the best trial's tuned model
BOUNDS = ("at_most", "at_least")
# The storage URL from the environment, so that its password is never a command-line value (which `mlflow run`
# records raw as a param).
STORAGE_ENV = "MYGO_OPTUNA_STORAGE"


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


# ---------------------------------------------------------------------------------------------- the space
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


def trial_overrides(cfg: DictConfig, values: dict[str, Any]) -> list[str]:
    """main's overrides for one trial: the sweep's stage overrides, then the sampled settings."""
    per_stage = {stage: [cfg.stage_overrides.get(stage) or ""] for stage in PIPELINE_STAGES}
    for name, value in values.items():
        stage, key = name.split(".", 1)
        per_stage[stage].append(f"{key}={value}")
    per_stage["evaluate"].append(f"evaluation.splits={TRIAL_SPLITS}")  # trials never see the test split
    joined = {stage: " ".join(part for part in parts if part) for stage, parts in per_stage.items()}
    return [f"stage_overrides.{stage}='{text}'" for stage, text in joined.items() if text]


# ---------------------------------------------------------------------------------------------- storage
def default_storage() -> str:
    """optuna.db beside a SQLite MLflow store, else in the working directory."""
    uri = mlflow.get_tracking_uri()
    if uri.startswith("sqlite:///"):
        return f"sqlite:///{Path(uri.removeprefix('sqlite:///')).parent / 'optuna.db'}"
    return "sqlite:///optuna.db"


def open_storage(url: str, cfg: DictConfig, attempts: int = 5) -> RDBStorage:
    engine: dict[str, Any] = {}
    if url.startswith("postgresql"):
        engine = {"connect_args": {"connect_timeout": cfg.sweep.connect_timeout}}
    for attempt in range(1, attempts + 1):
        try:
            return RDBStorage(
                url,
                engine_kwargs=engine,
                heartbeat_interval=cfg.sweep.heartbeat_interval,
                grace_period=cfg.sweep.grace_period,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=cfg.sweep.max_retry),
            )
        except (SQLAlchemyError, ArgumentError, ValueError) as error:
            if _lost_schema_race(error) and attempt < attempts:
                time.sleep(attempt)  # the other worker's schema is there (or nearly) on the next try
                continue
            reason = redact_text(str(error).strip().splitlines()[0])
            raise ValueError(f"cannot open the Optuna storage {redact_text(url)}: {reason}") from error
    raise AssertionError("unreachable")


def _lost_schema_race(error: Exception) -> bool:
    """Workers starting together race to create the schema: PostgreSQL answers the loser with a duplicate
    row (IntegrityError) or a duplicate table (ProgrammingError: relation "..." already exists)."""
    return isinstance(error, IntegrityError) or (isinstance(error, ProgrammingError) and "already exists" in str(error))


# ---------------------------------------------------------------------------------------------- the study
STUDY_KEY_TAG = "mygo.study_key"  # which study (storage, name, id) a parent run belongs to


class SweepFailed(ValueError):
    """A sweep that ends without a single COMPLETE trial: the message says how many failed and the first error."""


def study_key(study: optuna.Study, storage_url: str) -> str:
    """The study's identity across workers: a study deleted and created again under its name is another."""
    where = f"{redact_text(storage_url)}|{study.study_name}|{study._study_id}"
    return hashlib.sha256(where.encode()).hexdigest()[:24]


def _create_parent_run(cfg: DictConfig, space: SearchSpace, study_name: str, storage_url: str, key: str) -> str:
    """A parent run for the study: the `mlflow run` run when there is one, else a new run."""
    tags = {
        STAGE_TAG: "sweep",
        "mygo.study": study_name,
        "mygo.optuna_storage": redact_text(storage_url),
        "mygo.space_digest": space.digest,
        STUDY_KEY_TAG: key,
    }
    with stage_run("sweep", cfg, run_name=f"sweep-{study_name}") as run:  # params and tags are redacted
        mlflow.set_tags(tags)
        mlflow.log_artifact(str(space.path), "space")
        return run.info.run_id


def _parent_runs(key: str) -> list:
    """The study's parent runs, oldest first (run ID breaks ties): every worker picks the same first one."""
    runs = mlflow.search_runs(
        search_all_experiments=True, filter_string=f"tags.`{STUDY_KEY_TAG}` = '{key}'", output_format="list"
    )
    return sorted(runs, key=lambda run: (run.info.start_time, run.info.run_id))


def ensure_parent_run(cfg: DictConfig, space: SearchSpace, study: optuna.Study, storage_url: str) -> str:
    """The study's parent run, created by whichever worker finds none (the creator may have failed to make it,
    say while MLflow was unreachable). Two workers creating at once both keep the oldest; the other is tagged
    `mygo.duplicate_of` and stays empty."""
    if parent := study.user_attrs.get(PARENT_RUN_ATTR):
        return parent
    key = study_key(study, storage_url)
    existing = _parent_runs(key)
    mine = None if existing else _create_parent_run(cfg, space, study.study_name, storage_url, key)
    if mine:
        existing = _parent_runs(key) or [mlflow.get_run(mine)]
    chosen = existing[0].info.run_id
    if mine and mine != chosen:
        mlflow.MlflowClient().set_tag(mine, "mygo.duplicate_of", chosen)
    study.set_user_attr(PARENT_RUN_ATTR, chosen)
    return chosen


def open_study(cfg: DictConfig, space: SearchSpace, storage: RDBStorage, study_name: str) -> tuple[optuna.Study, str]:
    """Create the study (and its parent run), or join it; creating is atomic in the storage, and any worker that
    finds the study without a parent run makes it."""
    direction = space.objective["direction"]
    sampler, pruner = make_sampler(space), make_pruner(space)
    try:
        study = optuna.create_study(
            study_name=study_name, storage=storage, direction=direction, sampler=sampler, pruner=pruner
        )
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=study_name, storage=storage, sampler=sampler, pruner=pruner)
        recorded = study.user_attrs.get(SPACE_DIGEST_ATTR)
        if recorded and recorded != space.digest and not cfg.sweep.continue_changed_space:
            raise ValueError(
                f"study {study_name!r} was created with another search space than {space.path} "
                f"(digest {recorded} vs {space.digest}); use a new study name, or sweep.continue_changed_space=true"
            ) from None
        study = _wait_for_parent(study, storage)
        return study, ensure_parent_run(cfg, space, study, storage.url)
    study.set_user_attr(SPACE_DIGEST_ATTR, space.digest)
    for point in space.start:  # by the study's creator only: each starting point is tried once
        study.enqueue_trial(point)
    return study, ensure_parent_run(cfg, space, study, storage.url)


def _wait_for_parent(study: optuna.Study, storage: RDBStorage, timeout_s: float = 10.0) -> optuna.Study:
    """Give the worker that created the study a moment to record its parent run (it does so just after)."""
    deadline = time.monotonic() + timeout_s
    while study.user_attrs.get(PARENT_RUN_ATTR) is None and time.monotonic() < deadline:
        time.sleep(1)
        study = optuna.load_study(study_name=study.study_name, storage=storage)
    return study


def check_some_trial_completed(study: optuna.Study) -> None:
    """A study whose every trial failed is a failed sweep: say how many and the first error."""
    trials = study.get_trials(deepcopy=False)
    failed = [trial for trial in trials if trial.state == TrialState.FAIL]
    if not failed or any(trial.state == TrialState.COMPLETE for trial in trials):
        return
    first = failed[0]
    error = first.user_attrs.get("error") or "no error recorded (its worker died, or the objective returned no value)"
    raise SweepFailed(
        f"study {study.study_name!r}: all {len(failed)} trials failed and none completed; "
        f"the first (trial {first.number}, run {first.user_attrs.get(TRIAL_RUN_ATTR, '?')}): {error}"
    )


def objective_value(run_id: str, metric: str) -> float:
    """The metric of the objective stage's run; `{task}` matches the evaluated task."""
    return metric_in(mlflow.get_run(run_id).data.metrics, metric, f"run {run_id}")


def metric_in(metrics: dict[str, float], metric: str, where: str) -> float:
    """`metric` from `metrics`; `{task}` matches the evaluated task. `where` names the run(s) in the error."""
    if "{task}" in metric:
        prefix, suffix = metric.split("{task}", 1)
        found = sorted(
            k for k in metrics if k.startswith(prefix) and k.endswith(suffix) and k.count("/") == metric.count("/")
        )
        if not found:
            raise ValueError(f"{where} logged no metric matching {metric!r}")
        metric = found[0]
    if metric not in metrics:
        raise ValueError(f"{where} logged no metric {metric!r}; it has {sorted(metrics)[:10]}...")
    return metrics[metric]


def delta_control(metric: str) -> str | None:
    """The control arm an objective compares against (`.../delta_vs_<arm>`), or None."""
    if "/delta_vs_" not in metric:
        return None
    control = metric.rsplit("/delta_vs_", 1)[1]
    if control not in CONTROLS:
        raise SpaceError(f"objective.metric {metric!r}: no control arm {control!r}; arms are {list(CONTROLS)}")
    return control


def constraint_values(run_ids: list[str], constraints: list[dict[str, Any]]) -> list[float]:
    """Each constraint as Optuna takes it, <= 0 where it holds: value - bound (at_most), bound - value (at_least);
    each metric read from the first of `run_ids` that logged it (a trial's run holds the deltas against its
    control arm, its select run the noise and diversity figures)."""
    metrics: dict[str, float] = {}
    for run_id in reversed(run_ids):  # each run read once; the first one's figures win
        metrics |= mlflow.get_run(run_id).data.metrics
    where = f"runs {', '.join(run_ids)}"
    values = []
    for constraint in constraints:
        value = metric_in(metrics, constraint["metric"], where)
        kind = "at_most" if "at_most" in constraint else "at_least"
        bound = constraint[kind]
        bound = metric_in(metrics, bound, where) if isinstance(bound, str) else float(bound)
        values.append(value - bound if kind == "at_most" else bound - value)
    return values


def make_objective(cfg: DictConfig, space: SearchSpace):
    def objective(trial: optuna.Trial) -> float:
        values = sample(trial, space)
        metric = space.objective["metric"]
        control = delta_control(metric)  # eval/.../bpb/delta_vs_random: the trial runs that control arm too
        main_cfg = load_config(
            "main",
            tracking_overrides(cfg)
            + trial_overrides(cfg, values)
            + [f"pipeline.until={space.objective['stage']}", f"pipeline.controls={[control] if control else []}"]
            + [f"pipeline.seeds={list(cfg.pipeline.seeds or [])}"],
        )
        with stage_run("trial", main_cfg, run_name=f"trial-{trial.number}") as run:
            trial.set_user_attr(TRIAL_RUN_ATTR, run.info.run_id)
            mlflow.set_tags(
                {
                    "optuna.trial_number": str(trial.number),
                    "optuna.study": trial.study.study_name,
                    "mygo.worker": f"{socket.gethostname()}:{os.getpid()}",
                }
            )
            mlflow.log_params({f"trial.{name}": value for name, value in values.items()})
            try:
                rows = run_stages(main_cfg)
            except Exception as error:  # the trial's run records it (mygo.error, logs/trial.log); Optuna too
                trial.set_user_attr("error", error_text(error)[:1000])
                raise
            stage_runs = {stage: run_id for stage, run_id, _, _ in rows}
            set_note(report(f"mygo sweep trial {trial.number}: {values}", [("Stages", summary_table(rows))]))
            if control:
                run_controls(main_cfg, stage_runs)  # logs the deltas on this trial's run
                value = objective_value(run.info.run_id, metric)
            else:
                value = objective_value(stage_runs[space.objective["stage"]], metric)
            mlflow.log_metric("objective", value)
            if constraints := space.objective.get("constraints"):
                objective_run = run.info.run_id if control else stage_runs[space.objective["stage"]]
                held = constraint_values([objective_run, *reversed(stage_runs.values())], constraints)
                for number, (constraint, excess) in enumerate(zip(constraints, held, strict=True)):
                    trial.set_constraint(f"{number}:{constraint['metric']}", excess)
                mlflow.log_metric("objective/feasible", float(all(v <= 0 for v in held)))
            return value

    return objective


def alias_best_model(trial_run: str) -> str | None:
    """Point the alias `best` at the registered version of the best trial's finetune run; returns its URI.

    None when the trial stopped before finetune or its run logged no registered model (tracking.log_model or
    tracking.registered_model off)."""
    finetune = mlflow.get_run(trial_run).data.tags.get("mygo.run.finetune") if trial_run else None
    version = mlflow.get_run(finetune).data.tags.get(MODEL_VERSION_TAG) if finetune else None
    if not version:
        return None
    set_alias(version, BEST_ALIAS)
    uri = f"models:/{version.rpartition('/')[0]}@{BEST_ALIAS}"
    mlflow.set_tag("mygo.best_model", uri)
    logger.info("%s is version %s", uri, version)
    return uri


def log_study_results(study: optuna.Study) -> None:
    """The best trial and Optuna's plots, on the (active) parent run."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    counts = {state.name.lower(): len(study.get_trials(deepcopy=False, states=(state,))) for state in TrialState}
    mlflow.log_metrics({f"trials/{state}": float(count) for state, count in counts.items()})
    if not complete:
        return
    try:
        best = study.best_trial
    except ValueError:  # constrained, and no complete trial meets the constraints
        logger.warning("study %s: no complete trial meets the objective's constraints", study.study_name)
        mlflow.set_tag("mygo.best_trial", "none: no trial meets the objective's constraints")
        return
    mlflow.log_metrics({"best/objective": best.value, "best/trial_number": float(best.number)})
    mlflow.set_tags(
        {"mygo.best_trial_run": best.user_attrs.get(TRIAL_RUN_ATTR, ""), "mygo.best_trial": str(best.number)}
    )
    mlflow.log_dict({"number": best.number, "value": best.value, "params": best.params}, "best_trial.json")
    alias_best_model(best.user_attrs.get(TRIAL_RUN_ATTR, ""))
    from optuna.visualization import matplotlib as optuna_plots

    for name, plot in (
        ("optimization_history", optuna_plots.plot_optimization_history),
        ("param_importances", optuna_plots.plot_param_importances),
        ("parallel_coordinate", optuna_plots.plot_parallel_coordinate),
    ):
        try:
            axes = plot(study)
        except (ValueError, RuntimeError, ZeroDivisionError) as error:  # too few trials for this view
            logger.info("no %s plot: %s", name, error)
            continue
        figure = axes.flat[0].figure if hasattr(axes, "flat") else axes.figure
        figure.set_size_inches(9, 5)
        plots.log_figure(figure, f"plots/{name}.png")


def run_sweep(cfg: DictConfig) -> str:
    """Run (or join) the study until it holds `sweep.n_trials` COMPLETE trials; returns the parent run ID."""
    configure_tracking(cfg)
    space = load_space(cfg.sweep.space)
    check_sweep_configs(cfg, space)  # before the storage, the study and any run
    study_name = cfg.sweep.study or space.path.stem
    storage_url = cfg.sweep.storage or os.environ.get(STORAGE_ENV) or default_storage()
    storage = open_storage(storage_url, cfg)
    study, parent = open_study(cfg, space, storage, study_name)
    logger.info("study %s (%s): parent run %s", study_name, redact_text(storage_url), parent)
    target = cfg.sweep.n_trials
    # Under `mlflow run` in a worker that joined the study, its own run stays empty: trials go under the parent.
    with mlflow.start_run(run_id=parent), recording_failures("sweep", parent):
        done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        if done < target:
            study.optimize(
                make_objective(cfg, space),
                # Enough attempts for the failures a retry policy allows; the callback stops at the target.
                n_trials=(target - done) * (cfg.sweep.max_retry + 1),
                callbacks=[MaxTrialsCallback(target, states=(TrialState.COMPLETE,))],
                catch=(Exception,),
            )
        log_study_results(study)
        check_some_trial_completed(study)  # inside: the parent run records the failure (mygo.error, FAILED)
        if best_run := mlflow.get_run(parent).data.tags.get("mygo.best_trial_run"):
            evaluate_best_on_test(best_run)
    complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    lines = [f"study {study_name}: {complete} complete trials; parent run {parent}"]
    if complete:
        try:
            best = study.best_trial
        except ValueError:  # constrained, none feasible
            lines.append("no complete trial meets the objective's constraints")
        else:
            lines.append(f"best trial {best.number}: {best.value:.4g} with {best.params}")
    print("\n".join(lines))
    # The parent's run page: what this worker printed, and every trial of the study so far.
    title = f"mygo sweep {study_name}: {space.objective['metric']}"
    set_note(report(title, [("", "\n".join(lines)), ("Trials", trials_table(study))]), parent)
    return parent


def trials_table(study: optuna.Study) -> str:
    """Every trial of the study: number, state, objective value and its MLflow run."""
    lines = [f"{'trial':>5}  {'state':<9}{'value':>12}  {'run':<34}params"]
    for trial in study.get_trials(deepcopy=False):
        value = "-" if trial.value is None else f"{trial.value:.4g}"
        run_id = trial.user_attrs.get(TRIAL_RUN_ATTR, "-")
        lines.append(f"{trial.number:>5}  {trial.state.name.lower():<9}{value:>12}  {run_id:<34}{trial.params}")
    return "\n".join(lines)
