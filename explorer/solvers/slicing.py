"""Spectrum slicing: every eigenvalue in [lower, upper), counted by Sylvester's law of inertia.

``spectrum_slice(A, lower, upper)`` returns all eigenpairs of ``A x = lambda B x`` with
``lower <= lambda < upper``, and says how many there are and that none was missed:

1. **Count.** The LDL^T factorization of ``A - s B`` is a congruence, so D has as many
   negative entries as ``A - s B`` has negative eigenvalues (Sylvester's law of inertia), which
   for a symmetric-definite pencil is the number ``nu(s)`` of eigenvalues below s. The number in
   the interval is ``nu(upper) - nu(lower)`` (Parlett, The Symmetric Eigenvalue Problem, 3.3;
   Grimes, Lewis & Simon 1994). The factorizations are those of
   ``explorer.operators.inverse.shifted_inverse``: SuperLU's symmetric-mode LDL^T for sparse
   matrices, torch's Cholesky / Bunch-Kaufman LDL^T for dense ones. The sparse one does not
   pivot, so each count carries its probe's backward error ``omega`` (in eps): the count is
   exact for a matrix within about ``omega eps ||A - s B||`` of the true one, i.e. exact unless
   an eigenvalue lies that close to s (Weyl). An LU with partial pivoting would not do: the
   signs of its pivots say nothing about the inertia in general.
2. **Find.** Intervals are processed from a queue: one with more than ``max_per_shift``
   eigenvalues is split at its midpoint (one more factorization, whose inertia counts both
   halves); otherwise shift-invert (``explorer.solvers.shift_invert``) at the midpoint sigma asks
   for exactly its count c of nearest eigenvalues: every eigenvalue of the interval lies
   within half its width of sigma and every other one farther, so the c nearest *are* the
   interval's. The factorization at sigma is reused for the solves and its inertia splits the
   interval when fewer than c converged pairs came back (a cluster the block did not see):
   each half that is complete is kept, the others are solved again with a Lanczos block as large
   as their count (``block_size``, at most ``MAX_BLOCK``: the copies of a multiple eigenvalue),
   down to ``MAX_DEPTH`` levels. An interval too narrow to split (``CLUSTER_WIDTH``) that still
   holds more than ``max_per_shift`` eigenvalues is a cluster: it is solved whole, with such a block.
3. **Check.** A closing Rayleigh-Ritz step on the pencil over all the vectors found (one
   product with A and with B per vector) makes them B-orthonormal and gives true residuals;
   the run is CONVERGED only when the number of converged pairs in [lower, upper) equals the
   inertia count.

The shifts need assembled matrices (sparse on the CPU, or dense on any device): a matrix-free
operator has no inertia, and a ValueError says so. An endpoint that is an eigenvalue makes its
shifted matrix singular (``SingularShiftError``: move it a little, down to include that
eigenvalue, up to exclude it).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch

from explorer.operators import LinearOperator, as_operator
from explorer.operators.inverse import ShiftedInverse, SingularShiftError, assembled_matrix, shifted_inverse
from explorer.solvers._common import Monitor, is_real_number, residual_threshold, true_residual_norms, validate_common
from explorer.tracking.results import EigenResult, SolveStatus
from explorer.solvers.shift_invert import INNER_SOLVERS, _rayleigh_ritz, shift_invert
from explorer.tracking import IterationRecord, NullTracker, StopSolve, Tracker

__all__ = ["IntervalCount", "interval_count", "spectrum_slice", "MAX_PER_SHIFT", "MAX_COUNT", "MAX_DEPTH"]

# Eigenvalues asked of one shift-invert solve: beyond ~20, the Lanczos basis (6 k + 10 b) and its
# per-step work grow while a further factorization is cheap next to it on sparse problems.
MAX_PER_SHIFT = 20
MAX_COUNT = 500  # refuse larger intervals unless max_count says otherwise (n x count vectors)
MAX_DEPTH = 12
MAX_BLOCK = 64  # largest Lanczos block tried on a cluster
CLUSTER_WIDTH = 1e-8  # intervals narrower than this (relative) are solved whole, not split


@dataclass(frozen=True)
class IntervalCount:
    """How many eigenvalues lie in [lower, upper), from the inertia at both ends.

    ``below_lower`` / ``below_upper``: eigenvalues below each end (negative pivots of the
    LDL^T of ``A - s B``); ``backward_error``: the larger probe backward error of the two
    factorizations, in units of eps (the count is exact unless an eigenvalue lies within about
    that many eps ||A - s B|| of an end); ``method``: the factorization; ``nudge``: how far from an
    end the factorization that counted there had to be taken (``NUDGES``; 0 almost always).
    """

    lower: float
    upper: float
    below_lower: int
    below_upper: int
    backward_error: float
    method: str
    nudge: float = 0.0

    @property
    def count(self) -> int:
        return self.below_upper - self.below_lower


def _check_assembled(operator: LinearOperator, B: LinearOperator | None) -> None:
    if assembled_matrix(operator) is None or (B is not None and assembled_matrix(B) is None):
        raise ValueError("spectrum slicing counts eigenvalues with the inertia of an LDL^T factorization of A - s B, "
                         "which needs the assembled matrices (sparse or dense); a matrix-free operator has none. "
                         "Pass the matrix, or use shift-invert (`sigma`) with a given k instead")


# Nudges (relative to max(|s|, ||A - s B||_1)) tried where the sparse LDL^T without pivoting fails at
# s: integer matrices at integer shifts produce exact zero pivots (the 2-D Laplacian at s = 2 or 3 in
# every ordering SuperLU offers), which a shift off the exact value avoids.
NUDGES = (0.0, 0.7e-10, 0.7e-8, 0.7e-6)
DENSE_INERTIA_MAX_N = 4000
# Where inside an interval the split / shift point goes, in order of preference (the middle makes the
# c nearest eigenvalues exactly the interval's; the others are for a middle at an eigenvalue).
SPLIT_POINTS = (0.5, 0.5 - 0.0618, 0.5 + 0.0382, 0.25 + 0.0618)  # beyond the nudges: Bunch-Kaufman on the dense matrix up to this size


def _factor(operator: LinearOperator, s: float, B: LinearOperator | None, seed: int,
            end: str | None = None) -> tuple[ShiftedInverse, float]:
    """A stable LDL^T (or Cholesky) with inertia at s or within a tiny nudge of it: (factorization,
    the shift it is of). ``end``: "lower" or "upper" when s is an end of the user's interval (for
    the messages)."""
    n = operator.shape[0]
    first_error: SingularShiftError | None = None
    for nudge in NUDGES:
        scale = max(abs(s), 1.0)
        s_try = s + nudge * scale
        try:
            inverse = shifted_inverse(operator, s_try, B, method="ldl", seed=seed)
        except SingularShiftError as err:
            if nudge == 0.0 and end is not None:
                first_error = err  # an end at an eigenvalue: which side it belongs to is the user's call
                break
            first_error = first_error or err
            continue
        if inverse.inertia is not None and inverse.stable:
            return inverse, s_try
    if first_error is None and n <= DENSE_INERTIA_MAX_N and not isinstance(assembled_matrix(operator), torch.Tensor):
        A = assembled_matrix(operator)
        dense = as_operator(torch.from_numpy(A.toarray()).to(operator.dtype), check_symmetry=False)
        Bd = None if B is None else as_operator(torch.from_numpy(assembled_matrix(B).toarray()).to(operator.dtype),
                                                check_symmetry=False)
        for nudge in NUDGES:
            s_try = s + nudge * max(abs(s), 1.0)
            try:
                return shifted_inverse(dense, s_try, Bd, method="ldl", seed=seed), s_try
            except SingularShiftError as err:
                first_error = first_error or err
    if first_error is not None and end is not None:
        raise SingularShiftError(s, first_error.detail, first_error.scale, suggestion=(
            f"The {end} end of the interval is that eigenvalue: move it a little, down (e.g. "
            f"{s - first_error.step:.10g}) to include it or up ({s + first_error.step:.10g}) to exclude it.")) from None
    if first_error is not None:
        raise first_error
    raise ValueError(f"the sparse LDL^T without pivoting (SuperLU symmetric mode) cannot factor A - s B stably at "
                     f"s = {s:g} or within {NUDGES[-1]:g} of it (zero or tiny pivots: typical where s equals a "
                     "constant diagonal of A, like 4 for the 5-point Laplacian), and n = {n} is too large for the "
                     f"dense Bunch-Kaufman fallback (n <= {DENSE_INERTIA_MAX_N}); move that end of the interval "
                     "by a few percent of its width")


def _interval_args(lower: Any, upper: Any) -> tuple[float, float]:
    for name, value in (("lower", lower), ("upper", upper)):
        if not is_real_number(value) or not math.isfinite(float(value)):
            raise ValueError(f"`{name}` must be a finite real number, got {value!r}")
    lower, upper = float(lower), float(upper)
    if not lower < upper:
        raise ValueError(f"the interval must have lower < upper, got [{lower:g}, {upper:g}]; swap them")
    return lower, upper


def interval_count(operator: Any, lower: float, upper: float, *, B: Any = None, seed: int = 0) -> IntervalCount:
    """The number of eigenvalues of ``A x = lambda B x`` in [lower, upper) (two factorizations)."""
    lower, upper = _interval_args(lower, upper)
    A = operator if isinstance(operator, LinearOperator) else as_operator(operator)
    Bo = None if B is None else (B if isinstance(B, LinearOperator) else as_operator(B, name="B"))
    _check_assembled(A, Bo)
    (low, s_low), (high, s_high) = _factor(A, lower, Bo, seed, "lower"), _factor(A, upper, Bo, seed, "upper")
    assert low.inertia is not None and high.inertia is not None
    return IntervalCount(lower, upper, low.inertia.negative, high.inertia.negative,
                         max(low.backward_error or 0.0, high.backward_error or 0.0), low.method,
                         max(abs(s_low - lower), abs(s_high - upper)))


class _Forward(NullTracker):
    """Hands the records of each shift's solve to the slicing monitor, numbered on."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor, self.offset, self.last = monitor, 0, 0

    def on_iteration(self, record: IterationRecord) -> None:
        self.last = record.iteration
        extras = dict(record.extras)
        stop = self.monitor.record(self.offset + record.iteration, record.ritz_values, record.residual_norms,
                                   estimated=record.residuals_estimated, n_converged=record.n_converged,
                                   orthogonality_loss=record.orthogonality_loss,
                                   all_ritz_values=record.all_ritz_values, ghost_mask=record.ghost_mask,
                                   extras=extras)
        if stop:
            raise StopSolve(self.monitor.stop_reason or "stopped by the tracker")


class _SliceMonitor(Monitor):
    """``n_matvec``: every solve with every factorization (the probes included) plus the products with A."""

    factorizations: list[ShiftedInverse] = []

    @property
    def n_matvec(self) -> int:  # type: ignore[override]
        return self.operator.n_matvec + sum(f.n_solve for f in self.factorizations)


def spectrum_slice(
    operator: Any,
    lower: float,
    upper: float,
    *,
    B: Any = None,
    tol: float = 1e-6,
    inner: str = "lanczos",
    max_iter: int | None = None,
    seed: int | None = None,
    tracker: Tracker | None = None,
    max_per_shift: int = MAX_PER_SHIFT,
    max_count: int = MAX_COUNT,
    max_count_name: str = "max_count",
    **extras: Any,
) -> EigenResult:
    """All eigenpairs with ``lower <= lambda < upper`` (module docstring), ascending.

    Args:
        operator, B: assembled symmetric A (sparse or dense) and optional SPD B.
        lower, upper: the interval.
        tol: relative residual tolerance of every pair (the shared criterion).
        inner: "lanczos" or "lobpcg", the solver run by each shift-invert solve.
        max_iter, seed, **extras: passed to each shift-invert solve.
        tracker: receives the records of every solve, numbered on.
        max_per_shift: most eigenvalues asked of one shift (larger intervals are split first).
        max_count: refuse intervals holding more (the result keeps n x count numbers);
            ``max_count_name`` names it in that message (the solver entries pass k as "k").

    Returns:
        EigenResult with every eigenpair found in the interval, ascending (``which="SA"``);
        CONVERGED when their number equals the inertia count, which the message states.

    Raises:
        ValueError: a matrix-free operator, a bad interval, too many eigenvalues in it.
        SingularShiftError: an end of the interval is an eigenvalue.
    """
    lower, upper = _interval_args(lower, upper)
    if inner not in INNER_SOLVERS:
        raise ValueError(f"`inner` must be one of {list(INNER_SOLVERS)}, got {inner!r}")
    A_op = operator if isinstance(operator, LinearOperator) else as_operator(operator)
    v = validate_common("slicing", A_op, 1, which="SA", tol=tol, max_iter=max_iter, default_max_iter=1,
                        supported_which=("SA",), B=B, supports_B=True)
    A, Bc, n = v.operator, v.B, v.operator.shape[0]
    _check_assembled(A, Bc)
    seed0 = 0 if seed is None else int(seed)
    (f_low, s_low), (f_high, s_high) = _factor(A, lower, Bc, seed0, "lower"), _factor(A, upper, Bc, seed0, "upper")
    ends = (f_low, f_high)
    nudge = max(abs(s_low - lower), abs(s_high - upper))
    assert ends[0].inertia is not None and ends[1].inertia is not None
    count = ends[1].inertia.negative - ends[0].inertia.negative
    omega = max(f.backward_error or 0.0 for f in ends)
    if count > max_count:
        raise ValueError(f"[{lower:g}, {upper:g}) holds {count} eigenvalues (inertia count), more than "
                         f"{max_count_name} = {max_count}; narrow the interval or raise `{max_count_name}` to {count} "
                         "(the result keeps n x count numbers)")
    monitor = _SliceMonitor(inner, dataclasses.replace(v, k=count), tracker,
                            extras={"lower": lower, "upper": upper, "inertia_count": count,
                                    "factorization": ends[0].method})
    monitor.factorizations = list(ends)
    monitor._t0 -= sum(f.factor_seconds for f in ends)
    low_neg = ends[0].inertia.negative
    counted = (f"Sylvester's law of inertia: the LDL^T of A - s B has {low_neg} negative pivot{'' if low_neg == 1 else 's'} "
               f"at s = {lower:g} and {ends[1].inertia.negative} at s = {upper:g}, so {count} eigenvalue"
               f"{'' if count == 1 else 's'} lie in [{lower:g}, {upper:g})")
    certainty = (f" (factorization backward error {omega:.1g} eps: exact unless an eigenvalue lies within "
                 f"~{omega:.1g} eps ||A - s B|| of an end"
                 + (f"; counted at ends moved by up to {nudge:.1e} where the LDL^T met a zero pivot" if nudge else "")
                 + ")")
    dtype, device = A.dtype, A.device
    if count == 0:
        empty = torch.zeros(0, dtype=dtype, device=device)
        return monitor.finish(eigenvalues=empty, eigenvectors=torch.zeros(n, 0, dtype=dtype, device=device),
                              residual_norms=empty, converged=torch.zeros(0, dtype=torch.bool), n_iter=0,
                              status=SolveStatus.CONVERGED, message=f"{counted}{certainty}: none to find.")

    forward = _Forward(monitor)
    # queue entries: (lo, hi, factorization at lo, at hi, depth, block size)
    queue: list[tuple[float, float, ShiftedInverse, ShiftedInverse, int, int | None]] = [
        (lower, upper, ends[0], ends[1], 0, None)]
    found: list[torch.Tensor] = []
    status, notes, n_iter, shifts = SolveStatus.CONVERGED, [], 0, 0
    while queue:
        lo, hi, f_lo, f_hi, depth, block = queue.pop(0)
        assert f_lo.inertia is not None and f_hi.inertia is not None
        c = f_hi.inertia.negative - f_lo.inertia.negative
        if c == 0:
            continue
        mid = 0.5 * (lo + hi)
        for offset in SPLIT_POINTS:  # any point inside will do: avoid one where A - s B is (nearly) singular
            try:
                f_mid, mid = _factor(A, lo + offset * (hi - lo), Bc, seed0)
                break
            except (SingularShiftError, ValueError):
                if offset == SPLIT_POINTS[-1]:
                    raise
        monitor.factorizations.append(f_mid)
        assert f_mid.inertia is not None
        if c > max_per_shift and hi - lo > CLUSTER_WIDTH * max(abs(lo), abs(hi), 1.0) and depth < MAX_DEPTH:
            queue.append((lo, mid, f_lo, f_mid, depth + 1, block))
            queue.append((mid, hi, f_mid, f_hi, depth + 1, block))
            continue
        if c > max_per_shift and block is None and inner == "lanczos":
            block = min(c, MAX_BLOCK)  # a cluster no split separates: a block that sees all of it
        shifts += 1
        kwargs = dict(extras)
        if block is not None and inner == "lanczos":
            kwargs["block_size"] = block
        forward.offset = n_iter
        result = shift_invert(inner, A, min(c, n), sigma=mid, which="LM", tol=tol, max_iter=max_iter, seed=seed,
                              tracker=forward, B=Bc, inverse=f_mid, **kwargs)
        n_iter += result.n_iter
        if result.status is SolveStatus.STOPPED:
            status = SolveStatus.STOPPED
            if result.k:
                found.append(result.eigenvectors)
            break
        values = result.eigenvalues.double()
        good = result.converged & (values >= lo) & (values < hi)
        if int(good.sum()) == c:
            found.append(result.eigenvectors[:, good])
            continue
        # split at mid: keep the complete halves, solve the others again with a larger block
        below_mid = f_mid.inertia.negative
        for s_lo, s_hi, g_lo, g_hi in ((lo, mid, f_lo, f_mid), (mid, hi, f_mid, f_hi)):
            assert g_lo.inertia is not None and g_hi.inertia is not None
            c_half = g_hi.inertia.negative - g_lo.inertia.negative
            in_half = good & (values >= s_lo) & (values < s_hi)
            if c_half == 0:
                continue
            if int(in_half.sum()) == c_half:
                found.append(result.eigenvectors[:, in_half])
            elif depth + 1 >= MAX_DEPTH:
                status = SolveStatus.MAX_ITER
                notes.append(f"[{s_lo:g}, {s_hi:g}): {int(in_half.sum())} of {c_half} found after {MAX_DEPTH} splits")
            else:
                # missed copies of a multiple eigenvalue: a block as large as the count sees them all
                queue.append((s_lo, s_hi, g_lo, g_hi, depth + 1, min(max(c_half, 2), MAX_BLOCK)))
        del below_mid

    X = torch.cat(found, dim=1) if found else torch.zeros(n, 0, dtype=dtype, device=device)
    if X.shape[1]:
        values, vectors, AX = _rayleigh_ritz(A, Bc, X)
        inside = (values >= lower) & (values < upper)
        values, vectors, AX = values[inside], vectors[:, inside], AX[:, inside]
        residuals = true_residual_norms(A, vectors, values, Bc, AX=AX)
        norm_A = max(abs(lower), abs(upper)) + max(f.norm_estimate for f in ends)
        converged = residuals <= residual_threshold(values, v.tol, norm_A)
    else:
        values = residuals = torch.zeros(0, dtype=dtype, device=device)
        vectors, converged = X, torch.zeros(0, dtype=torch.bool)
    got = int(converged.sum())
    cost = (f"{len(monitor.factorizations)} factorizations ({ends[0].method}, "
            f"{sum(f.factor_seconds for f in monitor.factorizations):.2f} s), {shifts} shift-invert solves")
    if status is SolveStatus.CONVERGED and got == count and values.numel() == count:
        message = f"{counted}{certainty}; all {count} found with residuals below tol: none was missed. {cost}."
    else:
        if status is SolveStatus.CONVERGED:
            status = SolveStatus.MAX_ITER
        message = (f"{counted}{certainty}; {got} of {count} found with residuals below tol"
                   f"{' (' + '; '.join(notes) + ')' if notes else ''}: {count - got} missing. {cost}.")
    monitor.k = count
    return monitor.finish(eigenvalues=values, eigenvectors=vectors, residual_norms=residuals, converged=converged,
                          n_iter=n_iter, status=status, message=message, counts_in_message=True)
