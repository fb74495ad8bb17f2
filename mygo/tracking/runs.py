"""MLflow conventions shared by every stage: tags, config logging, upstream checks, model references."""

from __future__ import annotations

import json
import logging
import os
import socket
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import mlflow
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import Run, RunStatus
from mlflow.exceptions import MlflowException
from omegaconf import DictConfig

from mygo.config import config_hash, config_yaml, flatten_config, override_value
from mygo.data.pool import pool_source
from mygo.stages.table import STAGE_NAMES
from mygo.tracking.code_version import code_tags
from mygo.tracking.environment import log_environment
from mygo.tracking.failures import TrackingUnavailable, recording_failures
from mygo.tracking.process_identity import Liveness, is_complete, liveness, process_token
from mygo.tracking.redaction import redact_config, redact_text
from mygo.tracking.system_metrics import system_metrics, system_metrics_settings

logger = logging.getLogger(__name__)

STAGE_TAG = "mygo.stage"
UPSTREAM_TAG = "mygo.upstream_run"
CONFIG_HASH_TAG = "mygo.config_hash"
HOST_TAG = "mygo.host"
PID_TAG = "mygo.pid"
PROCESS_TAG = "mygo.process"  # boot/namespace/pid/start time: tells a live process from a reused PID or a container
POOL_DIGEST_TAG = "mygo.pool_digest"  # the content digest of the pool (or data file) the run read
POOL_SOURCE_TAG = "mygo.pool_source"  # where it was read from (JSON), so that reuse can digest it again
FOLLOWS_TAG = "mygo.follows"  # unfinished runs of the same stage and config that this run comes after
# What `mygo.stage` may say: a stage of the table, or a workflow's run (a pipeline, a sweep, one of its trials).
STAGES = (*STAGE_NAMES, "pipeline", "sweep", "trial")


def configure_tracking(cfg: DictConfig) -> None:
    """Point MLflow at the configured store; `mlflow run` passes its own through the environment."""
    uri = cfg.tracking.get("uri")
    if uri:
        mlflow.set_tracking_uri(uri)


def tracking_overrides(cfg: DictConfig) -> list[str]:
    """Hydra overrides that give another stage's config this one's tracking settings (store, experiment)."""
    return [f"tracking.{key}={override_value(value)}" for key, value in cfg.tracking.items()]


@contextmanager
def stage_run(
    stage: str,
    cfg: DictConfig,
    upstream_run: str | None = None,
    run_name: str | None = None,
    active: bool = True,
    requested: DictConfig | None = None,
) -> Iterator[mlflow.ActiveRun | None]:
    """Start (or, under `mlflow run`, continue) the stage's run with mygo's tags, the resolved config and the
    environment it runs in (`mygo.tracking.environment`).

    `requested`: the config as asked for, when the stage filled in more (e.g. settings taken from its
    upstream run); its hash is the `mygo.config_hash` that run reuse compares.

    A stage's run (not a workflow's: its stages' runs have them) samples MLflow system metrics every
    `tracking.system_metrics_interval` seconds while it runs, unless `tracking.system_metrics` is false.

    A run that ends in an exception (FAILED, or KILLED on Ctrl-C) says why: the tag `mygo.error` and its log as
    `logs/<stage>.log` (`mygo.tracking.failures`).

    `active=False` (processes other than the main one in multi-process training) yields None and
    records nothing, so that one launch makes one run.
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; stages are {list(STAGES)}")
    configure_tracking(cfg)
    if not active:
        yield None
        return
    parent = mlflow.active_run()
    if parent is not None:  # a stage of a pipeline: a child run in the parent's experiment
        start = {"nested": True, "experiment_id": parent.info.experiment_id}
    else:
        start = {}
        if "MLFLOW_RUN_ID" not in os.environ:  # `mlflow run` created the run and chose its experiment
            mlflow.set_experiment(cfg.tracking.experiment)
    sampled, interval = system_metrics_settings(cfg)
    sampled = sampled and stage in STAGE_NAMES
    if stage in STAGE_NAMES:  # the monitor is ours (mygo.tracking.system_metrics), never also MLflow's
        start["log_system_metrics"] = False
    try:
        with mlflow.start_run(run_name=run_name, **start) as run, recording_failures(stage, run.info.run_id):
            tags = {STAGE_TAG: stage, CONFIG_HASH_TAG: config_hash(requested if requested is not None else cfg)}
            tags |= code_tags() | {
                HOST_TAG: socket.gethostname(),
                PID_TAG: str(os.getpid()),
                PROCESS_TAG: process_token(),
            }
            if upstream_run:
                tags[UPSTREAM_TAG] = upstream_run
            if abandoned := close_abandoned_runs(stage, tags[CONFIG_HASH_TAG], run.info.run_id):
                tags[FOLLOWS_TAG] = ",".join(abandoned)
            mlflow.set_tags({key: redact_text(value) for key, value in tags.items()})
            logged = redact_config(cfg)
            mlflow.log_params(flatten_config(logged))
            mlflow.log_text(config_yaml(logged), "config/resolved.yaml")
            log_environment()  # `mygo.env.*` and environment/requirements.txt, which reproduce compares
            try:
                if sampled:
                    with system_metrics(run.info.run_id, interval):
                        yield run
                else:
                    yield run
            except KeyboardInterrupt:  # Ctrl-C (and SIGTERM, see mygo.cli): the record says KILLED, not FAILED
                mlflow.end_run(RunStatus.to_string(RunStatus.KILLED))
                raise
    except MlflowException as closing:  # the store is down: closing the run failed after the stage's own error
        cause = closing.__context__
        while cause is not None and not isinstance(cause, TrackingUnavailable):
            cause = cause.__context__
        if cause is not None:
            raise cause from None  # that error says where the results are; the next stage run closes the run
        raise


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def process_gone(run: Run) -> bool:
    """Whether the run's process has ended: by its process token (`mygo.process`), else (runs recorded before it,
    or where /proc cannot be read) by its PID on this host."""
    token = run.data.tags.get(PROCESS_TAG)
    if token and is_complete(token):
        return liveness(token) is Liveness.GONE
    pid = run.data.tags.get(PID_TAG, "")
    return pid.isdigit() and not _process_alive(int(pid))


def close_abandoned_runs(stage: str, config_hash_: str, current_run: str) -> list[str]:
    """Mark RUNNING runs whose process is gone (SIGKILL, a crash) as KILLED.

    Returns those of the same stage and config, which the new run follows (`mygo.follows`). Runs of
    other hosts, containers (a shared host name aside) or boots are left alone: whether their process
    lives cannot be told from here (`mygo.tracking.process_identity`).
    """
    running = mlflow.search_runs(
        search_all_experiments=True,
        filter_string=f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{socket.gethostname()}'",
        output_format="list",
    )
    client, followed = mlflow.MlflowClient(), []
    for run in running:
        pid = run.data.tags.get(PID_TAG, "")
        if run.info.run_id == current_run or not process_gone(run):
            continue
        if run.data.tags.get(STAGE_TAG) == "sweep":  # resumed by every worker of the study: not one process's
            continue
        client.set_tag(run.info.run_id, "mygo.abandoned", f"process {pid} ended without closing the run")
        client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.KILLED))
        logger.warning(
            "run %s (%s) was left RUNNING by process %s, which is gone: marked KILLED",
            run.info.run_id,
            run.data.tags.get(STAGE_TAG),
            pid,
        )
        if run.data.tags.get(STAGE_TAG) == stage and run.data.tags.get(CONFIG_HASH_TAG) == config_hash_:
            followed.append(run.info.run_id)
    return followed


def get_run(run_id: str) -> Run:
    """The run, or an error naming the ID and the tracking store it was looked for in."""
    try:
        return mlflow.get_run(run_id)
    except MlflowException as error:
        raise ValueError(
            f"run {run_id!r} not found in tracking store {redact_text(mlflow.get_tracking_uri())}: {error.message}"
        ) from error


def check_upstream(run_id: str, stage: str) -> Run:
    """The upstream run, checked to be of `stage` and FINISHED."""
    run = get_run(run_id)
    found = run.data.tags.get(STAGE_TAG)
    if found != stage:
        raise ValueError(f"run {run_id} is a {found or 'non-mygo'} run, expected a {stage} run")
    if run.info.status != RunStatus.to_string(RunStatus.FINISHED):
        raise ValueError(f"{stage} run {run_id} is {run.info.status}, expected FINISHED")
    return run


def log_dataset_input(name: str, location: str, digest: str, context: str) -> None:
    """An MLflow dataset input: what a stage read, where, and a digest of its content."""
    with warnings.catch_warnings():  # MLflow registers its local-file source twice and warns about it
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(location)
    mlflow.log_input(MetaDataset(source=source, name=name, digest=digest[:16]), context=context)


def log_pool_input(pool, context: str, name: str | None = None, decides_reuse: bool = True) -> None:
    """The pool (or a data file) as a dataset input: its name, location and content digest.

    `decides_reuse`: the run also records the digest and where the pool lies (`mygo.pool_digest`,
    `mygo.pool_source`), and is reused only while that pool still has that digest; False for a file
    that is another run's artifact (a selection), which changes only with that run.
    """
    name = name or f"pool:{','.join(pool.dataset_names)}"
    log_dataset_input(name, str(pool.data_dir.resolve()), pool.digest, context)
    if decides_reuse:
        tag_pool(pool.digest, pool_source(pool))


def tag_pool(digest: str, source: dict) -> None:
    mlflow.set_tags({POOL_DIGEST_TAG: digest, POOL_SOURCE_TAG: json.dumps(source, sort_keys=True)})
