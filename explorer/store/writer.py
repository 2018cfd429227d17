"""Who writes a run, and whether that writer still lives: how an interrupted run is recognised.

Every run in the store carries its writer's identity: host name, process id, the
process's start time (Linux: field 22 of ``/proc/<pid>/stat``, clock ticks since boot) and
the boot id (``/proc/sys/kernel/random/boot_id``), plus a heartbeat the writer refreshes
while the run is open. When a store opens (and when it lists runs) it marks a run that
still says "running" as interrupted if its writer is gone:

* same host and same boot: the pid no longer exists, or it exists with another start time
  (the pid was reused by a new process after the writer died);
* same host, another boot id: the machine restarted since, so the writer is gone;
* another host (a store on a shared disk): the heartbeat is older than ``stale_after`` seconds.

The pid test is exact and immediate on the writer's own host (a SIGKILLed process is
seen as gone at once); the heartbeat is the only signal from another host, so there the
timeout must exceed the longest pause between heartbeats (the writer's flusher thread
refreshes it every ``HEARTBEAT_S``, independently of the solver's iterations).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

__all__ = ["Writer", "this_writer", "process_start", "writer_alive", "HEARTBEAT_S", "STALE_AFTER_S"]

HEARTBEAT_S = 2.0  # how often an open run's heartbeat is refreshed
STALE_AFTER_S = 60.0  # a run of another host whose heartbeat is older than this is interrupted


@dataclass(frozen=True)
class Writer:
    """The identity of a writing process."""

    host: str
    pid: int
    start: int | None  # process start time in clock ticks since boot (Linux), else None
    boot: str | None  # boot id (Linux), else None


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def process_start(pid: int) -> int | None:
    """Start time of process ``pid`` in clock ticks since boot (Linux ``/proc``), or None.

    The command name (field 2) may contain spaces and parentheses, so the fields are
    counted from the last ``)``.
    """
    text = _read(f"/proc/{pid}/stat")
    if not text:
        return None
    try:
        return int(text[text.rindex(")") + 2:].split()[19])  # field 22 overall
    except (ValueError, IndexError):
        return None


@lru_cache(maxsize=1)
def _boot_id() -> str | None:
    text = _read("/proc/sys/kernel/random/boot_id")
    return text.strip() if text else None


def this_writer() -> Writer:
    """The identity of the calling process (computed each call: a forked child has its own pid)."""
    pid = os.getpid()
    return Writer(host=socket.gethostname(), pid=pid, start=process_start(pid), boot=_boot_id())


def _pid_exists(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def _zombie(pid: int) -> bool:
    """A dead child its parent has not reaped yet still has a pid; it writes nothing more."""
    text = _read(f"/proc/{pid}/stat")
    if not text:
        return False
    try:
        return text[text.rindex(")") + 2:].split()[0] in ("Z", "X")
    except (ValueError, IndexError):
        return False


def writer_alive(host: str | None, pid: int | None, start: int | None, boot: str | None,
                 heartbeat: float | None, now: float, *, stale_after: float = STALE_AFTER_S) -> bool:
    """Whether the writer of a run (as stored) may still be writing it; see the module docstring."""
    me = this_writer()
    if host == me.host and pid is not None:
        if boot is not None and me.boot is not None and boot != me.boot:
            return False  # the machine restarted since the run began
        if pid == me.pid and (start is None or me.start is None or start == me.start):
            return True
        if not _pid_exists(pid) or _zombie(pid):
            return False
        if start is not None:
            now_start = process_start(pid)
            if now_start is not None and now_start != start:
                return False  # the pid belongs to another process now
        return True
    return heartbeat is not None and now - heartbeat < stale_after
