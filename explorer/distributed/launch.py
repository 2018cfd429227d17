"""Start N ranks on this machine, as torchrun does, for tests and measurements.

``launch_local(["-m", "explorer.distributed", "solve", ...], nprocs=4, timeout=120)`` starts
``nprocs`` Python processes with the variables torchrun gives its workers (``RANK``,
``LOCAL_RANK``, ``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR=127.0.0.1``, a free
``MASTER_PORT``, ``OMP_NUM_THREADS=1``) and waits for them, at most ``timeout`` seconds
(then it kills the ones it started). It is not a replacement for torchrun (no restarts,
no elastic membership, one node): it exists so that a test can kill one rank and watch
what the others do without torchrun's agent stepping in (torchrun stops the survivors
with SIGTERM as soon as one worker dies, which is what a user sees, and is tested too).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

__all__ = ["RankProcess", "launch_local", "free_port"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RankProcess:
    """One finished (or killed) rank: its exit code and output."""

    rank: int
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool = False


def launch_local(argv: Sequence[str], nprocs: int, *, timeout: float = 120.0, env: Mapping[str, str] | None = None,
                 cwd: str | None = None, on_started: Callable[[list[subprocess.Popen]], None] | None = None
                 ) -> list[RankProcess]:
    """Run ``python *argv`` as ``nprocs`` ranks on localhost; return each rank's outcome.

    Args:
        argv: arguments after the interpreter (``["-m", "explorer.distributed", ...]``).
        nprocs: number of ranks.
        timeout: seconds for all of them; the ones still running then are killed
            (``timed_out`` set).
        env: extra environment variables for every rank.
        cwd: working directory.
        on_started: called with the processes once started (a test uses it to kill one).
    """
    port = free_port()
    base = dict(os.environ)
    base.update(env or {})
    base.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(nprocs),
                 "LOCAL_WORLD_SIZE": str(nprocs), "OMP_NUM_THREADS": base.get("OMP_NUM_THREADS", "1")})
    base.pop("TORCHELASTIC_USE_AGENT_STORE", None)
    procs: list[subprocess.Popen] = []
    logs = []
    import tempfile

    for rank in range(nprocs):
        out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()  # files: pipes could fill and block a rank
        logs.append((out, err))
        procs.append(subprocess.Popen([sys.executable, *argv], env={**base, "RANK": str(rank),
                                                                     "LOCAL_RANK": str(rank)},
                                      cwd=cwd, stdout=out, stderr=err))
    if on_started is not None:
        on_started(procs)
    deadline = time.monotonic() + timeout
    timed_out = [False] * nprocs
    for rank, proc in enumerate(procs):
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out[rank] = True
    for rank, proc in enumerate(procs):
        if proc.poll() is None:
            timed_out[rank] = True
            proc.send_signal(signal.SIGKILL)  # only processes this function started
            proc.wait()
    results = []
    for rank, (proc, (out, err)) in enumerate(zip(procs, logs)):
        out.seek(0), err.seek(0)
        results.append(RankProcess(rank, proc.returncode, out.read().decode("utf-8", "replace"),
                                   err.read().decode("utf-8", "replace"), timed_out[rank]))
        out.close(), err.close()
    return results
