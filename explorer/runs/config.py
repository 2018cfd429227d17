"""A solve as plain data: which solver, its parameters, device and dtype; and the job target it makes.

Pure (no Streamlit). The app's sidebar builds a ``SolveConfig`` from its widgets;
``make_target(problem, config)`` is the ``target(tracker)`` a ``SolveJob`` runs in its
worker thread (it moves the operator to the device/dtype there, not in the page).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from explorer.operators.devices import parse_device, parse_dtype
from explorer.tracking.results import EigenResult
from explorer.solvers import SOLVERS, solve
from explorer.tracking import Tracker

__all__ = ["SolveConfig", "make_target", "default_solver", "solvers_for", "check_solver_fits"]


def default_solver(kind: str = "eigen") -> str:
    """The solver the app preselects: an iterative one that watches well (lanczos, lobpcg, ...); for an
    SVD problem (``kind="svd"``, a rectangular matrix) the first SVD solver (golub_kahan)."""
    if kind == "svd":
        names = [n for n, s in SOLVERS.items() if s.kind == "svd"]
        if not names:
            raise ValueError("no SVD solver is registered; import explorer.solvers")
        return "golub_kahan" if "golub_kahan" in names else names[0]
    for name in ("lanczos", "lobpcg", "power_iteration"):
        if name in SOLVERS:
            return name
    iterative = [n for n, s in SOLVERS.items() if s.name != "eigh" and s.kind == "eigen"]
    return iterative[0] if iterative else next(iter(SOLVERS))


def solvers_for(problem: Any) -> list[str]:
    """The registry names that apply to ``problem``: the SVD solvers for an SVD problem (``kind == "svd"``,
    e.g. a rectangular matrix), the eigensolvers otherwise."""
    kind = getattr(problem, "kind", "eigen")
    return [name for name, spec in SOLVERS.items() if spec.kind == kind]


def check_solver_fits(problem: Any, solver: str) -> None:
    """Raise a ValueError that says what to use when ``solver`` cannot solve ``problem``."""
    spec = SOLVERS[solver]
    kind = getattr(problem, "kind", "eigen")
    if spec.kind == kind:
        return
    able = ", ".join(solvers_for(problem))
    if kind == "svd":
        m, n = problem.operator.shape
        raise ValueError(f"{solver} computes eigenvalues of a symmetric square matrix, but this problem is "
                         f"{m:,} x {n:,} (singular values): use an SVD solver ({able})")
    raise ValueError(f"{solver} computes singular values; this is an eigenvalue problem: use {able}, or load a "
                     "rectangular matrix for it")


@dataclass(frozen=True)
class SolveConfig:
    solver: str
    k: int
    which: str
    tol: float
    max_iter: int
    seed: int | None = 0
    device: str = "cpu"
    dtype: str = "float64"
    extras: Mapping[str, Any] = field(default_factory=dict)

    def params(self) -> dict[str, Any]:
        """Every setting as one flat dict (history tables, snippets)."""
        return {"k": self.k, "which": self.which, "tol": self.tol, "max_iter": self.max_iter, "seed": self.seed,
                **dict(self.extras), "device": self.device, "dtype": self.dtype}

    def solver_kwargs(self) -> dict[str, Any]:
        return {"which": self.which, "tol": self.tol, "max_iter": self.max_iter, "seed": self.seed,
                **dict(self.extras)}


def make_target(problem: Any, config: SolveConfig) -> Callable[[Tracker], EigenResult]:
    """``target(tracker)`` for a SolveJob: move the problem to device/dtype, then solve."""

    check_solver_fits(problem, config.solver)

    def target(tracker: Tracker) -> EigenResult:
        device, dtype = parse_device(config.device), parse_dtype(config.dtype)
        operator = problem.operator.to(device=device, dtype=dtype)
        kwargs = config.solver_kwargs()
        if getattr(problem, "B", None) is not None:  # only generalized problems pass B
            if not SOLVERS[config.solver].supports_B:
                able = [name for name, spec in SOLVERS.items() if spec.supports_B]
                raise ValueError(f"{config.solver} does not solve generalized problems A x = \u03bb B x; "
                                 f"use {' or '.join(able)} for this problem")
            kwargs["B"] = problem.B.to(device=device, dtype=dtype)
        return solve(config.solver, operator, config.k, tracker=tracker, **kwargs)

    return target
