"""Symmetric (block) Lanczos with thick restart, three re-orthogonalization modes and ghost detection.

The method
----------
Lanczos (1950) builds an orthonormal basis ``V = [v_1 .. v_m]`` of the Krylov space
``span{v_1, A v_1, ..., A^(m-1) v_1}`` with a three-term recurrence
``beta_j v_(j+1) = A v_j - alpha_j v_j - beta_(j-1) v_(j-1)``; the projected matrix
``T_m = V^T A V`` is tridiagonal and its eigenpairs (theta_i, s_i) give Ritz pairs
``(theta_i, V s_i)`` whose residual norm is ``|beta_m e_m^T s_i|`` (Golub & Van Loan,
Matrix Computations, 4th ed., 10.1). That estimate is free, so every iteration records it
(``estimated=True``) after a Rayleigh-Ritz step on the small projected matrix (LAPACK
``syevd`` on at most ``max_basis`` rows). The *true* residuals ``||A x - theta x||`` are
computed when the estimates say "converged" and at the end; only they decide
``converged`` and the CONVERGED status. With ``products="stored"`` (the default except for
sparse CPU matrices) they cost no matvec: the products ``A V`` are kept next to the basis
(each row an actual application of A) and combined with the Ritz coefficients; a pair whose
residual lies within the rounding of those combinations of its threshold is re-checked with
a fresh product. Otherwise each check applies A to the k Ritz vectors (k matvecs).

* **Block start.** With ``block_size = b > 1`` the recurrence runs on blocks of b vectors
  (block Lanczos, Golub & Underwood 1977): T is banded, the Ritz residual is
  ``||R_m S_i[last b rows]||`` with the b x b "beta" block ``R_m``, and new blocks are
  orthonormalized by Cholesky QR (repeated once when ill-conditioned). A single-vector
  Krylov space contains one direction of each eigenspace only, so a single-vector method
  (ARPACK; PRIMME with its default block size 1) returns one copy of a double eigenvalue
  and then the next value: on the 2-D Laplacian its top-10 set is wrong while every
  residual looks perfect (../shared/PEERS.md, "Multiplicity"). A block of b vectors sees
  multiplicities up to b. **Default: b = 1 for k = 1** (the largest eigenvalue is found
  whatever its multiplicity, and one vector needs the fewest matvecs) **and b = 2 for
  k >= 2** (catches the doubles of the Laplacian and other symmetric geometries). The
  alternative, single-vector Lanczos plus a deflated restart to look for missing copies,
  was rejected: on the n = 10^4 Laplacian, k = 10 LA, the single-vector run alone needs
  ~470 matvecs and the search for the ~5 missing copies would need a run of its own,
  while b = 2 finds everything in 758 (ARPACK: 704 with the wrong set; PRIMME with block
  size 2: 1657). Set ``block_size`` to the largest multiplicity you expect.
* **Thick restart** (Wu & Simon 2000; Stathopoulos, Saad & Wu 1998). The basis holds at
  most ``max_basis`` vectors, so memory is O(n * max_basis). When it is full the method
  keeps ``L`` Ritz vectors ``Y = V S_L`` (the wanted ones first) and the last block
  ``Q_(m+1)``; ``A Y = Y Theta + Q_(m+1) R_m S_L[last rows]`` still holds, so the projected
  matrix restarts as ``diag(Theta)`` plus an "arrow" coupling and Lanczos continues from
  ``Q_(m+1)``: no extra matvec, no information about the kept directions lost
  (mathematically the same as implicit restarts with exact shifts, Wu & Simon 2000 sec. 2).
  ``L`` maximizes ``(m - L) * sqrt(gamma_L)``, ``gamma_L = |theta_t - theta_(L+1)| /
  |theta_(L+1) - theta_far|`` (the Chebyshev rate of the first unconverged wanted value
  ``theta_t`` over the next cycle; dynamic thick restart, Stathopoulos, Saad & Wu 1998,
  Yamazaki et al. 2010) over ``k <= L <= k + (m - k) / 2``.
* **Locking** (soft): converged wanted pairs stay among the kept Ritz vectors (they keep
  improving and cannot be lost) and stop being targets; the restart rule aims at the
  first unconverged one.
* **Re-orthogonalization.** In floating point the Lanczos vectors lose orthogonality
  exactly along converged Ritz vectors (Paige 1976), which then converge again: *ghost*
  copies of a simple eigenvalue.

  - ``"full"``: after the local three-term (or arrow) step, the new vector is
    measured against the whole basis (``c = V^T w``, GEMVs) and corrected with classical
    Gram-Schmidt, repeated once when the norm drops below 1/sqrt(2) of its value (DGKS
    "twice is enough", Daniel, Gragg, Kaufman & Stewart 1976). When the measured overlap
    is already below 64 eps the correction is skipped (it would move w by its own rounding
    error; 50-70 % of the steps on the Laplacian). Orthogonality stays at ~1e-14. Cost:
    1-2 passes over V per step (ARPACK's DGKS: 2-4), memory-bound.
  - ``"partial"`` (Simon 1984; the default): Simon's omega recurrence, written for the projected matrix
    of a thick-restarted (block) basis, estimates ``V^T v_(j+1)`` with O(m^2) small work
    and no pass over V; the new block is re-orthogonalized only when the estimate exceeds
    sqrt(eps) (semi-orthogonality: the Ritz values are still accurate to O(eps ||A||)). At
    a restart the kept Ritz vectors are re-orthonormalized (Cholesky QR, with their exact
    Rayleigh quotient rebuilt from the Krylov relation) only when the carried loss bound
    nears sqrt(eps). Cheapest per step when the operator is cheap (same matvecs as "full",
    about half its time at n = 10^5). Semi-orthogonality limits the attainable true
    residual: when the estimates meet ``tol`` but the true residuals do not, the run restarts
    from a re-orthonormalized basis and continues with "full" (``result.message`` says so;
    measured on a triple eigenvalue at tol 1e-10, where "partial" alone stalled at 3e-10).
    The returned vectors get a closing Rayleigh-Ritz step on their span (no matvec; see
    ``_polish``), so they are orthonormal to rounding.
  - ``"none"``: plain Lanczos, for teaching: ghosts appear. The exact overlaps
    ``V^T v_(j+1)`` are still measured every step (one GEMV pass, as much as one
    Gram-Schmidt pass: the price of an honest orthogonality-loss curve); they also tell
    ghosts (a Ritz vector parallel to a converged one) from true multiple eigenvalues
    (orthogonal Ritz vectors). ``max_basis`` is not capped at n in this mode: plain
    Lanczos can run for more than n steps. What is kept is *local* orthogonality, the
    condition of Paige's analysis that every Ritz value stays inside the spectrum: a step
    that cancels most of ``A q`` gets one more pass against the rows it coupled to, a
    direction below ``sqrt(eps) ||A||`` counts as a breakdown, and a thick restart starts
    from an orthonormalized basis of the kept Ritz vectors (see ``_restart_plain``); the
    loss curve therefore drops at each restart.
* **Ghosts** are flagged in ``ghost_mask`` when the loss exceeds sqrt(eps) and a Ritz value
  lies within ``sqrt(eps) ||A||`` of a converged one (with the smaller residual estimate)
  whose Ritz vector it duplicates. Ghosts never count as converged; the result skips them
  and returns k distinct pairs with true residuals (hessian-eigenthings 1.0.0a5 reports
  them as converged).
* **Breakdown** (``beta ~ 0``, an invariant subspace): the block continues with fresh
  random vectors orthogonal to the basis (coupling 0), so the other eigenvalues are still
  found; ``result.message`` reports it. When the basis spans the whole space (small n) the
  projection is exact and the solve ends (BREAKDOWN if the tolerance is below what
  rounding allows).

Each iteration records: ``ritz_values`` / ``residual_norms`` (estimates) of the best k
Ritz values in ``which`` order (fewer in the first steps, while the basis has fewer than k
vectors), ``all_ritz_values`` (every Ritz value: the "staircase"), ``ghost_mask`` and
``orthogonality_loss``: "full", the measured overlap when no correction was needed, else
the CGS rounding bound ``p eps ||w_before|| / ||w_after||``; "partial", the largest omega
estimate; "none", the exact ``max |V^T V - I|``.

Performance notes (``python -m explorer.bench``, one thread, float64, tol 1e-6, CPU seconds
on the shared 2-core host; ARPACK = ``scipy.sparse.linalg.eigsh``):

* every per-step product is a matrix-vector product (small GEMMs went to a multi-threaded
  MKL path that stalled for milliseconds on the busy host), and the projected eigenproblem
  runs on one torch thread;
* 2-D Laplacian n = 10^5 (2026-11-21, "partial" / "full"): k = 1 LA 800 matvecs in 2.0 /
  4.0 s (ARPACK 1261 / 5.3 s); k = 1 SA 1262 / 2.7 / 5.6 s (ARPACK 3971 / 13.5 s); k = 10 LA
  2746 / 7.7 / 17.1 s (ARPACK 4860 / 16.2 s and a wrong set, PRIMME 2439 / 7.9 s and a wrong
  set); k = 10 SA 3532 / 11.7 / 23.4 s (ARPACK capped at 30 s, PRIMME 5713 / 11.9 s);
* n = 10^4: 35 % fewer matvecs than ARPACK at k = 1 but 1.5-2.2x its time (0.06-0.15 s):
  with a 0.03 ms matvec, the per-iteration Python and Rayleigh-Ritz work (~0.4 ms, the price
  of a record with fresh Ritz values and residual estimates every step) dominates. At k = 10
  LA the block needs 758 matvecs against ARPACK's 704 (which returns the wrong set), 2.5-3.4x
  its time; k = 10 SA 0.25x its matvecs, 0.6-0.8x its time. (A prototype that solved the
  projected problem only every 8th step reached ARPACK's time at k = 1, not at k = 10 LA,
  at the price of the record per step; not adopted.)
* dense n = 1000 / 4000, k = 10 LA (stored products: no verification matvecs): 28 / 136 / 60
  and 28 / 138 / 62 matvecs on the geometric / small-gap / cluster spectra against ARPACK's
  22 / 103 / 56 and 28 / 115 / 56 (the block of 2; with ``block_size=1`` 22 / 95 / 54 at
  n = 1000), 1.1-1.3x its time at n = 4000, 4-7x at n = 1000 (solves of 6-20 ms).

Defaults and why
----------------
* ``tol=1e-6``: relative residual (``residual_threshold``, the ARPACK / PRIMME criterion).
* ``max_basis = max(40, 6 k + 10 b)``, capped at n (see ``default_max_basis`` for the
  measurements behind it). Larger bases need fewer matvecs but each step costs O(n m);
  for expensive operators (Hessian-vector products) raise it.
* ``block_size``: 1 for k = 1, else 2 (above).
* ``reorthogonalization="auto"``: "partial" in float64, "full" in float32.

  - float64, "partial": the same matvecs as "full" (the estimates and the true-residual
    checks decide convergence either way) in about half the time where the passes over the
    basis dominate (2-D Laplacian n = 10^5: k = 10 LA 7.7 s against 17.1 s, k = 1 SA 2.7 s
    against 5.6 s); with the switch to "full" when semi-orthogonality limits the accuracy
    (above), a sweep of small dense problems (n = 3..41, k 1-3, LA/SA, b 1-3, tol 1e-6 and
    1e-10) had no failure. At n = 10^4, k = 1, "full" is ~10-15 % faster (Simon's O(m^2)
    estimate per step costs more than one pass over a short basis there).
  - float32, "full": semi-orthogonality there is sqrt(eps) = 3e-4, so "partial" often has to
    switch, and on small eigenvalues it then stalls at the rounding level where "full" does
    not. Measured (2-D Laplacian, float32, seed 0): n = 10^4, k = 1 SA, tol 1e-3: "partial"
    BREAKDOWN after 555 matvecs, "full" CONVERGED with 261; n = 10^5, k = 1 SA: 1713 against
    913 matvecs (4.6 s against 2.9 s); n = 10^5 LA, k = 1 and 10: the same matvecs and time
    (1.0 / 5.5 s) in both modes; 1-D Laplacian n = 500, SA, 8 seeds: 5016 against 4062 matvecs.
* ``products="auto"``: stored except for sparse CPU matrices (``products``).
* ``max_iter = 10000`` Lanczos steps; one step applies A to one block (b matvecs).

References:
    C. Lanczos, An iteration method for the solution of the eigenvalue problem of linear
    differential and integral operators, J. Res. Nat. Bur. Standards 45 (1950).
    C. C. Paige, Error analysis of the Lanczos algorithm for tridiagonalizing a symmetric
    matrix, J. Inst. Math. Appl. 18 (1976).
    H. D. Simon, The Lanczos algorithm with partial reorthogonalization, Math. Comp. 42 (1984).
    G. H. Golub and R. Underwood, The block Lanczos method for computing eigenvalues (1977).
    J. W. Daniel, W. B. Gragg, L. Kaufman and G. W. Stewart, Reorthogonalization and stable
    algorithms for updating the Gram-Schmidt QR factorization, Math. Comp. 30 (1976).
    K. Wu and H. Simon, Thick-restart Lanczos method for large symmetric eigenvalue
    problems, SIAM J. Matrix Anal. Appl. 22 (2000).
    A. Stathopoulos, Y. Saad and K. Wu, Dynamic thick restarting of the Davidson and the
    implicitly restarted Arnoldi methods, SIAM J. Sci. Comput. 19 (1998).
    G. H. Golub and C. F. Van Loan, Matrix Computations, 4th ed., sections 10.1-10.3.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np
import torch
from scipy.linalg import lapack as _lapack

from explorer.tracking.results import EigenResult, SolveStatus
from explorer.solvers._common import (
    ROUNDING_LEVEL,
    WHICH,
    Monitor,
    ProductUnits,
    UnitsOperator,
    check_int,
    make_generator,
    nonfinite_message,
    random_block,
    residual_threshold,
    rounding_level,
    rounding_note,
    validate_common,
)
from explorer.solvers.registry import ParamSpec, SolverSpec, register_solver
from explorer.tracking import Tracker

__all__ = ["lanczos", "default_block_size", "default_max_basis"]

REORTHOGONALIZATION = ("auto", "full", "partial", "none")
PRODUCTS = ("auto", "stored", "recomputed")
# products="auto" keeps A V only while that buffer stays below this size.
_STORE_LIMIT_BYTES = 1 << 30
DEFAULT_MAX_ITER = 10_000
# DGKS: repeat the Gram-Schmidt pass when it removed more than 1 - 1/sqrt(2) of the norm.
_DGKS_ETA = 1.0 / math.sqrt(2.0)
# Restart products with n * p * L below this many multiply-adds run as GEMVs (see _dots).
_GEMM_WORK = 4_000_000
# "partial": a restart re-orthonormalizes the kept Ritz vectors (Cholesky QR) only when the
# estimated loss of the basis exceeds this share of sqrt(eps). Below it the basis is still
# semi-orthogonal, which is all Simon's theorem needs (the projected matrix is then the
# Rayleigh quotient of an orthonormal basis of the same space up to O(eps ||A||)).
_CLEAN_LEVEL = 0.1
# "full": skip the Gram-Schmidt correction when the measured overlap is below 64 eps (the
# level CGS2 itself reaches on a basis of ~64 vectors) and below what the tolerance allows
# (see run()); measured on the 2-D Laplacian (float64) this skips 50-70 % of the
# corrections with the loss staying below 1e-13.
_SKIP_FACTOR = 64.0
# Failed true-residual checks in a row, with the residuals near the rounding level and not
# halved, after which the solve ends (see _Lanczos._stalled_at_rounding).
_STALL_CHECKS = 3


def default_block_size(k: int) -> int:
    """1 for a single eigenpair, 2 otherwise (sees double eigenvalues)."""
    return 1 if k == 1 else 2


def default_max_basis(k: int, block_size: int, n: int) -> int:
    """``max(40, 6 k + 10 b)`` capped at n: 40 for k = 1, 80 for k = 10 with b = 2.

    Measured on the 2-D Laplacian n = 10^5 (float64, tol 1e-6, one thread): k = 1 LA needs
    1590 / 958 / 770 / 733 matvecs with m = 20 / 30 / 40 / 60 (3.1 s CPU at 40, 3.9 s at
    60); k = 10 LA (b = 2) 4612 / 3492 / 2746 / 2378 with m = 50 / 60 / 80 / 100 (14.3 s CPU
    at 80, 18.2 s at 100). Beyond that, the O(n m) work per step outgrows the saved matvecs
    for cheap operators; for expensive ones (Hessian-vector products) a larger basis pays.
    """
    return min(n, max(40, 6 * k + 10 * block_size))


# ----------------------------------------------------------------------------------------
# Small helpers (numpy float64 on the projected matrices)
# ----------------------------------------------------------------------------------------
def _which_order(theta: np.ndarray, which: str) -> np.ndarray:
    """Indices putting ``theta`` (ascending, as eigh returns it) in ``which`` order, best first."""
    if which == "LA":
        return np.arange(len(theta) - 1, -1, -1)
    if which == "SA":
        return np.arange(len(theta))
    if which == "LM":
        return np.argsort(-np.abs(theta), kind="stable")
    ascending = np.argsort(theta, kind="stable")  # BE: alternate largest / smallest
    out = np.empty_like(ascending)
    lo, hi = 0, len(ascending) - 1
    for pos in range(len(ascending)):
        if pos % 2 == 0:
            out[pos] = ascending[hi]
            hi -= 1
        else:
            out[pos] = ascending[lo]
            lo += 1
    return out


# Largest share of the free basis (m - k) a restart may keep: keeping almost everything
# leaves short cycles whose restart GEMMs cost more than they save. Measured on the 2-D
# Laplacian n = 10^5, k = 10 LA, m = 60: cap 0.7 -> 3690 matvecs / 22.0 s CPU, 0.5 ->
# 3492 / 17.2 s; m = 80: cap 0.5 -> 2746 / 14.3 s, 0.4 -> 2870 / 16.2 s.
_KEEP_CAP = 0.5


def _choose_keep(theta_ord: np.ndarray, first_target: int, k: int, m: int, b: int, which: str) -> int:
    """How many Ritz vectors to keep at a restart (``theta_ord`` in ``which`` order, best first).

    LA / SA: maximize ``(m - L) * sqrt(gamma_L)``, ``gamma_L = |theta_t - theta_(L+1)| /
    |theta_(L+1) - theta_far|`` over ``k <= L <= k + 0.5 (m - k)`` (see the module
    docstring; measured on the 2-D Laplacian, the cap saves restarts at no cost in
    matvecs). LM / BE (the wanted values sit at both ends, the one-sided Chebyshev model
    does not apply): keep ``k + (m - k) / 2``.
    """
    q = len(theta_ord)
    low = min(k, q - 1)
    high = min(q - 1, m - 2 * b, int(k + _KEEP_CAP * (m - k)))
    if high <= low:
        return max(1, min(low, m - b))
    if which not in ("LA", "SA"):
        return int(min(high, max(low, k + (m - k) // 2)))
    t = theta_ord[min(first_target, q - 1)]
    far = theta_ord[-1]
    cand = np.arange(low, high + 1)
    nxt = theta_ord[cand]  # theta_(L+1): the first value not kept
    spread = np.abs(nxt - far)
    # floor the spread at rounding level (a tiny floor overflowed the division when the far
    # end coincided with theta_(L+1), e.g. a spectrum of few distinct values)
    scale = max(float(np.abs(theta_ord).max()), np.finfo(np.float64).tiny)
    gamma = np.abs(t - nxt) / np.maximum(spread, np.finfo(np.float64).eps * scale)
    score = (m - cand) * np.sqrt(gamma)
    return int(cand[int(np.argmax(score))])


def _np(t: torch.Tensor) -> np.ndarray:
    """A float64 numpy view (or copy) of a small tensor."""
    if t.dtype == torch.float64 and t.device.type == "cpu":
        return t.numpy()
    return t.detach().to("cpu", torch.float64).numpy()


def _t(a: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """A small numpy matrix as a contiguous tensor with ``like``'s dtype and device."""
    return torch.from_numpy(np.ascontiguousarray(a)).to(device=like.device, dtype=like.dtype)


def _dots(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """``A @ B.T`` for row blocks A (a, n), B (c, n) with few rows on one side, as GEMVs.

    torch sends small GEMMs to MKL, whose OpenMP team stalls for milliseconds per call when
    torch has more than one thread on a busy host (measured: a (2 x 100) @ (100 x 40)
    product took 9 ms); matrix-vector products do not, and they read the basis at the
    same memory speed. So every per-step product loops over the thin side.
    """
    if A.shape[0] <= B.shape[0]:
        return torch.stack([B.mv(A[i]) for i in range(A.shape[0])]) if A.shape[0] else A.new_zeros(0, B.shape[0])
    return torch.stack([A.mv(B[i]) for i in range(B.shape[0])], dim=1) if B.shape[0] else A.new_zeros(A.shape[0], 0)


def _combine(M: torch.Tensor, X: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``M @ X`` for a small coefficient matrix M (r, q) and rows X (q, n), as r GEMVs."""
    if out is None:
        out = X.new_empty(M.shape[0], X.shape[1])
    XT = X.T
    for i in range(M.shape[0]):
        torch.mv(XT, M[i], out=out[i])
    return out


def _sparse_on_cpu(op: Any) -> bool:
    """A sparse matrix on the CPU: a matvec is cheap (scipy's CSR kernel), columns go one by one
    (``_Lanczos.apply``) and products are recomputed rather than stored (``products="auto"``)."""
    return getattr(op, "kind", "") == "sparse" and op.device.type == "cpu"


def _mix(M: torch.Tensor, X: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``M @ X`` for the restart-sized products (kept Ritz vectors and their products): one
    GEMM (reads X once) when ``n * r * q`` reaches ``_GEMM_WORK``, else GEMVs (``_combine``)."""
    if X.shape[1] * M.shape[0] * M.shape[1] >= _GEMM_WORK:
        return torch.mm(M, X, out=out) if out is not None else torch.mm(M, X)
    return _combine(M, X, out=out)


def _sub_combine(W: torch.Tensor, M: torch.Tensor, X: torch.Tensor) -> None:
    """``W -= M @ X`` in place (rows), as GEMVs."""
    XT = X.T
    for i in range(M.shape[0]):
        W[i].addmv_(XT, M[i], alpha=-1.0)


def _small_cholesky(G: np.ndarray) -> np.ndarray | None:
    """Lower Cholesky factor of a tiny SPD matrix in plain Python (numpy.linalg costs ~20 us a call
    on a 2 x 2); None when G is not numerically positive definite."""
    b = G.shape[0]
    L = np.zeros((b, b))
    for i in range(b):
        for j in range(i + 1):
            acc = float(G[i, j]) - sum(L[i, t] * L[j, t] for t in range(j))
            if i == j:
                if acc <= 0.0:
                    return None
                L[i, i] = math.sqrt(acc)
            else:
                L[i, j] = acc / L[j, j]
    return L


def _small_lower_inverse(L: np.ndarray) -> np.ndarray:
    """Inverse of a tiny lower-triangular matrix (forward substitution on the identity)."""
    b = L.shape[0]
    X = np.zeros((b, b))
    for col in range(b):
        for i in range(col, b):
            acc = (1.0 if i == col else 0.0) - sum(L[i, t] * X[t, col] for t in range(col, i))
            X[i, col] = acc / L[i, i]
    return X


class _OneThread:
    """Run small dense LAPACK calls on one torch thread (process-wide, reference counted).

    The projected matrix (at most ``max_basis`` square) is decomposed every iteration. On a
    busy host a multi-threaded call waits for descheduled threads: measured on the shared
    2-core machine (load ~8), ``torch.linalg.eigh`` of a 100 x 100 matrix took 620 ms with
    two torch threads and 1.1 ms with one; scipy's and numpy's OpenBLAS LAPACK (threaded,
    not controllable without threadpoolctl) 90-140 ms. ``torch.set_num_threads`` is global,
    so concurrent solves share one counter and the first to enter saves the setting, the
    last to leave restores it; meanwhile other threads' torch ops run on one thread.
    """

    _lock = threading.Lock()
    _depth = 0
    _saved = 1

    def __enter__(self) -> None:
        with _OneThread._lock:
            if _OneThread._depth == 0:
                _OneThread._saved = torch.get_num_threads()
                if _OneThread._saved != 1:
                    torch.set_num_threads(1)
            _OneThread._depth += 1

    def __exit__(self, *exc: object) -> None:
        with _OneThread._lock:
            _OneThread._depth -= 1
            if _OneThread._depth == 0 and _OneThread._saved != 1:
                torch.set_num_threads(_OneThread._saved)


def _eigh(H: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenpairs (ascending) of the small symmetric float64 projected matrix, on one thread."""
    with _OneThread():
        theta, S = torch.linalg.eigh(torch.from_numpy(H))
    return theta.numpy(), S.numpy()


class _Lanczos:
    """State of one thick-restart (block) Lanczos solve. Rows of ``Vt`` are basis vectors."""

    def __init__(self, v: Any, monitor: Monitor, *, mode: str, m: int, b: int,
                 generator: torch.Generator, store_products: bool = False) -> None:
        self.v = v
        # Products are divided by 2^e (exact) when the first one is so large or so small that
        # squares of its entries would overflow or underflow (ProductUnits); the monitor reports
        # values and residuals back in A's units.
        self.units = monitor.units = ProductUnits(v.operator.dtype)
        self.op = UnitsOperator(v.operator, self.units)
        self.monitor = monitor
        self.mode = mode
        self.k, self.which, self.tol = v.k, v.which, v.tol
        self.n = self.op.shape[0]
        self.dtype, self.device = self.op.dtype, self.op.device
        self.eps = float(torch.finfo(self.dtype).eps)
        self.tiny = float(torch.finfo(self.dtype).tiny)
        self.m, self.b = m, b
        self.generator = generator
        cap = m + b
        self.Vt = torch.empty(cap, self.n, dtype=self.dtype, device=self.device)
        self.Vt_spare: torch.Tensor | None = None  # swap buffer for restarts (lazy)
        # products="stored": AVt[i] = A Vt[i] for every row that has been multiplied (the
        # current block included), carried through restarts with the same coefficients.
        self.AVt = torch.empty_like(self.Vt) if store_products else None
        self.AVt_spare: torch.Tensor | None = None
        self.av_drift = 0.0  # bound on the rounding the restart combinations left in AVt
        self.H = np.zeros((cap, cap))
        # "none": exact Gram matrix V^T V; "partial": omega estimates (V^T V - I).
        self.G = np.eye(cap) if mode == "none" else None
        self.Omega = np.zeros((cap, cap)) if mode == "partial" else None
        self.anorm = 0.0
        self.loss = 0.0
        self.tol_factor = 1.0  # tightened when a true-residual check fails
        self.n_restarts = 0
        self.n_reorth = 0  # partial: how many blocks were re-orthogonalized
        self.n_breakdowns = 0
        self._stall_worst: float | None = None  # see _stalled_at_rounding
        self._stall_checks = 0
        self.n_cleanups = 0  # "partial": restarts that re-orthonormalized the kept Ritz vectors
        self._kept_level = 0.0  # "partial": bound on ||Y^T Y - I||_2 of the kept block
        self._cycle_start = 0  # "partial": first basis row created in the current cycle
        self.n_skipped = 0  # "full": Gram-Schmidt corrections skipped (overlap already at eps level)
        self.switched_at: int | None = None  # "partial": iteration where the run switched to "full"
        self.skip_level = _SKIP_FACTOR * self.eps  # "full": largest overlap left uncorrected
        # Basis rows of the current Krylov "segment": all of them until a breakdown; after one,
        # only the rows grown from the fresh random vector (see _segment_settled).
        self.segment = np.ones(cap, dtype=bool)
        self.previous_segment = np.zeros(cap, dtype=bool)
        self._iteration = 0
        self._segment_started = 0
        self._wait_since: int | None = None
        # scipy's CSR kernel with several right-hand sides measured ~1.3x slower per column
        # than single-column products on one thread (csr_matvecs), so sparse CPU operators are
        # applied column by column; every other operator gets the block (one GEMM / HVP batch).
        self.columnwise = _sparse_on_cpu(self.op)

    # -- operator -------------------------------------------------------------------------
    def apply(self, X: torch.Tensor) -> torch.Tensor:
        """``(A X^T)^T`` (in ``self.units``) for a block of rows X (c, n); counts c matvecs."""
        if X.shape[0] == 1 or self.columnwise:
            out = X.new_empty(X.shape)
            if self.op.matvecs_into(X, out):  # (scipy CSR on the CPU: the kernel writes the rows)
                return out
            for i in range(X.shape[0]):
                out[i] = self.op.matvec(X[i])
            return out
        return self.op.matmat(X.T).T.contiguous()

    # -- orthonormalization of a new block ------------------------------------------------
    def breakdown_floor(self, scale: float | None = None) -> float:
        """Norm below which a new direction counts as zero (an invariant subspace).

        ``scale``: the size of the vectors being tested, ``||A||`` (the default) for a block
        that came out of a product with A; 1 for rows that were already normalized (a
        relative floor: an absolute one made every unit vector "zero" once ||A|| passed
        1 / (100 eps) ~ 4.5e13).

        ``100 eps ||A||`` with re-orthogonalization. In "none" ``sqrt(eps) ||A||``: there the
        next vector is normalized from what the local step left, and a direction that small
        is mostly rounding from the whole (non-orthogonal) basis; normalized, its overlaps
        with vectors two or more steps back are O(1) (Paige's omega grows like
        ``eps ||A|| / beta``) and the projected matrix no longer bounds the spectrum
        (measured: Ritz values 5x outside it at n = 19, b = 3, once the Krylov space ran out).
        """
        scale = max(self.anorm if scale is None else scale, self.tiny)
        return math.sqrt(self.eps) * scale if self.mode == "none" else 100.0 * self.eps * scale

    def _random_orthogonal(self, count: int, against: torch.Tensor) -> torch.Tensor:
        """``count`` random rows orthonormal to the rows of ``against`` (CGS2); may return fewer."""
        Z = random_block(self.n, count, self.generator, dtype=self.dtype, device=self.device).T.contiguous()
        if self.mode == "none" and against.shape[0]:
            # The basis of plain Lanczos is not orthonormal (and may hold more than n rows), so
            # Gram-Schmidt against it is no projection: use an orthonormal basis of its span
            # (SVD, O(n p^2), only at a breakdown). Otherwise, once the Krylov space has run
            # out, the "fresh" vector overlaps the block it follows and the next step's local
            # coupling (assumed 0) is wrong by that overlap.
            U, sv, _ = torch.linalg.svd(against.T, full_matrices=False)
            against = U[:, sv > math.sqrt(self.eps) * sv[0]].T.contiguous()
        out = []
        for i in range(count):
            z = Z[i]
            basis = torch.cat([against] + [r.unsqueeze(0) for r in out]) if (against.shape[0] or out) else against
            for _ in range(2):
                if basis.shape[0]:
                    z = z - basis.T.mv(basis.mv(z))
            nz = float(torch.linalg.vector_norm(z))
            if nz <= 1e3 * self.eps * math.sqrt(self.n):  # the basis spans (numerically) everything
                break
            out.append(z / nz)
        if not out:
            return torch.empty(0, self.n, dtype=self.dtype, device=self.device)
        return torch.stack(out)

    def orthonormalize(self, W: torch.Tensor, p: int, local_from: int = 0,
                       scale: float | None = None) -> tuple[torch.Tensor, np.ndarray, int]:
        """``W = R^T Qn`` with orthonormal rows Qn (bn, n), R (bn, bc). Returns (Qn, R, replaced).

        Directions of W with norm below ``100 eps ||A||`` are an invariant subspace
        (breakdown): they get fresh random vectors orthogonal to the basis and a zero
        coupling, so the recurrence continues. ``local_from``: in "none" mode, the first
        basis row the local step coupled to (rows ``[local_from, p)``, see below). ``scale``:
        see ``breakdown_floor`` (rows that are not products with A pass their own size).
        """
        bc = W.shape[0]
        floor = self.breakdown_floor(scale)
        if bc == 1:
            beta = float(torch.linalg.vector_norm(W[0]))
            if beta > floor:
                return W / beta, np.array([[beta]]), 0
            Qn = self._random_orthogonal(1, self.Vt[:p])
            return Qn, np.zeros((Qn.shape[0], 1)), Qn.shape[0]
        gram = _np(_dots(W, W))
        d = np.sqrt(np.maximum(gram.diagonal(), 0.0))
        if d.min() > max(floor, 1e-4 * d.max()):
            # Cholesky QR: W = L Qn with G = W W^T = L L^T (one small GEMM instead of a
            # Householder QR of an n x b matrix). Its orthogonality error is ~eps cond(W)^2,
            # so a second pass (CholQR2) follows unless the block is already well conditioned.
            L1 = _small_cholesky(gram)
            dl = np.abs(L1.diagonal()) if L1 is not None else None
            # Equal row norms do not make a block full rank: parallel rows (the last block
            # when the Krylov space runs out, e.g. n odd with b = 2) pass the test above and
            # Cholesky "succeeds" on the Gram's rounding noise (pivot ~ eps ||W||^2, so
            # dl.min ~ sqrt(eps) dl.max); the new row is then that noise scaled up, far from
            # orthogonal to the basis. Only a clearly full-rank block (cond(W) < 1e4, well
            # inside CholQR2's ~1/sqrt(eps)) takes this path; the rest the rank-revealing one.
            if dl is not None and dl.min() > max(floor, 1e-4 * dl.max()):
                Qn = _combine(_t(_small_lower_inverse(L1), W), W)
                R = L1.T.copy()
                if dl.min() < 1e-2 * dl.max():
                    L2 = _small_cholesky(_np(_dots(Qn, Qn)))
                    if L2 is not None:
                        Qn = _combine(_t(_small_lower_inverse(L2), W), Qn)
                        R = L2.T @ R
                return Qn, R, 0

        def reveal(X: torch.Tensor, G: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
            # Directions U of X's Gram, kept by the norm of the combined vector U^T X (exact
            # to eps ||X||), not by the Gram eigenvalue (only exact to eps ||X||^2).
            _s2, Ux = _eigh(np.ascontiguousarray(G))
            Ux = Ux[:, ::-1].copy()  # descending; copies: torch refuses negative strides
            Zx = _t(Ux.T, X) @ X
            ok = np.flatnonzero(np.asarray(torch.linalg.vector_norm(Zx, dim=1).tolist()) > floor)
            return np.ascontiguousarray(Ux[:, ok]), Zx[torch.as_tensor(ok, dtype=torch.long, device=Zx.device)]

        U, Z = reveal(W, gram)  # W ~ U Z, rows of Z ~orthogonal
        r = U.shape[1]
        if r and p:
            # A direction of norm sigma << ||W|| comes from cancellation inside W: its overlap
            # with the basis (eps ||W|| after Gram-Schmidt, omega ||W|| in "partial") is
            # amplified by ||W|| / sigma, so project it out again (twice; the part dropped is
            # that remnant) and drop what is left below the floor (W = U_r Z = U_r U2 Z2).
            # "none" keeps its lost global orthogonality (that is the point of the mode) but
            # not a lost *local* one: against the rows the three-term step coupled to only.
            # Without that, the block that runs out of Krylov space (n = 13, b = 3) was
            # normalized rounding noise with O(1) overlap with the current block, and the
            # projected matrix grew eigenvalues 30-100x outside the spectrum.
            V = self.Vt[local_from:p] if self.mode == "none" else self.Vt[:p]
            for _ in range(2):
                _sub_combine(Z, _dots(Z, V), V)
            U2, Z = reveal(Z, _np(_dots(Z, Z)))
            U = np.ascontiguousarray(U @ U2)
            r = U.shape[1]
        rows: list[torch.Tensor] = []
        Rk = np.zeros((0, r))
        if r:
            Qc, Rkt = torch.linalg.qr(Z.T)
            rows.append(Qc.T)
            Rk = _np(Rkt)
        fresh = self._random_orthogonal(bc - r, torch.cat([self.Vt[:p]] + rows))
        if fresh.shape[0]:
            rows.append(fresh)
        Qn = torch.cat(rows) if rows else torch.empty(0, self.n, dtype=self.dtype, device=self.device)
        R = np.zeros((Qn.shape[0], bc))
        R[:r] = Rk @ U[:, :r].T  # W^T = [Q_k R_k, ~0] U^T
        return Qn.contiguous(), R, fresh.shape[0]

    # -- Gram-Schmidt against the basis -----------------------------------------------------
    def cgs(self, W: torch.Tensor, p: int, *, force: bool = True) -> tuple[np.ndarray | None, float]:
        """Classical Gram-Schmidt of the rows of W against ``Vt[:p]``, measured first.

        The pass first measures ``c = V^T w`` (one GEMM). When ``max |c| / ||w||`` is
        below ``_SKIP_FACTOR * eps`` (and not ``force``) the correction ``w -= V c`` would
        change w by about its own rounding error, so it is skipped (None is returned) and
        the measured value *is* the orthogonality of the new vector. Otherwise the
        correction is applied, and repeated once when the norm dropped below 1/sqrt(2) of
        its value (DGKS, "twice is enough"); the remaining overlap is then bounded by
        ``p eps ||w_before|| / ||w_after||`` (the rounding of one CGS pass against an
        orthonormal basis), which is what is returned.

        Returns:
            (coefficients added to the projected matrix or None, orthogonality of the result).
        """
        V = self.Vt[:p]
        c = _dots(W, V)  # (bc, p)
        cn = _np(c)
        nb = torch.linalg.vector_norm(W, dim=1).tolist()
        measured = float(np.abs(cn).max()) / max(min(nb), 1e-300)
        if not force and measured <= self.skip_level:
            self.n_skipped += 1
            return None, measured
        _sub_combine(W, c, V)
        na = torch.linalg.vector_norm(W, dim=1).tolist()
        ratio = max(x / max(a, 1e-300) for a, x in zip(na, nb))
        if ratio > 1.0 / _DGKS_ETA:
            c2 = _dots(W, V)
            _sub_combine(W, c2, V)
            cn = cn + _np(c2)
            n2 = torch.linalg.vector_norm(W, dim=1).tolist()
            ratio = max(x / max(a, 1e-300) for a, x in zip(n2, na))
        return cn, p * self.eps * ratio

    # -- the iteration ---------------------------------------------------------------------
    def start_block(self, X0: torch.Tensor | None) -> torch.Tensor:
        """b orthonormal start rows from X0 (n, c) columns (see ``lanczos``'s X0) or at random."""
        b = self.b
        if X0 is None:
            X = random_block(self.n, b, self.generator, dtype=self.dtype, device=self.device)
        elif X0.shape[1] > b:  # a random combination keeps every column's directions
            mix = torch.randn(X0.shape[1], b, generator=self.generator, dtype=torch.float64).to(self.dtype)
            X = X0 @ mix.to(self.device)
        elif X0.shape[1] < b:
            X = torch.cat([X0, random_block(self.n, b - X0.shape[1], self.generator, dtype=self.dtype,
                                            device=self.device)], dim=1)
        else:
            X = X0.clone()
        Xt = X.T.contiguous()
        size = float(torch.linalg.vector_norm(Xt, dim=1).max()) if Xt.numel() else 0.0
        Qn, _R, _ = self.orthonormalize(Xt, 0, scale=size)
        if Qn.shape[0] < b:  # a zero / dependent start: fill with random directions
            Qn = torch.cat([Qn, self._random_orthogonal(b - Qn.shape[0], Qn)])
        return Qn

    def run(self) -> EigenResult:
        k, which, m = self.k, self.which, self.m
        monitor = self.monitor
        eps = self.eps
        Q0 = self.start_block(self.v.X0)
        bc = Q0.shape[0]
        self.Vt[:bc] = Q0
        j, lo = 0, 0  # current block rows [j, j + bc); known couplings in columns [lo, j)
        theta = np.zeros(0)
        S = np.zeros((0, 0))
        est_all = np.zeros(0)
        order = np.zeros(0, dtype=np.int64)
        ghost = np.zeros(0, dtype=bool)
        R = np.zeros((0, 0))
        p = bc
        bn = 0
        iteration = 0
        status = SolveStatus.MAX_ITER
        message = ""
        next_check, check_gap = 0, 4
        while iteration < self.v.max_iter:
            iteration += 1
            self._iteration = iteration
            p = j + bc
            with np.errstate(invalid="ignore", over="ignore"):  # NaN / Inf products: tested just below
                if bc == 1:
                    R, bn = self._step_single(j, lo, iteration)
                else:
                    R, bn = self._step_block(j, p, lo, bc, iteration)
            if not math.isfinite(float(self.H[:p + bn, j:p].sum())):
                # NaN or Inf from the operator (an HVP that blew up, a bad callable): the rows
                # before this block and their projected matrix are still exact; report those.
                status = SolveStatus.BREAKDOWN
                message = nonfinite_message(f"Lanczos step {iteration}", self.monitor.n_matvec,
                                            "the Rayleigh-Ritz approximation from the basis built before it, "
                                            "with true residuals")
                iteration -= 1  # this step was not completed (and not recorded)
                p = j
                theta, S = _eigh(self.H[:p, :p]) if p else (np.zeros(0), np.zeros((0, 0)))
                est_all, ghost = np.full(p, np.nan), np.zeros(p, dtype=bool)
                order = _which_order(theta, which)
                break
            # Ritz pairs of the projected matrix and their residual estimates ||R S[last rows]||.
            theta, S = _eigh(self.H[:p, :p])
            top = max(-theta[0], theta[-1])
            if top > self.anorm:
                self.anorm = top
            if bn == 0:
                est_all = np.zeros(p)
            elif bn == 1 and bc == 1:
                est_all = abs(R[0, 0]) * np.abs(S[j])
            else:
                est_all = np.sqrt(((R @ S[j:p, :]) ** 2).sum(axis=0))
            order = _which_order(theta, which)
            thresh_all = self._thresholds(theta)
            ghost = self._ghosts(theta, S, est_all, thresh_all, p)
            wanted = order[~ghost[order]][:k] if ghost.any() else order[:k]
            conv_w = est_all[wanted] <= self.tol_factor * thresh_all[wanted]
            if len(wanted):
                # An overlap delta left in each of p vectors moves the Rayleigh quotient by up to
                # ~p delta ||A||; keep that 10x below the smallest wanted threshold (matters in
                # float32, where 64 eps ||A|| can exceed tol |theta|).
                self.skip_level = min(_SKIP_FACTOR * eps, 0.1 * float(thresh_all[wanted].min())
                                      / (max(self.anorm, self.tiny) * p))
            shown = order[:k]
            stop = monitor.record(
                iteration, theta[shown], est_all[shown], estimated=True,
                n_converged=int(conv_w.sum()), orthogonality_loss=self.loss,
                all_ritz_values=theta, ghost_mask=ghost[shown],
            )
            if stop:
                status, message = SolveStatus.STOPPED, ""
                break
            exhausted = bn == 0
            if exhausted or (len(wanted) == k and bool(conv_w.all()) and iteration >= next_check
                             and self._segment_settled(theta, S, est_all, thresh_all, wanted, p, iteration)):
                ok = self._verify(theta, S, wanted, p)
                if ok:
                    status, message = SolveStatus.CONVERGED, ""
                    break
                if self.mode == "partial" and self.switched_at is None:
                    # Estimates below tol but true residuals above it. In "partial" that is the
                    # semi-orthogonal basis: its Krylov relation holds only to ~omega ||A||, so
                    # H no longer knows the error and no restart or cleanup can fix it
                    # (measured: a triple eigenvalue, b = 3, tol 1e-10 stalled at 3e-10, then
                    # lost the pairs; n = 41, tol 1e-10 stuck at 1.3e-9 for 2000 steps even with
                    # full re-orthogonalization after a cleanup). Start again from the current
                    # Ritz vectors (accurate to that level) with full re-orthogonalization.
                    self.switched_at = iteration
                    j, lo, bc = 0, 0, self._start_over(self._checked[1])
                    next_check, check_gap = iteration + 1, 4
                    continue
                if exhausted:
                    status = SolveStatus.BREAKDOWN
                    message = (f"The Krylov basis spans the whole space (n = {self.n}) but only "
                               f"{self._n_ok} of k = {k} pairs meet the tolerance; rounding limits the "
                               "accuracy: loosen `tol`.")
                    break
                stalled = self._stalled_at_rounding()
                if stalled:
                    status, message = SolveStatus.BREAKDOWN, stalled
                    break
                # The estimates were optimistic (or below the attainable accuracy): ask for
                # 10x smaller ones (but not below eps ||A||, which estimates cannot reach: the
                # checks would stop, and with them _stalled_at_rounding) and check again only
                # after a growing number of steps, so an unattainable `tol` costs
                # O(log(max_iter)) checks of k matvecs each.
                self.tol_factor = max(0.1 * self.tol_factor,
                                      min(1.0, self.eps * self.anorm / max(float(thresh_all[wanted].min()), self.tiny)))
                check_gap *= 2
                next_check = iteration + check_gap
            if iteration >= self.v.max_iter:
                break
            if p + bn > m:
                self._restart(theta, S, order, ghost, est_all, thresh_all, R, j, p, bn)
                j, lo, bc = self._j, 0, bn
            else:
                lo, j, bc = j, p, bn
        return self._finish(theta, S, est_all, order, ghost, p, iteration, status, message)

    def _step_single(self, j: int, lo: int, iteration: int) -> tuple[np.ndarray, int]:
        """One single-vector Lanczos step (any mode): few, fused tensor operations."""
        H, Vt = self.H, self.Vt
        p = j + 1
        q = Vt[j]
        w = self.op.matvec(q)
        if self.AVt is not None:
            self.AVt[j].copy_(w)
        w_norm0 = float(torch.linalg.vector_norm(w)) if (iteration == 1 or self.mode == "none") else 0.0
        if iteration == 1:  # ||A q|| <= ||A||: a scale for the breakdown test before any Ritz value
            self.anorm = max(self.anorm, w_norm0)
        if lo == j - 1:  # previous vector: beta_(j-1)
            w.sub_(Vt[lo], alpha=float(H[j, lo]))
        elif lo < j:  # right after a restart: the arrow row couples to every kept Ritz vector
            w.addmv_(Vt[lo:j].T, _t(H[j, lo:j], w), alpha=-1.0)
        a = float(torch.dot(w, q))
        w.sub_(q, alpha=a)
        H[j, j] = a
        if self.mode == "full":
            V = Vt[:p]
            c = V.mv(w)
            cn = _np(c)
            nb = float(torch.linalg.vector_norm(w))
            overlap = float(np.abs(cn).max()) / max(nb, 1e-300)
            if overlap <= self.skip_level:  # see cgs(): measured, nothing to correct
                self.n_skipped += 1
                beta = nb
            else:
                w.addmv_(V.T, c, alpha=-1.0)
                beta = float(torch.linalg.vector_norm(w))
                ratio = nb / max(beta, 1e-300)
                if beta < _DGKS_ETA * nb:
                    c2 = V.mv(w)
                    w.addmv_(V.T, c2, alpha=-1.0)
                    cn = cn + _np(c2)
                    before, beta = beta, float(torch.linalg.vector_norm(w))
                    ratio = before / max(beta, 1e-300)
                overlap = p * self.eps * ratio
                H[:p, j] += cn
                H[j, :p] = H[:p, j]
        else:
            beta = float(torch.linalg.vector_norm(w))
            if beta < _DGKS_ETA * w_norm0:
                beta = self._local_reorth(w.unsqueeze(0), lo if lo < j else j, j, p)[0]
        floor = self.breakdown_floor()
        replaced = 0
        if beta > floor:
            torch.div(w, beta, out=Vt[p])
            bn, R = 1, np.array([[beta]])
            if self.mode == "full" and overlap > self.loss:
                self.loss = overlap
        else:  # invariant subspace: continue with a random vector orthogonal to the basis
            fresh = self._random_orthogonal(1, Vt[:p])
            bn = replaced = fresh.shape[0]
            if bn:
                Vt[p] = fresh[0]
                self._new_segment(p)
            R = np.zeros((bn, 1))
        if self.mode == "partial" and bn:  # Simon's estimate; re-orthogonalizes past sqrt(eps)
            Qn, R = self._partial_step(Vt[p:p + 1], R, j, p, bn, replaced)
            bn = Qn.shape[0]
            if bn:
                Vt[p:p + bn] = Qn
        if bn:
            H[p, :] = 0.0
            H[:, p] = 0.0
            H[p, j] = H[j, p] = R[0, 0]
            if self.mode == "none":
                self._measure_gram(p, 1)
        return R, bn

    def _step_block(self, j: int, p: int, lo: int, bc: int, iteration: int) -> tuple[np.ndarray, int]:
        """One block Lanczos step (any block size and mode)."""
        H, Vt = self.H, self.Vt
        Q = Vt[j:p]
        W = self.apply(Q)
        if self.AVt is not None:
            self.AVt[j:p] = W
        if iteration == 1:
            self.anorm = max(self.anorm, float(torch.linalg.vector_norm(W, dim=1).max()))
        # local step: subtract the known couplings (previous block, or the kept Ritz
        # vectors right after a restart: the "arrow" rows) and the diagonal block alpha.
        if lo < j:
            _sub_combine(W, _t(H[j:p, lo:j], W), Vt[lo:j])
        norms0 = torch.linalg.vector_norm(W, dim=1).tolist() if self.mode == "none" else None
        alpha_t = _dots(W, Q)
        _sub_combine(W, alpha_t, Q)
        alpha = _np(alpha_t)
        H[j:p, j:p] = 0.5 * (alpha + alpha.T)
        if norms0 is not None:
            after = torch.linalg.vector_norm(W, dim=1).tolist()
            if any(a < _DGKS_ETA * b0 for a, b0 in zip(after, norms0)):
                self._local_reorth(W, lo if lo < j else j, j, p)
        if self.mode == "full":
            c, overlap = self.cgs(W, p, force=False)
            if c is not None:
                H[:p, j:p] += c.T
                H[j:p, :j] = H[:j, j:p].T
                H[j:p, j:p] = 0.5 * (H[j:p, j:p] + H[j:p, j:p].T)
        Qn, R, replaced = self.orthonormalize(W, p, local_from=lo if lo < j else j)
        if replaced:
            self._new_segment(p)
        bn = Qn.shape[0]
        if self.mode == "full" and bn == bc and not replaced and overlap > self.loss:
            self.loss = overlap  # (rows that were replaced by random vectors are orthogonalized twice)
        if self.mode == "partial" and bn:
            Qn, R = self._partial_step(Qn, R, j, p, bn, replaced)
            bn = Qn.shape[0]
        Vt[p:p + bn] = Qn
        H[p:p + bn, :] = 0.0
        H[:, p:p + bn] = 0.0
        H[p:p + bn, j:p] = R
        H[j:p, p:p + bn] = R.T
        if self.mode == "none":
            self._measure_gram(p, bn)
        return R, bn

    def _stalled_at_rounding(self) -> str:
        """After a failed true-residual check: a message when the true residuals that miss tol
        sit near the rounding level (``ROUNDING_LEVEL`` eps ||A||) and the last ``_STALL_CHECKS``
        checks did not halve them, else "".

        Measured (float32 2-D Laplacian n = 10^4, SA, k = 4, tol 1e-3, "full"): the estimates went
        down to 1e-8 while the true residuals stayed at 1.4e-5 (15 eps ||A||, the rounding of the
        Krylov relation after hundreds of restarts) for all of max_iter = 10000 steps (8 s);
        the run now ends after those checks and says why.
        """
        _w, _X, _AX, _values, res, ok = self._checked
        missed = ~ok.cpu()
        if not bool(missed.any()):
            return ""
        worst = float(res.detach().cpu()[missed].max())
        previous = self._stall_worst
        self._stall_worst = worst
        if (rounding_level(worst, self.anorm, self.dtype) > ROUNDING_LEVEL or previous is None
                or worst < 0.5 * previous):
            self._stall_checks = 0
            return ""
        self._stall_checks += 1
        if self._stall_checks < _STALL_CHECKS:
            return ""
        scale = self.units.scale
        return (f"The true residuals stopped improving ({self._n_ok} of k = {self.k} pairs meet tol = {self.tol:g}) "
                f"while the estimates met it. " + rounding_note(worst * scale, self.anorm * scale, self.dtype))

    def _start_over(self, X: torch.Tensor) -> int:
        """"partial" -> "full": a fresh basis from the rows X (the current Ritz vectors, mixed
        into b random combinations or padded, as for X0); returns the first block's size."""
        self.mode, self.Omega = "full", None
        self.H[:] = 0.0
        self.loss, self.tol_factor, self.av_drift = 0.0, 1.0, 0.0
        self.segment[:] = True
        self.previous_segment[:] = False
        self._segment_started, self._wait_since = self._iteration, None
        Q0 = self.start_block(X.T.contiguous())
        self.Vt[:Q0.shape[0]] = Q0
        return Q0.shape[0]

    # -- per-mode pieces -------------------------------------------------------------------------
    def _local_reorth(self, W: torch.Tensor, lo: int, j: int, p: int) -> list[float]:
        """"none": one more pass of the local step against the rows it coupled to, ``Vt[lo:p]``.

        Plain Lanczos may lose *global* orthogonality (that is what the mode shows), but
        Paige's analysis, which keeps every Ritz value inside the spectrum, needs *local*
        orthogonality: each new vector orthogonal to its neighbours to O(eps). When the local
        step cancels most of ``A q`` (norm drop below 1/sqrt(2): an invariant subspace, or
        the Krylov space running out at small n) the rounding left along the neighbours is
        amplified by the drop; without this pass a block that ran out of space (n = 13,
        b = 2) came back as normalized noise and the projected matrix grew eigenvalues
        outside the spectrum. The coefficients go into the projected matrix (as in "full").
        Returns the new row norms.
        """
        V = self.Vt[lo:p]
        c = _dots(W, V)  # (rows, p - lo)
        _sub_combine(W, c, V)
        cn = _np(c)
        H = self.H
        H[lo:p, j:p] += cn.T
        H[j:p, lo:j] = H[lo:j, j:p].T
        H[j:p, j:p] = 0.5 * (H[j:p, j:p] + H[j:p, j:p].T)
        return torch.linalg.vector_norm(W, dim=1).tolist()

    def _new_segment(self, p: int) -> None:
        """A breakdown: rows [0, p) span an invariant subspace; rows from p on start a new segment."""
        self.n_breakdowns += 1
        self.previous_segment = self.segment.copy()
        self.previous_segment[p:] = False
        self.segment[:p] = False
        self.segment[p:] = True
        self._segment_started = self._iteration
        self._wait_since = None

    def _segment_settled(self, theta: np.ndarray, S: np.ndarray, est: np.ndarray, thresh: np.ndarray,
                         wanted: np.ndarray, p: int, iteration: int) -> bool:
        """After a breakdown, may the solve stop? (Asked only when the k wanted pairs converged.)

        An invariant subspace holds one direction of each eigenspace it touches (b of them for
        a block of b), so k converged pairs can still miss copies of a multiple eigenvalue that
        live in the orthogonal complement (from one start vector, diag(3, 3, 3, 3, 2, ...)
        shows a single 3). The segment grown from the fresh random vector(s) explores that
        complement (the segment that just broke down stands in while the new one has no Ritz
        vector of its own yet): its best Ritz value (in ``which`` order, among the Ritz vectors with most
        of their weight on its rows) must have converged. If that value is not better than
        the k-th wanted one, nothing better is left (with probability 1). If it is better and
        repeated (another Ritz value equals it), more copies may hide: wait for this segment
        to break down too and the next one to look, but at most as many steps as the segment
        has run (a segment of a large problem may never break down).
        """
        if self.n_breakdowns == 0:
            return True
        # the active segment, or the one that just broke down if the new one has no Ritz vector yet
        for rows in (self.segment[:p], self.previous_segment[:p]):
            mine = np.flatnonzero((S[rows] ** 2).sum(axis=0) >= 0.5)
            if mine.size:
                break
        else:
            return False
        rank = np.empty(len(theta), dtype=np.int64)
        rank[_which_order(theta, self.which)] = np.arange(len(theta))
        best = mine[np.argmin(rank[mine])]
        if est[best] > self.tol_factor * thresh[best]:
            return False
        last = wanted[-1]
        margin = thresh[last]
        if self.which == "LA":
            better = theta[best] > theta[last] + margin
        elif self.which == "SA":
            better = theta[best] < theta[last] - margin
        elif self.which == "LM":
            better = abs(theta[best]) > abs(theta[last]) + margin
        else:  # BE: it would take one of the first k places by more than the tolerance
            better = rank[best] < rank[last] and abs(theta[best] - theta[last]) > margin
        if not better:
            return True
        copies = int(np.sum(np.abs(theta - theta[best]) <= 10.0 * thresh[best]))
        if copies < 2:
            return True
        if self._wait_since is None:
            self._wait_since = iteration
        return iteration - self._wait_since > max(10, self._wait_since - self._segment_started)

    def _thresholds(self, theta: np.ndarray) -> np.ndarray:
        """``residual_threshold`` in numpy (the same formula; the final check calls it itself)."""
        floor = math.sqrt(self.eps) * max(self.anorm, self.tiny)
        return self.tol * np.maximum(np.abs(theta), floor)

    def _measure_gram(self, p: int, bn: int) -> None:
        """"none": the exact overlaps of the new block with the basis (one GEMV pass)."""
        new = self.Vt[p:p + bn]
        g = _np(_dots(self.Vt[:p + bn], new))  # (p + bn, bn)
        G = self.G
        assert G is not None
        G[:p + bn, p:p + bn] = g
        G[p:p + bn, :p + bn] = g.T
        dev = np.abs(g)
        dev[p + np.arange(bn), np.arange(bn)] = np.abs(g[p + np.arange(bn), np.arange(bn)] - 1.0)
        if dev.size:
            self.loss = max(self.loss, float(dev.max()))

    def _partial_step(self, Qn: torch.Tensor, R: np.ndarray, j: int, p: int, bn: int,
                      replaced: int) -> tuple[torch.Tensor, np.ndarray]:
        """Simon's omega recurrence for the new block; re-orthogonalize when it passes sqrt(eps)."""
        Om = self.Omega
        assert Om is not None
        H = self.H
        eps, sqrt_eps = self.eps, math.sqrt(self.eps)
        bc = p - j
        col = np.zeros((p, bn))
        diag_r = np.abs(np.diag(R[:, :bc])) if R.shape[0] else np.zeros(0)
        if j > 0 and not replaced and diag_r.min() > 0:
            # G[i, new] R = (H[:j, :p] G[:p, j:p] - G[:j, :p] H[:p, j:p])[i] with G = I + Omega;
            # the identity's two terms are both H[:j, j:p] and cancel exactly, so they are left
            # out (fewer copies, and no rounding from subtracting two O(||A||) terms).
            rhs = H[:j, :p] @ Om[:p, j:p] - Om[:j, :p] @ H[:p, j:p]
            if bn == bc == 1:
                col[:j] = rhs / R[0, 0]
            elif bn == bc:  # X R = rhs  <=>  R^T X^T = rhs^T (LAPACK dgesv on a b x b system)
                col[:j] = _lapack.dgesv(np.ascontiguousarray(R[:, :bc].T), np.ascontiguousarray(rhs.T))[2].T
            else:
                col[:j] = rhs @ np.linalg.pinv(R)
            noise = eps * (self.anorm / max(float(diag_r.min()), np.finfo(np.float64).tiny) + math.sqrt(self.n))
            col[:j] += np.where(col[:j] < 0, -noise, noise)
        col[j:p] = eps * math.sqrt(self.n)  # the local step orthogonalized against the current block
        estimate = float(np.abs(col).max()) if col.size else 0.0
        if estimate > sqrt_eps:
            # Re-orthogonalize the unnormalized block W = R^T Qn when R is square (its size is
            # that of A's products, which the breakdown floor is relative to); otherwise the
            # unit rows, with a floor relative to 1.
            square = R.shape[0] == R.shape[1] and bool(np.all(np.diag(R) != 0))
            W = _combine(_t(np.ascontiguousarray(R.T), Qn), Qn) if square else Qn.clone()
            self.cgs(W, p)
            Q2, R2, _ = self.orthonormalize(W, p, scale=None if square else 1.0)
            # Fewer rows than bn: the basis already spans what is left of the space; keeping
            # the old rows (not orthogonal to it) would corrupt the recurrence.
            Qn, R, bn = Q2, (R2 if square else R2 @ R), Q2.shape[0]
            col = np.full((p, bn), eps * math.sqrt(self.n))
            self.n_reorth += 1
        Om[:p, p:p + bn] = col
        Om[p:p + bn, :p] = col.T
        Om[p:p + bn, p:p + bn] = 0.0
        # Omega changes only in this new column (and at restarts, which set the loss too),
        # so the running maximum is the max over the whole matrix.
        self.loss = max(self.loss, float(np.abs(col).max(initial=0.0)))
        return Qn, R

    def _ghosts(self, theta: np.ndarray, S: np.ndarray, est: np.ndarray, thresh: np.ndarray, p: int) -> np.ndarray:
        """Flag Ritz values that duplicate a converged one while orthogonality is lost.

        A value is a ghost when (1) the loss exceeds sqrt(eps), (2) it lies within
        ``sqrt(eps) ||A||`` of a converged Ritz value with a smaller residual estimate (the
        original), and (3) in "none" mode, where the exact Gram matrix G = V^T V is known,
        their Ritz vectors overlap: ``|s_i^T G s_j| / (||V s_i|| ||V s_j||) >= 1/2``. Test
        (3) keeps the two orthogonal copies of a true double eigenvalue apart.
        """
        ghost = np.zeros(len(theta), dtype=bool)
        if self.loss <= math.sqrt(self.eps) or len(theta) < 2:
            return ghost
        converged = est <= thresh
        if not converged.any():
            return ghost
        delta = math.sqrt(self.eps) * self.anorm
        G = self.G[:p, :p] if self.G is not None else None
        for i in np.argsort(est, kind="stable"):  # most accurate first: it is the original
            if ghost[i] or not converged[i]:
                continue
            near = np.flatnonzero((np.abs(theta - theta[i]) <= delta) & ~ghost)
            near = near[near != i]
            if near.size == 0:
                continue
            if G is not None:
                Sn = S[:, np.concatenate([[i], near])]
                GS = G @ Sn
                norms = np.sqrt(np.maximum(np.einsum("ij,ij->j", Sn, GS), np.finfo(np.float64).tiny))
                overlap = np.abs(Sn[:, 0] @ GS[:, 1:]) / (norms[0] * norms[1:])
                near = near[overlap >= 0.5]  # orthogonal Ritz vectors: a true multiple eigenvalue
            ghost[near] = True
        return ghost

    def _restart(self, theta: np.ndarray, S: np.ndarray, order: np.ndarray, ghost: np.ndarray,
                 est: np.ndarray, thresh: np.ndarray, R: np.ndarray, j: int, p: int, bn: int) -> None:
        """Thick restart: keep L Ritz vectors (wanted first) and continue from the last block."""
        self.n_restarts += 1
        candidates = order[~ghost[order]]
        conv = est[candidates] <= self.tol_factor * thresh[candidates]
        unconverged = np.flatnonzero(~conv[: self.k])
        first_target = int(unconverged[0]) if unconverged.size else self.k - 1
        L = _choose_keep(theta[candidates], first_target, self.k, self.m, bn, self.which)
        keep = candidates[:L]
        Sk = S[:, keep]  # (p, L)
        if self.Vt_spare is None:
            self.Vt_spare = torch.empty_like(self.Vt)
        new = self.Vt_spare
        Sk_t = _t(Sk.T, self.Vt)
        _mix(Sk_t, self.Vt[:p], out=new[:L])
        new[L:L + bn] = self.Vt[p:p + bn]
        # From here on the new rows are the basis (orthonormalize() reads self.Vt).
        self.Vt, self.Vt_spare = new, self.Vt
        if self.AVt is not None:  # A Y = (A V) S_L, combined like Y (no matvec)
            if self.AVt_spare is None:
                self.AVt_spare = torch.empty_like(self.AVt)
            _mix(Sk_t, self.AVt[:p], out=self.AVt_spare[:L])
            self.AVt, self.AVt_spare = self.AVt_spare, self.AVt
            self.av_drift += p * self.eps * self.anorm
        if self.n_breakdowns:  # a kept Ritz vector belongs to the segment holding most of its weight
            for flags in (self.segment, self.previous_segment):
                seg = (Sk[flags[:p]] ** 2).sum(axis=0) >= 0.5
                tail = flags is self.segment  # the next block continues the current segment
                flags[:L] = seg
                flags[L:] = tail
        C = R @ S[j:p, keep]  # (bn, L): A Y = Y Theta + Q_next C
        H = np.zeros_like(self.H)
        H[np.arange(L), np.arange(L)] = theta[keep]
        if self.mode == "partial":
            Om = self.Omega
            assert Om is not None
            # ||Y^T Y - I||_2 <= ||V^T V - I||_2 (Y = V S, S orthonormal): the kept block's bound
            # from the last restart plus (p + bn) x the largest omega of this cycle's vectors.
            c0 = self._cycle_start
            level = self._kept_level + (p + bn) * float(np.abs(Om[:p + bn, c0:p + bn]).max(initial=0.0))
            Om[:] = 0.0
            if level > _CLEAN_LEVEL * math.sqrt(self.eps):
                H[:L, :L], C = self._reorthonormalize_kept(new, L, bn, theta[keep], C)
                self.n_cleanups += 1
                self._kept_level = self.loss = 0.0
            else:  # semi-orthogonal: keep the block as it is and carry the bound
                Om[:L + bn, :L + bn] = level
                Om[np.arange(L + bn), np.arange(L + bn)] = 0.0
                self._kept_level = self.loss = level
            self._cycle_start = L
        elif self.mode == "none":
            L, Hk, C = self._restart_plain(new, Sk, p, bn, theta[keep], C)
            H[:] = 0.0
            H[:L, :L] = Hk
        H[L:L + bn, :L] = C
        H[:L, L:L + bn] = C.T
        self.H = H
        self._j = L

    def _restart_plain(self, Vt: torch.Tensor, Sk: np.ndarray, p: int, bn: int, theta: np.ndarray,
                       C: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
        """"none": restart from an orthonormal basis of the kept Ritz vectors and the next block.

        In plain Lanczos the kept Ritz vectors ``Y = V S`` of a basis that lost orthogonality
        are neither orthonormal nor orthogonal to the next block F, which the arrow of the
        restarted recurrence couples to all of them: local orthogonality, the condition for
        Ritz values to stay inside the spectrum (Paige 1976), would be lost at every restart
        (measured: values 10-10^4 outside the spectrum after the first restart at n = 31-41).
        So "none" means no re-orthogonalization *within a cycle*: a restart orthonormalizes
        the kept block once from its exact Gram matrix ``S^T G S`` (known in this mode, no pass
        over V), drops directions the Gram matrix says are dependent (an undetected ghost
        pair), and rebuilds the exact Rayleigh quotient from ``A Y = Y Theta + F C``:
        ``Yh = Y P`` with ``P = U s^-1/2`` (Gram ``= U s U^T``, kept ``s > sqrt(eps) s_max``),
        ``Yh^T A Yh = K Theta P + D C P`` with ``K = s^1/2 U^T`` and ``D = Yh^T F``; the part of
        F outside span(Yh) is re-normalized (``F_perp = F_hat Rf``) and couples as ``Rf C P``.
        Returns (rows kept L', the L' x L' projected block, the coupling (bn, L')).
        """
        G = self.G
        assert G is not None
        gram = Sk.T @ G[:p, :p] @ Sk  # Y^T Y (exact up to rounding: G is measured)
        cross = Sk.T @ G[:p, p:p + bn]  # Y^T F
        s, U = np.linalg.eigh(0.5 * (gram + gram.T))
        keep = s > math.sqrt(self.eps) * max(float(s[-1]), self.tiny)
        U, s = U[:, keep], s[keep]
        P = U / np.sqrt(s)  # (L, L')
        K = (U * np.sqrt(s)).T  # (L', L)
        L, L2 = Sk.shape[1], P.shape[1]
        Y = Vt[:L]
        Pt = _t(P.T, Y)
        Yh = _mix(Pt, Y)
        D = P.T @ cross  # Yh^T F  (L', bn)
        F = Vt[L:L + bn].clone()
        _sub_combine(F, _t(D.T, Y), Yh)
        if self.AVt is not None:
            AY = self.AVt[:L]
            self.AVt[:L2] = _mix(Pt, AY)
            self.av_drift += L * self.eps * self.anorm * float(np.abs(P).sum(axis=0).max())
        Vt[:L2] = Yh
        Q2, Rf, _ = self.orthonormalize(F, L2, scale=1.0)
        if Q2.shape[0] != bn:  # the kept vectors already span F: keep it as it was
            Q2, Rf = Vt[L:L + bn].clone(), np.eye(bn)
        Vt[L2:L2 + bn] = Q2
        M = K @ np.diag(theta) @ P + D @ C @ P
        self.G = np.eye(G.shape[0])
        self.G[:L2 + bn, :L2 + bn] = _np(_dots(Vt[:L2 + bn], Vt[:L2 + bn]))
        self.loss = float(np.abs(self.G[:L2 + bn, :L2 + bn] - np.eye(L2 + bn)).max())
        return L2, 0.5 * (M + M.T), Rf @ C @ P

    def _reorthonormalize_kept(self, Vt: torch.Tensor, L: int, bn: int, theta: np.ndarray,
                               C: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """"partial": Cholesky-QR the kept block and rebuild its exact Rayleigh quotient.

        With Y = Yh Rc (Yh orthonormal), ``A Y = Y Theta + F C`` gives
        ``Yh^T A Yh = Rc Theta Rc^-1 + D C Rc^-1`` with ``D = Yh^T F``; the part of F outside
        span(Yh) is re-normalized (F_perp = F_hat Rf) and couples as ``Rf C Rc^-1``.
        """
        Y = Vt[:L]
        F = Vt[L:L + bn]
        gram = _np(Y @ Y.T if self.n * L * L >= _GEMM_WORK else _dots(Y, Y))
        Lc, info = _lapack.dpotrf(gram, lower=1, clean=1)
        if info != 0:  # not numerically positive definite: keep the block as it is
            Rc, Rc_inv = np.eye(L), np.eye(L)
        else:
            Rc = Lc.T
            Lc_inv = _lapack.dtrtri(Lc, lower=1)[0]
            Rc_inv = Lc_inv.T
            Linv = _t(Lc_inv, Y)
            Y.copy_(_mix(Linv, Y))
            if self.AVt is not None:
                AY = self.AVt[:L]
                AY.copy_(_mix(Linv, AY))
                self.av_drift += L * self.eps * self.anorm * float(np.abs(Lc_inv).sum(axis=1).max())
        D = _np(_dots(Y, F))  # (L, bn)
        _sub_combine(F, _t(D.T, Y), Y)
        Q2, Rf, _ = self.orthonormalize(F.clone(), L, scale=1.0)
        if Q2.shape[0] == bn:
            F.copy_(Q2)
        else:
            Rf = np.eye(bn)
        M = Rc @ np.diag(theta) @ Rc_inv + D @ C @ Rc_inv
        return 0.5 * (M + M.T), Rf @ C @ Rc_inv

    def _ritz_vectors(self, S: np.ndarray, idx: np.ndarray, p: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Rows x_i = S[:, i]^T V (normalized: for "none" V is not orthonormal) and, with stored
        products, the rows A x_i = S[:, i]^T (A V) combined the same way (else None)."""
        coef = _t(S[:, idx].T, self.Vt)
        X = _combine(coef, self.Vt[:p])
        AX = _combine(coef, self.AVt[:p]) if self.AVt is not None else None
        if self.mode != "full":  # a semi- or non-orthogonal basis: normalize the Ritz vectors
            norms = torch.linalg.vector_norm(X, dim=1, keepdim=True)
            X = X / norms
            if AX is not None:
                AX = AX / norms
        return X, AX

    def _true_residuals(self, theta: np.ndarray, S: np.ndarray, wanted: np.ndarray,
                        p: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(X, A X, values, ||A x - theta x||, ok) for the ``wanted`` Ritz pairs (rows).

        With stored products A x comes from ``A V`` (each row an actual application of A,
        combined with the Ritz coefficients): no matvec. That is the true residual up to the
        rounding of the combinations, bounded by ``av_drift + p eps ||A||``; a pair whose
        residual is within that margin of its threshold, and only then, is checked again
        with a fresh application of A (so the rounding can never turn a failure into a pass).
        """
        X, AX = self._ritz_vectors(S, wanted, p)
        values = _t(theta[wanted], self.Vt)
        thr = residual_threshold(values, self.tol, self.anorm)
        if AX is not None:
            res = torch.linalg.vector_norm(AX - values.unsqueeze(1) * X, dim=1)
            margin = self.av_drift + p * self.eps * self.anorm
            unsure = torch.nonzero((res - thr).abs() < margin).flatten()
            if unsure.numel():
                AXu = self.apply(X[unsure])
                AX[unsure] = AXu
                res[unsure] = torch.linalg.vector_norm(AXu - values[unsure].unsqueeze(1) * X[unsure], dim=1)
        else:
            AX = self.apply(X)
            res = torch.linalg.vector_norm(AX - values.unsqueeze(1) * X, dim=1)
        return X, AX, values, res, res <= thr

    def _verify(self, theta: np.ndarray, S: np.ndarray, wanted: np.ndarray, p: int) -> bool:
        X, AX, values, res, ok = self._true_residuals(theta, S, wanted, p)
        self._n_ok = int(ok.sum())
        self._checked = (wanted.copy(), X, AX, values, res, ok)
        return bool(ok.all())

    def _polish(self, X: torch.Tensor, AX: torch.Tensor, values: torch.Tensor, res: torch.Tensor,
                ok: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """"partial" / "none": Rayleigh-Ritz on the span of the k returned vectors.

        Their basis was only semi-orthogonal (Simon: ~sqrt(eps) at worst, 1e-13..1e-8 in
        practice), so the Ritz vectors are too. With ``G = X X^T = L L^T`` the rows
        ``Xh = L^-1 X`` are orthonormal, ``A Xh = L^-1 (A X)`` needs no matvec, and the
        eigenpairs (theta', U) of ``Xh A Xh^T`` give ``U^T Xh``: orthonormal to rounding,
        Rayleigh quotients of their own span, residuals recomputed from the combined products.
        Kept only when at least as many pairs meet the tolerance as before.
        """
        k = X.shape[0]
        Lc, info = _lapack.dpotrf(_np(_dots(X, X)), lower=1, clean=1)
        if info != 0:
            return X, values, res, ok
        Linv = _t(_lapack.dtrtri(Lc, lower=1)[0], X)
        Xh, AXh = _combine(Linv, X), _combine(Linv, AX)
        Hs = _np(_dots(Xh, AXh))
        th, U = _eigh(0.5 * (Hs + Hs.T))
        pick = _which_order(th, self.which)[:k]
        Ut = _t(np.ascontiguousarray(U[:, pick].T), X)
        Xn, AXn = _combine(Ut, Xh), _combine(Ut, AXh)
        vals = _t(th[pick], X)
        resn = torch.linalg.vector_norm(AXn - vals.unsqueeze(1) * Xn, dim=1)
        okn = resn <= residual_threshold(vals, self.tol, self.anorm)
        if int(okn.sum()) < int(ok.sum()):
            return X, values, res, ok
        return Xn, vals, resn, okn

    def _finish(self, theta: np.ndarray, S: np.ndarray, est: np.ndarray, order: np.ndarray, ghost: np.ndarray,
                p: int, iteration: int, status: SolveStatus, message: str) -> EigenResult:
        wanted = order[~ghost[order]][: self.k] if len(order) else np.zeros(0, dtype=np.int64)
        checked = getattr(self, "_checked", None)
        values = _t(theta[wanted], self.Vt)
        if checked is not None and np.array_equal(checked[0], wanted) and status in (
                SolveStatus.CONVERGED, SolveStatus.BREAKDOWN):
            _w, X, AX, values, res, ok = checked
        elif len(wanted):
            X, AX, values, res, ok = self._true_residuals(theta, S, wanted, p)
        else:
            X = AX = torch.zeros(0, self.n, dtype=self.dtype, device=self.device)
            res = torch.zeros(0, dtype=self.dtype, device=self.device)
            ok = torch.zeros(0, dtype=torch.bool)
        if self.mode != "full" and X.shape[0] >= 2 and bool(torch.isfinite(AX).all()):
            X, values, res, ok = self._polish(X, AX, values, res, ok)
        if status is SolveStatus.MAX_ITER and bool(ok.all()) and len(wanted) == self.k:
            status = SolveStatus.CONVERGED
        notes = []
        if len(wanted) < self.k:
            notes.append(f"Only {len(wanted)} distinct Ritz pairs were available for k = {self.k}.")
        if self.n_breakdowns:
            notes.append(f"{self.n_breakdowns} breakdown(s) (invariant subspace found; continued with random "
                         "vectors orthogonal to the basis).")
        if self.mode == "none" and bool(ghost.any()):
            notes.append(f"{int(ghost.sum())} ghost Ritz value(s) (copies of converged ones, from lost "
                         "orthogonality) were skipped.")
        if len(wanted) >= self.b + 1 and self.n_breakdowns == 0:
            # b equal values: the block sees at most b copies, so there may be more
            vals = theta[wanted]
            # equal to within 10 thresholds, but never looser than sqrt(eps) ||A||: at a loose tol
            # distinct values (the 3 smallest of a Laplacian at tol 0.5) would all look equal
            gap = np.minimum(10.0 * self._thresholds(vals), math.sqrt(self.eps) * max(self.anorm, self.tiny))
            multiplicity = max(int(np.sum(np.abs(vals - v) <= g)) for v, g in zip(vals, gap))
            if multiplicity >= max(self.b, 2):
                notes.append(f"A value appears {multiplicity} times with block_size = {self.b}; a block of b "
                             "vectors is only sure to show b copies: if it may have more, raise `block_size`.")
        if self.switched_at is not None:
            notes.append(f"Partial re-orthogonalization could not certify tol (the estimated residuals met it, the "
                         f"true ones did not); switched to full re-orthogonalization at iteration {self.switched_at}.")
        if self.n_restarts:
            notes.append(f"{self.n_restarts} thick restart(s).")
        message = " ".join([message] + notes).strip()
        return self.monitor.finish(eigenvalues=values, eigenvectors=X.T.contiguous(), residual_norms=res,
                                   converged=ok.cpu(), n_iter=iteration, status=status, message=message,
                                   norm_estimate=self.anorm)


def lanczos(
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
    reorthogonalization: str = "auto",
    max_basis: int | None = None,
    block_size: int | None = None,
    products: str = "auto",
) -> EigenResult:
    """k extreme eigenpairs of a symmetric operator by thick-restart (block) Lanczos.

    Args:
        operator: symmetric n x n operator (anything ``as_operator`` accepts); only
            matvecs are used.
        k: number of eigenpairs, 1 <= k <= n.
        which: "LA" largest, "SA" smallest, "LM" largest magnitude, "BE" both ends
            (alternating largest, smallest, ...).
        tol: relative residual tolerance, ``||A x - theta x|| <= tol * max(|theta|,
            sqrt(eps) ||A||)``, checked with true residuals.
        max_iter: Lanczos steps (each applies A to one block of ``block_size`` vectors);
            default 10000.
        X0: (n,) or (n, c) start. Fewer than ``block_size`` columns are padded with random
            ones; more are mixed into ``block_size`` random combinations (each keeps every
            column's directions). A zero or dependent start is replaced by random vectors.
        seed: seed of the local generator (random start, padding, breakdown vectors).
        tracker: receives one record per Lanczos step (estimated residuals).
        B: accepted for the shared signature; a generalized problem is refused with a
            ValueError that points to ``lobpcg`` or ``eigh``.
        reorthogonalization: "partial", "full" or "none" (module docstring); "auto" (default):
            "partial" in float64, "full" in float32 (see "Defaults and why").
        max_basis: most basis vectors kept (memory O(n * max_basis)); default
            ``max(40, 6 k + 10 block_size)``, capped at n except for "none". Must be at least
            ``k + block_size``.
        block_size: vectors per block; default 1 for k = 1, else 2. Sees eigenvalues of
            multiplicity up to ``block_size``.
        products: how the true residuals ``||A x - theta x||`` are computed. "stored": the
            products ``A V`` are kept next to the basis (twice the memory) and combined like
            the Ritz vectors, so the checks cost no matvec (a pair within rounding of its
            threshold is re-checked with a fresh product); "recomputed": A is applied to the
            k Ritz vectors at each check (k matvecs). "auto" (default): "stored" unless the
            operator is sparse on the CPU (a matvec there is cheaper than the extra memory
            traffic of carrying ``A V`` through restarts) or the extra buffer would pass
            ``_STORE_LIMIT_BYTES`` (1 GiB).

    Returns:
        EigenResult in ``which`` order with true residual norms; ``converged`` compares
        them with ``residual_threshold``. Status CONVERGED, MAX_ITER, STOPPED (a tracker
        raised StopSolve: the partial result, with true residuals) or BREAKDOWN (the basis
        spans the space but ``tol`` is below what rounding allows).

    Raises:
        ValueError: bad ``k``, ``tol``, ``which``, ``max_iter``, ``reorthogonalization``,
            ``max_basis`` or ``block_size``.
        TypeError: a non-integer ``max_basis`` / ``block_size``.

    References:
        Lanczos 1950; Paige 1976; Simon 1984; Wu & Simon 2000; Golub & Van Loan 10.1-10.3.
    """
    v = validate_common("lanczos", operator, k, which=which, tol=tol, max_iter=max_iter,
                        default_max_iter=DEFAULT_MAX_ITER, supported_which=WHICH, X0=X0, B=B)
    if not isinstance(reorthogonalization, str) or reorthogonalization not in REORTHOGONALIZATION:
        raise ValueError(
            f"`reorthogonalization` must be one of 'auto', 'full', 'partial', 'none', got {reorthogonalization!r}; "
            "'auto' (the default) is 'partial' in float64 and 'full' in float32, 'full' the most conservative, "
            "'none' shows the ghost eigenvalues of plain Lanczos")
    if reorthogonalization == "auto":
        reorthogonalization = "full" if v.operator.dtype == torch.float32 else "partial"
    n = v.operator.shape[0]
    b = default_block_size(v.k) if block_size is None else check_int(
        "block_size", block_size, hint="use 1 for a single-vector Lanczos or 2-4 to see repeated eigenvalues")
    if b > n:
        raise ValueError(f"`block_size` must be at most n = {n}, got block_size={b}; lower it")
    if max_basis is None:
        m = default_max_basis(v.k, b, n)
        if reorthogonalization == "none":
            m = default_max_basis(v.k, b, 10**9)
    else:
        m = check_int("max_basis", max_basis)
        if reorthogonalization != "none":
            m = min(m, n)
    if m < min(n, v.k + b):
        raise ValueError(
            f"`max_basis` must be at least k + block_size = {v.k + b} (room for the k wanted vectors and one "
            f"block), got max_basis={max_basis}; raise it (e.g. {default_max_basis(v.k, b, n)}) or lower `k`")
    if not isinstance(products, str) or products not in PRODUCTS:
        raise ValueError(f"`products` must be one of {list(PRODUCTS)}, got {products!r}; 'auto' picks per operator")
    op = v.operator
    if products == "auto":
        size = (m + b) * n * torch.finfo(op.dtype).bits // 8
        store = not _sparse_on_cpu(op) and size <= _STORE_LIMIT_BYTES
    else:
        store = products == "stored"
    generator = make_generator(seed)
    monitor = Monitor("lanczos", v, tracker, extras={"reorthogonalization": reorthogonalization,
                                                      "max_basis": m, "block_size": b,
                                                      "products": "stored" if store else "recomputed"})
    return _Lanczos(v, monitor, mode=reorthogonalization, m=m, b=b, generator=generator,
                    store_products=store).run()


register_solver(SolverSpec(
    name="lanczos",
    label="Lanczos (thick restart)",
    fn=lanczos,
    summary=("Krylov method for a few extreme eigenvalues: builds an orthonormal basis with a three-term "
             "recurrence, restarts keeping the best Ritz vectors, uses a small block to catch double "
             "eigenvalues. Needs only matvecs, typically far fewer than LOBPCG or power iteration."),
    which=("LA", "SA", "LM", "BE"),
    params=(
        ParamSpec("reorthogonalization", "choice", "auto",
                  "How the basis is kept orthonormal. 'auto' (default): 'partial' in float64, 'full' in float32. "
                  "'partial' only estimates the overlaps of each "
                  "new vector with the basis and cleans when they pass sqrt(eps); it switches to 'full' by "
                  "itself if that limits the accuracy. 'full' checks every new vector against the whole "
                  "basis and removes what rounding left (one or two passes over the basis per step: slower "
                  "for cheap operators); 'none' is textbook Lanczos: converged eigenvalues come back as "
                  "'ghost' copies.", choices=REORTHOGONALIZATION),
        ParamSpec("max_basis", "int", None,
                  "Most basis vectors kept before a restart (memory = n x max_basis numbers). Larger means "
                  "fewer matvecs but more work per step. Empty = max(40, 6k + 10 block_size).",
                  minimum=2, optional=True),
        ParamSpec("block_size", "int", None,
                  "How many vectors the Krylov space grows by per step. A single vector cannot see the "
                  "second copy of a repeated eigenvalue; a block of b sees multiplicities up to b. "
                  "Empty = 1 for k = 1, else 2.", minimum=1, maximum=16, optional=True),
        ParamSpec("products", "choice", "auto",
                  "How the final (true) residuals ||Ax - theta x|| are computed. 'stored' keeps A times every "
                  "basis vector (twice the memory) so checking costs no extra matvec; 'recomputed' applies A "
                  "to the k Ritz vectors at each check. 'auto' stores them unless the operator is a sparse "
                  "matrix on the CPU (cheap to apply) or the extra memory would pass 1 GiB.",
                  choices=PRODUCTS),
    ),
    supports_B=False,
    matrix_free=True,
    default_tol=1e-6,
    default_max_iter=DEFAULT_MAX_ITER,
    references=("Lanczos 1950", "Paige 1976", "Simon 1984", "Wu & Simon 2000",
                "Golub & Van Loan 10.1-10.3"),
))
