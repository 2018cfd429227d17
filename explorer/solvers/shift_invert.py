"""Shift-invert: the k eigenvalues nearest a shift sigma, through any extreme-eigenvalue solver.

``shift_invert("lanczos", A, k, sigma=s)`` is what ``lanczos(A, k, sigma=s)`` runs (and the
same for ``lobpcg``): the spectral transformation of ARPACK's mode 3 (Ericsson & Ruhe 1980),

    A x = lambda B x   <=>   (A - sigma B)^-1 B x = theta x,   theta = 1 / (lambda - sigma),

so the eigenvalues nearest sigma are the largest |theta|, and the transformed gaps are large:
a Krylov method converges at a rate set by ``|theta_(k+1) / theta_k| = |lambda_k - sigma| /
|lambda_(k+1) - sigma|`` instead of the tiny relative gaps of the original spectrum (the
2-D Laplacian's smallest eigenvalues: thousands of matvecs become tens of solves).

What it does:

1. Factors ``M = A - sigma B`` once (``explorer.operators.inverse.shifted_inverse``: sparse
   LDL^T through SuperLU, dense Cholesky / LDL^T through torch on any device, MINRES / CG for
   matrix-free operators); a shift at an eigenvalue raises ``SingularShiftError`` with a
   suggestion.
2. Runs the inner solver on a symmetric form of the transform for its extreme values:

   * ``lanczos`` (standard symmetric only): ``M^-1``; with B, ``G^T M^-1 G`` where
     ``B = G G^T`` (Cholesky, or SuperLU's LDL^T of B), whose eigenvectors are ``y = G^T x``;
     ``which`` LM / LA / SA of theta directly.
   * ``lobpcg`` (extreme values of a symmetric-definite pencil): ``(B M^-1 B) x = theta B x``,
     the same x. LOBPCG has no "largest magnitude": where the inertia of M says every
     eigenvalue lies on one side of sigma, LM is LA (all theta > 0) or SA; otherwise it runs
     twice, for the k nearest above (LA) and the k nearest below (SA, both capped by the
     inertia counts), and the k nearest of the union are kept. (The alternative, LA on the
     squared transform, costs two solves per product as well but loses the sign of theta in
     the live records.)
   ``which`` keeps ARPACK's meaning for a shift: "LM" the k nearest sigma, "LA" the k nearest
   above it (largest theta), "SA" the k nearest below it (most negative theta).
3. Maps back: one more application of the transform to the returned vectors (one step of
   inverse iteration, k solves) and a Rayleigh-Ritz step on the *original* pencil
   ``(A, B)`` (k products with A and with B), so the eigenvalues are Rayleigh quotients of A
   and the residuals ``||A x - lambda B x|| / ||B x||`` are true residuals of the original
   problem, judged by the shared criterion (``residual_threshold``).
4. The inner solver's tolerance is on theta: ``||T y - theta y|| <= tol_in |theta|``. Since
   ``(A - lambda B) x = -(A - sigma B) r_T / theta`` exactly (standard case), the original
   residual can be up to ``||M|| / |lambda|`` times larger than the transformed one. The first
   run uses ``tol_in = tol``; when some true residual misses tol, the run is repeated from the
   vectors found with ``tol_in`` lowered by the factor that was missing (times 4), at most
   ``REFINE_ROUNDS`` times. Records and counts run on across the rounds.

Records reach the tracker in the original units: Ritz values ``sigma + 1 / theta`` (best
first: nearest sigma), residuals estimated as ``||M||_1 ||r_T|| / |theta|`` (the bound from the
identity above; ``residuals_estimated=True``), ``n_matvec`` = the cost so far (below). The
result's ``n_matvec`` counts what was paid: every solve with a factorization, plus every
product with A (the final residuals, and all of those inside MINRES / CG for matrix-free
operators: there a solve is not a unit of cost, the products are). The message says that
shift-invert was used, with what factorization, at what cost.

References:
    T. Ericsson and A. Ruhe, Math. Comp. 35 (1980) (the spectral transformation Lanczos method).
    R. B. Lehoucq, D. C. Sorensen and C. Yang, ARPACK Users' Guide (SIAM 1998), section 3.2
    (mode 3, the meaning of ``which`` with a shift).
    R. G. Grimes, J. G. Lewis and H. D. Simon, SIAM J. Matrix Anal. Appl. 15 (1994).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from explorer.operators import LinearOperator, as_operator
from explorer.operators.inverse import (
    ShiftedInverse,
    ShiftInvertOperator,
    SymmetricFactor,
    shifted_inverse,
    symmetric_factor,
)
from explorer.solvers._common import Monitor, residual_threshold, true_residual_norms, validate_common
from explorer.solvers.registry import ParamSpec
from explorer.tracking.results import EigenResult, SolveStatus
from explorer.tracking import IterationRecord, NullTracker, StopSolve, Tracker

__all__ = ["SIGMA_WHICH", "REFINE_ROUNDS", "shift_invert", "nearest_order", "sigma_param_help", "spectral_reference",
           "is_spectral", "SPECTRAL_PARAMS", "B_WITH", "pass_reference", "pass_references", "last_pass_start"]

SIGMA_WHICH = ("LM", "LA", "SA")
INNER_SOLVERS = ("lanczos", "lobpcg")
# Extra runs with a tighter inner tolerance when true residuals miss tol (see the docstring).
REFINE_ROUNDS = 3
# The inner run's default iteration limit: a transformed problem converges in tens of steps
# (the point of the transform), so a run past these limits means the solves are not consistent
# (an inexact inner solve, a shift at an eigenvalue); with MINRES inside, each step is a solve.
SIGMA_MAX_ITER = {"lanczos": 1000, "lobpcg": 500}

sigma_param_help = (
    "Shift-invert: find the k eigenvalues nearest this value (ARPACK's mode 3, (A - sigma B)^-1 B). "
    "With sigma, `which` means LM = nearest on either side, LA = nearest above, SA = nearest below. "
    "Needs a factorization of A - sigma B (sparse or dense matrix) or an inner MINRES solve "
    "(matrix-free). Solves a generalized problem A x = lambda B x too (also with lanczos, which takes no B "
    "without sigma or an interval). Empty = off.")


def nearest_order(values: torch.Tensor, sigma: float, which: str) -> torch.Tensor:
    """Indices of ``values`` in shift-invert ``which`` order, best first: LM by |lambda - sigma|;
    LA the values at or above sigma, nearest first, then the rest; SA likewise below sigma."""
    d = values.double() - sigma
    if which == "LM":
        key = d.abs()
    elif which == "LA":
        key = torch.where(d >= 0, d, d.abs() + math.inf)
    else:
        key = torch.where(d <= 0, -d, d + math.inf)
    # ties of the infinite keys: keep them ordered by distance
    return torch.from_numpy(np.lexsort((d.abs().cpu().numpy(), key.cpu().numpy()))).to(values.device)


def is_spectral(params: Any) -> bool:
    """True when solver parameters (a mapping) ask for shift-invert (``sigma``) or spectrum slicing
    (``lower`` / ``upper``): the result then holds the eigenvalues nearest sigma, or those of the
    interval, not an end of the spectrum."""
    get = getattr(params, "get", None)
    if get is None:
        return False
    return any(get(name) is not None for name in ("sigma", "lower", "upper"))


def spectral_reference(eigenvalues: Any, k: int, *, which: str | None = None, sigma: float | None = None,
                       lower: float | None = None, upper: float | None = None) -> np.ndarray | None:
    """The exact eigenvalues a shift-invert or slicing solve returns, in the order of its result.

    ``eigenvalues``: every exact eigenvalue (any order; array or tensor), or None (returns None).
    With an interval (``lower``, ``upper``): every eigenvalue in [lower, upper), ascending, however many
    (``spectrum_slice`` returns all of them, or refuses a count above k). With ``sigma``: the k nearest in
    :func:`nearest_order` for ``which`` (LM, the default: nearest on either side; LA above; SA below).
    Without either: None (use the plain ``which`` order, ``explorer.solvers._common.select_order``).
    """
    if eigenvalues is None:
        return None
    if isinstance(eigenvalues, torch.Tensor):
        values = eigenvalues.detach().cpu().double().reshape(-1)
    else:
        values = torch.from_numpy(np.array(eigenvalues, dtype=np.float64).reshape(-1))  # a copy: any strides
    if lower is not None and upper is not None:
        values = torch.sort(values).values
        return values[(values >= float(lower)) & (values < float(upper))].numpy()
    if sigma is None or values.numel() == 0:
        return None
    side = "LM" if which is None else str(which).upper()
    if side not in SIGMA_WHICH:
        side = "LM"
    return values[nearest_order(values, float(sigma), side)[: max(0, min(int(k), values.numel()))]].numpy()


def pass_reference(record: IterationRecord, spectrum: Any) -> np.ndarray | None:
    """The exact eigenvalues one record of a shift-invert solve converges to, in the order of
    :func:`nearest_order`: those its *pass* asks for, from the record's ``extras`` (``sigma``,
    ``target_which``, ``target_k``; None for a record without them, or without ``spectrum``).

    A shift-invert solve can run in passes whose records hold other values than its result:
    LOBPCG with ``which="LM"`` runs for the nearest above sigma and then for the nearest below
    (and keeps the k nearest of both); spectrum slicing runs one solve per shift. Each pass's
    Ritz values converge to its own target, which is what a live error panel compares them with
    (against the result's eigenvalues a pass's other values would read as never converging).
    """
    extras = record.extras
    if spectrum is None or "sigma" not in extras or not extras.get("target_k"):
        return None
    return spectral_reference(spectrum, int(extras["target_k"]), which=str(extras.get("target_which", "LM")),
                              sigma=float(extras["sigma"]))


def pass_references(records: Any, spectrum: Any) -> list[np.ndarray | None]:
    """:func:`pass_reference` of every record (one selection per distinct pass, not per record)."""
    cache: dict[tuple[Any, ...], np.ndarray | None] = {}
    out: list[np.ndarray | None] = []
    for record in records:
        e = record.extras
        key = (e.get("sigma"), e.get("target_which"), e.get("target_k"))
        if key not in cache:
            cache[key] = pass_reference(record, spectrum)
        out.append(cache[key])
    return out


def last_pass_start(records: Any) -> int:
    """Index of the first record of the last pass (0 for a solve in one pass): the records after it are
    the last to run, so a solve in passes has reached its goal no earlier than inside them."""
    if not records:
        return 0
    def key(r: IterationRecord) -> tuple[Any, ...]:
        return (r.extras.get("sigma"), r.extras.get("target_which"), r.extras.get("target_k"))
    last = key(records[-1])
    start = len(records) - 1
    while start > 0 and key(records[start - 1]) == last:
        start -= 1
    return start


class _Relay(NullTracker):
    """The inner solver's tracker: maps each record to the original problem and hands it to
    the outer monitor; a stop requested there stops the inner solver."""

    def __init__(self, monitor: Monitor, sigma: float, norm: float, offset: int) -> None:
        self.monitor, self.sigma, self.norm, self.offset = monitor, sigma, norm, offset
        self.iterations = 0
        # the pass under way: its side of sigma and how many it asks for (``pass_reference``)
        self.side, self.count = "LM", 0

    def on_iteration(self, record: IterationRecord) -> None:
        self.iterations = record.iteration
        theta = record.ritz_values.double()
        safe = torch.where(theta == 0, torch.full_like(theta, math.inf), theta)
        values = self.sigma + 1.0 / safe
        residuals = self.norm * record.residual_norms.double() / safe.abs()
        every = None
        if record.all_ritz_values is not None:
            t_all = record.all_ritz_values.double()
            t_all = t_all[t_all != 0]
            every = self.sigma + 1.0 / t_all
        extras = dict(record.extras)
        extras["sigma"] = self.sigma
        extras["target_which"], extras["target_k"] = self.side, self.count
        stop = self.monitor.record(self.offset + record.iteration, values, residuals, estimated=True,
                                   n_converged=record.n_converged, orthogonality_loss=record.orthogonality_loss,
                                   all_ritz_values=every, ghost_mask=record.ghost_mask, extras=extras)
        if stop:
            raise StopSolve(self.monitor.stop_reason or "stopped by the tracker")


class _CostMonitor(Monitor):
    """The outer monitor: ``n_matvec`` is the cost so far (solves with a factorization plus
    products with A, see the module docstring)."""

    inverse: ShiftedInverse | None = None

    @property
    def n_matvec(self) -> int:  # type: ignore[override]
        solves = 0
        if self.inverse is not None and self.inverse.method not in ("minres", "cg"):
            solves = self.inverse.n_solve - self.solves_before
        return self.operator.n_matvec + solves

    solves_before = 0


def _rayleigh_ritz(A: LinearOperator, B: LinearOperator | None, X: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Rayleigh-Ritz of the pencil (A, B) on span(X): (values ascending, B-orthonormal vectors, A times them).
    Directions that X spans only to rounding are dropped (a basis of near-duplicates)."""
    AX = A.matmat(X)
    BX = X if B is None else B.matmat(X)
    S = X.T @ BX
    s, U = torch.linalg.eigh(0.5 * (S + S.T))
    keep = s > s.max().clamp_min(0) * X.shape[1] * torch.finfo(X.dtype).eps * 10
    U = U[:, keep] / s[keep].sqrt()
    H = U.T @ (X.T @ AX) @ U
    values, W = torch.linalg.eigh(0.5 * (H + H.T))
    C = U @ W
    return values, X @ C, AX @ C


def shift_invert(
    inner: str,
    operator: Any,
    k: int,
    *,
    sigma: float,
    which: str = "LM",
    tol: float = 1e-6,
    max_iter: int | None = None,
    X0: torch.Tensor | None = None,
    seed: int | None = None,
    tracker: Tracker | None = None,
    B: Any = None,
    factorization: str = "auto",
    inner_tol: float | None = None,
    inner_max_iter: int | None = None,
    inverse: ShiftedInverse | None = None,
    **extras: Any,
) -> EigenResult:
    """The k eigenpairs of ``A x = lambda B x`` nearest ``sigma`` (module docstring).

    Args:
        inner: "lanczos" or "lobpcg": the registered solver run on the transform (through its
            public function, without sigma).
        operator, k, tol, max_iter, X0, seed, tracker, B: as for every solver; ``tol`` is the
            relative residual of the *original* problem; ``max_iter`` applies to each inner run
            (default ``SIGMA_MAX_ITER``: 1000 Lanczos steps, 500 LOBPCG iterations).
        sigma: the shift (finite).
        which: "LM" (default) the k nearest sigma, "LA" the k nearest above, "SA" below.
        factorization: how ``(A - sigma B)^-1`` is applied: "auto", "ldl", "lu", "cholesky",
            "minres", "cg" (``explorer.operators.inverse.shifted_inverse``).
        inner_tol, inner_max_iter: of the MINRES / CG solves (matrix-free operators).
        inverse: an existing factorization of ``A - sigma B`` to reuse (spectrum slicing
            counts with it too); its earlier solves are not charged to this run.
        **extras: the inner solver's own parameters (``block_size``, ...).

    Returns:
        EigenResult in shift-invert ``which`` order (nearest sigma first), with true residuals
        of the original problem; ``solver`` is the inner solver's name.

    Raises:
        SingularShiftError: sigma is an eigenvalue to rounding (the message suggests a shift).
        ValueError / TypeError: bad arguments, a matrix-free B with Lanczos.
    """
    if inner not in INNER_SOLVERS:
        raise ValueError(f"shift-invert runs through one of {list(INNER_SOLVERS)}, got {inner!r}")
    if not isinstance(which, str) or which.upper() not in SIGMA_WHICH:
        raise ValueError(f"with sigma, `which` must be LM (the k eigenvalues nearest sigma), LA (the k nearest above "
                         f"sigma) or SA (the k nearest below), got {which!r}")
    which = which.upper()
    from explorer.solvers.registry import get_solver  # the solver modules import this one

    inner_fn = get_solver(inner).fn
    A_op = operator if isinstance(operator, LinearOperator) else as_operator(operator)
    v = validate_common(inner, A_op, k, which=which, tol=tol, max_iter=max_iter, default_max_iter=1,
                        supported_which=SIGMA_WHICH, X0=X0, B=B, supports_B=True)
    A, Bc, n = v.operator, v.B, v.operator.shape[0]
    max_iter = SIGMA_MAX_ITER[inner] if max_iter is None else v.max_iter
    dtype, eps = A.dtype, torch.finfo(A.dtype).eps
    if inverse is None:
        inverse = shifted_inverse(A, float(sigma), Bc, method=factorization, inner_tol=inner_tol,
                                  inner_max_iter=inner_max_iter, seed=0 if seed is None else int(seed))
        own_solves = 0
    else:
        if abs(inverse.sigma - float(sigma)) > 0:
            raise ValueError(f"the given factorization is of sigma = {inverse.sigma:g}, not {float(sigma):g}")
        own_solves = inverse.n_solve
    sigma = inverse.sigma
    factor: SymmetricFactor | None = None
    if inner == "lanczos" and Bc is not None:
        factor = symmetric_factor(Bc)
    runs = [(which, v.k)]
    if inner == "lobpcg" and which == "LM":
        # LOBPCG finds extreme values only: LM is LA or SA where the inertia puts every eigenvalue
        # on one side of sigma, else the nearest k above and the nearest k below, merged
        inertia = inverse.inertia
        if inertia is not None and inertia.negative == 0:
            runs = [("LA", v.k)]
        elif inertia is not None and inertia.positive == 0:
            runs = [("SA", v.k)]
        else:
            above = v.k if inertia is None else min(v.k, inertia.positive)
            below = v.k if inertia is None else min(v.k, inertia.negative)
            runs = [(w, c) for w, c in (("LA", above), ("SA", below)) if c > 0]
    T = ShiftInvertOperator(inverse, B=Bc, form="symmetric" if inner == "lanczos" else "pencil", factor=factor)
    norm = inverse.norm_estimate if math.isfinite(inverse.norm_estimate) else 1.0
    norm_A = abs(sigma) + norm  # an upper estimate of ||A|| (B = I), for the residual floor
    run_extras = {"sigma": sigma, "shift_invert": True, "factorization": inverse.method,
                  "factorization_detail": inverse.describe(),
                  "inner_which": " + ".join(f"{w} ({c})" for w, c in runs)}
    monitor = _CostMonitor(inner, v, tracker, extras=run_extras)
    monitor.inverse, monitor.solves_before = inverse, own_solves
    monitor._t0 -= inverse.factor_seconds if own_solves == 0 else 0.0  # the factorization is part of the solve

    X_start = v.X0
    tol_in = max(v.tol, 10 * eps)
    relay = _Relay(monitor, sigma, norm, 0)
    status, inner_message, n_iter = SolveStatus.CONVERGED, "", 0
    values = vectors = residuals = converged = None
    rounds = 0
    for rounds in range(1, REFINE_ROUNDS + 2):
        found, stopped = [], False
        for side, count in runs:
            Y0 = None
            if X_start is not None:
                if len(runs) > 1 and values is not None:  # each side restarts from its own vectors
                    keep = (values >= sigma) if side == "LA" else (values < sigma)
                    Y0 = X_start[:, keep] if bool(keep.any()) else None
                else:
                    Y0 = X_start
                if Y0 is not None and factor is not None:
                    Y0 = factor.apply_t(Y0)
            relay.side, relay.count = side, count
            result = inner_fn(T, count, which=side, tol=tol_in, max_iter=max_iter, X0=Y0, seed=seed,
                              tracker=relay, B=Bc if inner == "lobpcg" else None, **extras)
            relay.offset += result.n_iter
            n_iter += result.n_iter
            if result.eigenvectors.shape[1]:
                found.append(result.eigenvectors)
            if result.status is not SolveStatus.CONVERGED:
                status, inner_message = result.status, result.message
                stopped = result.status is SolveStatus.STOPPED
                if stopped:
                    break
        if not found:
            break
        Y = torch.cat(found, dim=1)
        # back to x, with one more step of inverse iteration: x ~ M^-1 B x (M^-1 G y with a factor)
        X = inverse.solve(factor.apply(Y)) if factor is not None else inverse.solve(Y if Bc is None else Bc.matmat(Y))
        X = X / torch.linalg.vector_norm(X, dim=0).clamp_min(torch.finfo(dtype).tiny)
        lam, Xr, AX = _rayleigh_ritz(A, Bc, X)
        order = nearest_order(lam, sigma, which)[: v.k]
        values, vectors, AX = lam[order], Xr[:, order], AX[:, order]
        residuals = true_residual_norms(A, vectors, values, Bc, AX=AX)
        threshold = residual_threshold(values, v.tol, norm_A)
        converged = residuals <= threshold
        if stopped:
            break
        if bool(converged.all()) and values.numel() == v.k:
            if status is not SolveStatus.CONVERGED:  # the mapped pairs meet tol all the same
                inner_message = (f"The inner run on the transform ended with {status.value} (inexact solves make "
                                 "the transformed operator inconsistent at that level), but every pair of the "
                                 "original problem meets tol.")
                status = SolveStatus.CONVERGED
            break
        if status is not SolveStatus.CONVERGED:
            inner_message = f"Inner run on the transform: {status.value}. {inner_message}".strip()
            break
        if rounds > REFINE_ROUNDS or tol_in <= 10 * eps:
            status = SolveStatus.MAX_ITER
            inner_message = (f"The transformed problem converged to tol {tol_in:.1e} but {int((~converged).sum())} "
                             f"true residuals still miss tol after {rounds} rounds.")
            break
        missing = float((residuals / threshold).max())
        tol_in = max(tol_in / (4.0 * missing), 10 * eps)
        X_start = vectors
    if values is None:
        empty = torch.zeros(0, dtype=dtype, device=A.device)
        return monitor.finish(eigenvalues=empty, eigenvectors=torch.zeros(n, 0, dtype=dtype, device=A.device),
                              residual_norms=empty, converged=torch.zeros(0, dtype=torch.bool), n_iter=n_iter,
                              status=status if status is not SolveStatus.CONVERGED else SolveStatus.BREAKDOWN,
                              message=inner_message)
    assert vectors is not None and residuals is not None and converged is not None
    solves = inverse.n_solve - own_solves if inverse.method not in ("minres", "cg") else 0
    cost = (f"{solves} solves with the factorization and {A.n_matvec} products with A"
            if inverse.method not in ("minres", "cg") else
            f"{inverse.n_solve - own_solves} inner {inverse.method.upper()} solves with {A.n_matvec} products with A "
            f"in all" + (f" ({inverse.inner_failures} stopped before rtol)" if inverse.inner_failures else ""))
    side = {"LM": "nearest", "LA": "nearest above", "SA": "nearest below"}[which]
    message = (f"Shift-invert at sigma = {sigma:g} ({side}; {inner} on "
               f"{'(A - sigma B)^-1' if Bc is None else '(A - sigma B)^-1 B'}"
               f"{', above and below separately' if len(runs) > 1 else ''}): {inverse.describe()}; {cost}"
               f"{f', {rounds} rounds' if rounds > 1 else ''}. Eigenvalues are Rayleigh quotients of A, residuals "
               f"true residuals of the original problem.")
    if inner_message:
        message = f"{inner_message} {message}"
    if status is SolveStatus.CONVERGED and not bool(converged.all()):
        status = SolveStatus.MAX_ITER
    return monitor.finish(eigenvalues=values, eigenvectors=vectors, residual_norms=residuals, converged=converged,
                          n_iter=n_iter, status=status, message=message, norm_estimate=norm_A)


SPECTRAL_PARAMS_HELP = {
    "sigma": sigma_param_help,
    "factorization": ("How (A - sigma B)^-1 is applied with sigma or an interval: 'auto' = sparse LDL^T (SuperLU, "
                      "which also counts eigenvalues), dense Cholesky or LDL^T (torch, any device), MINRES for "
                      "matrix-free operators; or 'ldl', 'lu', 'cholesky' (dense), 'minres', 'cg'."),
    "lower": ("Spectrum slicing: with `upper`, every eigenvalue in [lower, upper), counted by Sylvester's law of "
              "inertia (LDL^T at both ends) so that none is missed; k is then the most accepted. Needs an "
              "assembled (sparse or dense) matrix. Empty = off."),
    "upper": "The upper end of the spectrum-slicing interval (see `lower`). Empty = off.",
}


#: Placeholder of an empty sigma / interval field (None = off: no shift, no interval).
OFF = "off (empty = no shift)"

#: The shift-invert and spectrum-slicing parameters of the solvers that take them (lanczos, lobpcg).
SPECTRAL_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("sigma", "float", None, SPECTRAL_PARAMS_HELP["sigma"], optional=True, placeholder=OFF),
    ParamSpec("factorization", "choice", "auto", SPECTRAL_PARAMS_HELP["factorization"],
              choices=("auto", "ldl", "lu", "cholesky", "minres", "cg")),
    ParamSpec("lower", "float", None, SPECTRAL_PARAMS_HELP["lower"], optional=True,
              placeholder="off (empty = no interval)"),
    ParamSpec("upper", "float", None, SPECTRAL_PARAMS_HELP["upper"], optional=True,
              placeholder="off (empty = no interval)"),
)
#: With these set, a solver without B support of its own (lanczos) solves A x = lambda B x.
B_WITH = ("sigma", "lower", "upper")


def spectral_entry(inner: str, operator: Any, k: int, *, which: str | None, sigma: float | None,
                   lower: float | None, upper: float | None, factorization: str, **kwargs: Any) -> EigenResult:
    """What ``lanczos`` / ``lobpcg`` run when given ``sigma`` or an interval: shift-invert
    (``which`` defaults to LM, the k nearest sigma) or spectrum slicing (every eigenvalue in
    [lower, upper), at most k of them)."""
    if (lower is None) != (upper is None):
        raise ValueError("spectrum slicing needs both ends: pass `lower` and `upper` (or neither)")
    if lower is not None:
        if sigma is not None:
            raise ValueError("pass either `sigma` (the k eigenvalues nearest it) or an interval `lower`, `upper` "
                             "(every eigenvalue in it), not both")
        from explorer.solvers.slicing import spectrum_slice

        for unused in ("X0",):
            if kwargs.pop(unused, None) is not None:
                raise ValueError(f"`{unused}` does not apply to spectrum slicing (each shift starts afresh)")
        if which not in (None, "SA", "LA"):
            raise ValueError(f"spectrum slicing returns the eigenvalues of the interval in ascending order; `which` "
                             f"has no meaning there (got {which!r}): leave it out, or pass 'SA' or 'LA'")
        if factorization not in ("auto", "ldl"):
            raise ValueError("spectrum slicing counts with the inertia of an LDL^T: `factorization` must be 'auto' "
                             f"or 'ldl', got {factorization!r}")
        return spectrum_slice(operator, lower, upper, inner=inner, max_count=k, max_count_name="k", **kwargs)
    return shift_invert(inner, operator, k, sigma=sigma, which="LM" if which is None else which,
                        factorization=factorization, **kwargs)
