"""LOBPCG: locally optimal block preconditioned conjugate gradient for extreme eigenpairs.

The method (Knyazev 2001, Algorithm 4.1 "block LOBPCG"): keep a block X of ``m >= k``
approximate eigenvectors; each iteration forms the residuals R = A X - B X Theta,
preconditions them (W = T R), and runs a Rayleigh-Ritz procedure on the trial
subspace span[X, W, P], where P holds the previous step's update directions (the
"conjugate" part). The m best Ritz vectors become the new X. With T = I it is a block
Krylov-like method whose convergence for eigenvalue i is governed by the gap to
lambda_{m+1}; a good preconditioner T ~ (A - sigma B)^{-1} makes it much faster.

Two variants, named as in ``torch.lobpcg``:

* ``method="ortho"`` (default): [X, P] is kept B-orthonormal, with P chosen inside the
  span of the discarded Ritz vectors so that it is B-orthogonal to the new X and spans
  what the old X contributed (Duersch, Shao, Yang & Gu 2018, Sec. 3.2:
  P = S Z_r basis(Z_r[x-rows]^T)). W is B-orthonormalized with SVQB (Stathopoulos & Wu
  2002; Duersch et al. 2018, Alg. 4, dropping dependent directions). Duersch et al. also
  B-orthogonalize W against [X, P] (their Alg. 3); we compute the overlap C = [X, P]^T B W
  (one small GEMM) and project only when its largest singular value exceeds 0.9, else C
  enters the Gram matrix S^T B S = [[I, C], [C^T, I]] exactly and the Rayleigh-Ritz step is
  a Cholesky-reduced ``eigh`` of a (3m x 3m) matrix. Without preconditioner and B, W = R
  is orthogonal to the last Rayleigh-Ritz space anyway (Galerkin condition), so the
  projection never runs there. Robust.
* ``method="basic"``: Knyazev's original step on the raw basis [X, W, P] (columns only
  normalized), with the generalized Rayleigh-Ritz problem reduced by a Cholesky factor
  of S^T B S (Knyazev 2001, Sec. 4; P = W C_W + P C_P). Cheaper orthogonalization, but
  the Gram matrix becomes ill-conditioned near convergence. When its Cholesky fails we
  retry without P (the usual restart, Hetmaniuk & Lehoucq 2006) and, if that also fails,
  switch to the "ortho" step for the rest of the solve; the switch is reported in
  ``result.message``. It never crashes.

Why our own engine (``backend="explorer"``, the default) and not just ``torch.lobpcg``:
torch recomputes A [X, W, P] in every Rayleigh-Ritz step (``qform``) and A X again for
the residual, so it applies A to about 4 m vectors per iteration (PEERS.md: 3.6-5.2x the
matvecs of scipy's lobpcg). We keep the products and update them with the same small
coefficient matrices as the vectors (``products="stored"``): one application of A to the
*active* part of W per iteration, at most m columns. The Gram block [X, P]^T A [X, P] is
carried over as Y^T G Y as well (audited every ``_REFRESH`` steps; in float32 with A X
recomputed its X rows are rebuilt from the fresh A X every step, see ``_carried_gram``). For cheap sparse
operators updating A X, A P costs more than applying A to X again, so
``products="auto"`` recomputes A X there (2 m matvecs per iteration, still half of
torch's; the residuals are then exactly the true ones). With stored products the residual
A X - B X Theta equals the true residual up to rounding drift, so before reporting
CONVERGED the k wanted residuals are recomputed with fresh products.

Block size 1 (k = 1, the default there; "ortho", no B) runs a vector-only path
(``_single_vector``): the same iteration without the block bookkeeping, which cost ~0.8 ms
per iteration whatever the block size, on preallocated row buffers (~30 passes over
n-vectors per iteration). 2-D Laplacian, k = 1 (CPU s, matvecs; torch.lobpcg in the same
runs in brackets): n = 1e4 SA 0.13 s / 471 (0.49 s / 2782), LA 0.09 s / 302 (0.87 s / 5042);
n = 1e5 LA 1.9-2.2 s / 1589 (4.6-6.8 s / 3062: 0.37-0.49x), SA 2.9 s / 2122 (torch stopped
at its 60 s cap after 28.8k matvecs). The first version of the path (~47 passes and a fresh
n-vector per operation) took 2.9-3.6 s (LA) and 4.9 s (SA) at n = 1e5 in the same sessions.

Layout: every block of n-vectors is stored transposed, as a row-major (b, n) tensor. On
this machine's MKL (one thread) the tall-skinny GEMMs of LOBPCG run 1.5-2x faster that
way (X^T Y as Xt @ Yt^T, X C as C^T @ Xt), selecting vectors is a contiguous row slice
and concatenation a plain copy; operators still receive (n, b) columns.

Step layout (B = I, no preconditioner, "ortho"; ``_Engine._step_ortho``): the block lives
in one of two (4 m, n) buffers with the residuals W directly above [X, P] and A W directly
above W, so [W; X; P] [A W; W]^T is one GEMM that yields W^T A W, W^T W, [X, P]^T A W and
C = [X, P]^T W, and the new [X, P] is one GEMM into the other buffer; the SVQB transform of W
is folded into the small matrices and the update coefficients instead of applied to W
(unless its Gram matrix is nearly singular). Per iteration that is two passes over the
(3 m, n) basis plus the operator products, instead of about five. With B or a preconditioner
the general step (``_step_ortho_general``) runs.

Measured with ``python -m explorer.bench`` (2 shared vCPUs, one thread, min CPU time over 2-3
runs, tol = 1e-6, float64; torch.lobpcg given the torch sparse / dense tensor, block k, its
tol mapped as in PEERS.md 3). The machine was loaded by other jobs while these were taken
(torch.lobpcg ran 1.1-1.3x slower than in quiet runs), so compare the ratios, not the
seconds; where two torch figures are given, the ratio moved with the load between runs:

=============================  ==================  ===================  ========
problem (k = 10, LA)           ours                torch.lobpcg         ratio
=============================  ==================  ===================  ========
2-D Laplacian n = 1e4          0.85 s / 4.8k mv    1.52-1.76 s / 9.4k   1.8-2.0x
2-D Laplacian n = 1e4, SA      1.28 s / 7.6k mv    3.32 s / 20.0k mv    2.6x
2-D Laplacian n = 1e4, k = 1   0.30 s / 646 mv     0.94 s / 5.0k mv     3.1x
2-D Laplacian n = 1e4, k=1 SA  0.45 s / 1.1k mv    0.50-0.54 s / 2.8k   1.0-1.2x
dense small gap n = 1000       0.108 s / 453 mv    0.323 s / 1.7k mv    3.0x
dense geometric n = 1000       0.018 s / 74 mv     0.051 s / 265 mv     2.8x
dense cluster n = 1000         0.034 s / 148 mv    0.150 s / 826 mv     4.4x
=============================  ==================  ===================  ========

Before this step layout (same session) the n = 1e4 LA run took 0.99-1.08 s with 2.2k
matvecs, 1.4x faster than torch.lobpcg in the same runs. Part of the gain: the benchmark's
accounting wrapper hid the matrix's nnz, so "auto" stored the products; ``_cheap_sparse`` now
looks through wrappers of a sparse operator and recomputes A X there. The 2x goal is met
there only at the margin (1.8-2.0x depending on the load). The
k = 1 SA case is dominated by per-iteration Python and small-matrix overhead (m = 3: ~1.2 ms
per iteration; torch, block 1, needs about twice the iterations judging by its matvec count,
at ~0.7 ms each) and is not 2x.
Earlier quiet-machine figures: n = 1e5 Laplacian 29 s / 14k mv (torch 60 s); dense small gap
n = 4000 1.8 s / 534 mv (torch 5.5 s); scipy's lobpcg (OpenBLAS) 0.89 s / 2.0k mv on the
n = 1e4 Laplacian and 0.08 s / 363 mv on the dense small gap n = 1000 (PEERS.md).

Soft locking: a column whose residual meets the tolerance gets no new W or P direction
(it stays in the Rayleigh-Ritz basis, so it can only improve); it is unlocked again if
its residual rises. Only the first k columns must converge; the ``m - k`` extra "guard"
columns speed up the convergence of the k-th pair (rate ~ theta_k / theta_{m+1}) and
let a block method see every copy of a multiple eigenvalue (the 2-D Laplacian).

``backend="torch"`` runs ``torch.lobpcg``'s own worker (``torch._lobpcg.LOBPCG``) and adds
the guards the issue asked for:

* its tracker (the live worker with ``ivars``/``fvars``/``bvars``/``tvars``, ``E``, ``X``,
  ``R``) is translated into our ``IterationRecord`` each iteration; a Stop request sets
  ``bvars["force_stop"] = True``;
* the first tracker call (the initial Rayleigh-Ritz) is not recorded: with
  ``method="ortho"`` torch leaves E = 0 there, so its residuals are meaningless;
* torch refuses m < 3 n in its notation (rows < 3 x block size): we check first and
  either shrink the block or, when even k is too large, solve densely with a note;
* k larger than the block would be truncated silently by torch: we refuse it;
* running out of iterations is reported as MAX_ITER (torch returns silently);
* convergence uses *our* criterion (see ``residual_threshold``): torch is run with
  ``tol=0`` (so its own count, relative to a crude ||A|| estimate, never stops it) and
  the tracker stops it when the k wanted pairs meet our tolerance. A side effect: torch
  then does no soft locking;
* ``method="ortho"`` in torch ignores the preconditioner ``iK`` (``_update_ortho`` never
  applies it): we refuse that combination instead of silently ignoring it;
* the tracker race (``../shared/LIVE.md`` 2.5: ``torch.lobpcg`` assigns the *class*
  attribute ``LOBPCG.call_tracker`` on entry and a no-op on exit, so concurrent calls in
  threads switch off each other's tracker and Stop) cannot happen: we create the worker
  ourselves and bind ``call_tracker`` on the *instance*, which the class attribute never
  shadows. We do not touch the class attribute at all, so we also never break a
  concurrent plain ``torch.lobpcg`` call;
* matrix-free operators: torch multiplies through ``torch._linalg_utils.matmul``; we
  install, once, a dispatching wrapper that sends our ``LinearOperator`` objects to
  ``matmat`` and everything else to the original function (the same idea as the
  benchmark harness in PEERS.md 3, but permanent and thread-safe instead of patched and
  restored around each call). That also counts every product on our per-solve counter.

Defaults and why:

* ``which="LA"``, ``tol=1e-6`` (relative residual, as every solver here), ``max_iter=1000``
  (torch's ``niter`` default).
* ``block_size = k + max(2, ceil(k / 4))`` (at most n // 3): the guard columns cost
  ~25 % more work per iteration and pay for themselves on clustered or multiple
  eigenvalues (the Laplacian has exact doubles), where a block of exactly k stalls on the
  k-th pair.
* ``preconditioner=None``. ``"jacobi"`` uses 1 / |diag(A)| (needs ``operator.diagonal()``);
  it helps the smallest eigenvalues of diagonally dominant matrices with a varying
  diagonal and is useless on a constant diagonal (Laplacian) or for LA (PEERS.md).

References:
    A. V. Knyazev (2001), Toward the optimal preconditioned eigensolver: locally optimal
    block preconditioned conjugate gradient method, SIAM J. Sci. Comput. 23(2), 517-541,
    Algorithm 4.1 (block LOBPCG).
    U. Hetmaniuk, R. Lehoucq (2006), Basis selection in LOBPCG, J. Comput. Phys. 218,
    324-332 (restart without P).
    A. Stathopoulos, K. Wu (2002), A block orthogonalization procedure with constant
    synchronization requirements, SIAM J. Sci. Comput. 23(6), 2165-2182 (SVQB).
    J. A. Duersch, M. Shao, C. Yang, M. Gu (2018), A robust and efficient implementation
    of LOBPCG, SIAM J. Sci. Comput. 40(5), C655-C676, Algorithms 3 (ortho), 4 (svqb),
    Sec. 3.2 (the choice of P).
"""

from __future__ import annotations

import dataclasses
import math
import threading
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from explorer.operators import CountedOperator, LinearOperator, as_operator
from explorer.tracking.results import EigenResult, SolveStatus
from explorer.solvers._common import (
    Monitor,
    ProductUnits,
    UnitsOperator,
    Validated,
    nonfinite_message,
    make_generator,
    orthogonality_loss,
    random_block,
    residual_threshold,
    select_order,
    true_residual_norms,
    validate_common,
)
from explorer.solvers.eigh import dense_eigenpairs
from explorer.solvers.registry import ParamSpec, SolverSpec, register_solver
from explorer.tracking import Tracker

__all__ = ["lobpcg", "default_block_size"]

_METHODS = ("ortho", "basic")
_BACKENDS = ("explorer", "torch")
_PRODUCTS = ("auto", "stored", "recomputed")
# Largest n for which the n < 3 * k case is solved densely instead of refused (4 dense
# n x n copies of 8 bytes: 0.8 GB at n = 5000).
_DENSE_FALLBACK_MAX_N = 5000
# Every _REFRESH iterations the carried Gram block [X, P]^T A [X, P] is recomputed and the
# B-orthonormality of the whole [X, P] block audited (amortized: 2 small GEMMs / 10 iterations).
_REFRESH = 10
# With stored products, A [X, P] is recomputed from scratch every _FRESH_EVERY audits (every
# 50 iterations): the stored products drift by rounding (see _Engine._refresh_products).
_FRESH_EVERY = 5
# The SVQB transform of W is folded into the small matrices instead of applied to W when the
# scaled Gram matrix of W has eigenvalue ratio >= this (and nothing is dropped). Either way the
# new W is orthonormal only to ~eps / ratio (Stathopoulos & Wu 2002); the Gram entries then
# carry the same ~eps / ratio, so folding loses nothing (measured: identical iterations and
# orthogonality loss on the benchmark problems), and the drift audit catches any excess.
_FOLD_MIN_CONDITIONING = 1e-6
# Sparse operators get blocks of at most this many entries (2 MB in float64) in one product,
# larger ones row by row (see ``_rows``).
_SPARSE_BLOCK_MAX = 250_000


def default_block_size(k: int, n: int) -> int:
    """1 for k = 1; else ``k + max(2, ceil(k/4))`` (guard columns), but never more than ``n // 3``.

    For a single eigenpair the guard columns cost more than they save. Measured (one thread,
    float64, tol 1e-6, LA unless noted; CPU s / matvecs with block 1, 2, 3): 2-D Laplacian
    n = 1e4 LA 0.23 / 302, 0.27 / 555, 0.25 / 646; SA 0.36 / 471, 0.43 / 857, 0.43 / 1099;
    dense n = 1000 cluster 0.049 / 63, 0.049 / 101, 0.113 / 271; small gap 0.068 / 88,
    0.043 / 89, 0.046 / 118; geometric 0.012 / 17, 0.011 / 23, 0.011 / 28. Block 1 needs
    the fewest matvecs everywhere (what counts for Hessian-vector products) and is fastest
    or close except on the small gap.
    """
    if k == 1:
        return 1
    return max(k, min(k + max(2, math.ceil(k / 4)), n // 3))


# ---------------------------------------------------------------------------------
# Preconditioners
# ---------------------------------------------------------------------------------
class _DiagonalOperator(LinearOperator):
    """``diag(d)`` as an operator (the Jacobi preconditioner for either backend)."""

    def __init__(self, d: torch.Tensor) -> None:
        super().__init__((d.numel(), d.numel()), d.dtype, d.device, is_symmetric=True)
        self.d = d

    def _matmat(self, X: torch.Tensor) -> torch.Tensor:
        return self.d.unsqueeze(1) * X

    def diagonal(self) -> torch.Tensor:
        return self.d.clone()


def _preconditioner_operator(preconditioner: Any, op: LinearOperator) -> LinearOperator | None:
    """Normalize ``preconditioner`` to an operator T (applied as W = T R), or None."""
    n = op.shape[0]
    if preconditioner is None or (isinstance(preconditioner, str) and preconditioner.lower() == "none"):
        return None
    if isinstance(preconditioner, str):
        if preconditioner.lower() != "jacobi":
            raise ValueError(f"`preconditioner` must be None, 'jacobi', a callable, a tensor or a LinearOperator, "
                             f"got {preconditioner!r}; use 'jacobi' for 1/|diag(A)|")
        d = op.diagonal()
        if d is None:
            raise ValueError(f"`preconditioner='jacobi'` needs the diagonal of the operator, but this {op.kind} "
                             "operator does not provide `diagonal()`; pass your own preconditioner callable")
        d = d.to(device=op.device, dtype=op.dtype).abs()
        # A zero diagonal entry carries no scaling information: leave that row unscaled.
        inverse = torch.where(d > 0, 1.0 / torch.where(d > 0, d, torch.ones_like(d)), torch.ones_like(d))
        return _DiagonalOperator(inverse)
    if isinstance(preconditioner, LinearOperator):
        pre = preconditioner
    elif isinstance(preconditioner, torch.Tensor):
        pre = as_operator(preconditioner, check_symmetry=False, name="preconditioner")
    elif callable(preconditioner):
        fn = preconditioner
        pre = _BlockCallableOperator(fn, n, op.dtype, op.device)
    else:
        raise TypeError(f"`preconditioner` must be None, 'jacobi', a callable, a tensor or a LinearOperator, "
                        f"got {type(preconditioner).__name__}")
    if pre.shape != (n, n):
        raise ValueError(f"`preconditioner` must have shape ({n}, {n}) like the operator, got {pre.shape}")
    return pre.to(op.device, op.dtype)


class _BlockCallableOperator(LinearOperator):
    """A preconditioner given as a function of an (n, b) block."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], n: int, dtype: torch.dtype,
                 device: torch.device) -> None:
        super().__init__((n, n), dtype, device, is_symmetric=True)
        self._fn = fn

    def _matmat(self, X: torch.Tensor) -> torch.Tensor:
        Y = self._fn(X)
        if not isinstance(Y, torch.Tensor) or Y.shape != X.shape:
            raise ValueError(f"the `preconditioner` callable must map an (n, b) block to (n, b); got "
                             f"{type(Y).__name__} {tuple(getattr(Y, 'shape', ()))} for input {tuple(X.shape)}")
        return Y


# ---------------------------------------------------------------------------------
# Small dense helpers
# ---------------------------------------------------------------------------------
# Layout: the engine stores every block of n-vectors *transposed*, as a row-major (b, n)
# tensor ("rows"): X is kept as Xt with Xt[i] the i-th vector. Measured here (MKL, one
# thread, n = 1e4): X^T Y for tall-skinny blocks runs 2x faster as Xt @ Yt^T, and X @ C
# 1.45x faster as C^T @ Xt; selecting vectors becomes a contiguous row slice, and the
# concatenation of blocks a plain memory copy. Operators still see (n, b) columns.
def _sym_eigh(G: torch.Tensor, largest: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``eigh`` of a small symmetric matrix in float64 (cheap; robust for float32 problems)."""
    G64 = G.to(torch.float64)
    values, vectors = torch.linalg.eigh(0.5 * (G64 + G64.T))
    if largest:
        values, vectors = values.flip(0), vectors.flip(1)
    return values, vectors


def _rows(op: LinearOperator, Yt: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """(op @ Yt^T)^T as a contiguous (b, n) tensor (written into ``out`` when given).

    A scipy CSR matrix on the CPU (``op.rows_kernel``) runs its SpMV kernel on each row, writing
    straight into ``out`` (``LinearOperator.matvecs_into``): no transposing copies, the same
    numbers (n = 10^4, 13 rows: 372 us against 536 us for the block product below; k = 10 on
    the 2-D Laplacian n = 10^4: 0.62-0.73 s against 0.78-0.84 s LA, 1.06-1.09 against
    1.29-1.59 s SA, same iterations). Otherwise
    a sparse matrix is applied row by row (one SpMV per contiguous vector) when the block is
    large: measured on the 2-D Laplacian, n = 1e5, 13 vectors, that is 1.5x faster than one
    block product plus the two transposition copies it needs in this layout. A block of at
    most ``_SPARSE_BLOCK_MAX`` entries (it fits in cache: n = 1e4, 13 vectors) is applied in
    one product, 1.3x faster than row by row there. Other operators always get one block
    product (dense GEMM, or a batched matrix-free product such as an HVP). The transpositions
    around that product are numpy's copies (``_copy_transposed``), and a sparse matrix gets its
    input C-ordered: scipy's CSR kernel copies an F-ordered (n, b) view itself, more slowly
    (measured, n = 1e4, b = 13: 437 us per product before, ~350 us now).
    """
    if op.rows_kernel:  # scipy's CSR kernel row by row, into ``out``: no transposing copies
        if out is None:
            out = torch.empty_like(Yt)
        if op.matvecs_into(Yt, out):
            return out
    if op.kind == "sparse" and Yt.numel() > _SPARSE_BLOCK_MAX:
        if out is None:
            out = torch.empty_like(Yt)
        for i in range(Yt.shape[0]):
            out[i] = op.matvec(Yt[i])
        return out
    if out is None:
        out = torch.empty_like(Yt)
    Y = Yt.T
    if op.kind == "sparse" and Yt.device.type == "cpu":
        # scipy's CSR kernel wants C-ordered (n, b) columns and copies an F-ordered view itself
        # (numpy's ravel); numpy's transposing copy is ~2x faster than that one.
        Y = _transposed(Yt)
    _copy_transposed(out, op.matmat(Y))
    return out


def _transposed(Mt: torch.Tensor) -> torch.Tensor:
    """``Mt.T`` as a C-ordered tensor (numpy's transposing copy on the CPU: ~2x faster than torch's
    here, 61 against 130 us for (13, 1e4) float64)."""
    M = torch.empty(Mt.shape[1], Mt.shape[0], dtype=Mt.dtype, device=Mt.device)
    _copy_transposed(M, Mt)
    return M


def _copy_transposed(out: torch.Tensor, M: torch.Tensor) -> None:
    """``out[...] = M.T`` (numpy's copy on the CPU where it applies, see ``_transposed``)."""
    if (out.device.type == "cpu" and M.device.type == "cpu" and M.dtype == out.dtype and not M.requires_grad
            and out.dtype in (torch.float64, torch.float32)):
        np.copyto(out.numpy(), M.numpy().T)
    else:
        out.copy_(M.T)


def _svqb_from_gram(G: torch.Tensor, drop_tol: float) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The SVQB transform from the Gram matrix G = U^T B U (Stathopoulos & Wu 2002;
    Duersch et al. 2018, Alg. 4, with dropping).

    Returns (keep, T, conditioning) such that ``U[:, keep] @ T`` has B-orthonormal columns:
    columns are scaled to unit B-norm, the scaled Gram matrix is diagonalized, and directions
    whose eigenvalue is below ``drop_tol * max`` (linearly dependent to working precision) are
    dropped, so T may have fewer columns. Zero columns are removed first. ``conditioning``:
    smallest / largest eigenvalue of the scaled Gram matrix (0 when columns were dropped).
    """
    G64 = G.to(torch.float64)
    d = G64.diagonal()
    keep = d > torch.finfo(G.dtype).tiny * 1e4
    if not bool(keep.all()):
        G64, d = G64[keep][:, keep], d[keep]
    if d.numel() == 0:
        return keep, torch.zeros(0, 0, dtype=G.dtype, device=G.device), 0.0
    scale = d.rsqrt().unsqueeze(1)
    H = scale * G64 * scale.T
    E, Z = torch.linalg.eigh(0.5 * (H + H.T))
    # E ascends, so the directions kept (E > drop_tol * max) are the last ones: a slice.
    values = E.tolist()
    threshold = drop_tol * values[-1]
    first = next((i for i, e in enumerate(values) if e > threshold), len(values))
    # C order, as the boolean selection it replaces made it: the GEMMs it enters round the same way.
    T = ((scale * Z[:, first:]) * E[first:].rsqrt().unsqueeze(0)).contiguous()
    return keep, T.to(G.dtype), values[0] / values[-1] if values[0] > 0 else 0.0


def _transform_rows(Ut: torch.Tensor, keep: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    """Rows of ``U[:, keep] @ T`` from the rows Ut of U."""
    if not bool(keep.all()):
        Ut = Ut[keep]
    return T.T @ Ut


def _orth_basis_of_rows(M: torch.Tensor, columns: int) -> torch.Tensor:
    """An orthonormal (r, columns) basis of the column space of M (r, c) via QR (c >= columns)."""
    Q = torch.linalg.qr(M.to(torch.float64)).Q
    return Q[:, :columns]


def _selection(mask: torch.Tensor) -> slice | torch.Tensor:
    """Indices where ``mask`` is True: a slice when they are contiguous (a free view), else indices.

    The locked vectors are usually the leading ones, so the active set is usually a range.
    """
    idx = [i for i, flag in enumerate(mask.tolist()) if flag]
    if idx and idx[-1] - idx[0] + 1 == len(idx):
        return slice(idx[0], idx[-1] + 1)
    return torch.tensor(idx, dtype=torch.long, device=mask.device)


def _take_rows(Mt: torch.Tensor, sel: slice | torch.Tensor) -> torch.Tensor:
    return Mt[sel] if isinstance(sel, slice) else Mt.index_select(0, sel)


def _gram(left: list[torch.Tensor], right: list[torch.Tensor]) -> torch.Tensor:
    """The symmetric [L_0; ...; L_b] [R_0; ...; R_b]^T (blocks given as rows) in float64.

    Only the upper blocks are multiplied; the lower ones are their mirrors.
    """
    offsets = [0]
    for block in left:
        offsets.append(offsets[-1] + block.shape[0])
    G = torch.zeros(offsets[-1], offsets[-1], dtype=torch.float64)
    for i, Li in enumerate(left):
        for j in range(i, len(right)):
            block = (Li @ right[j].T).to(torch.float64)
            G[offsets[i]:offsets[i + 1], offsets[j]:offsets[j + 1]] = block
            if j != i:
                G[offsets[j]:offsets[j + 1], offsets[i]:offsets[i + 1]] = block.T
    return 0.5 * (G + G.T)


def _combine(blocks: list[torch.Tensor], C: torch.Tensor) -> torch.Tensor:
    """Rows of ``[B_0 ... B_b] @ C`` from the rows of the blocks (one GEMM per block)."""
    Ct = C.to(blocks[0].dtype).T.contiguous()  # a contiguous left factor: ~10 % faster GEMMs here
    row = blocks[0].shape[0]
    out = Ct[:, :row] @ blocks[0]
    for block in blocks[1:]:
        out.addmm_(Ct[:, row:row + block.shape[0]], block)
        row += block.shape[0]
    return out


# ---------------------------------------------------------------------------------
# Our engine
# ---------------------------------------------------------------------------------
@dataclass
class _State:
    """The current block and its stored products, as rows (see "Layout" above).

    ``XPt`` is one contiguous (m + p, n) tensor: the rows of X (the m Ritz vectors, best
    first) followed by those of the p conjugate directions P. For "ortho", [X, P] is
    B-orthonormal; for "basic", P has m rows aligned with X (P_j is the last update of X_j).
    ``AXPt`` holds A [X, P], or only A X (m rows) when A X is recomputed each step.
    """

    XPt: torch.Tensor
    AXPt: torch.Tensor
    BXPt: torch.Tensor
    theta: torch.Tensor  # (m,)
    m: int
    G: torch.Tensor | None = None  # [X, P]^T A [X, P] (float64) when known without recomputing

    @property
    def Xt(self) -> torch.Tensor:
        return self.XPt[: self.m]

    @property
    def AXt(self) -> torch.Tensor:
        return self.AXPt[: self.m]

    @property
    def BXt(self) -> torch.Tensor:
        return self.BXPt[: self.m]

    @property
    def p(self) -> int:
        return self.XPt.shape[0] - self.m


_KEPT = "the last iterate before it, with true residuals"


class _Engine:
    """One LOBPCG solve with stored products (see the module docstring)."""

    def __init__(self, v: Validated, monitor: Monitor, *, m: int, method: str, largest: bool,
                 T: LinearOperator | None, X_start: torch.Tensor, recompute_AX: bool = False) -> None:
        # recompute_AX: apply A to the new X every step instead of updating stored A X, A P
        # (only for "ortho"; "basic" needs A P for its explicit Gram matrices).
        self.recompute_AX = recompute_AX and method == "ortho"
        self.A = v.operator
        self.B = v.B
        self.k, self.m, self.tol, self.max_iter = v.k, m, v.tol, v.max_iter
        self.method = method
        self.largest = largest
        self.T = T
        self.monitor = monitor
        self.X_start = X_start
        dtype = v.operator.dtype
        self.eps = torch.finfo(dtype).eps
        n = v.operator.shape[0]
        # Directions whose relative Gram eigenvalue is below this are dependent to working precision.
        self.drop_tol = 10 * self.eps * m
        # Orthogonality accepted for [X, P]: Gram entries of n-vectors carry about sqrt(n) eps
        # of rounding, so asking for less would re-orthonormalize every step.
        self.ortho_tol = 10 * self.eps * math.sqrt(n) * math.sqrt(m)
        # float32: rebuild the X rows of the carried projected matrix each step (_carried_gram)
        self.fresh_rows = self.recompute_AX and dtype == torch.float32
        self.norm_estimate = 0.0
        self.notes: list[str] = []
        self.n_refreshed = 0  # audits that rebuilt the projected matrix from fresh products
        # Double buffers (see ``_stage``): the rows of [X, P] (or A [X, P]) sit at the top of
        # one, with room below for the new directions W (A W), so that the Gram products and
        # the update of the block are single GEMMs over a contiguous [X, P; W], written into
        # the other buffer. Allocated on first use.
        self._buffers: dict[str, list[torch.Tensor]] = {}
        self._eyes: dict[int, torch.Tensor] = {}

    # -- building blocks --------------------------------------------------------
    def _B(self, Yt: torch.Tensor) -> torch.Tensor:
        return Yt if self.B is None else _rows(self.B, Yt)

    def _threshold(self, theta: torch.Tensor) -> torch.Tensor:
        return residual_threshold(theta, self.tol, self.norm_estimate)

    def _ritz(self, G: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        values, Z = _sym_eigh(G, self.largest)
        if values.numel():
            self.norm_estimate = max(self.norm_estimate, abs(float(values[0])), abs(float(values[-1])))
        return values, Z

    def _initial(self) -> _State:
        X = self.X_start
        if self.B is None:
            Xt = torch.linalg.qr(X).Q.T.contiguous()
            BXt = Xt
        else:
            Xt = X.T.contiguous()
            BXt = self._B(Xt)
            quad = (Xt * BXt).sum(1)
            if not bool((quad > 0).all()):
                j = int(torch.argmin(quad))
                worst = float(quad[j] / (Xt[j] * Xt[j]).sum())
                raise ValueError(f"`B` must be symmetric positive definite, but x^T B x / x^T x = {worst:.3g} <= 0 "
                                 "for a start vector; pass an SPD B (e.g. a mass matrix) or omit it")
            keep, Tm, _ = _svqb_from_gram(Xt @ BXt.T, self.drop_tol)
            Xt, BXt = _transform_rows(Xt, keep, Tm), _transform_rows(BXt, keep, Tm)
        if Xt.shape[0] < self.m:
            raise ValueError(f"`X0` has linearly dependent columns (rank {Xt.shape[0]} < block size {self.m}); "
                             "pass independent starting vectors or fewer columns")
        AXt = _rows(self.A, Xt)
        values, Z = self._ritz(_gram([Xt], [AXt]))
        Zt = Z.T.to(Xt.dtype)
        XZ = Zt @ Xt
        return _State(XZ, Zt @ AXt, Zt @ BXt if self.B is not None else XZ, values.to(Xt.dtype), self.m)

    def _residuals(self, s: _State) -> tuple[torch.Tensor, torch.Tensor]:
        """R = A X - B X Theta, as rows (written into the buffer above [X, P] when it lives in
        one), and the residual norms ||r_i|| (/ ||B x_i|| with a B: ``true_residual_norms``)."""
        home = self._home("x", s.XPt) if self._fast_ortho() else None
        if home is None:
            Rt = s.AXt - s.BXt * s.theta.unsqueeze(1)
        else:
            z = 2 * self.m
            Rt = torch.addcmul(s.AXt, s.Xt, s.theta.unsqueeze(1), value=-1,
                               out=self._buffers["x"][home][z - self.m: z])
        res = torch.linalg.vector_norm(Rt, dim=1)
        return Rt, res if self.B is None else res / torch.linalg.vector_norm(s.BXt, dim=1)

    def _new_directions(self, s: _State, Rt: torch.Tensor, res: torch.Tensor,
                        active: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """W = T R (active columns), B-orthonormal, plus its overlap C = [X, P]^T B W.

        Knyazev's Rayleigh-Ritz tolerates a W that is not B-orthogonal to [X, P] as long as the
        Gram matrix stays well conditioned, so we only pay for a projection when it is needed:
        the overlap C is computed (one small GEMM); if its largest singular value (the cosine of
        the smallest angle between span W and span [X, P]) exceeds 0.9, W is projected
        (classical Gram-Schmidt, twice when the projection cancelled more than 99 % of a
        column: "twice is enough"), and its overlap is then zero to working precision.
        Otherwise C enters the B-Gram matrix exactly. Returns None when no direction is left.
        (Without preconditioner and B, R is orthogonal to the last Rayleigh-Ritz space, so C is
        at the rounding level and the projection is never needed.)
        """
        sel = _selection(active)
        Wt = _take_rows(Rt, sel)
        if self.T is not None:
            Wt = _rows(self.T, Wt)
        BWt = self._B(Wt) if self.B is not None else Wt
        if self.T is None and self.B is None:
            norms = res[sel]  # W = R: its norms are the residual norms
        else:
            norms = torch.sqrt(torch.clamp((Wt * BWt).sum(1), min=torch.finfo(Wt.dtype).tiny))
        XPt, BXPt = s.XPt, s.BXPt
        C = BXPt @ Wt.T  # (q, a)
        Cn = (C / norms.clamp_min(torch.finfo(Wt.dtype).tiny).unsqueeze(0)).to(torch.float64)
        # ||Cn||_2 <= ||Cn||_F: the SVD is only needed when the cheap bound is inconclusive.
        projected = float(torch.linalg.vector_norm(Cn)) > 0.9 and float(torch.linalg.matrix_norm(Cn, ord=2)) > 0.9
        if projected:
            for _ in range(2):
                Wt = torch.addmm(Wt, C.T, XPt, alpha=-1)
                BWt = torch.addmm(BWt, C.T, BXPt, alpha=-1) if self.B is not None else Wt
                remaining = float(((Wt * BWt).sum(1) / norms.clamp_min(torch.finfo(Wt.dtype).tiny) ** 2).min())
                if remaining > 1e-4:  # lost at most 2 digits: one projection is enough
                    break
                C = BXPt @ Wt.T
        keep, Tm, _ = _svqb_from_gram(Wt @ BWt.T, self.drop_tol)
        if Tm.shape[1] == 0:
            return None
        Wt = _transform_rows(Wt, keep, Tm)
        BWt = _transform_rows(BWt, keep, Tm) if self.B is not None else Wt
        if projected:
            C = torch.zeros(XPt.shape[0], Wt.shape[0], dtype=Wt.dtype, device=Wt.device)
        else:
            C = (C if bool(keep.all()) else C[:, keep]) @ Tm
        return Wt, BWt, C

    # -- one Rayleigh-Ritz step --------------------------------------------------
    def _pair(self, name: str, like: torch.Tensor) -> list[torch.Tensor]:
        """The two (4 m, n) buffers of ``name`` (allocated on first use). Layout of one buffer,
        with Z = 2 m: rows [Z, Z + q) hold [X, P] (or A [X, P]); rows [Z - m, Z) the residuals
        of X, of which the active ones W end up in [Z - a, Z), directly above [X, P]; rows
        [Z - 2a, Z - a) hold A W. So [W; X; P] and [A W; W] are contiguous row blocks."""
        pair = self._buffers.get(name)
        if pair is None:
            shape = (4 * self.m, like.shape[1])
            pair = [torch.empty(shape, dtype=like.dtype, device=like.device) for _ in range(2)]
            self._buffers[name] = pair
        return pair

    def _home(self, name: str, top: torch.Tensor) -> int | None:
        """Index of the buffer of ``name`` whose rows [Z, Z + q) are ``top`` (no copy needed)."""
        pair = self._buffers.get(name)
        if pair is not None and top.is_contiguous():
            z = 2 * self.m
            for i, buf in enumerate(pair):
                if top.data_ptr() == buf[z].data_ptr():
                    return i
        return None

    def _stage(self, name: str, top: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(buffer with ``top`` at rows [Z, Z + q), the other buffer of the pair ``name``).

        ``top`` is copied in only when it does not live there already (the first step, after
        a re-orthonormalization or a "basic" step); a step reads one buffer and writes the new
        block into the other.
        """
        pair = self._pair(name, top)
        i = self._home(name, top)
        if i is None:
            z = 2 * self.m
            pair[0][z: z + top.shape[0]].copy_(top)
            i = 0
        return pair[i], pair[1 - i]

    def _fast_ortho(self) -> bool:
        return self.method == "ortho" and self.B is None and self.T is None

    def _step_ortho(self, s: _State, active: torch.Tensor, Rt: torch.Tensor, res: torch.Tensor) -> _State | None:
        """The "ortho" step for B = I, T = I with fewer passes over the n-vectors.

        Same mathematics as ``_step_ortho_general`` (see there). W = R (active rows) sits
        directly above [X, P] in a buffer and A W directly above W, so one GEMM
        [W; X; P] [A W; W]^T gives W^T A W, W^T W, [X, P]^T A W and C = [X, P]^T W. When the
        SVQB transform of W is reasonably conditioned (``_FOLD_MIN_CONDITIONING``) it is not
        applied to W but folded into these small matrices and into the update coefficients,
        and the new [X, P] (and A [X, P]) is one GEMM into the other buffer. With T = I and
        B = I, W is orthogonal to [X, P] up to rounding (Galerkin), so the projection of the
        general step is not needed; if the overlap says otherwise we fall back to it.
        """
        if not self._fast_ortho():
            return self._step_ortho_general(s, active, Rt, res)
        m, q, z = self.m, s.XPt.shape[0], 2 * self.m
        f64 = torch.float64
        sel = _selection(active)
        a = int(active.sum())
        xbuf, xnext = self._stage("x", s.XPt)
        W = xbuf[z - a: z]
        if not (Rt.data_ptr() == xbuf[z - m].data_ptr() and isinstance(sel, slice) and sel.stop == m):
            # Not in place: a gather, or residuals computed elsewhere. A slice of the buffer's own
            # residual rows may overlap W, so it is copied out first.
            W.copy_(_take_rows(Rt, sel).clone() if isinstance(sel, slice) else _take_rows(Rt, sel))
        AW = _rows(self.A, W, out=xbuf[z - 2 * a: z - a])
        G = (xbuf[z - a: z + q] @ xbuf[z - 2 * a: z].T).to(f64)  # rows [W; X; P], columns [A W, W]
        WW, C = G[:a, a:], G[a:, a:]
        norms = WW.diagonal().clamp_min(torch.finfo(f64).tiny).sqrt()
        Cn = C / norms.unsqueeze(0)
        if float(torch.linalg.vector_norm(Cn)) > 0.9 and float(torch.linalg.matrix_norm(Cn, ord=2)) > 0.9:
            Rt = s.AXt - s.Xt * s.theta.unsqueeze(1)  # the buffer rows were reused: recompute
            return self._step_ortho_general(s, active, Rt, torch.linalg.vector_norm(Rt, dim=1))
        keep, Tm, conditioning = _svqb_from_gram(WW, self.drop_tol)
        if Tm.shape[1] == 0:
            return None
        if conditioning >= _FOLD_MIN_CONDITIONING and bool(keep.all()):
            fold: torch.Tensor | None = Tm
            WAW, XAW = fold.T @ G[:a, :a] @ fold, G[a:, :a] @ fold
            C = C @ fold
        else:  # ill-conditioned or dependent directions: transform W (and A W) explicitly
            fold = None
            Tw = Tm.to(W.dtype)
            Wt, AWt = _transform_rows(W, keep, Tw), _transform_rows(AW, keep, Tw)
            a = Wt.shape[0]
            xbuf[z - a: z].copy_(Wt)
            xbuf[z - 2 * a: z - a].copy_(AWt)
            W, AW = xbuf[z - a: z], xbuf[z - 2 * a: z - a]
            G = (xbuf[z - a: z + q] @ xbuf[z - 2 * a: z - a].T).to(f64)
            WAW, XAW = G[:a], G[a:]
            C = C[:, keep] @ Tm
        rr = self._rayleigh_ritz_ortho(s, active, XAW, 0.5 * (WAW + WAW.T), C, sel)
        if rr is None:
            return None
        values, Cf, GA = rr
        # Coefficients on the buffer rows [W (raw); X; P].
        Craw = torch.cat([Cf[q:] if fold is None else fold @ Cf[q:], Cf[:q]], 0)
        CrawT = Craw.T.to(W.dtype).contiguous()
        q_new = Craw.shape[1]
        XPt = torch.mm(CrawT, xbuf[z - a: z + q], out=xnext[z: z + q_new])
        if self.recompute_AX:
            AXPt = _rows(self.A, XPt[:m])  # fresh A X; A P is never needed in this mode
        else:
            abuf, anext = self._stage("a", s.AXPt)
            abuf[z - a: z].copy_(AW)
            AXPt = torch.mm(CrawT, abuf[z - a: z + q], out=anext[z: z + q_new])
        G_new, theta = self._carried_gram(Cf.T @ GA @ Cf, values[:m], XPt, AXPt, XPt)
        return _State(XPt, AXPt, XPt, theta.to(XPt.dtype), m, G=G_new)

    def _step_ortho_general(self, s: _State, active: torch.Tensor, Rt: torch.Tensor,
                            res: torch.Tensor) -> _State | None:
        """Rayleigh-Ritz on [X, P, W] with Duersch et al.'s choice of P, reusing stored products.

        [X, P] is B-orthonormal, so S^T B S = [[I, C], [C^T, I]] needs only C (computed in
        ``_new_directions``) and S^T A S needs only [X, P]^T A W and W^T A W: the [X, P]
        block is carried over from the previous step as Y^T G Y (refreshed explicitly every
        ``_REFRESH`` iterations when A P is stored).
        """
        m = self.m
        directions = self._new_directions(s, Rt, res, active)
        if directions is None:
            return None  # every new direction lies in span[X, P]: stagnation at rounding level
        Wt, BWt, C = directions
        AWt = _rows(self.A, Wt)
        rr = self._rayleigh_ritz_ortho(s, active, (s.XPt @ AWt.T).to(torch.float64),
                                       (Wt @ AWt.T).to(torch.float64), C.to(torch.float64))
        if rr is None:
            return None
        values, Cf, GA = rr
        XPt = _combine([s.XPt, Wt], Cf)
        if self.recompute_AX:
            AXPt = _rows(self.A, XPt[:m])  # fresh A X; A P is never needed in this mode
        else:
            AXPt = _combine([s.AXPt, AWt], Cf)
        BXPt = _combine([s.BXPt, BWt], Cf) if self.B is not None else XPt
        G_new, theta = self._carried_gram(Cf.T @ GA @ Cf, values[:m], XPt, AXPt, BXPt)
        return _State(XPt, AXPt, BXPt, theta.to(XPt.dtype), m, G=G_new)

    def _carried_gram(self, G: torch.Tensor, values: torch.Tensor, XPt: torch.Tensor, AXPt: torch.Tensor,
                      BXPt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The projected matrix [X, P]^T A [X, P] carried to the next step, and the Ritz values.

        ``G = Y^T GA Y`` is exact in exact arithmetic, but its rounding (~eps ||A|| a step)
        accumulates from step to step. In float64 the audit (``_refresh_products``) keeps that
        far below any threshold. In float32 it does not: thresholds are within 10-100x of
        eps ||A||, and on the float32 1-D Laplacian (n = 100, SA, k = 4, tol 10 sqrt(eps)) the
        carried values sank below the smallest eigenvalue (down to -0.029 for a positive definite
        matrix) while the residuals, which contain that drift, stalled near the threshold: seeds
        0..59 took 5508 iterations in all, and one reached max_iter = 1000.
        So when A X is recomputed each step (``fresh_rows``: float32), the X rows of G are
        rebuilt from the fresh products, [X; P] (A X)^T (one (q, m) GEMM, a few % of a step),
        and the values become the fresh Rayleigh quotients x^T A x / x^T B x; only the
        P^T A P block stays carried. Measured: 2985 iterations in all, at most 60, no value
        below lambda_1 beyond rounding.
        """
        m = self.m
        if not self.fresh_rows:
            return 0.5 * (G + G.T), values
        fresh = (XPt @ AXPt[:m].T).to(torch.float64)  # (q, m): [X; P]^T A X
        G = G.clone()
        G[:, :m] = fresh
        G[:m, :] = fresh.T
        quotients = fresh.diagonal() / (XPt[:m] * BXPt[:m]).sum(1).to(torch.float64)
        return 0.5 * (G + G.T), quotients

    def _rayleigh_ritz_ortho(self, s: _State, active: torch.Tensor, XAW: torch.Tensor, WAW: torch.Tensor,
                             C: torch.Tensor, sel: slice | torch.Tensor | None = None
                             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """The small part of the "ortho" step: Ritz values and the coefficients of the new [X, P].

        S = [X, P, W] with [X, P] and W each B-orthonormal and C = [X, P]^T B W, so
        S^T B S = [[I, C], [C^T, I]]; S^T A S from the carried G, XAW = [X, P]^T A W and
        WAW = W^T A W.
        Returns (values, Cf, GA): the new rows are Cf^T [X P; W]. ``sel``: ``_selection(active)``
        when the caller has it.
        """
        m = self.m
        q, a = s.XPt.shape[0], WAW.shape[0]
        G_xp = s.G if s.G is not None else _gram([s.XPt], [s.AXPt])
        GA = torch.cat([torch.cat([G_xp, XAW], 1), torch.cat([XAW.T, WAW], 1)])
        GA = 0.5 * (GA + GA.T)
        eye = self._eye(q + a)
        GB = eye.clone()
        GB[:q, q:] = C
        GB[q:, :q] = C.T
        L, info = torch.linalg.cholesky_ex(GB)
        if int(info) != 0:
            return None
        Linv = torch.linalg.solve_triangular(L, eye, upper=False)
        values, Z = self._ritz(Linv @ GA @ Linv.T)
        Y = Linv.T @ Z  # S Y is B-orthonormal; Y^T GA Y = diag(values)
        Yx, Yr = Y[:, :m], Y[:, m:]
        # P (Duersch et al. 2018, Sec. 3.2): within the span of the remaining Ritz vectors S Yr,
        # the directions that reproduce the old active X: basis of Yr^T GB e_rows.
        if sel is None:
            sel = _selection(active)
        GB_rows = GB[:, sel] if isinstance(sel, slice) else GB.index_select(1, sel)
        n_p = min(GB_rows.shape[1], Yr.shape[1])
        Cf = torch.cat([Yx, Yr @ _orth_basis_of_rows(Yr.T @ GB_rows, n_p)], 1) if n_p > 0 else Yx
        return values, Cf, GA

    def _eye(self, size: int) -> torch.Tensor:
        """A cached float64 identity (read only)."""
        eye = self._eyes.get(size)
        if eye is None:
            eye = self._eyes[size] = torch.eye(size, dtype=torch.float64)
        return eye

    def _step_basic(self, s: _State, active: torch.Tensor, Rt: torch.Tensor) -> _State | None:
        m = self.m
        sel = _selection(active)
        Wt = _take_rows(Rt, sel)
        if self.T is not None:
            Wt = _rows(self.T, Wt)
        BWt = self._B(Wt) if self.B is not None else Wt
        # Normalize W to unit B-norm; Knyazev 2001 works with the raw residual directions.
        norms = torch.sqrt(torch.clamp((Wt * BWt).sum(1), min=torch.finfo(Wt.dtype).tiny)).unsqueeze(1)
        Wt = Wt / norms
        BWt = BWt / norms if self.B is not None else Wt
        AWt = _rows(self.A, Wt)
        blocks = [(s.Xt, s.AXt, s.BXt), (Wt, AWt, BWt)]
        if s.p > 0:
            Pt, APt = _take_rows(s.XPt[m:], sel), _take_rows(s.AXPt[m:], sel)
            BPt = _take_rows(s.BXPt[m:], sel) if self.B is not None else Pt
            pn = torch.sqrt(torch.clamp((Pt * BPt).sum(1), min=torch.finfo(Pt.dtype).tiny)).unsqueeze(1)
            Pt, APt = Pt / pn, APt / pn
            BPt = BPt / pn if self.B is not None else Pt
            state = self._rayleigh_ritz_general(blocks + [(Pt, APt, BPt)])
            if state is not None:
                return state
            self.notes.append("restarted without P after an ill-conditioned Gram matrix")
        return self._rayleigh_ritz_general(blocks)

    def _rayleigh_ritz_general(self, blocks: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> _State | None:
        """Rayleigh-Ritz on a raw (non-orthonormal) basis: Cholesky of S^T B S (Knyazev 2001, Sec. 4)."""
        m = self.m
        S = [b[0] for b in blocks]
        GA = _gram(S, [b[1] for b in blocks])
        GB = _gram(S, [b[2] for b in blocks])
        d = GB.diagonal().clamp_min(1e-300).rsqrt()
        L, info = torch.linalg.cholesky_ex(d[:, None] * GB * d[None, :])
        if int(info) != 0:
            return None
        # Reject a numerically singular Gram matrix (cond > ~1/(1e4 eps) from the Cholesky diagonal):
        # the Ritz vectors would lose B-orthonormality by cond * eps.
        diag_L = L.diagonal()
        if float(diag_L.min()) ** 2 < 1e4 * self.eps * float(diag_L.max()) ** 2:
            return None
        Linv = torch.linalg.solve_triangular(L, torch.eye(L.shape[0], dtype=torch.float64), upper=False)
        Ci = d[:, None] * Linv.T  # S @ Ci is B-orthonormal
        values, Z = self._ritz(Ci.T @ GA @ Ci)
        Yx = Ci @ Z[:, :m]  # coefficients of the new X in the raw basis
        Yp = Yx.clone()
        Yp[:m] = 0  # Knyazev 2001: P = W C_W + P C_P (the new X without its X component)
        C = torch.cat([Yx, Yp], 1)
        XPt = _combine(S, C)
        AXPt = _combine([b[1] for b in blocks], C)
        BXPt = _combine([b[2] for b in blocks], C) if self.B is not None else XPt
        return _State(XPt, AXPt, BXPt, values[:m].to(XPt.dtype), m)

    def _refresh_products(self, s: _State, threshold: torch.Tensor, it: int) -> bool:
        """At an audit: replace implicitly updated products by fresh ones where they drifted.

        The Ritz step uses [X, P]^T A [X, P] carried over from step to step (and, with stored
        products, A P and A X updated by the Ritz coefficients); their rounding accumulates.
        Measured: float32 1-D Laplacian, SA, 2 of 12 seeds reached a Ritz value of -0.07 (the
        matrix is positive definite) and stalled at residual 0.1 until max_iter; float64 with
        a 20-fold zero eigenvalue, after ~1000 stagnating steps, values of -18 and -44090.
        With A X recomputed each step the check is free: the carried Ritz values must match
        the fresh Rayleigh quotients x^T A x / x^T B x to within each column's convergence
        threshold, else A P is computed (p matvecs) and the block rebuilt exactly. With stored
        products A [X, P] is recomputed every ``_FRESH_EVERY`` audits (q matvecs; runs shorter
        than that pay nothing). Returns True when the state changed (recompute the residuals).
        """
        m, p = self.m, s.p
        if self.recompute_AX:
            quotients = (s.Xt * s.AXt).sum(1) / (s.Xt * s.BXt).sum(1)  # x^T A x / x^T B x
            # a difference at the rounding level of a Rayleigh quotient is not drift (and a tol
            # below it, which cannot be met anyway, must not trigger a recomputation each audit)
            allowed = torch.clamp(threshold, min=self.ortho_tol * self.norm_estimate)
            if p == 0 or not bool(((quotients - s.theta).abs() > allowed).any()):
                return False
            APt = _rows(self.A, s.XPt[m:])
            G = _gram([s.XPt], [torch.cat([s.AXt, APt])])
            s.G, s.theta = 0.5 * (G + G.T), quotients
            self.n_refreshed += 1
            return True
        if it % (_FRESH_EVERY * _REFRESH) != 0 or s.AXPt.shape[0] != s.XPt.shape[0]:
            return False
        s.AXPt = _rows(self.A, s.XPt)
        s.G = None
        s.theta = (s.Xt * s.AXt).sum(1) / (s.Xt * s.BXt).sum(1)
        return True

    def _maybe_reorthonormalize(self, s: _State, loss: float) -> _State:
        """Restore B-orthonormality of X (and, for "ortho", of P and P _|_ X) after update drift.

        Builds one small (q, q') transform M (SVQB of X, then P projected against the new X and
        SVQB'd) and applies it to X P and to the stored products, so no matvecs are spent;
        the carried Gram block becomes M^T G M.
        """
        if loss <= 10 * self.ortho_tol:
            return s
        self.notes.append("re-orthonormalized the block after rounding drift")
        m, q = self.m, s.XPt.shape[0]
        f64 = torch.float64
        _, Tx, _ = _svqb_from_gram(s.Xt @ s.BXt.T, 0.0)
        if Tx.shape[1] != m:
            return s
        M = torch.zeros(q, m, dtype=f64)
        M[:m] = Tx.to(f64)
        if self.method == "ortho" and s.p > 0:
            BXn = Tx.T @ s.BXt
            Cx = (BXn @ s.XPt[m:].T).to(f64)  # (m, p): overlap of P with the new X
            Mp = torch.zeros(q, s.p, dtype=f64)
            Mp[:m] = -Tx.to(f64) @ Cx
            Mp[m:] = torch.eye(s.p, dtype=f64)
            Pt, BPt = _combine([s.XPt], Mp), _combine([s.BXPt], Mp)
            keep, Tp, _ = _svqb_from_gram(Pt @ BPt.T, self.drop_tol)
            M = torch.cat([M, Mp[:, keep] @ Tp.to(f64)], 1)
        elif s.p > 0:  # "basic": P is aligned with the columns of X and is not B-orthogonal to it; keep it
            M = torch.cat([M, torch.cat([torch.zeros(m, s.p, dtype=f64), torch.eye(s.p, dtype=f64)], 0)], 1)
        XPt = _combine([s.XPt], M)
        AXPt = _combine([s.AXPt], M[:m, :m]) if s.AXPt.shape[0] == m else _combine([s.AXPt], M)
        BXPt = _combine([s.BXPt], M) if self.B is not None else XPt
        G = None if s.G is None else M.T @ s.G @ M
        return _State(XPt, AXPt, BXPt, s.theta, m, G=G)

    # -- the loop ------------------------------------------------------------------
    def _step(self, s: _State, res: torch.Tensor, Rt: torch.Tensor, it: int,
              threshold: torch.Tensor | None = None) -> tuple[_State | None, torch.Tensor]:
        """One LOBPCG iteration from state s: (the new state or None at a breakdown, the active mask).
        ``threshold``: ``self._threshold(s.theta)`` when the caller has it."""
        if threshold is None:
            threshold = self._threshold(s.theta)
        active = ~(res <= threshold)  # soft locking: converged columns get no W, P
        if not bool(active.any()):  # every column (guards included) converged, but not verified
            active[self.k - 1] = True
        if self.method == "ortho":
            return self._step_ortho(s, active, Rt, res), active
        step = self._step_basic(s, active, Rt)
        if step is None:
            self.notes.append(f"switched from basic to ortho at iteration {it + 1} (ill-conditioned Gram)")
            self.method = "ortho"
            Xt = s.Xt.contiguous()  # basic's P is not B-orthogonal to X: drop it
            s = _State(Xt, s.AXt.contiguous(), s.BXt.contiguous() if self.B is not None else Xt, s.theta, self.m)
            step = self._step_ortho(s, active, Rt, res)
        return step, active

    def run(self) -> EigenResult:
        k, monitor = self.k, self.monitor
        try:
            s = self._initial()
        except torch.linalg.LinAlgError:  # NaN / Inf in the first products: nothing to report
            nan = torch.full((k,), math.nan, dtype=self.X_start.dtype, device=self.X_start.device)
            X = torch.linalg.qr(self.X_start).Q[:, :k]
            return monitor.finish(eigenvalues=nan, eigenvectors=X, residual_norms=nan.clone(),
                                  converged=torch.zeros(k, dtype=torch.bool), n_iter=0, status=SolveStatus.BREAKDOWN,
                                  message=nonfinite_message("in the first products", monitor.n_matvec, _KEPT))
        Rt, res = self._residuals(s)
        threshold = self._threshold(s.theta)
        status = SolveStatus.MAX_ITER
        message = ""
        it = 0
        verified = False
        while it < self.max_iter:
            try:
                step = self._step(s, res, Rt, it, threshold)
            except torch.linalg.LinAlgError:  # eigh of a projected matrix with NaN / Inf from the operator
                status = SolveStatus.BREAKDOWN
                message = nonfinite_message(f"at iteration {it + 1}", monitor.n_matvec, _KEPT)
                break
            step, active = step
            if step is None:
                status = SolveStatus.BREAKDOWN
                message = ("Every new search direction is linearly dependent on the current basis (stagnation "
                           "at the rounding level); `tol` is probably below the attainable accuracy.")
                break
            it += 1
            s = step
            Rt, res = self._residuals(s)
            if not math.isfinite(float(res.sum())):
                status = SolveStatus.BREAKDOWN
                message = "The residuals became NaN or Inf (is the operator finite and B positive definite?)."
                break
            threshold = self._threshold(s.theta)  # per column; no Ritz step changes it until the next _step
            n_converged = int((res[:k] <= threshold[:k]).sum())
            verified = self.recompute_AX  # then A X is fresh: the residuals are the true ones
            if n_converged == k and not verified:
                # Confirm with fresh products before declaring convergence (removes update drift).
                s.AXPt[:k] = _rows(self.A, s.Xt[:k])
                Rt, res = self._residuals(s)
                n_converged = int((res[:k] <= threshold[:k]).sum())
                verified = True
            loss = orthogonality_loss(s.Xt.T, s.BXt.T)
            stop = monitor.record(it, s.theta[:k], res[:k], estimated=False, n_converged=n_converged,
                                  orthogonality_loss=loss, all_ritz_values=s.theta,
                                  extras={"n_active": float(active.sum()),
                                          "n_matvec_B": float(self.B.n_matvec) if self.B is not None else 0.0})
            if verified and n_converged == k:
                status = SolveStatus.CONVERGED
                break
            if stop:
                status = SolveStatus.STOPPED
                break
            full_products = s.AXPt.shape[0] == s.XPt.shape[0]
            if verified and full_products and not self.recompute_AX:
                s.G = None  # A X was refreshed: the carried Gram block is stale
            if it % _REFRESH == 0:
                # Periodic audit of the implicit quantities: the whole [X, P] block and its A-Gram.
                if full_products:
                    s.G = None
                loss = max(loss, orthogonality_loss(s.XPt.T, s.BXPt.T))
                if self._refresh_products(s, threshold, it):
                    Rt, res = self._residuals(s)
            s = self._maybe_reorthonormalize(s, loss)
        Xt, theta = s.Xt[:k], s.theta[:k]
        X = Xt.T.contiguous()
        residuals = res[:k] if verified else true_residual_norms(self.A, X, theta, self.B)
        converged = residuals <= self._threshold(theta)
        if status is SolveStatus.MAX_ITER and bool(converged.all()):
            status = SolveStatus.CONVERGED  # the fresh residuals met tol at the last iteration
        if self.n_refreshed:
            self.notes.append(f"rebuilt the projected matrix from fresh products {self.n_refreshed} time(s) "
                              "(rounding drift of the carried one)")
        notes = sorted(set(self.notes), key=self.notes.index)
        if notes:
            message = (message + " " if message else "") + "Notes: " + "; ".join(notes) + "."
        return monitor.finish(eigenvalues=theta, eigenvectors=X, residual_norms=residuals,
                              converged=converged, n_iter=it, status=status, message=message,
                              norm_estimate=self.norm_estimate)


# ---------------------------------------------------------------------------------
# torch.lobpcg backend
# ---------------------------------------------------------------------------------
_DISPATCH_LOCK = threading.Lock()
_ORIGINAL_MATMUL: Callable[..., torch.Tensor] | None = None


def _operator_matmul(A: Any, X: torch.Tensor) -> torch.Tensor:
    """``torch._linalg_utils.matmul`` that also accepts our LinearOperator objects."""
    if isinstance(A, LinearOperator):
        return A.matmat(X)
    assert _ORIGINAL_MATMUL is not None
    return _ORIGINAL_MATMUL(A, X)


def _ensure_matmul_dispatch() -> None:
    """Install the dispatching matmul once (re-install if someone restored an older function)."""
    global _ORIGINAL_MATMUL
    import torch._linalg_utils as lu

    if lu.matmul is _operator_matmul:
        return
    with _DISPATCH_LOCK:
        if lu.matmul is not _operator_matmul:
            _ORIGINAL_MATMUL = lu.matmul
            lu.matmul = _operator_matmul


def _run_torch(v: Validated, monitor: Monitor, *, m: int, method: str, largest: bool,
               T: LinearOperator | None, X_start: torch.Tensor) -> EigenResult:
    import torch._lobpcg as tl

    _ensure_matmul_dispatch()
    k, n = v.k, v.operator.shape[0]
    dtype = v.operator.dtype
    torch_default_tol = torch.finfo(dtype).eps ** 0.5
    iparams = {"m": n, "n": m, "k": k, "niter": v.max_iter + 1,  # +1: torch counts the initial Rayleigh-Ritz
               "ortho_i_max": 3, "ortho_j_max": 3}
    # tol = 0: torch's own convergence count never stops it (see module docstring); the
    # orthogonalization tolerances keep torch's defaults (they equal its default tol).
    fparams = {"tol": 0.0, "ortho_tol": torch_default_tol, "ortho_tol_drop": torch_default_tol,
               "ortho_tol_replace": torch_default_tol}
    bparams = {"largest": largest, "ortho_use_drop": False}
    norm_estimate = [0.0]
    state: dict[str, Any] = {"it": 0, "status": None, "X": None, "E": None, "res": None}
    B_plain = v.B.base if v.B is not None else None  # un-counted B for the orthogonality diagnostic

    def track(worker: Any) -> None:
        if worker.ivars["istep"] <= 1:
            return  # the initial Rayleigh-Ritz; with method="ortho", E is still 0 here
        E = worker.E.detach()
        X = worker.X.detach()
        BX = X if B_plain is None else B_plain._matmat(X)
        res = torch.linalg.vector_norm(worker.R.detach(), dim=0)
        if B_plain is not None:  # ||r|| / ||B x||, as true_residual_norms
            res = res / torch.linalg.vector_norm(BX, dim=0)
        norm_estimate[0] = max(norm_estimate[0], float(E.abs().max()))
        it = worker.ivars["istep"] - 1
        state.update(it=it, X=X[:, :k].clone(), E=E[:k].clone(), res=res[:k].clone())
        if not bool(torch.isfinite(res).all()):
            state["status"] = SolveStatus.BREAKDOWN
            worker.bvars["force_stop"] = True
            return
        conv = res[:k] <= residual_threshold(E[:k], v.tol, norm_estimate[0])
        loss = orthogonality_loss(X, BX)
        stop = monitor.record(it, E[:k], res[:k], estimated=False, n_converged=int(conv.sum()),
                              orthogonality_loss=loss, all_ritz_values=E[:m],
                              extras={"torch_converged_count": float(worker.ivars.get("converged_count", 0))})
        if stop:
            state["status"] = SolveStatus.STOPPED
            worker.bvars["force_stop"] = True
        elif bool(conv.all()):
            state["status"] = SolveStatus.CONVERGED
            worker.bvars["force_stop"] = True

    worker = tl.LOBPCG(v.operator, v.B, X_start.clone(), T, iparams, fparams, bparams, method, track)
    # Bound on the *instance*: immune to the class-attribute swap that torch.lobpcg does (LIVE.md 2.5).
    worker.call_tracker = lambda: track(worker)
    message = ""
    try:
        worker.run()
        status = state["status"] or SolveStatus.MAX_ITER
    except (torch.linalg.LinAlgError, RuntimeError, ValueError, AssertionError) as err:
        status = SolveStatus.BREAKDOWN
        message = f"torch.lobpcg failed: {type(err).__name__}: {err}"
    if state["X"] is None:  # failed before the first real iteration: Rayleigh quotients of the start
        X = X_start[:, :k]
        AX = v.operator.matmat(X)
        BX = X if v.B is None else v.B.matmat(X)
        E = (X * AX).sum(0) / (X * BX).sum(0)
        order = select_order(E, "LA" if largest else "SA")
        X, E = X[:, order], E[order]
    else:
        X, E = state["X"], state["E"]
    residuals = true_residual_norms(v.operator, X, E, v.B)
    converged = residuals <= residual_threshold(E, v.tol, max(norm_estimate[0], float(E.abs().max())))
    if status is SolveStatus.BREAKDOWN and not message:
        message = "The residuals became NaN or Inf."
    return monitor.finish(eigenvalues=E, eigenvectors=X, residual_norms=residuals, converged=converged,
                          n_iter=state["it"], status=status, message=message)


# ---------------------------------------------------------------------------------
# Dense fallback for n < 3 k
# ---------------------------------------------------------------------------------
def _dense_fallback(v: Validated, monitor: Monitor, note: str) -> EigenResult:
    op = v.operator
    n = op.shape[0]
    status, message = SolveStatus.CONVERGED, note
    try:
        values, vectors = dense_eigenpairs(op, v.B)
    except torch.linalg.LinAlgError as err:
        empty = torch.zeros(0, dtype=op.dtype)
        monitor.record(1, empty, empty, estimated=False, n_converged=0)
        return monitor.finish(eigenvalues=empty, eigenvectors=torch.zeros(n, 0, dtype=op.dtype),
                              residual_norms=empty, converged=torch.zeros(0, dtype=torch.bool), n_iter=1,
                              status=SolveStatus.BREAKDOWN, message=f"{note} {err}")
    order = select_order(values, v.which)[: v.k]
    values, vectors = values[order], vectors[:, order]
    residuals = true_residual_norms(op, vectors, values, v.B)
    converged = residuals <= residual_threshold(values, v.tol, float(values.abs().max()))
    monitor.record(1, values, residuals, estimated=False, n_converged=int(converged.sum()))
    if not bool(converged.all()):
        status = SolveStatus.MAX_ITER
    return monitor.finish(eigenvalues=values, eigenvectors=vectors, residual_norms=residuals, converged=converged,
                          n_iter=1, status=status, message=message)


# ---------------------------------------------------------------------------------
# Public entry point
# ---------------------------------------------------------------------------------
def lobpcg(
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
    method: str = "ortho",
    backend: str = "explorer",
    block_size: int | None = None,
    preconditioner: Any = None,
    products: str = "auto",
) -> EigenResult:
    """k largest (LA) or smallest (SA) eigenpairs of A x = lambda B x by block LOBPCG.

    Args:
        operator: symmetric n x n operator (dense, sparse or matrix-free).
        k: number of wanted eigenpairs.
        which: "LA" (largest algebraic) or "SA" (smallest algebraic).
        tol: a pair converges when ||A x - theta B x|| / ||B x|| <= tol * max(|theta|, sqrt(eps)
            ||A||_est) (without B: ||A x - theta x|| for unit x); the same test for any scaling
            of A and of B (a mass matrix of size h^d, say).
        max_iter: iteration limit (default 1000); one iteration = one Rayleigh-Ritz step.
        X0: optional starting vectors (n,) or (n, b) with b <= block size; missing columns
            are random.
        seed: seed of the random start (local generator).
        tracker: receives one record per iteration; raise StopSolve to stop.
        B: symmetric positive definite operator of the generalized problem (default I).
        method: "ortho" (robust, default) or "basic" (Knyazev 2001).
        backend: "explorer" (our engine, stored products; default) or "torch" (torch.lobpcg's
            worker with the guards in the module docstring).
        block_size: columns in X (default ``default_block_size(k, n)``); needs 3 * block_size <= n.
        preconditioner: None, "jacobi" (1/|diag(A)|), a callable mapping an (n, b) block to
            (n, b), an (n, n) tensor or a LinearOperator T, applied as W = T R. It should be
            symmetric positive definite.
        products: how A X is obtained each step ("ortho" only). "stored": updated from the
            saved A X, A P, A W with the Ritz coefficients (one application of A per new
            direction: the fewest); "recomputed": A applied to the new X (m more applications,
            but about 30 % less vector work); "auto" (default): "recomputed" for sparse operators
            with fewer nonzeros per row than the block size (a sparse product of m columns is
            then cheaper than the dense update it replaces, measured here), else "stored".

    Returns:
        EigenResult with k pairs in ``which`` order; status MAX_ITER when the limit was hit,
        BREAKDOWN (with the partial result and a message) when the method broke down.

    Raises:
        ValueError / TypeError: invalid arguments (see ``validate_common``), an unknown method,
            backend or preconditioner, a block smaller than k, n < 3 k with n too large for
            the dense fallback.
    """
    v = validate_common("lobpcg", operator, k, which=which, tol=tol, max_iter=max_iter, default_max_iter=1000,
                        supported_which=("LA", "SA"), X0=X0, B=B, supports_B=True)
    if method not in _METHODS:
        raise ValueError(f"`method` must be one of {list(_METHODS)}, got {method!r}; 'ortho' is the robust default")
    if products not in _PRODUCTS:
        raise ValueError(f"`products` must be one of {list(_PRODUCTS)}, got {products!r}; 'auto' picks per operator")
    if backend not in _BACKENDS:
        raise ValueError(f"`backend` must be one of {list(_BACKENDS)}, got {backend!r}; 'explorer' is the fast default")
    n, k = v.operator.shape[0], v.k
    if block_size is not None:
        if isinstance(block_size, bool) or not isinstance(block_size, int):
            raise TypeError(f"`block_size` must be an integer or None, got {block_size!r}")
        if block_size < k:
            raise ValueError(f"`block_size` must be >= k (torch would silently return only block_size pairs), "
                             f"got block_size={block_size}, k={k}; raise it or leave it None")
    # The iterations see A / 2^e when A's scale would over/underflow norms (ProductUnits); the
    # monitor reports values back in A's units. T's outputs get units of their own: only the
    # direction of T r matters, and a user's approximate inverse of a 1e-200 A is 1e200-sized.
    units = ProductUnits(v.operator.dtype)
    v_units = dataclasses.replace(v, operator=UnitsOperator(v.operator, units))
    T = _preconditioner_operator(preconditioner, v_units.operator)
    if T is not None:
        T = UnitsOperator(T, ProductUnits(T.dtype))
    if backend == "torch" and method == "ortho" and T is not None:
        raise ValueError("torch.lobpcg ignores the preconditioner with method='ortho' (its _update_ortho never "
                         "applies iK); use backend='explorer' or method='basic'")
    b0 = 0 if v.X0 is None else v.X0.shape[1]
    m = block_size if block_size is not None else max(default_block_size(k, n), b0)
    if b0 > m:
        raise ValueError(f"`X0` has {b0} columns but the block size is {m}; pass at most {m} columns or a larger "
                         "`block_size`")
    largest = v.which == "LA"
    extras = {"method": method, "backend": backend, "block_size": m, "products": products,
              "preconditioner": "none" if T is None else (preconditioner if isinstance(preconditioner, str)
                                                           else type(preconditioner).__name__)}
    if 3 * k > n:
        # LOBPCG's trial subspace [X, W, P] has 3 * block columns; torch refuses rows < 3 x block.
        if n > _DENSE_FALLBACK_MAX_N:
            raise ValueError(f"`k` must satisfy 3 * k <= n for LOBPCG (its search space has 3 x block size "
                             f"columns), got k={k}, n={n}; lower `k` or use `eigh`")
        monitor = Monitor("lobpcg", v, tracker, extras={**extras, "dense_fallback": True})
        return _dense_fallback(v, monitor, f"n = {n} < 3 k = {3 * k}: LOBPCG does not apply, solved densely "
                                           "with torch.linalg.eigh instead.")
    if 3 * m > n:
        if block_size is not None:
            raise ValueError(f"`block_size` must satisfy 3 * block_size <= n, got block_size={block_size}, n={n}; "
                             f"use at most {n // 3}")
        m = max(k, n // 3)
        extras["block_size"] = m
    generator = make_generator(seed)
    X_start = random_block(n, m, generator, dtype=v.operator.dtype, device=v.operator.device)
    if v.X0 is not None:
        X_start[:, :b0] = v.X0
    monitor = Monitor("lobpcg", v, tracker, extras=extras)
    monitor.units = units
    if backend == "torch":
        return _run_torch(v_units, monitor, m=m, method=method, largest=largest, T=T, X_start=X_start)
    if m == 1 and method == "ortho" and v.B is None and products != "recomputed":
        return _single_vector(v_units, monitor, largest=largest, T=T, x=X_start[:, 0])
    recompute = products == "recomputed" or (products == "auto" and _cheap_sparse(v.operator, m))
    return _Engine(v_units, monitor, m=m, method=method, largest=largest, T=T, X_start=X_start,
                   recompute_AX=recompute).run()


class _Rows:
    """The single-vector basis as rows [w, x, p] of a (3, n) buffer Q, their products
    [A w, A x, A p] in AQ, and the views of them the loop uses (made once: ``head[q]`` are the
    first q rows, ``V[q]`` the rows [x] or [x; p] after w)."""

    def __init__(self, n: int, dtype: torch.dtype, device: torch.device) -> None:
        self.Q = torch.empty(3, n, dtype=dtype, device=device)
        self.AQ = torch.empty_like(self.Q)
        self.w, self.x, self.p = self.Q.unbind(0)
        self.Aw, self.Ax, self.Ap = self.AQ.unbind(0)
        self.head = {q: self.Q[:q] for q in (2, 3)}
        self.Ahead = {q: self.AQ[:q] for q in (2, 3)}
        self.V = {q: self.Q[1:q] for q in (2, 3)}
        self.VT = {q: self.Q[1:q].T for q in (2, 3)}
        self.AV = {q: self.AQ[1:q] for q in (2, 3)}

    def residual(self, q: int, theta: float) -> tuple[float, torch.Tensor, float]:
        """Write r = A x - theta x into the w row; return ||r||, its overlaps g = V r with x (and p)
        and ||g||^2, all from one GEMV [r; x; p] r."""
        torch.add(self.Ax, self.x, alpha=-theta, out=self.w)
        s = torch.mv(self.head[q], self.w)
        rr, *g = s.tolist()
        return math.sqrt(max(rr, 0.0)), s[1:], sum(a * a for a in g)


def _single_vector(v: Validated, monitor: Monitor, *, largest: bool, T: LinearOperator | None,
                   x: torch.Tensor) -> EigenResult:
    """LOBPCG with one vector (block size 1, "ortho", no B): the same method as ``_Engine``
    (Knyazev 2001, Alg. 4.1 with m = 1; Rayleigh-Ritz on the orthonormal basis [x, w, p];
    products A x, A w, A p stored, so one matvec per iteration), without the block bookkeeping.

    Why a separate path: the block engine's bookkeeping (buffers, Gram blocks, soft locking,
    SVQB) costs ~0.8 ms per iteration whatever the block size, which at n = 10^4 was 90 % of
    a k = 1 solve (2-D Laplacian SA: 0.39 s against torch.lobpcg's 0.52 s). ``x`` is kept
    normalized and ``p`` orthonormal to it; ``w`` is Gram-Schmidt'ed against both (DGKS: a
    second pass when the first cancels). The stored A x drifts by rounding, so CONVERGED is
    only declared after a fresh product confirms the residual, and every ``_REFRESH``
    iterations x is renormalized and p re-orthonormalized against it (as in the engine).

    At large n the cost is passes over n-vectors (and fresh n-vector allocations), not flops,
    so everything lives in two preallocated pairs of (3, n) buffers (``_Rows``): the residual
    is written into the w row, and one GEMV [w; x; p] w gives its norm and its overlaps with
    x and p; Gram-Schmidt is one in-place GEMV (the norm after it from Pythagoras,
    ||w||^2 - ||g||^2, unless the pass cancelled, where it is measured) and the normalization
    an in-place scaling. The projected matrix H = S^T A S keeps its [x, p] block from the last
    step (C H C^T, as in the engine; recomputed by one GEMM after a fresh A x and at each
    audit), so only w's row is new: one GEMV. The new [x; p] and [A x; A p] are one small GEMM
    each into the other pair of buffers, and the pairs swap. About 30 passes over n-vectors
    per iteration and no n-vector allocation besides the operator's result (none at all where
    the operator writes A w into its row itself, ``matvecs_into``: one copy less; no
    difference measurable in the noise of this host at n = 1e5) (the first version
    of this path made ~47 passes and allocated nearly every intermediate). Measured on the
    2-D Laplacian, n = 1e5 (one thread, a loaded machine): ~1.3-1.5 ms per iteration (the
    first version: ~1.9-2.3 ms in the same sessions), of which ~0.55 ms the sparse product
    with the copy of its result (it runs ~1.6x slower than alone once ~10 MB of vectors
    stream through the cache between products), ~0.35 ms the two update GEMMs (MKL does
    these (2 x 3) @ (3 x n) products at ~10 GFlop/s here; no torch alternative was faster),
    ~0.25 ms the residual, H-row and Gram-Schmidt passes, ~0.1 ms the record and ~0.2 ms
    the small matrices and Python.
    """
    A, tol, max_iter = v.operator, v.tol, v.max_iter
    n, dtype, device = A.shape[0], A.dtype, A.device
    eps = torch.finfo(dtype).eps
    f64 = torch.float64
    dot, norm = torch.dot, torch.linalg.vector_norm
    # b: the current basis; the next x, p (and products) are written into rows 1, 2 of nb,
    # then the two swap. q = rows in use (2 while there is no p).
    b, nb = _Rows(n, dtype, device), _Rows(n, dtype, device)
    torch.div(x, norm(x), out=b.x)
    b.Ax.copy_(A.matvec(b.x))
    theta = float(dot(b.x, b.Ax))
    norm_estimate = abs(theta)
    q, G = 2, None  # G: the [x, p] block of H (lists of floats) when carried over
    res, g, gg = b.residual(q, theta)
    status, message = SolveStatus.MAX_ITER, ""
    it, verified, values = 0, False, torch.tensor([theta], dtype=f64)
    while it < max_iter:
        w, V = b.w, b.V[q]  # V = [x; p], orthonormal
        if T is None:
            before = res  # w = r: its norm and overlaps g are known
        else:
            w.copy_(T.matvec(w))
            before, g = float(norm(w)), torch.mv(V, w)
            gg = float(dot(g, g))
        start = before  # ||w|| in w's own units (T r has those of r / ||A||)
        for _ in range(2):  # w against x and p (DGKS: twice when the pass cancels)
            w.addmv_(b.VT[q], g, alpha=-1.0)
            after_sq = before * before - gg
            if after_sq > 0.5625 * before * before:  # kept > 3/4 of its norm: Pythagoras is accurate
                after = math.sqrt(after_sq)
                break
            after = float(norm(w))
            if after > 0.7071 * before:
                break
            before = after
            g = torch.mv(V, w)
            gg = float(dot(g, g))
        if not after > 10 * eps * start:
            status = SolveStatus.BREAKDOWN
            if math.isfinite(start + theta):
                message = ("The new search direction is linearly dependent on the current basis (stagnation at "
                           "the rounding level); `tol` is probably below the attainable accuracy.")
            else:
                message = nonfinite_message(f"at iteration {it + 1}", monitor.n_matvec, _KEPT)
            break
        w.mul_(1.0 / after)
        if not A.matvecs_into(w.unsqueeze(0), b.Aw.unsqueeze(0)):  # (a kernel writes A w in place)
            b.Aw.copy_(A.matvec(w))
        # Rayleigh-Ritz on H = S^T A S for the orthonormal basis S = [w, x, p].
        if G is None:  # first step, after a fresh A x, after an audit: all of H from the vectors
            H = torch.mm(b.head[q], b.Ahead[q].T).to(device="cpu", dtype=f64).tril()
            H = H + H.tril(-1).T  # the lower triangle: w's entries use the fresh A w
        else:  # the [x, p] block carried over: only w's row is new
            h = torch.mv(b.head[q], b.Aw).tolist()
            H = torch.tensor([h] + [[h[i + 1]] + G[i] for i in range(q - 1)], dtype=f64)
        try:
            ev, U = torch.linalg.eigh(H)
        except torch.linalg.LinAlgError:  # NaN or Inf in H
            status = SolveStatus.BREAKDOWN
            message = nonfinite_message(f"at iteration {it + 1}", monitor.n_matvec, _KEPT)
            break
        values = ev.flip(0) if largest else ev
        evl = ev.tolist()
        j = q - 1 if largest else 0
        u = [row[j] for row in U.tolist()]
        theta = evl[j]
        norm_estimate = max(norm_estimate, abs(evl[0]), abs(evl[-1]))
        # x <- S u; p <- the part of the update outside x: u without its x entry, made orthogonal to u
        c = [u[0], 0.0] + u[2:]
        overlap = sum(ci * ui for ci, ui in zip(c, u))
        c = [ci - overlap * ui for ci, ui in zip(c, u)]
        cn = math.sqrt(sum(a * a for a in c))
        C = [u, [a / cn for a in c]] if cn > 10 * eps else [u]  # else the update lies along x: no p
        Ct = torch.tensor(C, dtype=f64)
        G = (Ct @ H @ Ct.T).tolist()  # the new [x, p] block of H
        Cv = Ct.to(dtype=dtype, device=device)
        q_next = 1 + len(C)
        torch.mm(Cv, b.head[q], out=nb.V[q_next])
        torch.mm(Cv, b.Ahead[q], out=nb.AV[q_next])
        b, nb, q = nb, b, q_next
        it += 1
        res, g, gg = b.residual(q, theta)
        ritz = torch.tensor([theta], dtype=f64)
        threshold = float(residual_threshold(ritz, tol, norm_estimate)[0])
        verified = False
        if res <= threshold:  # confirm with a fresh product (the stored A x drifts by rounding)
            b.x.div_(norm(b.x))
            b.Ax.copy_(A.matvec(b.x))
            theta = float(dot(b.x, b.Ax))
            res, g, gg = b.residual(q, theta)
            verified, G, ritz = True, None, torch.tensor([theta], dtype=f64)
        conv = res <= threshold
        loss = abs(float(dot(b.x, b.p))) if q == 3 else 0.0
        stop = monitor.record(it, ritz, torch.tensor([res], dtype=f64),
                              estimated=False,
                              n_converged=int(conv), orthogonality_loss=loss, all_ritz_values=values)
        if verified and conv:
            status = SolveStatus.CONVERGED
            break
        if stop:
            status = SolveStatus.STOPPED
            break
        if it % _REFRESH == 0 and q == 3:
            # audit: keep x normalized and p orthonormal to it (and their products consistent)
            nx = float(norm(b.x))
            b.x.div_(nx)
            b.Ax.div_(nx)
            c0 = float(dot(b.x, b.p))
            b.p.sub_(b.x, alpha=c0)
            b.Ap.sub_(b.Ax, alpha=c0)
            np_ = float(norm(b.p))
            if np_ > 10 * eps:
                b.p.div_(np_)
                b.Ap.div_(np_)
            else:
                q = 2
            G = None
            g = torch.mv(b.V[q], b.w)  # the residual's overlaps with the audited x, p
            gg = float(dot(g, g))
    X = b.x.clone().unsqueeze(1)
    theta_t = torch.tensor([theta], dtype=dtype, device=device)
    if not verified:
        res = float(true_residual_norms(A, X, theta_t)[0])
    residuals = torch.tensor([res], dtype=dtype, device=device)
    converged = residuals <= residual_threshold(theta_t, tol, norm_estimate)
    if status is SolveStatus.MAX_ITER and bool(converged.all()):
        status = SolveStatus.CONVERGED
    return monitor.finish(eigenvalues=theta_t, eigenvectors=X, residual_norms=residuals, converged=converged,
                          n_iter=it, status=status, message=message, norm_estimate=norm_estimate)


def _cheap_sparse(op: LinearOperator, m: int) -> bool:
    """True for a sparse operator with fewer than m nonzeros per row.

    Cost model (measured on the 2-D Laplacian, n = 1e4 and 1e5, one thread): a sparse product
    with m columns runs at ~1/5 of the GEMM speed per multiply-add, and updating A X, A P costs
    ~6 m^2 n multiply-adds, so recomputing A X wins when 5 m nnz < 6 m^2 n, i.e. nnz / n < ~m.
    """
    # Look through wrappers of a sparse matrix (per-solve counters, a harness's accounting
    # wrapper): they report kind "sparse" and keep the matrix operator in ``base``.
    while op.nnz is None and op.kind == "sparse" and isinstance(getattr(op, "base", None), LinearOperator):
        op = op.base
    while isinstance(op, CountedOperator):
        op = op.base
    nnz = op.nnz
    return nnz is not None and nnz < m * op.shape[0]


register_solver(SolverSpec(
    name="lobpcg",
    label="LOBPCG (Knyazev)",
    fn=lobpcg,
    summary=("Block preconditioned conjugate-gradient eigensolver: Rayleigh-Ritz on [X, R, P] each "
             "iteration. Sees multiple eigenvalues (block method), takes a preconditioner and a B matrix."),
    which=("LA", "SA"),
    params=(
        ParamSpec("method", "choice", "ortho", "How the search basis is kept well conditioned. 'ortho' "
                  "orthonormalizes it every step (robust); 'basic' is Knyazev's original step on the raw "
                  "basis (cheaper, can become ill-conditioned near convergence).", choices=_METHODS),
        ParamSpec("backend", "choice", "explorer", "'explorer' is our implementation, which reuses stored "
                  "products A X, A W, A P (about 4x fewer operator applications); 'torch' runs "
                  "torch.lobpcg itself, for comparison.", choices=_BACKENDS),
        ParamSpec("block_size", "int", None, "How many vectors are iterated together (at least k). A few "
                  "more than k speed up the last wanted pair and catch repeated eigenvalues; each extra "
                  "column costs one more operator application per iteration. Empty = 1 for k = 1, else "
                  "k + max(2, k/4).",
                  minimum=1, optional=True),
        ParamSpec("preconditioner", "choice", "none", "An approximate inverse applied to the residuals. "
                  "'jacobi' divides by the matrix diagonal: it helps the smallest eigenvalues of matrices "
                  "with a strongly varying diagonal and does nothing for a constant one.",
                  choices=("none", "jacobi")),
        ParamSpec("products", "choice", "auto", "How A X is obtained each iteration. 'stored' updates saved "
                  "products with the same combinations as X (fewest operator applications: best when the "
                  "operator is expensive); 'recomputed' applies A to X again (twice the applications, less "
                  "vector work: best for cheap sparse matrices); 'auto' decides from the operator.",
                  choices=_PRODUCTS),
    ),
    supports_B=True,
    matrix_free=True,
    default_tol=1e-6,
    default_max_iter=1000,
    k_limit=lambda n: max(1, n // 3) if n > _DENSE_FALLBACK_MAX_N else n,
    references=("Knyazev 2001, Algorithm 4.1", "Duersch, Shao, Yang & Gu 2018, Algorithms 3-4",
                "Hetmaniuk & Lehoucq 2006", "Stathopoulos & Wu 2002 (SVQB)"),
))
