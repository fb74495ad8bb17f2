"""The study and its MLflow parent run: created by whichever worker comes first, joined by the others."""

from __future__ import annotations

import hashlib
import time

import mlflow
import optuna
from omegaconf import DictConfig
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from mygo.tracking.redaction import redact_text
from mygo.tracking.runs import STAGE_TAG, stage_run
from mygo.workflows.sweep.space import SearchSpace, make_pruner, make_sampler

TRIAL_RUN_ATTR = "mlflow_run"
PARENT_RUN_ATTR = "mlflow_parent_run"


SPACE_DIGEST_ATTR = "space_digest"


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
