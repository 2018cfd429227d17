"""Eigensolver Explorer core: operators, solvers, tracking, problems. No Streamlit here.

    >>> from explorer import solve, problems
    >>> problem = problems.laplacian_2d(30, 30)
    >>> result = solve("lanczos", problem.operator, k=4, which="LA")
"""

import os as _os
import sys as _sys

# Idle OpenMP threads sleep instead of spinning (GNU OpenMP's default spins first). On a shared
# or busy host a spinning thread takes the core the working one needs, and the many small
# parallel regions of an iterative solve then wait for descheduled threads: 11.6 s instead of
# 0.75 s for Lanczos on the 100 x 100 Laplacian with 2 threads at load 2 (docs/benchmarks.md,
# "Threads"). Only a process that has not loaded torch yet is affected, and a policy the user
# set is kept.
if "torch" not in _sys.modules:
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from explorer.operators import LinearOperator, as_operator
from explorer.solvers import COMMON_PARAMS, SOLVERS, get_solver, solve
from explorer.tracking import HistoryTracker, IterationRecord, StopFlagTracker, StopSolve, Tracker
from explorer.tracking.results import ConvergenceError, EigenResult, SolveStatus, SVDResult

__all__ = [
    "COMMON_PARAMS",
    "SOLVERS",
    "ConvergenceError",
    "EigenResult",
    "HistoryTracker",
    "IterationRecord",
    "LinearOperator",
    "SVDResult",
    "SolveStatus",
    "StopFlagTracker",
    "StopSolve",
    "Tracker",
    "as_operator",
    "get_solver",
    "solve",
]
