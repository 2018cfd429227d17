"""Randomized SVD and eigendecomposition (Halko, Martinsson & Tropp 2009).

The method, for the top-k singular triplets of an m x n operator A:

1. Range finder (HMT Algorithm 4.1): draw a Gaussian n x l test matrix Omega,
   l = k + n_oversamples, and take Q = orth(A Omega). With probability close to one,
   span Q captures the top-k left singular subspace up to sigma_{k+1}-sized errors; the
   oversampling p = l - k makes the failure probability tiny (HMT Sec. 10: for p = 10 the
   expected error is within a small factor of sigma_{k+1}).
2. Power (subspace) iterations with re-orthonormalization (HMT Algorithm 4.4): repeat
   Q~ = orth(A^T Q), Q = orth(A Q~). Each pass raises the singular values to a higher
   power, so the error factor (sigma_{l+1} / sigma_k) becomes (sigma_{l+1} / sigma_k)^(2q+1)
   after q passes. The re-orthonormalization in between keeps the small singular
   directions from drowning in rounding (which A A^T A Omega without it would do).
3. Direct SVD (HMT Algorithm 5.1): B = Q^T A (l x n), B = U~ S V^T, U = Q U~.

This is ``torch.svd_lowrank``'s algorithm (q = ``niter`` = 2 by default there and here).
It only works well when the singular values decay: on a flat or clustered spectrum two
power iterations leave errors of several percent (PEERS.md: 10 % on a small-gap
spectrum), which is why the registry marks this solver as meant for fast-decay spectra
(``SOLVERS["randomized_svd"].spectrum_assumption``) and the contract tests skip it elsewhere.

What we add, per pass (one ``IterationRecord`` per pass: the range finder is iteration 1,
power iteration j is iteration j + 1):

* the current singular-value estimates (``ritz_values``) and the true residuals
  ||A v_i - sigma_i u_i|| (``A^T u_i - sigma_i v_i`` is exactly zero by construction); the
  A v_i products are computed together with the probes below in one block product;
* the a-posteriori error estimate of HMT Sec. 4.3 (eq. 4.3, from Lemma 4.1 with r
  Gaussian probes w_i): ||(I - Q Q^T) A|| <= 10 sqrt(2/pi) max_i ||(I - Q Q^T) A w_i||
  with probability at least 1 - 10^-r. That bounds the rank-l approximation Q Q^T A
  (``record.extras["range_error_estimate"]``). The returned rank-k approximation also
  drops sigma_{k+1}(B) of B = Q^T A, and A - U S Vh = (I - QQ^T) A + Q (B - B_k), so
  ``SVDResult.error_estimate`` and ``record.extras["error_estimate"]`` hold
  eq. (4.3) + sigma_{k+1}(B), a bound on ||A - U diag(S) Vh||_2 with the same probability.

Stopping: with ``tol`` (float) the passes stop as soon as all k residuals meet
``tol * max(sigma_i, sqrt(eps) sigma_1)``; ``n_power_iter`` is then the most power
iterations, and missing it is reported as MAX_ITER. With ``tol=None`` exactly
``n_power_iter`` power iterations run (fixed work, like torch.svd_lowrank).

``randomized_eigh`` is the symmetric version that fits the eigensolver interface (and the
registry): subspace iteration Q <- orth(A Q) with a Rayleigh-Ritz step per pass
(HMT Algorithm 5.3 with Algorithm 4.4's power scheme, A^T = A). Each pass costs l
matvecs and its residuals come free from the same product. It finds the eigenvalues of
largest *magnitude* (which = "LM"; for a positive semidefinite matrix these are also the
largest, LA).

Defaults: ``n_oversamples=10`` (HMT Sec. 4.2 recommends p = 5 or 10), ``n_power_iter=2``
for ``randomized_svd`` (torch.svd_lowrank's niter) and at most 8 for ``randomized_eigh``,
which stops early at ``tol`` (its residual test is free, so a larger cap costs nothing on
problems that converge sooner), ``n_probes=10`` (failure probability 1e-10).

References:
    N. Halko, P.-G. Martinsson, J. A. Tropp (2011), Finding structure with randomness:
    probabilistic algorithms for constructing approximate matrix decompositions, SIAM
    Review 53(2), 217-288 (arXiv:0909.4061, 2009): Algorithms 4.1, 4.4, 5.1, 5.3;
    Sec. 4.3 eq. (4.3) (a-posteriori error estimate); Sec. 10 (oversampling).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from explorer.operators import CountedOperator, as_rectangular_operator
from explorer.tracking.results import EigenResult, SolveStatus, SVDResult
from explorer.solvers._common import (
    Monitor,
    ProductUnits,
    UnitsOperator,
    Validated,
    check_int,
    is_real_number,
    nonfinite_message,
    make_generator,
    orthogonality_loss,
    random_block,
    residual_threshold,
    select_order,
    validate_common,
)
from explorer.solvers.registry import ParamSpec, SolverSpec, register_solver
from explorer.tracking import StopSolve, Tracker

__all__ = ["randomized_svd", "randomized_eigh", "error_estimate_constant"]

#: HMT eq. (4.3): ||(I - QQ^T) A|| <= 10 sqrt(2/pi) max_i ||(I - QQ^T) A w_i|| w.p. >= 1 - 10^-r.
error_estimate_constant = 10.0 * math.sqrt(2.0 / math.pi)


def _orth(Y: torch.Tensor) -> torch.Tensor:
    """Orthonormal basis of the columns of Y (reduced QR)."""
    return torch.linalg.qr(Y).Q


def _validate_rectangular(operator: Any, k: Any, tol: Any, max_iter: Any, n_oversamples: Any,
                          n_power_iter: Any, n_probes: Any) -> tuple[Validated, int, int, int]:
    op = as_rectangular_operator(operator)
    m, n = op.shape
    k = check_int("k", k, minimum=None)
    if not 1 <= k <= min(m, n):
        raise ValueError(f"`k` must satisfy 1 <= k <= min(m, n) = {min(m, n)} for an {m} x {n} operator, got k={k}; "
                         "lower `k` (there are only min(m, n) singular values)")
    if tol is not None and (not is_real_number(tol) or not math.isfinite(tol)
                            or tol <= 0):
        raise ValueError(f"`tol` must be None or a positive finite number, got tol={tol!r}; e.g. 1e-6, or None "
                         "for a fixed number of power iterations")
    n_oversamples = check_int("n_oversamples", n_oversamples, minimum=0, hint="10 is the usual choice (HMT Sec. 4.2)")
    n_power_iter = check_int("n_power_iter", n_power_iter, minimum=0,
                             hint="use 0-2 for fast decay, more for slow decay")
    n_probes = check_int("n_probes", n_probes, minimum=0, hint="10 probes give the bound with probability 1 - 1e-10")
    if max_iter is not None:
        max_iter = check_int("max_iter", max_iter, hint="passes over the operator, the first being the range finder")
        n_power_iter = min(n_power_iter, max_iter - 1)
    v = Validated(CountedOperator(op), k, "LM", 0.0 if tol is None else float(tol), n_power_iter + 1, None, None)
    return v, n_oversamples, n_power_iter, n_probes


_KEPT = "the one from the pass before it"  # (nonfinite_message)


def _error_estimate(op: CountedOperator, Q: torch.Tensor, AW: torch.Tensor) -> float:
    """HMT eq. (4.3) from the probe products A w_i (columns of AW)."""
    if AW.shape[1] == 0:
        return float("nan")
    resid = AW - Q @ (Q.T @ AW)
    return error_estimate_constant * float(torch.linalg.vector_norm(resid, dim=0).max())


def randomized_svd(
    operator: Any,
    k: int,
    *,
    n_oversamples: int = 10,
    n_power_iter: int = 2,
    tol: float | None = None,
    max_iter: int | None = None,
    seed: int | None = None,
    tracker: Tracker | None = None,
    n_probes: int = 10,
) -> SVDResult:
    """Top-k singular triplets ``A ~= U diag(S) Vh`` of an m x n operator (HMT Alg. 4.4 + 5.1).

    Args:
        operator: m x n operator (dense, sparse or a LinearOperator providing ``rmatmat``).
        k: number of singular triplets, 1 <= k <= min(m, n).
        n_oversamples: p, extra random columns (l = k + p, capped at min(m, n)).
        n_power_iter: q, the (most) power iterations; 2 as in torch.svd_lowrank.
        tol: None: run exactly ``n_power_iter`` passes. A float: stop as soon as every
            ||A v_i - sigma_i u_i|| <= tol * max(sigma_i, sqrt(eps) sigma_1).
        max_iter: optional cap on passes (range finder + power iterations).
        seed: seed of the Gaussian test matrix and probes (local generator).
        tracker: one record per pass; raise StopSolve to stop.
        n_probes: r Gaussian probes for the error estimate (0 switches it off).

    Returns:
        SVDResult: U (m, k), S (k,) descending, Vh (k, n), ``error_estimate``, status
        (CONVERGED; MAX_ITER when a ``tol`` was not met; STOPPED), history.

    Raises:
        ValueError / TypeError: empty, non-finite, complex or non-float operator; k out of range;
            a negative parameter; tol <= 0.
    """
    v, p, q, r = _validate_rectangular(operator, k, tol, max_iter, n_oversamples, n_power_iter, n_probes)
    op = v.operator
    m, n = op.shape
    k = v.k
    l = min(k + p, m, n)
    dtype, device = op.dtype, op.device
    generator = make_generator(seed)
    monitor = Monitor("randomized_svd", v, tracker, extras={"n_oversamples": p, "n_power_iter": q,
                                                             "n_probes": r, "shape": f"{m}x{n}"})
    # A / 2^e when A's scale would over/underflow norms; the monitor reports back in A's units (the
    # SVDResult, built here, too)
    units = monitor.units = ProductUnits(dtype)
    op = UnitsOperator(v.operator, units)
    Q = _orth(op.matmat(random_block(n, l, generator, dtype=dtype, device=device)))  # HMT Alg. 4.1
    status = SolveStatus.MAX_ITER if tol is not None else SolveStatus.CONVERGED
    message = ""
    passes = 0
    U = S = Vh = None
    estimate = float("nan")
    while True:
        passes += 1
        Z = op.rmatmat(Q)  # (n, l) = (Q^T A)^T: B = Z^T
        if not bool(torch.isfinite(Z).all()):  # (l columns: cheap next to the product)
            status, message = SolveStatus.BREAKDOWN, nonfinite_message(f"pass {passes}", monitor.n_matvec, _KEPT)
            passes -= 1  # not completed (and not recorded)
            if U is None:  # nothing before it: NaN values (and no right vectors to speak of)
                S = torch.full((k,), math.nan, dtype=dtype, device=device)
                U, Vh = Q[:, :k], torch.zeros(k, n, dtype=dtype, device=device)
            break
        Ub, S_all, Vh_all = torch.linalg.svd(Z.T, full_matrices=False)  # HMT Alg. 5.1
        U, S, Vh = Q @ Ub[:, :k], S_all[:k], Vh_all[:k]
        probes = random_block(n, r, generator, dtype=dtype, device=device)
        products = op.matmat(torch.cat([Vh.T, probes], 1))  # A v_i and A w_i in one block product
        residuals = torch.linalg.vector_norm(products[:, :k] - U * S.unsqueeze(0), dim=0)
        range_estimate = _error_estimate(op, Q, products[:, k:])
        # ||A - U_k S_k V_k^T|| <= ||(I - QQ^T) A|| + sigma_{k+1}(B): the range error plus what
        # truncating B = Q^T A to rank k discards.
        tail = float(S_all[k]) if S_all.numel() > k else 0.0
        estimate = range_estimate + tail
        sigma1 = float(S[0]) if S.numel() else 0.0
        met = tol is not None and bool((residuals <= residual_threshold(S, float(tol), sigma1)).all())
        n_met = int((residuals <= residual_threshold(S, float(tol), sigma1)).sum()) if tol is not None else 0
        u = units.scale  # for the extras
        stop = monitor.record(passes, S, residuals, estimated=False, n_converged=n_met,
                              orthogonality_loss=orthogonality_loss(Q), all_ritz_values=S_all,
                              extras={"error_estimate": estimate * u, "range_error_estimate": range_estimate * u,
                                      "pass": float(passes)})
        if met:
            status = SolveStatus.CONVERGED
            break
        if stop:
            status = SolveStatus.STOPPED
            break
        if passes > q:
            if tol is not None:
                message = (f"After {q} power iterations the residuals still exceed tol={tol:g}; raise "
                           "`n_power_iter` (the spectrum may decay too slowly for a randomized method).")
            break
        Q = _orth(op.matmat(_orth(Z)))  # HMT Alg. 4.4: one power iteration, re-orthonormalized
    if monitor.stop_reason is not None:
        status = SolveStatus.STOPPED
        message = (message + " " if message else "") + f"Reason: {monitor.stop_reason}."
    if tol is None and status is SolveStatus.CONVERGED:
        message = f"Ran the prescribed {q} power iterations (no `tol` given)."
    assert U is not None and S is not None and Vh is not None
    result = SVDResult(U=U.detach(), S=(S * units.scale).detach(), Vh=Vh.detach(),
                       error_estimate=estimate * units.scale, n_iter=passes,
                       n_matvec=monitor.n_matvec, elapsed_s=monitor.elapsed, status=status, message=message,
                       history=tuple(monitor.history))
    try:
        monitor.tracker.on_finish(result)  # type: ignore[arg-type]
    except StopSolve:
        pass
    return result


def randomized_eigh(
    operator: Any,
    k: int,
    *,
    which: str = "LM",
    tol: float = 1e-6,
    max_iter: int | None = None,
    X0: torch.Tensor | None = None,
    seed: int | None = None,
    tracker: Tracker | None = None,
    B: Any = None,
    n_oversamples: int = 10,
    n_power_iter: int = 8,
) -> EigenResult:
    """k eigenpairs of largest magnitude of a symmetric operator by randomized subspace iteration.

    Pass 1 is the range finder Q = orth(A Omega) (HMT Alg. 4.1); every pass then forms
    Z = A Q, does Rayleigh-Ritz with Q^T Z (HMT Alg. 5.3), records the k Ritz values with
    their true residuals (free: A U = Z V), and, unless all k meet ``tol``, continues with
    Q = orth(Z), one power iteration (HMT Alg. 4.4 with A^T = A).

    Args:
        operator: symmetric n x n operator.
        k: number of eigenpairs.
        which: "LM" (largest magnitude; equal to "LA" for positive semidefinite matrices).
        tol: relative residual tolerance (see ``residual_threshold``).
        max_iter: optional cap on passes.
        X0: optional starting block (n,) or (n, b) (b <= l), completed with Gaussian columns.
        seed: seed of the Gaussian start (local generator).
        tracker: one record per pass; raise StopSolve to stop.
        B: not supported (a clear ValueError points to lobpcg / eigh).
        n_oversamples: p, extra columns (l = k + p, capped at n).
        n_power_iter: the most power iterations; the passes stop as soon as tol is met.

    Returns:
        EigenResult in "LM" order; MAX_ITER when ``n_power_iter`` passes were not enough.
    """
    n_oversamples = check_int("n_oversamples", n_oversamples, minimum=0, hint="10 is the usual choice (HMT Sec. 4.2)")
    n_power_iter = check_int("n_power_iter", n_power_iter, minimum=0, hint="more power iterations help slow decay")
    cap = n_power_iter + 1 if max_iter is None else max_iter
    v = validate_common("randomized_svd", operator, k, which=which, tol=tol, max_iter=cap,
                        default_max_iter=n_power_iter + 1, supported_which=("LM",), X0=X0, B=B)
    op, n = v.operator, v.operator.shape[0]
    passes_allowed = min(v.max_iter, n_power_iter + 1)
    l = min(v.k + n_oversamples, n)
    generator = make_generator(seed)
    Omega = random_block(n, l, generator, dtype=op.dtype, device=op.device)
    if v.X0 is not None:
        b = v.X0.shape[1]
        if b > l:
            raise ValueError(f"`X0` has {b} columns but the subspace has l = k + n_oversamples = {l}; pass at most {l}")
        Omega[:, :b] = v.X0
    monitor = Monitor("randomized_svd", v, tracker, extras={"n_oversamples": n_oversamples,
                                                             "n_power_iter": n_power_iter})
    op = UnitsOperator(op, ProductUnits(op.dtype))  # as in randomized_svd
    monitor.units = op.units
    Q = _orth(op.matmat(Omega))
    status, message = SolveStatus.MAX_ITER, ""
    norm_estimate = 0.0
    passes = 0
    while True:
        passes += 1
        Z = op.matmat(Q)
        if not bool(torch.isfinite(Z).all()):
            status, message = SolveStatus.BREAKDOWN, nonfinite_message(f"pass {passes}", monitor.n_matvec, _KEPT)
            passes -= 1  # not completed (and not recorded)
            if passes == 0:  # nothing before it: NaN values, the range basis as vectors
                theta = torch.full((v.k,), math.nan, dtype=op.dtype, device=op.device)
                residuals, X = theta.clone(), Q[:, :v.k]
                converged = torch.zeros(v.k, dtype=torch.bool)
            break
        G = (Q.T @ Z).to(torch.float64)
        values, W = torch.linalg.eigh(0.5 * (G + G.T))
        norm_estimate = max(norm_estimate, float(values.abs().max()))
        order = select_order(values, "LM")[: v.k]
        theta, Wk = values[order].to(op.dtype), W[:, order].to(op.dtype)
        X, AX = Q @ Wk, Z @ Wk
        residuals = torch.linalg.vector_norm(AX - X * theta.unsqueeze(0), dim=0)
        converged = residuals.to(torch.float64) <= residual_threshold(theta.to(torch.float64), v.tol, norm_estimate)
        stop = monitor.record(passes, theta, residuals, estimated=False, n_converged=int(converged.sum()),
                              orthogonality_loss=orthogonality_loss(Q), all_ritz_values=values[select_order(values, "LM")])
        if bool(converged.all()):
            status = SolveStatus.CONVERGED
            break
        if stop:
            status = SolveStatus.STOPPED
            break
        if passes >= passes_allowed:
            message = (f"{int(converged.sum())} of {v.k} pairs met tol after {passes - 1} power iterations; raise "
                       "`n_power_iter` or use lobpcg/lanczos (randomized methods need a decaying spectrum).")
            break
        Q = _orth(Z)
    return monitor.finish(eigenvalues=theta, eigenvectors=X, residual_norms=residuals, converged=converged.cpu(),
                          n_iter=passes, status=status, message=message,
                          counts_in_message=True)  # (MAX_ITER only with the message above)


register_solver(SolverSpec(
    name="randomized_svd",
    label="Randomized (Halko et al.)",
    fn=randomized_eigh,
    summary=("Random sketch Q = orth(A Omega), a few power iterations Q <- orth(A Q), then Rayleigh-Ritz "
             "on span Q. Very few passes over A; accurate only when the spectrum decays fast."),
    which=("LM",),
    params=(
        ParamSpec("n_oversamples", "int", 10, "Extra random directions beyond k (the sketch has k + this many "
                  "columns). More oversampling makes it likelier that the sketch catches the top-k directions; "
                  "5-10 is the usual choice.", minimum=0, maximum=200),
        ParamSpec("n_power_iter", "int", 8, "The most power iterations (passes Q <- orth(A Q)). Each pass "
                  "sharpens the gap between wanted and unwanted directions; the run stops early once every "
                  "pair meets tol.", minimum=0, maximum=100),
    ),
    supports_B=False,
    matrix_free=True,
    default_tol=1e-6,
    default_max_iter=9,
    references=("Halko, Martinsson & Tropp 2011, Algorithms 4.1, 4.4, 5.1, 5.3; eq. (4.3)",),
    # the accuracy theory needs decaying singular values; on flat or clustered spectra it is
    # not expected to reach a small tol
    spectrum_assumption="fast decay",
))
