"""Atomic writes: a file appears under its name only once it is complete (a full disk leaves nothing half-written).

The one helper every writer uses: shards and their manifests, the score index, router weights, the
selected records, the demo pool's files.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: Path, unique: bool = False) -> Iterator[Path]:
    """A temporary path beside `path` to write to; renamed onto `path` when the block ends, removed on failure.

    `unique`: a temporary name of this process's own, for files that several processes may write at
    once (a shared cache); readers see the old file or the whole new one.
    """
    path = Path(path)
    if unique:
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    else:
        temporary = path.with_name(path.name + ".tmp")
    try:
        yield temporary
        temporary.replace(path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        message = f"writing {path} failed ({error.strerror or error}); nothing was written under that name"
        raise (OSError(error.errno, message) if error.errno else OSError(message)) from error
    except BaseException:  # Ctrl-C mid-write: no temporary file left behind either
        temporary.unlink(missing_ok=True)
        raise
