"""Tracking: per-iteration records, the tracker protocol, history tables."""

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

__all__ = [
    "CallbackTracker",
    "CompositeTracker",
    "HistoryTracker",
    "IterationRecord",
    "NullTracker",
    "SolveStart",
    "StopFlagTracker",
    "StopSolve",
    "Tracker",
    "finite_or_null",
    "history_frame",
    "summary_frame",
]
