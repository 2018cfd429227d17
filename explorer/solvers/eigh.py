"""Dense reference: ``torch.linalg.eigh`` on the assembled matrix, with subset selection.

Not iterative: it assembles A (``operator.to_dense()``, n matvecs for a matrix-free
operator), calls LAPACK's ``syevd`` through torch (O(n^3) flops, O(n^2) memory) and
keeps the k wanted pairs. A generalized problem ``A x = lambda B x`` is reduced with
the Cholesky factor of B (B = L L^T, C = L^-1 A L^-T, x = L^-T y).
It refuses sizes whose dense copies would not fit in memory, with a clear message.
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch

from explorer.operators import LinearOperator
from explorer.tracking.results import EigenResult, SolveStatus
from explorer.solvers._common import (Monitor, is_real_number, residual_threshold, select_order, true_residual_norms,
                                      validate_common)
from explorer.solvers.shift_invert import SIGMA_WHICH, nearest_order
from explorer.solvers.registry import ParamSpec, SolverSpec, register_solver
from explorer.tracking import Tracker

__all__ = ["eigh", "dense_eigenpairs", "dense_memory_bytes"]

# Copies eigh holds at once: A, the work copy, the eigenvectors (+ B and L^-1 A for B).
_DENSE_COPIES = 4


def _available_memory_bytes() -> int:
    try:
        pages = os.sysconf("SC_AVPHYS_PAGES")
        return int(pages * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 8 << 30


def dense_memory_bytes(n: int, dtype: torch.dtype) -> int:
    """Bytes eigh needs for an n x n problem (the dense copies it holds at once)."""
    return _DENSE_COPIES * n * n * torch.finfo(dtype).bits // 8


def dense_eigenpairs(operator: LinearOperator, B: LinearOperator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """All eigenpairs (ascending) of the assembled operator, or of A x = lambda B x.

    Assembling a matrix-free operator costs n matvecs, and they are counted. Raises
    ``torch.linalg.LinAlgError`` when B is not positive definite or the assembled operator
    is not finite.
    """
    n = operator.shape[0]
    A = operator.to_dense()
    if A.layout != torch.strided:
        A = A.to_dense()
    if operator.kind not in ("dense", "sparse"):
        operator._count(n)
    A = 0.5 * (A + A.T)  # eigh reads one triangle; average so both count
    if not bool(torch.isfinite(A).all()):  # only a matrix-free operator gets here (matrices are checked on input)
        raise torch.linalg.LinAlgError("The operator returned NaN or Inf when applied to the identity columns "
                                       "(a matrix-free function that overflows or divides by zero?); check it")
    if B is None:
        return torch.linalg.eigh(A)
    Bd = B.to_dense()
    if Bd.layout != torch.strided:
        Bd = Bd.to_dense()
    Bd = 0.5 * (Bd + Bd.T)
    L, info = torch.linalg.cholesky_ex(Bd)
    if int(info) != 0:
        raise torch.linalg.LinAlgError(f"B is not positive definite (Cholesky failed at column {int(info)})")
    C = torch.linalg.solve_triangular(L, torch.linalg.solve_triangular(L, A, upper=False).T, upper=False)
    values, Y = torch.linalg.eigh(0.5 * (C + C.T))
    return values, torch.linalg.solve_triangular(L.T, Y, upper=True)


def eigh(
    operator: Any,
    k: int,
    *,
    which: str = "LA",
    tol: float = 1e-6,
    max_iter: int | None = None,
    X0: torch.Tensor | None = None,
    seed: int | None = None,
    tracker: Tracker | None = None,
    B: Any = None,
    max_memory_fraction: float = 0.5,
    sigma: float | None = None,
) -> EigenResult:
    """Dense symmetric eigendecomposition (the reference every other solver is checked against).

    Args:
        operator: symmetric n x n operator (assembled with ``to_dense()``).
        k: number of eigenpairs to return, in ``which`` order.
        which: LA, SA, LM or BE.
        tol: only used to flag ``converged`` (residuals of a backward-stable eigh are
            ~ n eps ||A||, far below any sensible tol).
        max_iter, X0, seed: accepted for the shared signature; eigh does not iterate.
        tracker: receives one record (iteration 1) with the final values.
        B: optional symmetric positive definite matrix for A x = lambda B x.
        max_memory_fraction: refuse when the dense copies would exceed this share of
            the free memory.
        sigma: keep the k eigenpairs nearest this value instead of an end of the spectrum
            (``which`` then means LM nearest, LA nearest above, SA nearest below, as for the
            shift-invert solvers): the dense reference of a shift-invert solve.

    References:
        LAPACK Users' Guide, xSYEVD; Golub & Van Loan, Matrix Computations, 4th ed., 8.7.2
        (Cholesky reduction of the symmetric-definite problem).
    """
    if sigma is not None and not (is_real_number(sigma) and math.isfinite(float(sigma))):
        raise ValueError(f"`sigma` must be a finite real number (or None), got {sigma!r}")
    v = validate_common("eigh", operator, k, which=which, tol=tol, max_iter=max_iter, default_max_iter=1,
                        supported_which=SIGMA_WHICH if sigma is not None else ("LA", "SA", "LM", "BE"), B=B,
                        supports_B=True)
    n = v.operator.shape[0]
    needed = dense_memory_bytes(n, v.operator.dtype)
    if v.operator.device.type == "cpu":
        budget = max_memory_fraction * _available_memory_bytes()
    else:
        free, _total = torch.cuda.mem_get_info(v.operator.device) if v.operator.device.type == "cuda" else (8 << 30, 0)
        budget = max_memory_fraction * free
    if needed > budget:
        raise MemoryError(
            f"`eigh` needs about {needed / 2**30:.1f} GiB for n = {n} ({_DENSE_COPIES} dense copies) but only "
            f"{budget / 2**30:.1f} GiB may be used; pick an iterative solver (lanczos, lobpcg) for this size"
        )
    monitor = Monitor("eigh", v, tracker)
    try:
        values, vectors = dense_eigenpairs(v.operator, v.B)
    except torch.linalg.LinAlgError as err:
        empty = torch.zeros(0, dtype=v.operator.dtype, device=v.operator.device)
        monitor.record(1, empty, empty, estimated=False, n_converged=0)
        return monitor.finish(eigenvalues=empty,
                              eigenvectors=torch.zeros(n, 0, dtype=v.operator.dtype, device=v.operator.device),
                              residual_norms=empty, converged=torch.zeros(0, dtype=torch.bool), n_iter=1,
                              status=SolveStatus.BREAKDOWN, message=str(err))
    # ||A|| (of the pencil) for the threshold's floor: the whole spectrum, not the k selected
    # values (an SA subset near 0 would make the floor vanish, and residuals at eigh's own
    # rounding level would read as "tol unattainable")
    norm_estimate = float(values.abs().max()) if values.numel() else 0.0
    order = (select_order(values, v.which) if sigma is None else nearest_order(values, float(sigma), v.which))[: v.k]
    values, vectors = values[order], vectors[:, order]
    residuals = true_residual_norms(v.operator, vectors, values, v.B)
    converged = residuals <= residual_threshold(values, v.tol, norm_estimate)
    monitor.record(1, values, residuals, estimated=False, n_converged=int(converged.sum()),
                   orthogonality_loss=None)
    status, message = SolveStatus.CONVERGED, ""
    if not bool(converged.all()):
        # eigh is exact to rounding: a pair that misses tol means tol is below that level
        status = SolveStatus.BREAKDOWN
        message = (f"{int((~converged).sum())} of {len(values)} pairs have residuals (max "
                   f"{float(residuals.max()):.1e}) above tol = {v.tol:g}: that is the rounding level of a dense "
                   f"eigh in {str(values.dtype).replace('torch.', '')} (about n eps ||A||); loosen `tol`.")
    return monitor.finish(eigenvalues=values, eigenvectors=vectors, residual_norms=residuals,
                          converged=converged, n_iter=1, status=status, message=message)


register_solver(SolverSpec(
    name="eigh",
    label="Dense eigh (reference)",
    fn=eigh,
    summary="torch.linalg.eigh on the assembled matrix: exact to rounding, O(n^3) time, O(n^2) memory.",
    which=("LA", "SA", "LM", "BE"),
    params=(ParamSpec("max_memory_fraction", "float", 0.5, "Refuse when the dense copies would exceed this "
                      "share of free memory.", minimum=0.05, maximum=0.95),
            ParamSpec("sigma", "float", None, "Keep the k eigenvalues nearest this value (which: LM nearest, LA "
                      "nearest above, SA nearest below), the dense reference of a shift-invert solve; all "
                      "eigenvalues are computed either way. Empty = an end of the spectrum.", optional=True,
                      placeholder="off (empty = an end of the spectrum)")),
    supports_B=True,
    matrix_free=False,
    default_max_iter=1,
    references=("LAPACK xSYEVD", "Golub & Van Loan 8.7.2"),
))
