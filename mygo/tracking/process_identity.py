"""Which process a run belongs to, told apart from any other: boot, PID namespace, PID and start time.

Host name and PID alone misfire: containers on one machine may share a host name but not their PIDs
(another container's live process looks gone from here), and a PID is reused once its process ends
(a new process looks like the old one). On Linux a process is identified by the kernel's boot id,
its PID namespace, its PID and its start time (clock ticks since boot): a recorded process is alive
exactly when this boot and namespace have a process with that PID and that start time. Whether a
process of another boot or namespace lives cannot be told from here.
"""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path

PROC = Path("/proc")


class Liveness(Enum):
    ALIVE = "alive"
    GONE = "gone"
    UNKNOWN = "unknown"  # another machine, container or boot: not ours to judge


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat; the command name before it may hold spaces and parentheses."""
    stat = _read(PROC / str(pid) / "stat")
    return stat.rpartition(")")[2].split()[19] if stat else None


def _namespace() -> str | None:
    try:
        return os.readlink(PROC / "self" / "ns" / "pid")
    except OSError:
        return None


def process_token(pid: int | None = None) -> str:
    """`<boot id>/<pid namespace>/<pid>/<start time>` of this process (or `pid`); `-` for what cannot be read."""
    pid = os.getpid() if pid is None else pid
    boot = _read(PROC / "sys" / "kernel" / "random" / "boot_id")
    return "/".join(part or "-" for part in (boot, _namespace(), str(pid), _start_time(pid)))


def is_complete(token: str) -> bool:
    """Whether every part could be read (not so without /proc, e.g. on macOS)."""
    parts = token.split("/")
    return len(parts) == 4 and "-" not in parts and parts[2].isdigit()


def liveness(token: str) -> Liveness:
    """Whether the process a token names is alive, seen from this process."""
    if not is_complete(token):
        return Liveness.UNKNOWN
    boot, namespace, pid, started = token.split("/")
    here = process_token().split("/")
    if (boot, namespace) != (here[0], here[1]):
        return Liveness.UNKNOWN
    return Liveness.ALIVE if _start_time(int(pid)) == started else Liveness.GONE
