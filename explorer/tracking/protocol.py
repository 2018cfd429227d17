"""The tracker protocol: start / iteration / finish hooks, and how to stop a solve.

Every solver calls ``tracker.on_iteration(record)`` once per iteration. A tracker
stops the solve by raising :class:`StopSolve` from any hook (or, for
:class:`StopFlagTracker`, by setting a flag that it checks each iteration). The
solver then returns its partial result with status ``SolveStatus.STOPPED``.
This mirrors ``scipy.optimize.minimize``'s ``callback`` that may raise
``StopIteration``; we use our own class because PEP 479 turns a StopIteration
raised inside a generator into RuntimeError.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from explorer.tracking.records import IterationRecord, SolveStart

if TYPE_CHECKING:  # pragma: no cover
    from explorer.tracking.results import EigenResult

__all__ = [
    "StopSolve",
    "Tracker",
    "NullTracker",
    "CompositeTracker",
    "StopFlagTracker",
    "CallbackTracker",
]


class StopSolve(Exception):
    """Raise from a tracker hook to end the solve; the partial result is kept."""

    def __init__(self, reason: str = "stopped by the tracker") -> None:
        super().__init__(reason)
        self.reason = reason


@runtime_checkable
class Tracker(Protocol):
    """What a solver calls. All three hooks are required; subclass NullTracker to pick."""

    def on_start(self, start: SolveStart) -> None: ...

    def on_iteration(self, record: IterationRecord) -> None: ...

    def on_finish(self, result: "EigenResult") -> None: ...


class NullTracker:
    """Does nothing; base class for trackers that only need some hooks."""

    def on_start(self, start: SolveStart) -> None:
        pass

    def on_iteration(self, record: IterationRecord) -> None:
        pass

    def on_finish(self, result: "EigenResult") -> None:
        pass


class CallbackTracker(NullTracker):
    """Wraps a plain function ``f(record)``; handy in notebooks."""

    def __init__(self, on_iteration) -> None:  # type: ignore[no-untyped-def]
        self._fn = on_iteration

    def on_iteration(self, record: IterationRecord) -> None:
        self._fn(record)


class CompositeTracker(NullTracker):
    """Fans each hook out to several trackers, in order.

    A ``StopSolve`` from one tracker is raised after every tracker has seen the record, so
    a recording tracker placed after a stopping one (a job's Stop flag, then a store) still
    keeps the last record of a stopped solve.
    """

    def __init__(self, *trackers: Tracker | None) -> None:
        self.trackers = [t for t in trackers if t is not None]

    def on_start(self, start: SolveStart) -> None:
        for tracker in self.trackers:
            tracker.on_start(start)

    def on_iteration(self, record: IterationRecord) -> None:
        stop: StopSolve | None = None
        for tracker in self.trackers:
            try:
                tracker.on_iteration(record)
            except StopSolve as request:
                stop = stop or request
        if stop is not None:
            raise stop

    def on_finish(self, result: "EigenResult") -> None:
        for tracker in self.trackers:
            tracker.on_finish(result)


class StopFlagTracker(NullTracker):
    """Stops the solve at the next iteration once ``request_stop()`` was called.

    Thread-safe: the UI thread calls ``request_stop`` while the solver thread runs.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = "stopped by the user"

    def request_stop(self, reason: str = "stopped by the user") -> None:
        self.reason = reason
        self._event.set()

    @property
    def stop_requested(self) -> bool:
        return self._event.is_set()

    def on_iteration(self, record: IterationRecord) -> None:
        if self._event.is_set():
            raise StopSolve(self.reason)
