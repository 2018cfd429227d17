"""Chebyshev-filtered subspace iteration: the k lowest (or highest) eigenpairs with matvecs only.

The method
----------
Subspace iteration converges like the ratio of the eigenvalues of the matrix polynomial it
applies; a Chebyshev polynomial makes that ratio as small as a polynomial of its degree can.
With the spectrum of A in [lambda_min, upper] and the unwanted part in ``[cut, upper]``, the
filter

    p_m(t) = T_m((t - c) / e) / T_m((a0 - c) / e),   c = (cut + upper) / 2,  e = (upper - cut) / 2,

is bounded by 1 / |T_m((a0 - c) / e)| on ``[cut, upper]`` and grows like
``cosh(m acosh|(t - c) / e|)`` below ``cut``, fastest at the bottom; ``a0 <= cut`` (an estimate of
the smallest eigenvalue) only scales it so that p_m(a0) = 1 and nothing overflows. Each
iteration (Zhou, Saad, Tiago & Chelikowsky 2006, "CheFSI"; Zhou & Saad 2007):

1. ``Y = p_m(A) X`` for the active block X, by the scaled three-term recurrence (Zhou & Saad
   2007, Algorithm "Chebyshev filter with scaling"): ``m`` block products, no inner product;
2. Y is orthonormalized against the locked vectors and itself (Householder QR);
3. Rayleigh-Ritz: ``A Y`` (one more block product), ``eigh(Y^T A Y)``, Ritz vectors and their
   *true* residuals ``||A x - theta x||``, free from the same product;
4. leading Ritz pairs (from the bottom) that meet ``tol`` are locked: kept, no longer filtered;
5. the bounds move: ``cut`` = the largest Ritz value of the active block (by Cauchy interlacing
   it is at least lambda_b of the b-dimensional block, so the wanted pairs are always below it),
   ``a0`` = its smallest.

Which end: "SA" as above; "LA" runs the same on -A. The bounds: ``upper`` comes from
``bound_steps`` Lanczos steps (full re-orthogonalization) as ``theta_max + ||f||``, the largest Ritz
value plus the norm of the Lanczos residual vector (Zhou & Saad 2007, Sec. 4; Zhou & Li 2011 show
it bounds lambda_max unless the start is nearly orthogonal to the top eigenvector). A Ritz value
above it later (proof that it was too low: the top of the spectrum was being amplified) raises
it. The first ``cut`` is the middle of ``[theta_min, upper]`` (a weak but safe first filter: it damps
only the upper half); a ``cut`` passed by the caller stays fixed (the filter then amplifies
everything below it: the eigenvalues of the interval ``[lambda_min, cut]``).

**Degree.** ``degree`` (default 20; Zhou et al. use 8-20) is the most per iteration. A degree-m
filter costs m matvecs per vector, plus one for the Rayleigh-Ritz step; ``T_m`` grows like
``exp(m acosh|x|) / 2`` only once ``m acosh|x|`` is large, so the matvecs of a whole run fall as the
degree grows and level off at a few tens (docs/benchmarks.md). The degree is lowered where the
filter would spread the active wanted directions further apart than the dtype can hold: the last
wanted Ritz vector is recomputed from a block whose largest amplification ``p_m(a0) = 1`` exceeds
its own ``p_m(theta_t)`` by ``R``, so rounding leaves it an error of ~``eps R ||A||``; the degree is
capped so that ``R <= 0.1 tol max(|theta_t|, sqrt(eps) ||A||) / (eps ||A||)`` (``T_m(x0) / T_m(xt) ~
exp(m (acosh|x0| - acosh|xt|))``). In float64 this rarely binds; in float32 it is what lets the run
reach ``tol``.

Records: one per iteration with the k current values in ``which`` order (locked and active),
their true residuals, the orthogonality of the whole block, and ``extras``: the ``degree`` used,
the damped interval ``filter_low`` / ``filter_high`` of A's spectrum (for LA the mirror image
``[-upper, -cut]``), the ``scale_point`` and ``locked``.

Defaults and why: ``block_size = max(2 k, k + 8)`` (capped at n): guard vectors beyond k let the
cut sit above lambda_k, and the k-th pair converges like ``T_m`` at lambda_k relative to
lambda_(b+1), not lambda_(k+1); ``bound_steps=10`` (a few Lanczos steps give a usable upper bound;
they cost 10 matvecs). ``max_iter=500`` iterations. Generalized problems (B) are not supported.

References:
    Y. Zhou, Y. Saad, M. L. Tiago, J. R. Chelikowsky (2006), Self-consistent-field calculations
    using Chebyshev-filtered subspace iteration, J. Comput. Phys. 219, 172-184. Y. Zhou,
    Y. Saad (2007), A Chebyshev-Davidson algorithm for large symmetric eigenproblems, SIAM J.
    Matrix Anal. Appl. 29(3), 954-971. Y. Zhou, R.-C. Li (2011), Bounding the spectrum of large
    Hermitian matrices, Linear Algebra Appl. 435(3), 480-493. Y. Saad, Numerical Methods for
    Large Eigenvalue Problems, 2nd ed. (2011), Sec. 7.4.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from explorer.solvers._common import (
    Monitor,
    ProductUnits,
    UnitsOperator,
    check_int,
    is_real_number,
    make_generator,
    nonfinite_message,
    orthogonality_loss,
    random_block,
    validate_common,
)
from explorer.solvers.registry import ParamSpec, SolverSpec, register_solver
from explorer.tracking.results import EigenResult, SolveStatus
from explorer.tracking import Tracker

__all__ = ["chebyshev", "chebyshev_filter", "filter_values", "lanczos_upper_bound", "default_block_size",
           "DEFAULT_DEGREE", "DEFAULT_MAX_ITER"]

DEFAULT_DEGREE = 20
DEFAULT_MAX_ITER = 500
DEFAULT_BOUND_STEPS = 10


def default_block_size(k: int, n: int) -> int:
    """``max(2 k, k + 8)`` vectors, capped at n."""
    return min(n, max(2 * k, k + 8))


def _coefficients(degree: int, low: float, high: float, scale_point: float) -> tuple[float, float, list[float]]:
    """(c, e, [sigma_1 .. sigma_m]) of the scaled recurrence (Zhou & Saad 2007)."""
    c, e = 0.5 * (high + low), 0.5 * (high - low)
    sigma = e / (scale_point - c)
    tau = 2.0 / sigma
    sigmas = [sigma]
    for _ in range(1, degree):
        sigmas.append(1.0 / (tau - sigmas[-1]))
    return c, e, sigmas


def chebyshev_filter(apply: Callable[[torch.Tensor], torch.Tensor], X: torch.Tensor, degree: int, low: float,
                     high: float, scale_point: float) -> torch.Tensor:
    """``p_m(A) X`` with ``p_m(t) = T_m((t - c)/e) / T_m((scale_point - c)/e)`` (the module docstring),
    by the scaled three-term recurrence: ``degree`` calls of ``apply`` (X -> A X), no inner product.

    Needs ``scale_point < low < high``; ``degree >= 1``.
    """
    c, e, sigmas = _coefficients(degree, low, high, scale_point)
    Y = torch.sub(apply(X), X, alpha=c).mul_(sigmas[0] / e)
    previous = X
    for i in range(1, degree):
        s_new, s_old = sigmas[i], sigmas[i - 1]
        # a new tensor first (a product may be the operator's own storage), then in place
        Y_new = torch.sub(apply(Y), Y, alpha=c).mul_(2.0 * s_new / e).sub_(previous, alpha=s_old * s_new)
        previous, Y = Y, Y_new
    return Y


def filter_values(t: Any, degree: int, low: float, high: float, scale_point: float) -> np.ndarray:
    """The filter polynomial ``p_m(t)`` at the points ``t`` (numpy, the same recurrence on scalars):
    what :func:`chebyshev_filter` multiplies each eigen-direction of eigenvalue t by."""
    t = np.asarray(t, dtype=np.float64)
    c, e, sigmas = _coefficients(degree, low, high, scale_point)
    y = (t - c) * (sigmas[0] / e)
    previous = np.ones_like(t)
    for i in range(1, degree):
        y_new = (t - c) * y * (2.0 * sigmas[i] / e) - (sigmas[i - 1] * sigmas[i]) * previous
        previous, y = y, y_new
    return y


def lanczos_upper_bound(apply: Callable[[torch.Tensor], torch.Tensor], start: torch.Tensor,
                        steps: int) -> tuple[np.ndarray, float]:
    """(Ritz values ascending, ||f||) of ``steps`` Lanczos steps from ``start`` (full
    re-orthogonalization); ``theta_max + ||f||`` is the upper bound of Zhou & Li 2011. The
    residual norm is 0 when the Krylov space became invariant (the Ritz values are then exact)."""
    n = start.shape[0]
    steps = max(1, min(steps, n))
    V = torch.zeros(steps, n, dtype=start.dtype, device=start.device)
    alphas, betas = [], []
    v = start / torch.linalg.vector_norm(start)
    beta = 0.0
    for j in range(steps):
        V[j] = v
        w = apply(v.unsqueeze(1)).squeeze(1)
        if not bool(torch.isfinite(w).all()):
            raise FloatingPointError("the operator returned NaN or Inf")
        alpha = float(v @ w)
        w = w - alpha * v - (beta * V[j - 1] if j > 0 else 0.0)
        for _ in range(2):
            w = w - V[: j + 1].T @ (V[: j + 1] @ w)
        alphas.append(alpha)
        beta = float(torch.linalg.vector_norm(w))
        scale = max(abs(a) for a in alphas) + max(betas, default=0.0)
        if beta <= 10 * torch.finfo(start.dtype).eps * max(scale, torch.finfo(start.dtype).tiny) or j == n - 1:
            beta = 0.0
            break
        betas.append(beta)
        v = w / beta
    T = np.diag(alphas) + np.diag(betas[: len(alphas) - 1], 1) + np.diag(betas[: len(alphas) - 1], -1)
    return np.linalg.eigvalsh(T), beta


@dataclass
class _Bounds:
    upper: float  # upper bound of the spectrum (of s A)
    cut: float  # lower end of the damped interval
    scale_point: float  # a0 <= cut
    fixed_cut: bool


def _degree_cap(degree: int, bounds: _Bounds, target: float, tol: float, norm: float, eps: float) -> int:
    """The most degree that keeps ``p(a0) / p(target)`` within what the dtype resolves (module docstring)."""
    c, e = 0.5 * (bounds.upper + bounds.cut), 0.5 * (bounds.upper - bounds.cut)
    if e <= 0:
        return degree
    x0, xt = (bounds.scale_point - c) / e, (target - c) / e
    if not (x0 < -1.0 and xt < -1.0):
        return degree
    spread = math.acosh(-x0) - math.acosh(-xt)
    if spread <= 0:
        return degree
    limit = max(10.0, 0.1 * tol * max(abs(target), math.sqrt(eps) * norm) / (eps * max(norm, 1e-300)))
    return max(1, min(degree, int(math.log(2.0 * limit) / spread)))


def chebyshev(
    operator: Any,
    k: int,
    *,
    which: str = "SA",
    tol: float = 1e-6,
    max_iter: int | None = None,
    X0: torch.Tensor | None = None,
    seed: int | None = None,
    tracker: Tracker | None = None,
    B: Any = None,
    degree: int = DEFAULT_DEGREE,
    block_size: int | None = None,
    bound_steps: int = DEFAULT_BOUND_STEPS,
    cut: float | None = None,
    lower: float | None = None,
    upper: float | None = None,
) -> EigenResult:
    """k lowest ("SA") or highest ("LA") eigenpairs by Chebyshev-filtered subspace iteration, or with
    ``lower`` and ``upper`` every eigenpair in that interior interval (a band-pass filter,
    ``explorer.solvers.bandpass``).

    Args:
        operator: symmetric n x n operator; only block products are used (matrix-free, no
            factorization, no inner product inside the filter: suits GPUs).
        k: number of eigenpairs, 1 <= k <= block size <= n.
        which: "SA" (smallest, the default) or "LA" (largest).
        tol: relative residual tolerance (``residual_threshold``), true residuals.
        max_iter: filter + Rayleigh-Ritz iterations (default 500).
        X0: (n,) or (n, c) start, completed with Gaussian columns to the block size.
        seed: seed of the local generator (random block, Lanczos start).
        tracker: one record per iteration (true residuals; extras: degree, filter interval).
        B: not supported (a ValueError points to lobpcg / eigh).
        degree: the most filter degree per iteration (>= 1); lowered where float rounding
            would limit the accuracy (module docstring).
        block_size: vectors filtered together (k <= block_size <= n); default ``max(2 k, k + 8)``.
        bound_steps: Lanczos steps for the upper bound of the spectrum (>= 2).
        cut: optional fixed lower end of the damped interval, in A's units ("SA": eigenvalues
            below it are amplified; "LA": above it). Default: adapted every iteration.
        lower, upper: every eigenpair with ``lower <= lambda < upper`` instead (both or neither):
            a Chebyshev-Jackson band-pass filter of at least ``degree`` (raised to resolve the
            interval), the count exact from the inertia for an assembled matrix or a stochastic
            estimate for a matrix-free one; k is then the most accepted, ``which`` has no meaning
            (ascending), ``cut`` and ``X0`` do not apply.

    Returns:
        EigenResult in ``which`` order with true residuals; CONVERGED, MAX_ITER, STOPPED or
        BREAKDOWN (NaN/Inf from the operator, or a ``cut`` that leaves no wanted eigenvalue).
    """
    if (lower is not None or upper is not None) and isinstance(k, int) and not isinstance(k, bool) \
            and len(getattr(operator, "shape", ())) == 2:
        k = min(k, int(operator.shape[0]))  # with an interval k only caps the count
    v = validate_common("chebyshev", operator, k, which=which, tol=tol, max_iter=max_iter,
                        default_max_iter=DEFAULT_MAX_ITER, supported_which=("SA", "LA"), X0=X0, B=B)
    n = v.operator.shape[0]
    degree = check_int("degree", degree, hint="the filter degree: 10-30 is usual")
    bound_steps = check_int("bound_steps", bound_steps, minimum=2, hint="Lanczos steps for the upper bound, e.g. 10")
    nb = default_block_size(v.k, n) if block_size is None else check_int("block_size", block_size)
    if not v.k <= nb <= n:
        raise ValueError(f"`block_size` must satisfy k = {v.k} <= block_size <= n = {n}, got block_size={nb}; "
                         f"e.g. {default_block_size(v.k, n)}")
    if cut is not None and (not is_real_number(cut) or not math.isfinite(cut)):
        raise ValueError(f"`cut` must be a finite number or None, got cut={cut!r}")
    if lower is not None or upper is not None:
        if lower is None or upper is None:
            raise ValueError("an interval needs both ends: pass `lower` and `upper` (or neither)")
        if cut is not None:
            raise ValueError("`cut` (the k lowest below it) and an interval `lower`, `upper` say different things; "
                             "give one of them")
        if v.X0 is not None:
            raise ValueError("`X0` does not apply to an interval (the filter starts from random probes)")
        from explorer.solvers.bandpass import interval_chebyshev

        return interval_chebyshev(v, lower, upper, tracker=tracker, degree=degree, block_size=block_size,
                                  bound_steps=bound_steps, seed=seed)
    sign = 1.0 if v.which == "SA" else -1.0
    monitor = Monitor("chebyshev", v, tracker, extras={"degree": degree, "block_size": nb,
                                                        "bound_steps": bound_steps,
                                                        "cut": "adaptive" if cut is None else float(cut)})
    units = monitor.units = ProductUnits(v.operator.dtype)
    op = UnitsOperator(v.operator, units)
    return _Run(v, monitor, op, sign=sign, degree=degree, nb=nb, bound_steps=bound_steps, cut=cut,
                generator=make_generator(seed)).run()


class _Run:
    def __init__(self, v: Any, monitor: Monitor, op: UnitsOperator, *, sign: float, degree: int, nb: int,
                 bound_steps: int, cut: float | None, generator: torch.Generator) -> None:
        self.v, self.monitor, self.op, self.sign = v, monitor, op, sign
        self.degree, self.nb, self.bound_steps, self.user_cut = degree, nb, bound_steps, cut
        self.generator = generator
        self.n = v.operator.shape[0]
        self.dtype, self.device = v.operator.dtype, v.operator.device
        self.eps = torch.finfo(self.dtype).eps

    def apply(self, X: torch.Tensor) -> torch.Tensor:
        """s A X in the run's units (s = -1 for LA: the same iteration on -A)."""
        Y = self.op.matmat(X)
        return Y if self.sign > 0 else -Y

    def _nan_result(self, where: str) -> EigenResult:
        k = self.v.k
        nan = torch.full((k,), math.nan, dtype=self.dtype, device=self.device)
        return self.monitor.finish(eigenvalues=nan, eigenvectors=torch.zeros(self.n, k, dtype=self.dtype,
                                                                             device=self.device),
                                   residual_norms=nan.clone(), converged=torch.zeros(k, dtype=torch.bool), n_iter=0,
                                   status=SolveStatus.BREAKDOWN,
                                   message=nonfinite_message(where, self.monitor.n_matvec, "NaN"))

    def run(self) -> EigenResult:
        v, monitor = self.v, self.monitor
        k, n, nb = v.k, self.n, self.nb
        start = random_block(n, 1, self.generator, dtype=self.dtype, device=self.device).squeeze(1)
        try:
            theta, f_norm = lanczos_upper_bound(self.apply, start, self.bound_steps)
        except FloatingPointError:
            return self._nan_result("the Lanczos bound estimate")
        upper = float(theta[-1]) + f_norm
        lowest = float(theta[0])
        scale = self.op.units.scale
        if self.user_cut is not None:
            cut = self.sign * float(self.user_cut) / scale  # (the units are fixed by the first product)
            fixed = True
        else:
            cut, fixed = 0.5 * (lowest + upper), False
        bounds = _Bounds(upper=upper, cut=min(cut, upper), scale_point=min(lowest, cut), fixed_cut=fixed)
        norm = max(abs(upper), abs(lowest))

        X = random_block(n, nb, self.generator, dtype=self.dtype, device=self.device)
        if v.X0 is not None:
            c = min(v.X0.shape[1], nb)
            X[:, :c] = v.X0[:, :c]
        X = torch.linalg.qr(X).Q
        locked_X = torch.zeros(n, 0, dtype=self.dtype, device=self.device)
        locked_values = np.zeros(0)
        locked_res = np.zeros(0)
        status, message = SolveStatus.MAX_ITER, ""
        values = residuals = np.zeros(0)
        vectors = X[:, :0]
        iteration = 0
        target: float | None = None
        raised = 0
        while iteration < v.max_iter:
            iteration += 1
            active = X.shape[1]
            wanted_active = k - locked_X.shape[1]
            degree = self.degree
            if target is not None:
                degree = _degree_cap(self.degree, bounds, target, v.tol, norm, self.eps)
            if bounds.upper - bounds.cut > 0 and degree > 0:
                Y = chebyshev_filter(self.apply, X, degree, bounds.cut, bounds.upper, bounds.scale_point)
            else:  # the block spans everything up to the top: nothing left to damp
                Y, degree = X, 0
            if not bool(torch.isfinite(Y).all()):
                iteration -= 1
                status, message = SolveStatus.BREAKDOWN, nonfinite_message(
                    f"iteration {iteration + 1}", monitor.n_matvec, "the one of the last complete iteration")
                break
            for _ in range(2):  # against the locked vectors, twice (CGS2)
                if locked_X.shape[1]:
                    Y = Y - locked_X @ (locked_X.T @ Y)
            Q = torch.linalg.qr(Y).Q
            AQ = self.apply(Q)
            if not bool(torch.isfinite(AQ).all()):
                iteration -= 1
                status, message = SolveStatus.BREAKDOWN, nonfinite_message(
                    f"iteration {iteration + 1}", monitor.n_matvec, "the one of the last complete iteration")
                break
            H = (Q.T @ AQ).double().cpu().numpy()
            theta_a, W = np.linalg.eigh(0.5 * (H + H.T))
            Wt = torch.as_tensor(W, dtype=self.dtype, device=self.device)
            X, AX = Q @ Wt, AQ @ Wt
            theta_t = torch.as_tensor(theta_a, dtype=self.dtype, device=self.device)
            res_a = torch.linalg.vector_norm(AX - X * theta_t, dim=0).double().cpu().numpy()
            norm = max(norm, float(np.abs(theta_a).max()))
            if float(theta_a[-1]) > bounds.upper:  # the bound was too low: the top was amplified
                bounds.upper = float(theta_a[-1]) + (float(theta_a[-1]) - float(theta_a[0])) * 0.01 + res_a[-1]
                raised += 1
            thresholds = self._thresholds(theta_a, norm)
            met = res_a <= thresholds
            lock = 0
            while lock < min(wanted_active, active) and met[lock]:
                lock += 1
            # the k values reported: locked and the active wanted ones, ascending (in s A)
            values = np.concatenate([locked_values, theta_a[:wanted_active]])
            residuals = np.concatenate([locked_res, res_a[:wanted_active]])
            order = np.argsort(values, kind="stable")
            values, residuals = values[order], residuals[order]
            n_met = int(locked_values.size + np.sum(met[:wanted_active]))
            basis = torch.cat([locked_X, X], dim=1)
            filter_low, filter_high = (bounds.cut, bounds.upper) if self.sign > 0 else (-bounds.upper, -bounds.cut)
            stop = monitor.record(iteration, self.sign * values, residuals, estimated=False, n_converged=n_met,
                                  orthogonality_loss=orthogonality_loss(basis),
                                  all_ritz_values=self.sign * np.concatenate([locked_values, theta_a]),
                                  extras={"degree": float(degree), "filter_low": filter_low * scale,
                                          "filter_high": filter_high * scale,
                                          "scale_point": self.sign * bounds.scale_point * scale,
                                          "locked": float(locked_values.size + lock)})
            if lock:
                locked_X = torch.cat([locked_X, X[:, :lock]], dim=1)
                locked_values = np.concatenate([locked_values, theta_a[:lock]])
                locked_res = np.concatenate([locked_res, res_a[:lock]])
                X = X[:, lock:]
                theta_a, res_a = theta_a[lock:], res_a[lock:]
            vectors = torch.cat([locked_X, X[:, : k - locked_X.shape[1]]], dim=1)
            vectors = vectors[:, torch.as_tensor(order, device=self.device)]  # (the order of `values`)
            if locked_X.shape[1] >= k:
                status = SolveStatus.CONVERGED
                break
            if stop:
                status = SolveStatus.STOPPED
                break
            # next bounds: the active block's Ritz values (Zhou et al. 2006)
            if not bounds.fixed_cut:
                bounds.cut = min(float(theta_a[-1]), bounds.upper)
            bounds.scale_point = min(float(theta_a[0]), bounds.cut)
            target = float(theta_a[min(k - locked_X.shape[1], theta_a.size) - 1])
            if bounds.fixed_cut and target > bounds.cut:
                message = (f"Only {locked_X.shape[1] + int(np.sum(theta_a < bounds.cut))} eigenvalues lie beyond "
                           f"the fixed `cut` = {self.user_cut:g}; the filter cannot converge to k = {k} of them. "
                           "Move `cut` or leave it None.")
        order_values = self.sign * values
        converged = torch.as_tensor(residuals <= self._thresholds(values, norm))
        if raised:
            message = (message + " " if message else "") + (
                f"The Lanczos upper bound of the spectrum was too low and was raised {raised} time(s).")
        return monitor.finish(eigenvalues=torch.as_tensor(order_values.copy(), dtype=self.dtype, device=self.device),
                              eigenvectors=vectors, residual_norms=torch.as_tensor(residuals.copy(), dtype=self.dtype,
                                                                                   device=self.device),
                              converged=converged, n_iter=iteration, status=status, message=message,
                              norm_estimate=norm)

    def _thresholds(self, values: np.ndarray, norm: float) -> np.ndarray:
        """``residual_threshold`` (tol max(|theta|, sqrt(eps) ||A||)) with the operator's eps, on float64 values."""
        floor = math.sqrt(self.eps) * max(norm, torch.finfo(self.dtype).tiny)
        return self.v.tol * np.maximum(np.abs(values), floor)


register_solver(SolverSpec(
    name="chebyshev",
    label="Chebyshev-filtered subspace iteration",
    fn=chebyshev,
    summary=("Subspace iteration with a Chebyshev polynomial filter p(A) that damps the unwanted part of the "
             "spectrum [cut, upper] and amplifies the wanted end; bounds from a few Lanczos steps, then from "
             "the Ritz values. Matvecs only, no inner products inside the filter (GPU-friendly)."),
    which=("LA", "SA"),  # (the function's default is SA, its usual use; the menu keeps the app's LA default)
    params=(
        ParamSpec("degree", "int", DEFAULT_DEGREE, "Most filter degree per iteration (matvecs per vector per "
                  "iteration). Higher filters more sharply; it is lowered automatically where rounding would "
                  "limit the accuracy (float32).", minimum=1, maximum=200),
        ParamSpec("block_size", "int", None, "Vectors filtered together (at least k). Guard vectors beyond k "
                  "move the cut above the k-th eigenvalue. Empty = max(2k, k + 8).", minimum=1, optional=True),
        ParamSpec("bound_steps", "int", DEFAULT_BOUND_STEPS, "Lanczos steps that estimate the upper bound of "
                  "the spectrum (theta_max + ||f||).", minimum=2, maximum=200),
        ParamSpec("cut", "float", None, "Fixed lower end of the damped interval (SA: eigenvalues below it are "
                  "amplified; LA: above it). Empty = adapted each iteration (the block's largest Ritz value).",
                  minimum=-1e12, maximum=1e12, optional=True),
        ParamSpec("lower", "float", None, "Interval mode: with `upper`, every eigenvalue in [lower, upper) by a "
                  "band-pass Chebyshev-Jackson filter (degree raised to resolve the interval); the count is exact "
                  "(inertia) for a sparse or dense matrix and a stochastic estimate for a matrix-free one; k is "
                  "then the most accepted. Empty = off.", optional=True, placeholder="off (empty = no interval)"),
        ParamSpec("upper", "float", None, "The upper end of the interval (see `lower`). Empty = off.", optional=True,
                  placeholder="off (empty = no interval)"),
    ),
    supports_B=False,
    matrix_free=True,
    default_tol=1e-6,
    default_max_iter=DEFAULT_MAX_ITER,
    references=("Zhou, Saad, Tiago & Chelikowsky 2006", "Zhou & Saad 2007", "Zhou & Li 2011", "Saad 2011, 7.4"),
))
