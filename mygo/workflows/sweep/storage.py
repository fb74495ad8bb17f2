"""The Optuna storage a study lives in: SQLite beside the MLflow store, or PostgreSQL shared by many workers."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import mlflow
from omegaconf import DictConfig
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from sqlalchemy.exc import ArgumentError, IntegrityError, ProgrammingError, SQLAlchemyError

from mygo.tracking.redaction import redact_text

# The storage URL from the environment, so that its password is never a command-line value (which `mlflow run`
# records raw as a param).
STORAGE_ENV = "MYGO_OPTUNA_STORAGE"


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
