"""Eigensolver Explorer core: operators, solvers, tracking, problems. No Streamlit here.

    >>> from explorer import solve, problems
    >>> problem = problems.laplacian_2d(30, 30)
    >>> result = solve("lanczos", problem.operator, k=4, which="LA")
"""

from explorer.operators import LinearOperator, as_operator
from explorer.tracking.results import ConvergenceError, EigenResult, SolveStatus, SVDResult
from explorer.solvers import COMMON_PARAMS, SOLVERS, get_solver, solve
from explorer.tracking import HistoryTracker, IterationRecord, StopFlagTracker, StopSolve, Tracker

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
