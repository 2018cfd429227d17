"""How a solve reports itself: per-iteration records, the final result, the tracker protocol, history tables.

The vocabulary every layer above shares: solvers produce ``IterationRecord`` s and an
``EigenResult`` and hand them to a ``Tracker``; the app, the store and the tests read them.
"""

from explorer.tracking.history import HistoryTracker, finite_or_null, history_frame, summary_frame
from explorer.tracking.protocol import (
    CallbackTracker,
    CompositeTracker,
    NullTracker,
    StopFlagTracker,
    StopSolve,
    Tracker,
)
from explorer.tracking.records import IterationRecord, SolveStart
from explorer.tracking.results import ConvergenceError, EigenResult, SolveStatus, SVDResult

__all__ = [
    "CallbackTracker",
    "CompositeTracker",
    "ConvergenceError",
    "EigenResult",
    "HistoryTracker",
    "IterationRecord",
    "NullTracker",
    "SVDResult",
    "SolveStart",
    "SolveStatus",
    "StopFlagTracker",
    "StopSolve",
    "Tracker",
    "finite_or_null",
    "history_frame",
    "summary_frame",
]
