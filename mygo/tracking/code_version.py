"""Which code made a run: a digest of the files that decide results, and the git commit they came from.

Run reuse compares the digest (the library, its configs and entry points, by content), so a commit
that only touches the README or the tests does not make finished runs stale, while an uncommitted
edit of `mygo/` does. The git commit and whether the work tree was dirty are recorded for people:
`reproduce` says which commit to check out.
"""

from __future__ import annotations

import functools
import hashlib
import subprocess
from pathlib import Path

CODE_DIGEST_TAG = "mygo.code_digest"
GIT_COMMIT_TAG = "mlflow.source.git.commit"  # MLflow's own name; set where MLflow did not set it
GIT_DIRTY_TAG = "mygo.git_dirty"

ROOT = Path(__file__).resolve().parents[2]  # the checkout whose mygo/ this is (site-packages when installed)
# What decides a stage's results; tests, docs and benchmarks do not.
CODE_PATHS = ("mygo", "configs", "entrypoints", "MLproject")
SKIPPED_PARTS = frozenset({"__pycache__"})


def _code_files() -> list[Path]:
    files = []
    for name in CODE_PATHS:
        path = ROOT / name
        candidates = sorted(path.rglob("*")) if path.is_dir() else [path]
        files += [f for f in candidates if f.is_file() and not SKIPPED_PARTS & set(f.parts) and f.suffix != ".pyc"]
    return files


@functools.cache
def code_digest() -> str:
    """sha256 over the code files' relative paths and contents (16 hex digits)."""
    digest = hashlib.sha256()
    for path in _code_files():
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@functools.cache
def git_state() -> tuple[str | None, bool]:
    """(HEAD commit, whether tracked code files differ from it); (None, False) outside a git checkout."""
    top = _git("rev-parse", "--show-toplevel")
    # Only a checkout of this project counts: an installed copy inside some other work tree (a virtualenv in a
    # repository) has no commit of its own.
    if top is None or Path(top).resolve() != ROOT:
        return None, False
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return None, False
    changed = _git("status", "--porcelain", "--untracked-files=all", "--", *CODE_PATHS)
    return commit, bool(changed)


def code_tags() -> dict[str, str]:
    commit, dirty = git_state()
    tags = {CODE_DIGEST_TAG: code_digest()}
    if commit is not None:
        tags |= {GIT_COMMIT_TAG: commit, GIT_DIRTY_TAG: str(dirty).lower()}
    return tags
