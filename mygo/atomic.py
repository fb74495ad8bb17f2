"""Atomic writes: a file appears under its name only once it is complete (a full disk leaves nothing half-written)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` to write to; renamed onto `path` when the block ends, removed on failure."""
    temporary = path.with_name(path.name + ".tmp")
    try:
        yield temporary
        temporary.replace(path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        message = f"writing {path} failed ({error.strerror or error}); nothing was written under that name"
        raise (OSError(error.errno, message) if error.errno else OSError(message)) from error
