"""Chebyshev polynomial acceleration: Lanczos on ``p(A)`` for large sparse matrices.

Why
---
On a large sparse matrix a matvec is cheap next to everything else a Lanczos step does: at
n = 10^6 (the 2-D Laplacian, 5 entries a row) one product takes 4 ms, while the step's passes
over its block, the thick restart's combination of ~40 vectors of 10^6 entries and the checks
cost ~10 products' worth per step (overhead 6-7 against the matvec floor,
docs/benchmarks.md). Lanczos on a polynomial ``p(A)`` of degree d applies A d times per basis
vector, so all of that per-step work is paid once per d products; and when ``p`` stretches the
wanted end of the spectrum, the Krylov space of ``p(A)`` finds it in fewer basis vectors and
restarts. This is polynomial preconditioning of the eigenproblem (Saad, *Numerical Methods for
Large Eigenvalue Problems*, 2nd ed., ch. 8, "Polynomial acceleration"; Embree, Loe & Morgan,
*Polynomial preconditioned Arnoldi with stability control*, SISC 43, 2021), with the
Chebyshev filter of Zhou & Saad (2007) as the polynomial.

The polynomial
--------------
For the largest eigenvalues ("LA"): ``p(t) = T_d((t - c) / e)`` with ``[lo, cut] = [c - e,
c + e]``, ``T_d`` the Chebyshev polynomial of degree d. On ``[lo, cut]`` |p| <= 1; above ``cut``
p grows monotonically, fastest at the top. So if ``lo <= lambda_min`` and ``cut <
lambda_k``, the k largest eigenvalues of ``p(A)`` belong to the k largest of A, in the same
order, with the same eigenvectors, and their relative gaps are stretched by about
``d / sqrt(x^2 - 1)``, x = (lambda - c) / e. "SA" is the mirror image (``[cut, hi]`` damped,
amplified below). Where the bounds come from:

* ``lo`` (``hi`` for SA): a Gershgorin bound of the assembled matrix (rigorous, O(nnz));
  so the acceleration needs a sparse or dense matrix, not a matrix-free operator;
* ``cut``: the (k + b)-th Ritz value of a short Lanczos run on A (``START_FILLS`` fills of the
  basis, the "start"). By Cauchy interlacing the i-th largest Ritz value is at most
  ``lambda_i``, so ``cut <= lambda_(k+b) <= lambda_k``: the k wanted values and b guards lie above
  it, whatever the start found.

The run
-------
1. the start on A (its records are the first ones, its vectors the start block of step 2);
2. Lanczos on ``p(A)`` ("LA" of p), with everything plain Lanczos does (block, thick restart,
   resolved sets, the hidden-copy check) on p's spectrum, to ``tol`` relative in p;
3. a Rayleigh-Ritz step on A with the k vectors (k products): eigenvalues are Rayleigh
   quotients of A and residuals true residuals ``||A x - theta x||``, judged by the shared
   criterion. A residual of p(A) maps to one of A up to ``|theta - far end| / (p(theta) - 1)``
   times larger in the damped directions and ``1 / p'(theta)`` in the near ones, which matters
   for small eigenvalues with a relative tolerance (SA): step 2's tolerance comes from these
   factors at the start's Ritz values (``_first_tolerance``; n = 10^5 SA: 4542 products instead of
   6392 with tol itself and a repair). When one still misses ``tol``, up to ``FILTER_STEPS`` filtered steps ``X <- p(A) X``
   (each divides the damped part by at least p(theta_k), for k (d + 1) products) come first, then
   step 2 again from the vectors with a tolerance lowered by the missing factor (x 4), at most
   ``REFINE_ROUNDS`` times.

Records reach the tracker in A's units: values ``p^-1(mu)`` (the amplified branch; a value of p
inside [-1, 1] is shown at the edge ``cut``), residuals ``||r_p|| / p'(theta)`` (the first-order
map of a residual of p(A) to one of A; estimates), ``n_matvec`` products with A.

When ("auto")
-------------
``polynomial="auto"`` (the default of ``lanczos``) accelerates where it was measured to pay:
a sparse matrix on the CPU with n >= ``AUTO_MIN_N`` (5 x 10^4), "LA" or "SA", float64,
reorthogonalization "partial" or "full", one process. 2-D Laplacian k = 10, tol 1e-6, one thread
(docs/benchmarks.md, "Chebyshev acceleration"): n = 10^5 LA 3.4 s instead of 5.7 (4082
products instead of 2962), SA 3.3 s instead of 6.7 (4542 instead of 3528); n = 10^6 LA the exact
top ten in 117 s with 12 702 products instead of 587 s and 20 812 (SA: 125 s, 13 882). It trades products for time:
below ~5 x 10^4 plain Lanczos's steps are cheap enough that the extra products (1.3-2x on the
Laplacians) are not worth it. An integer ``polynomial=d`` forces degree d anywhere a Gershgorin
bound exists, 0 turns it off.

References:
    Y. Saad, Numerical Methods for Large Eigenvalue Problems, 2nd ed. (SIAM 2011), ch. 8.
    Y. Zhou and Y. Saad, A Chebyshev-Davidson algorithm for large symmetric eigenproblems,
    SIAM J. Matrix Anal. Appl. 29 (2007).
    M. Embree, J. A. Loe and R. B. Morgan, Polynomial preconditioned Arnoldi with stability
    control, SIAM J. Sci. Comput. 43 (2021).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch

from explorer.operators import DenseOperator, LinearOperator, SparseOperator
from explorer.solvers._common import Monitor, Validated, residual_threshold, true_residual_norms
from explorer.solvers.lanczos.state import sparse_on_cpu
from explorer.tracking import IterationRecord, NullTracker, StopSolve, Tracker
from explorer.tracking.results import EigenResult, SolveStatus

__all__ = ["AUTO_MIN_N", "DEFAULT_DEGREE", "ChebyshevOperator", "gershgorin_bounds", "auto_degree",
           "polynomial_lanczos"]

# "auto": the smallest n at which the acceleration is on (sparse CPU matrices; module docstring).
AUTO_MIN_N = 50_000
# "auto": the degree. At n = 10^5 (LA) degrees 6, 10 and 20 took 3.0, 2.6-3.0 and 2.5-3.0 s (products
# 3584, 3710-4000, 4090-5220): flat; 10 keeps the products near plain Lanczos's.
DEFAULT_DEGREE = 10
# The start: this many fills of the basis (max_basis / block_size steps each) of Lanczos on A.
START_FILLS = 2
# Extra runs on p(A) with a tighter tolerance when a true residual of A misses tol (after the
# filtered steps below).
REFINE_ROUNDS = 3
# Filtered steps X <- p(A) X with a Rayleigh-Ritz on A, before another run (module docstring, step 3).
FILTER_STEPS = 6
POLYNOMIAL_WHICH = ("LA", "SA")


def _base_matrix(op: Any) -> Any:
    """The sparse or dense matrix under the counting and unit wrappers, or None."""
    while op is not None and not isinstance(op, (SparseOperator, DenseOperator)):
        op = getattr(op, "base", None)
    return op


def gershgorin_bounds(op: Any) -> tuple[float, float] | None:
    """``(min_i a_ii - r_i, max_i a_ii + r_i)``, ``r_i = sum_(j != i) |a_ij|``: an interval that holds
    every eigenvalue (Gershgorin). None for an operator that is not an assembled matrix."""
    M = _base_matrix(op)
    if M is None:
        return None
    A = M.matrix
    if isinstance(M, SparseOperator):
        if M._scipy is not None:
            S = M._scipy
            diag = np.asarray(S.diagonal(), dtype=np.float64)
            absolute = np.asarray(abs(S).sum(axis=1), dtype=np.float64).ravel()
        else:  # torch CSR on another device: the row sums of |a_ij| by index_add
            crow, col, values = A.crow_indices(), A.col_indices(), A.values()
            n = A.shape[0]
            rows = torch.repeat_interleave(torch.arange(n, device=A.device), crow.diff())
            absolute_t = torch.zeros(n, dtype=torch.float64, device=A.device).index_add_(
                0, rows, values.abs().double())
            diag_t = torch.zeros(n, dtype=torch.float64, device=A.device).index_add_(
                0, rows, torch.where(col == rows, values, torch.zeros_like(values)).double())
            diag, absolute = diag_t.cpu().numpy(), absolute_t.cpu().numpy()
    else:
        diag = torch.diagonal(A).double().cpu().numpy()
        absolute = A.abs().sum(dim=1).double().cpu().numpy()
    radius = absolute - np.abs(diag)
    return float((diag - radius).min()), float((diag + radius).max())


def auto_degree(polynomial: Any, op: Any, which: str, B: Any, mode: str) -> int:
    """The degree ``lanczos`` runs with: 0 (plain Lanczos) or d >= 2. Raises ValueError for a
    ``polynomial`` value or a problem it cannot serve."""
    if isinstance(polynomial, str):
        if polynomial != "auto":
            raise ValueError(f"`polynomial` must be 'auto', 0 (off) or a degree >= 2, got {polynomial!r}")
        on = (getattr(op, "kind", "") == "sparse" and op.device.type == "cpu" and op.shape[0] >= AUTO_MIN_N
              and which in POLYNOMIAL_WHICH and B is None and op.dtype == torch.float64
              and mode in ("partial", "full") and op.space is None)
        return DEFAULT_DEGREE if on else 0
    if isinstance(polynomial, bool) or not isinstance(polynomial, (int, np.integer)):
        raise TypeError(f"`polynomial` must be 'auto', 0 (off) or a whole number >= 2, got {polynomial!r}")
    degree = int(polynomial)
    if degree == 0:
        return 0
    if degree < 2 or degree > 200:
        raise ValueError(f"`polynomial` must be 0 (off) or a degree from 2 to 200, got {degree}; the default 'auto' "
                         f"uses {DEFAULT_DEGREE} on large sparse matrices")
    if which not in POLYNOMIAL_WHICH:
        raise ValueError(f"`polynomial` accelerates one end of the spectrum (which='LA' or 'SA'), got which={which!r}; "
                         "use polynomial=0")
    if B is not None:
        raise ValueError("`polynomial` does not apply to a generalized problem; use polynomial=0")
    if op.space is not None:
        raise ValueError("`polynomial` runs in one process (sharded vectors are not supported); use polynomial=0")
    if _base_matrix(op) is None:
        raise ValueError("`polynomial` needs an assembled (sparse or dense) matrix: its damped interval starts at a "
                         "Gershgorin bound of the spectrum, which a matrix-free operator does not give; use "
                         "polynomial=0")
    return degree


def _shares_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether the storage spans of two tensors overlap (a conservative test)."""
    a0, b0 = a.data_ptr(), b.data_ptr()
    a1, b1 = a0 + a.numel() * a.element_size(), b0 + b.numel() * b.element_size()
    return a0 < b1 and b0 < a1


class ChebyshevOperator(LinearOperator):
    """``p(A) = T_d(s (A - c I) / e)``: degree d, damped interval ``[c - e, c + e]``, ``s = +1``
    amplifies above it (the largest eigenvalues), ``s = -1`` below (the smallest).

    Applied to rows by the three-term recurrence ``T_(j+1) = 2 y T_j - T_(j-1)``, ``y = s (A -
    c) / e``: d products with A per vector, (b, n) buffers kept between calls (a fresh 16 MB
    block per degree at n = 10^6 cost page faults: 12 s of system time in a 120 s run). Where
    the matrix has an accumulating kernel for ``M = 2 y`` (``affine_rows_kernel``: scipy CSR
    on the CPU, on a shifted and scaled copy of the matrix), a step is ``T_(j+1) = M T_j +
    (-T_(j-1))``: one negation in place and the kernel, where the generic path zeroes the
    output, multiplies and makes three vector updates (n = 10^5, k = 10 LA: those took
    0.66 s of a 3.0 s solve, docs/benchmarks.md "Chebyshev acceleration").
    """

    def __init__(self, base: LinearOperator, degree: int, low: float, high: float, side: int) -> None:
        super().__init__(base.shape, base.dtype, base.device, is_symmetric=True)
        self.base, self.degree, self.side = base, int(degree), int(side)
        self.low, self.high = float(low), float(high)
        self.c, self.e = 0.5 * (high + low), 0.5 * (high - low)
        self._buffers: tuple[torch.Tensor, ...] | None = None
        self._kernel: Any = None  # M = 2 y's accumulating kernel: unknown (None), absent (False) or it

    @property
    def kind(self) -> str:
        return "polynomial"

    @property
    def rows_kernel(self) -> bool:
        return True

    def _rows_product(self, X: torch.Tensor, out: torch.Tensor) -> None:
        if not (self.base.rows_kernel and self.base.matvecs_into(X, out)):
            out.copy_(self.base.matmat(X.T).T)

    def _matvecs_into(self, Xt: torch.Tensor, out: torch.Tensor) -> None:
        b = Xt.shape[0]
        buffers = self._buffers
        if buffers is None or buffers[0].shape[0] < b or buffers[0].dtype != Xt.dtype:
            buffers = self._buffers = tuple(Xt.new_empty(Xt.shape) for _ in range(3))
        if self._kernel is None:
            self._kernel = self.base.affine_rows_kernel(2.0 * self.side / self.e, self.c) or False
        if self._kernel and out.is_contiguous() and not _shares_memory(out, Xt):
            self._accumulated(Xt, out, buffers[0][:b], buffers[1][:b])
            return
        prev, cur, nxt = (buf[:b] for buf in buffers)
        scale, c = self.side / self.e, self.c
        self._rows_product(Xt, cur)  # T_1 = y X
        cur.sub_(Xt, alpha=c).mul_(scale)
        prev.copy_(Xt)
        for _ in range(1, self.degree):
            self._rows_product(cur, nxt)
            nxt.sub_(cur, alpha=c).mul_(2.0 * scale).sub_(prev)
            prev, cur, nxt = cur, nxt, prev
        out.copy_(cur)

    def _accumulated(self, Xt: torch.Tensor, out: torch.Tensor, one: torch.Tensor, two: torch.Tensor) -> None:
        """The recurrence on the kernel of ``M = 2 s (A - c I) / e``: ``T_1 = M X / 2``, then
        ``T_(j+1) = M T_j - T_(j-1)`` into the (negated) rows of ``T_(j-1)``; the last into ``out``."""
        kernel = self._kernel
        first = out if self.degree == 1 else one
        first.zero_()
        kernel(Xt, first)
        first.mul_(0.5)
        prev, cur = Xt, first
        for step in range(2, self.degree + 1):
            if step == self.degree:
                target = torch.neg(prev, out=out)
            elif prev is Xt:  # the input stays as it is
                target = torch.neg(Xt, out=two)
            else:
                target = prev.neg_()
            kernel(cur, target)
            prev, cur = cur, target

    def _matmat(self, X: torch.Tensor) -> torch.Tensor:
        out = X.new_empty((X.shape[1], X.shape[0]))
        self._matvecs_into(X.T.contiguous(), out)
        return out.T.contiguous()

    def _matvec(self, x: torch.Tensor) -> torch.Tensor:
        return self._matmat(x.unsqueeze(1)).squeeze(1)

    def _to(self, device: torch.device, dtype: torch.dtype) -> "ChebyshevOperator":
        return ChebyshevOperator(self.base.to(device, dtype), self.degree, self.low, self.high, self.side)

    # -- the scalar polynomial -------------------------------------------------------------
    def _x(self, t: Any) -> np.ndarray:
        return self.side * (np.asarray(t, dtype=np.float64) - self.c) / self.e

    def value(self, t: Any) -> np.ndarray:
        """p(t) (``cos``/``cosh`` forms of T_d)."""
        x = self._x(t)
        inside = np.abs(x) <= 1.0
        out = np.empty_like(x)
        out[inside] = np.cos(self.degree * np.arccos(x[inside]))
        big = ~inside
        out[big] = np.sign(x[big]) ** self.degree * np.cosh(self.degree * np.arccosh(np.abs(x[big])))
        return out

    def slope(self, t: Any) -> np.ndarray:
        """|p'(t)| on the amplified side (x >= 1): ``d sinh(d acosh x) / (e sqrt(x^2 - 1))``, d^2 / e at x = 1."""
        x = np.maximum(self._x(t), 1.0)
        u = np.arccosh(x)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(u > 1e-8, np.sinh(self.degree * u) / np.sinh(np.maximum(u, 1e-300)), self.degree)
        return self.degree * ratio / self.e

    def inverse(self, mu: Any) -> np.ndarray:
        """The t on the amplified side with p(t) = mu (mu >= 1); mu < 1 maps to the damped edge."""
        m = np.maximum(np.asarray(mu, dtype=np.float64), 1.0)
        return self.c + self.side * self.e * np.cosh(np.arccosh(m) / self.degree)


class _Relay(NullTracker):
    """An inner run's tracker: its records, mapped to A (``mapping``), go to the outer monitor
    with the iteration count run on; a stop asked there stops the inner run."""

    def __init__(self, monitor: Monitor, mapping: Callable[[IterationRecord], tuple[Any, ...]] | None) -> None:
        self.monitor, self.mapping, self.offset = monitor, mapping, 0
        self.extras: dict[str, Any] = {}

    def on_iteration(self, record: IterationRecord) -> None:
        values, residuals, every = record.ritz_values, record.residual_norms, record.all_ritz_values
        if self.mapping is not None:
            values, residuals, every = self.mapping(record)
        stop = self.monitor.record(self.offset + record.iteration, values, residuals, estimated=True,
                                   n_converged=record.n_converged, orthogonality_loss=record.orthogonality_loss,
                                   all_ritz_values=every, ghost_mask=record.ghost_mask,
                                   extras={**record.extras, **self.extras})
        if stop:
            raise StopSolve(self.monitor.stop_reason or "stopped by the tracker")


def _to_a(P: ChebyshevOperator) -> Callable[[IterationRecord], tuple[Any, ...]]:
    """A record of Lanczos on p(A) in A's units (module docstring)."""
    def mapping(record: IterationRecord) -> tuple[Any, ...]:
        mu = record.ritz_values.double().numpy()
        values = P.inverse(mu)
        residuals = record.residual_norms.double().numpy() / P.slope(values)
        every = None
        if record.all_ritz_values is not None:
            mu_all = record.all_ritz_values.double().numpy()
            every = np.sort(P.inverse(mu_all[mu_all >= 1.0]))
        return values, residuals, every
    return mapping


def _rayleigh_ritz(A: LinearOperator, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rayleigh-Ritz of A on span(X): (values ascending, orthonormal Ritz vectors, A times them)."""
    Q, _ = torch.linalg.qr(X)
    AQ = A.matmat(Q)
    H = Q.T @ AQ
    values, W = torch.linalg.eigh(0.5 * (H + H.T))
    return values, Q @ W, AQ @ W


def polynomial_lanczos(v: Validated, *, degree: int, inner: Callable[..., EigenResult], tracker: Tracker | None,
                       seed: int | None, extras: dict[str, Any], block_size: int | None, max_basis: int | None,
                       b: int, m: int, copy_check: str, **lanczos_kwargs: Any) -> EigenResult:
    """The run of the module docstring. ``inner``: ``lanczos`` itself (called with
    ``polynomial=0``); ``block_size`` / ``max_basis`` as the caller gave them (None: the defaults),
    so that the run on p(A) has a plain run's defaults, the hidden-copy check among them;
    ``b`` / ``m``: the sizes they resolve to; ``lanczos_kwargs``: the rest of its parameters
    (reorthogonalization, products, ritz_every)."""
    A, k, which, tol = v.operator, v.k, v.which, v.tol
    n = A.shape[0]
    bounds = gershgorin_bounds(A)
    assert bounds is not None  # auto_degree checked it
    lo, hi = bounds
    norm_A = max(abs(lo), abs(hi))
    monitor = Monitor("lanczos", v, tracker, extras={**extras, "polynomial": degree})
    # 1. the start on A: its (k + b)-th Ritz value is the cut
    guard = min(n - 1, k + b)
    start_steps = max(1, START_FILLS * (m // b))
    relay = _Relay(monitor, None)
    relay.extras = {"phase": "start"}
    start = inner(A, guard, which=which, tol=tol, max_iter=min(start_steps, max(1, v.max_iter // 2)), X0=v.X0, seed=seed,
                  tracker=relay, block_size=b, max_basis=max(m, guard + b), copy_check="off", polynomial=0,
                  **lanczos_kwargs)
    relay.offset = start.n_iter
    theta = start.eigenvalues.double().cpu().numpy()  # in `which` order
    if start.status is SolveStatus.STOPPED:  # the outer finish says it was stopped, and why
        return monitor.finish(eigenvalues=start.eigenvalues[:k], eigenvectors=start.eigenvectors[:, :k],
                              residual_norms=start.residual_norms[:k], converged=start.converged[:k],
                              n_iter=start.n_iter, status=SolveStatus.STOPPED, norm_estimate=norm_A)
    if len(theta) < guard:
        return _plain(monitor, inner, v, start, seed=seed, block_size=block_size, max_basis=max_basis,
                      copy_check=copy_check, reason=f"the start returned {len(theta)} Ritz pairs, fewer than the "
                      f"{guard} that place the cut", **lanczos_kwargs)
    side = 1 if which == "LA" else -1
    edge = float(theta[guard - 1])
    far = lo if side == 1 else hi
    # The cut sits a margin below the (k + b)-th Ritz value. A wanted eigenvalue at the cut would
    # get p = 1, the value of T_d at the damped interval's extrema (an eigenvalue at its far end
    # too): nothing would tell them apart. At least W / (4 d^2) (W the damped width) gives
    # p(lambda_k) >= cosh(1) ~ 1.5: x_k - 1 >= 2 margin / W, d acosh(x_k) ~ d sqrt(2 (x_k - 1)) >= 1.
    margin = max(1e-3 * abs(float(theta[0]) - edge), abs(edge - far) / (4.0 * degree * degree))
    low, high = (lo, edge - margin) if side == 1 else (edge + margin, hi)
    if not high - low > 1e-12 * max(norm_A, 1e-300):  # nothing left to damp: plain Lanczos from the start's vectors
        return _plain(monitor, inner, v, start, seed=seed, block_size=block_size, max_basis=max_basis,
                      copy_check=copy_check, reason="nothing to damp: the Gershgorin bound and the cut leave an empty interval",
                      **lanczos_kwargs)
    P = ChebyshevOperator(A, degree, low, high, side)
    # 2. Lanczos on p(A), 3. Rayleigh-Ritz on A; refined when a true residual misses tol
    relay.mapping = _to_a(P)
    relay.extras = {"phase": "polynomial", "filter_low": low, "filter_high": high, "degree": degree}
    X_start = start.eigenvectors[:, :guard]
    eps = float(torch.finfo(A.dtype).eps)
    tol_in = _first_tolerance(P, theta[:k], tol, far, norm_A, eps)
    if lanczos_kwargs.get("products", "auto") == "auto" and sparse_on_cpu(A):
        # p(A) of a sparse CPU matrix is as cheap to recompute as A is: keep memory at one basis
        # (n = 10^5, k = 10 LA: 3962 products instead of 3862 with the products stored, the same time)
        lanczos_kwargs = {**lanczos_kwargs, "products": "recomputed"}

    def on_a(Y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Rayleigh-Ritz on A with span(Y): the k wanted pairs, their true residuals, thresholds, flags."""
        lam, X, AX = _rayleigh_ritz(A, Y)
        order = torch.argsort(lam, descending=(which == "LA"))[:k]
        values, vectors = lam[order], X[:, order]
        residuals = true_residual_norms(A, vectors, values, AX=AX[:, order])
        threshold = residual_threshold(values, tol, norm_A)
        return values, vectors, residuals, threshold, residuals <= threshold

    status, inner_message, n_iter = SolveStatus.CONVERGED, "", start.n_iter
    values = vectors = residuals = converged = None
    rounds = n_filtered = 0
    for rounds in range(1, REFINE_ROUNDS + 2):
        result = inner(P, k, which="LA", tol=tol_in, max_iter=max(1, v.max_iter - n_iter), X0=X_start, seed=seed,
                       tracker=relay, block_size=block_size, max_basis=max_basis, copy_check=copy_check, polynomial=0,
                       **lanczos_kwargs)
        relay.offset += result.n_iter
        n_iter += result.n_iter
        status, inner_message = result.status, result.message
        if result.eigenvectors.shape[1] == 0:
            break
        values, vectors, residuals, threshold, converged = on_a(result.eigenvectors)
        # A residual that misses tol after a converged run on p(A) is mostly made of the damped
        # directions (their share of a residual of p(A) maps to A's larger by up to
        # |theta - far end| / (p(theta) - 1)); each filtered step p(A) X divides it by at least
        # p(theta_k) > 1, for k (d + 1) products, far fewer than another run.
        stopped = False
        for _ in range(FILTER_STEPS if status is SolveStatus.CONVERGED else 0):
            if bool(converged.all()):
                break
            values, vectors, residuals, threshold, converged = on_a(P.matmat(vectors))
            n_filtered += 1
            relay.offset += 1
            n_iter += 1
            stopped = monitor.record(relay.offset, values, residuals, estimated=False, n_converged=int(converged.sum()),
                                     extras={"phase": "filter", "degree": degree})
            if stopped:
                status = SolveStatus.STOPPED
                break
        if stopped or status is not SolveStatus.CONVERGED or bool(converged.all()):
            break
        if rounds > REFINE_ROUNDS or tol_in <= 10 * eps:
            status = SolveStatus.MAX_ITER
            inner_message = (f"Lanczos on p(A) converged to tol {tol_in:.1e} but {int((~converged).sum())} true "
                             f"residuals of A still miss tol after {rounds} rounds. {inner_message}")
            break
        missing = float((residuals / threshold).max())
        tol_in = max(tol_in / (4.0 * missing), 10 * eps)
        X_start = vectors
    if values is None:
        return _plain(monitor, inner, v, start, seed=seed, block_size=block_size, max_basis=max_basis,
                      copy_check=copy_check, reason="the run on p(A) returned no Ritz vectors", **lanczos_kwargs)
    assert vectors is not None and residuals is not None and converged is not None
    if status is SolveStatus.CONVERGED and not bool(converged.all()):
        status = SolveStatus.MAX_ITER
    end = "largest" if side == 1 else "smallest"
    message = (f"Chebyshev acceleration: Lanczos on p(A) = T_{degree} of A with [{low:.6g}, {high:.6g}] damped "
               f"(from the Gershgorin bound to the {guard}-th Ritz value of a {start.n_iter}-step start on A), "
               f"whose {end} eigenvalues are A's; {A.n_matvec} products with A in all ({start.n_matvec} in the start)"
               f"{f', {rounds} rounds' if rounds > 1 else ''}"
               f"{f', {n_filtered} filtered step(s) p(A) X on the returned vectors' if n_filtered else ''}. Eigenvalues are Rayleigh quotients of A, residuals true "
               f"residuals of A. The run on p(A): {inner_message}")
    return monitor.finish(eigenvalues=values, eigenvectors=vectors, residual_norms=residuals, converged=converged,
                          n_iter=n_iter, status=status, message=message.strip(), norm_estimate=norm_A)


def _first_tolerance(P: ChebyshevOperator, theta: np.ndarray, tol: float, far: float, norm_A: float,
                     eps: float) -> float:
    """The tolerance of the run on p(A) that should meet ``tol`` on A, from the start's Ritz values.

    A residual r_p of p(A) at mu = p(theta) maps to one of A at most ``max(1 / p'(theta),
    |theta - far| / (mu - 1))`` times as large (the near directions to first order, the damped ones
    exactly), and A's threshold is ``tol max(|theta|, sqrt(eps) ||A||)`` against ``tol_in |mu|``."""
    mu = P.value(theta)
    spread = np.abs(theta - far) / np.maximum(mu - 1.0, 1e-300)
    factor = np.maximum(1.0 / P.slope(theta), spread)
    scale = np.maximum(np.abs(theta), math.sqrt(eps) * norm_A)
    wanted = tol * scale / (np.abs(mu) * factor)
    return float(min(tol, max(10 * eps, float(wanted.min()))))


def _plain(monitor: Monitor, inner: Callable[..., EigenResult], v: Validated, start: EigenResult, *,
           seed: int | None, block_size: int | None, max_basis: int | None, reason: str,
           **lanczos_kwargs: Any) -> EigenResult:
    """Plain Lanczos on A from the start's vectors, where the polynomial cannot be used (``reason``:
    for the message)."""
    relay = _Relay(monitor, None)
    relay.offset = start.n_iter
    result = inner(v.operator, v.k, which=v.which, tol=v.tol, max_iter=max(1, v.max_iter - start.n_iter),
                   X0=start.eigenvectors, seed=seed, tracker=relay, block_size=block_size, max_basis=max_basis,
                   polynomial=0, **lanczos_kwargs)
    return monitor.finish(eigenvalues=result.eigenvalues, eigenvectors=result.eigenvectors,
                          residual_norms=result.residual_norms, converged=result.converged,
                          n_iter=start.n_iter + result.n_iter, status=result.status,
                          message=f"Chebyshev acceleration skipped ({reason}); plain Lanczos from the start's vectors. "
                                 f"{result.message}".strip())
