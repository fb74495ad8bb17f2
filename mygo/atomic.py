"""Atomic writes: a file appears under its name only once it is complete (a full disk leaves nothing half-written).

The one helper every writer uses: shards and their manifests, the score index, router weights, the
selected records and sample table, saved models and adapters, the demo pool's and eval tasks' files.
Every writer gets a temporary name of its own, so two processes writing the same file (two sweep
workers, a rerun beside a run) cannot mix their bytes: readers see the old file or one whole new one.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _temporary_beside(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")


def _failure(path: Path, error: OSError) -> OSError:
    message = f"writing {path} failed ({error.strerror or error}); nothing was written under that name"
    return OSError(error.errno, message) if error.errno else OSError(message)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside `path`, this writer's own, to write to; renamed onto `path` when the block ends,
    removed on failure."""
    path = Path(path)
    temporary = _temporary_beside(path)
    try:
        yield temporary
        temporary.replace(path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise _failure(path, error) from error
    except BaseException:  # Ctrl-C mid-write: no temporary file left behind either
        temporary.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_directory(path: Path) -> Iterator[Path]:
    """A temporary directory beside `path` to save into (`save_pretrained`); it becomes `path` when the block ends.

    A directory cannot be renamed over a non-empty one, so an existing `path` is first renamed aside and
    removed after: for that instant the name is missing, never half-written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary_beside(path)
    temporary.mkdir()
    try:
        yield temporary
        old = _temporary_beside(path) if path.exists() else None
        if old is not None:
            path.rename(old)
        temporary.rename(path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as error:
        shutil.rmtree(temporary, ignore_errors=True)
        raise _failure(path, error) from error
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
