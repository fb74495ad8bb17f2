"""MLflow system metrics (CPU, memory, disk, network; GPU where present) on a stage's run.

MLflow's own `mlflow.start_run(log_system_metrics=True)` is not used, for two reasons: its monitor is
stopped by an unbounded join, which waits out minutes of HTTP retries when the tracking server is
down (training must not stall on tracking, see `mygo.training.hf_trainer.MlflowMetrics`); and it drops
the samples of the last, unfinished interval, so a run shorter than the interval would show none.
Here the monitor is MLflow's `SystemMetricsMonitor`, given the interval directly (no process-wide
environment variable that subprocesses would inherit), stopped with a bounded wait, and a last sample is
logged at the end. `MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL`, where set, still wins, as in MLflow.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from omegaconf import DictConfig

logger = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 10.0
STOP_TIMEOUT_S = 10.0  # how long the end of a run waits for the last sample to reach the store


def system_metrics_settings(cfg: DictConfig) -> tuple[bool, float]:
    """(on, interval in seconds) from the config's tracking block; on by default (configs logged before it)."""
    tracking = cfg.get("tracking") or {}
    interval = float(tracking.get("system_metrics_interval", DEFAULT_INTERVAL_S))
    return bool(tracking.get("system_metrics", True)), interval


def _stop(monitor) -> None:
    monitor.finish()  # stops the sampling thread and flushes what it published
    monitor.collect_metrics()  # the last, partial interval: MLflow's loop drops it
    monitor.publish_metrics(monitor.aggregate_metrics())
    monitor.mlflow_logger.flush()


@contextmanager
def system_metrics(run_id: str, interval_s: float, stop_timeout_s: float = STOP_TIMEOUT_S) -> Iterator[None]:
    """Sample system metrics into the run (as `system/...`) every `interval_s` while the block runs."""
    try:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        # resume_logging: under `mlflow run` or a resume, steps go on after those the run already has.
        monitor = SystemMetricsMonitor(run_id, sampling_interval=interval_s, resume_logging=True)
        monitor.start()
    except Exception as error:  # noqa: BLE001 - utilisation figures are never worth failing a stage for
        logger.warning("no system metrics for run %s: %s", run_id, error)
        yield
        return
    try:
        yield
    finally:
        # In a thread of its own, so that a tracking store that is down costs at most `stop_timeout_s`.
        stopper = threading.Thread(target=_stop_quietly, args=(monitor, run_id), name="mygo-sysmetrics", daemon=True)
        stopper.start()
        stopper.join(stop_timeout_s)
        if stopper.is_alive():
            logger.warning("system metrics of run %s: no last sample (the store did not answer)", run_id)


def _stop_quietly(monitor, run_id: str) -> None:
    try:
        _stop(monitor)
    except Exception as error:  # noqa: BLE001
        logger.warning("system metrics of run %s: the last sample was not logged: %s", run_id, error)
