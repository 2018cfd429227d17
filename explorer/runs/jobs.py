"""Background solves: run any solver in a thread, collect its records, stop it on request.

The live UI pattern measured in ../shared/LIVE.md (pattern b): the solver runs in a
worker thread and never touches Streamlit; its tracker appends records under a
lock; the page redraws from ``job.view()`` on a timer; Stop sets an event that the
tracker checks once per iteration (raising ``StopSolve``, which every solver turns
into status "stopped" with the partial result). A heartbeat (``touch()``) from the
page keeps the job alive; ``detach()`` (the browser tab closed) shortens the grace,
so a closed tab ends its solve in about ``detached_timeout`` seconds while a short
network drop followed by a reconnect does not.

Nothing here imports streamlit, so notebooks and tests use it as they are.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from explorer.tracking import IterationRecord, NullTracker, SolveStart, StopSolve, Tracker

__all__ = ["SolveJob", "JobView", "JobState", "running_jobs", "max_concurrent_jobs", "friendly_error"]


class JobState:
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


def max_concurrent_jobs() -> int:
    """Solves allowed at once in this process (env EXPLORER_MAX_JOBS, default: cores, >= 1)."""
    return max(1, int(os.environ.get("EXPLORER_MAX_JOBS", os.cpu_count() or 1)))


_SLOTS = threading.BoundedSemaphore(max_concurrent_jobs())
_ALIVE: set["SolveJob"] = set()
_ALIVE_LOCK = threading.Lock()
_IDS = itertools.count(1)


def running_jobs() -> int:
    """Jobs queued or running in this process (all sessions)."""
    with _ALIVE_LOCK:
        return len(_ALIVE)


def friendly_error(error: BaseException) -> str:
    """A one-paragraph message for people: the core's ValueError/TypeError texts are written for them."""
    if isinstance(error, (ValueError, TypeError, MemoryError)):
        return str(error)
    if isinstance(error, torch.OutOfMemoryError):  # pragma: no cover - needs a GPU
        return "The device ran out of memory. Use a smaller problem, a smaller k or basis, or the CPU."
    return f"{type(error).__name__}: {error}"


@dataclass(frozen=True)
class JobView:
    """A consistent copy of a job for drawing."""

    state: str
    records: list[IterationRecord]
    start: SolveStart | None
    result: Any
    error: str | None
    elapsed_s: float
    stop_reason: str | None

    @property
    def alive(self) -> bool:
        return self.state in (JobState.QUEUED, JobState.RUNNING)


class _JobTracker(NullTracker):
    def __init__(self, job: "SolveJob") -> None:
        self.job = job

    def on_start(self, start: SolveStart) -> None:
        self.job._set_start(start)

    def on_iteration(self, record: IterationRecord) -> None:
        self.job._append(record)
        if self.job._should_stop():
            raise StopSolve(self.job.stop_reason or "stopped")


@dataclass(eq=False)
class SolveJob:
    """One background solve.

    Args:
        target: ``target(tracker) -> result``; call the solver with ``tracker=tracker``.
        label: shown in run lists.
        params: the configuration (kept with the run for the history table and snippet).
        extra_tracker: also receives every hook (e.g. a HistoryTracker).
        torch_threads: intra-op threads inside the worker (per-thread with OpenMP).
        heartbeat_timeout: seconds without ``touch()`` before the job stops itself.
        detached_timeout: the same after ``detach()`` (browser tab closed).
    """

    target: Callable[[Tracker], Any]
    label: str = "solve"
    params: dict[str, Any] = field(default_factory=dict)
    extra_tracker: Tracker | None = None
    torch_threads: int | None = None
    heartbeat_timeout: float = 300.0
    detached_timeout: float = 10.0

    def __post_init__(self) -> None:
        self.id = next(_IDS)
        self.state = JobState.QUEUED
        self.result: Any = None
        self.error: str | None = None
        self.error_detail: str | None = None
        self.stop_reason: str | None = None
        self.created = time.time()
        self._lock = threading.Lock()
        self._records: list[IterationRecord] = []
        self._start: SolveStart | None = None
        self._stop = threading.Event()
        self._last_seen = time.monotonic()
        self._detached = False
        self._t_start: float | None = None
        self._t_end: float | None = None
        self._thread = threading.Thread(target=self._run, name=f"solve-job-{self.id}", daemon=True)

    # -- control (any thread) ---------------------------------------------
    def start(self) -> "SolveJob":
        with _ALIVE_LOCK:
            _ALIVE.add(self)
        self._thread.start()
        return self

    def request_stop(self, reason: str = "stopped by the user") -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        self._stop.set()

    def touch(self) -> None:
        """Heartbeat from the page that shows this job."""
        self._last_seen = time.monotonic()
        self._detached = False

    def detach(self) -> None:
        """The page's session closed; stop soon unless a reconnect touches the job again."""
        self._detached = True

    @property
    def alive(self) -> bool:
        return self.state in (JobState.QUEUED, JobState.RUNNING)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job ends; True when it did."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def view(self) -> JobView:
        with self._lock:
            records = list(self._records)
            state = self.state
        if self._t_start is None:
            elapsed = 0.0
        else:
            elapsed = (self._t_end or time.perf_counter()) - self._t_start
        return JobView(state=state, records=records, start=self._start, result=self.result, error=self.error,
                       elapsed_s=elapsed, stop_reason=self.stop_reason)

    # -- worker side --------------------------------------------------------
    def _should_stop(self) -> bool:
        limit = self.detached_timeout if self._detached else self.heartbeat_timeout
        if time.monotonic() - self._last_seen > limit:
            self.request_stop("the page that started this solve was closed" if self._detached
                              else "no heartbeat from the page")
        return self._stop.is_set()

    def _set_start(self, start: SolveStart) -> None:
        self._start = start

    def _append(self, record: IterationRecord) -> None:
        with self._lock:
            self._records.append(record)

    def _run(self) -> None:
        tracker: Tracker = _JobTracker(self)
        if self.extra_tracker is not None:
            from explorer.tracking import CompositeTracker

            tracker = CompositeTracker(tracker, self.extra_tracker)
        try:
            with _SLOTS:
                if self._stop.is_set():
                    self.stop_reason = self.stop_reason or "stopped before it started"
                    return
                self.state = JobState.RUNNING
                self._t_start = time.perf_counter()
                torch.set_num_threads(self.torch_threads or max(1, (os.cpu_count() or 1) // max_concurrent_jobs()))
                self.result = self.target(tracker)
        except Exception as error:  # noqa: BLE001 - the UI shows every failure as a message
            self.error = friendly_error(error)
            self.error_detail = traceback.format_exc()
        finally:
            self._t_end = time.perf_counter()
            with self._lock:
                if self.error is not None:
                    self.state = JobState.FAILED
                else:
                    self.state = JobState.DONE
            with _ALIVE_LOCK:
                _ALIVE.discard(self)
