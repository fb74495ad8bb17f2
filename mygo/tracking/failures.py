"""Why a run failed, in the run: its error as the tag `mygo.error` and its log (redacted too) as the artifact
`logs/<name>.log`.

`recording_failures` captures what is logged while it is open; if the block ends in an exception (Ctrl-C
included), the run is tagged with the exception's type and message, redacted, and gets the log with the
traceback at its end. Every stage run (`mygo.tracking.runs.stage_run`), the sweep's parent run and, under
`mlflow run`, the run MLflow made for the command (a failure before any stage run started) record this way.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException

from mygo.tracking.redaction import redact_text

ERROR_TAG = "mygo.error"
LOG_ARTIFACT_DIR = "logs"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MAX_ERROR_CHARS = 5000

logger = logging.getLogger(__name__)


class TrackingUnavailable(RuntimeError):
    """The tracking store stayed unreachable: some results could not be recorded (the local ones are kept)."""


def error_text(error: BaseException) -> str:
    """`ValueError: selection.percentage ...`: the type and message, passwords in URLs masked."""
    message = str(error).strip()
    return redact_text(f"{type(error).__name__}: {message}" if message else type(error).__name__)[:MAX_ERROR_CHARS]


def record_failure(run_id: str, name: str, error: BaseException, log_file: Path | None, overwrite: bool = True) -> None:
    """Tag the run with the error and attach the log; a store that cannot be written to is only logged about,
    so that the original error is what the user sees."""
    client = mlflow.MlflowClient()
    try:
        if not overwrite and ERROR_TAG in client.get_run(run_id).data.tags:
            return
        client.set_tag(run_id, ERROR_TAG, error_text(error))
        if log_file is not None and log_file.is_file():
            with tempfile.TemporaryDirectory() as tmp:
                named = Path(tmp) / f"{name}.log"
                named.write_text(redact_text(log_file.read_text(encoding="utf-8", errors="replace")), encoding="utf-8")
                client.log_artifact(run_id, str(named), LOG_ARTIFACT_DIR)
    except (MlflowException, OSError) as problem:
        logger.warning("could not record the failure of run %s: %s", run_id, problem)


@contextmanager
def recording_failures(name: str, run_id: str | None, overwrite: bool = True) -> Iterator[None]:
    """While open, log records go to a file too; an exception out of the block is recorded on `run_id`.

    `overwrite=False` leaves a run that already says why it failed (a stage run inside it recorded first).
    """
    if not run_id:
        yield
        return
    descriptor, path = tempfile.mkstemp(prefix=f"mygo-{name}-", suffix=".log")
    os.close(descriptor)
    log_file = Path(path)
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    if root.level > logging.INFO:
        root.setLevel(logging.INFO)
    try:
        yield
    except GeneratorExit:
        raise
    except BaseException as error:
        # The traceback goes to the run's log only: the console keeps the command line's one-line error.
        failure = (type(error), error, error.__traceback__)
        handler.handle(logger.makeRecord(logger.name, logging.ERROR, __file__, 0, "%s failed", (name,), failure))
        handler.flush()
        record_failure(run_id, name, error, log_file, overwrite=overwrite)
        raise
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()
        log_file.unlink(missing_ok=True)
