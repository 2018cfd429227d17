"""LOBPCG: locally optimal block preconditioned conjugate gradient for extreme eigenpairs.

The method (Knyazev 2001, Algorithm 4.1 "block LOBPCG"): keep a block X of ``m >= k``
approximate eigenvectors; each iteration forms the residuals R = A X - B X Theta,
preconditions them (W = T R), and runs a Rayleigh-Ritz procedure on the trial
subspace span[X, W, P], where P holds the previous step's update directions (the
"conjugate" part). The m best Ritz vectors become the new X. With T = I it is a block
Krylov-like method whose convergence for eigenvalue i is governed by the gap to
lambda_{m+1}; a good preconditioner T ~ (A - sigma B)^{-1} makes it much faster.

Two variants, named as in ``torch.lobpcg``: ``method="ortho"`` (default, robust: [X, P]
kept B-orthonormal, Duersch, Shao, Yang & Gu 2018) and ``method="basic"`` (Knyazev's step
on the raw basis, restarted without P and finally switched to "ortho" when its Gram matrix
fails; the switch is reported in ``result.message``). Two backends: ``"explorer"`` (our
engine, default), which keeps the products A X, A W, A P instead of recomputing them as
``torch.lobpcg`` does, and ``"torch"`` (torch's own worker, with guards against its silent
failures).

This function validates the arguments and dispatches; the parts, one responsibility each:

* ``engine``: the block iteration with stored products and soft locking (Knyazev 2001);
* ``ortho`` / ``basic``: its Rayleigh-Ritz step, the two variants;
* ``drift``: the audits that bound the rounding drift of the stored products and of the
  B-orthonormality;
* ``state``: the block, its products and the settings those parts share;
* ``single``: the vector-only path for block size 1 ("ortho", no B);
* ``torch_backend``: ``torch.lobpcg``'s worker, its tracker and its guards;
* ``preconditioner``: T from what the user passed; ``dense_fallback``: n < 3 k;
* ``linalg``: the row layout of blocks of n-vectors and the small dense linear algebra.

Defaults and why:

* ``which="LA"``, ``tol=1e-6`` (relative residual, as every solver here), ``max_iter=1000``
  (torch's ``niter`` default).
* ``block_size``: see ``default_block_size``.
* ``products="auto"``: see ``_cheap_sparse``.
* ``preconditioner=None``. ``"jacobi"`` uses 1 / |diag(A)| (needs ``operator.diagonal()``);
  it helps the smallest eigenvalues of diagonally dominant matrices with a varying
  diagonal and is useless on a constant diagonal (Laplacian) or for LA (PEERS.md).

Measured matvecs and times against ``torch.lobpcg`` and the commands that reproduce them:
``docs/benchmarks-lobpcg.md``.

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
from typing import Any

import torch

from explorer.operators import CountedOperator, LinearOperator
from explorer.solvers._common import (
    Monitor,
    ProductUnits,
    UnitsOperator,
    make_generator,
    random_block,
    validate_common,
)
from explorer.solvers.lobpcg.dense_fallback import dense_fallback
from explorer.solvers.lobpcg.engine import Engine
from explorer.solvers.lobpcg.preconditioner import preconditioner_operator
from explorer.solvers.lobpcg.single import single_vector
from explorer.solvers.lobpcg.torch_backend import run_torch
from explorer.solvers.registry import ParamSpec, SolverSpec, register_solver
from explorer.solvers.shift_invert import SPECTRAL_PARAMS_HELP, spectral_entry
from explorer.tracking.results import EigenResult
from explorer.tracking import Tracker

__all__ = ["lobpcg", "default_block_size"]

_METHODS = ("ortho", "basic")
_BACKENDS = ("explorer", "torch")
_PRODUCTS = ("auto", "stored", "recomputed")
# Largest n for which the n < 3 * k case is solved densely instead of refused (4 dense
# n x n copies of 8 bytes: 0.8 GB at n = 5000).
_DENSE_FALLBACK_MAX_N = 5000


def default_block_size(k: int, n: int) -> int:
    """1 for k = 1; else ``k + max(2, ceil(k/4))`` (guard columns), but never more than ``n // 3``.

    The guard columns cost ~25 % more work per iteration and pay for themselves on clustered
    or multiple eigenvalues (the Laplacian has exact doubles), where a block of exactly k
    stalls on the k-th pair. For a single eigenpair they cost more than they save: block 1
    needs the fewest matvecs on the bench problems (what counts for Hessian-vector
    products); see docs/benchmarks-lobpcg.md.
    """
    if k == 1:
        return 1
    return max(k, min(k + max(2, math.ceil(k / 4)), n // 3))


def lobpcg(
    operator: Any,
    k: int,
    *,
    which: str | None = None,
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
    sigma: float | None = None,
    factorization: str = "auto",
    lower: float | None = None,
    upper: float | None = None,
) -> EigenResult:
    """k largest (LA) or smallest (SA) eigenpairs of A x = lambda B x by block LOBPCG.

    Args:
        operator: symmetric n x n operator (dense, sparse or matrix-free).
        k: number of wanted eigenpairs.
        which: "LA" (largest algebraic, default) or "SA" (smallest algebraic); with sigma, see ``sigma``.
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
            worker with the guards of ``torch_backend``).
        block_size: columns in X (default ``default_block_size(k, n)``); needs 3 * block_size <= n.
        preconditioner: None, "jacobi" (1/|diag(A)|), a callable mapping an (n, b) block to
            (n, b), an (n, n) tensor or a LinearOperator T, applied as W = T R. It should be
            symmetric positive definite.
        products: how A X is obtained each step ("ortho" only). "stored": updated from the
            saved A X, A P, A W with the Ritz coefficients (one application of A per new
            direction: the fewest); "recomputed": A applied to the new X (m more applications,
            but less vector work); "auto" (default): "recomputed" for sparse operators with
            fewer nonzeros per row than the block size (a sparse product of m columns is then
            cheaper than the dense update it replaces, ``_cheap_sparse``), else "stored".

        sigma: shift-invert (``explorer.solvers.shift_invert``): the k eigenvalues nearest sigma,
            ARPACK's mode 3 ((A - sigma B)^-1 B, B allowed); ``which`` then means LM (default: the
            nearest), LA (nearest above) or SA (nearest below); the parameters above go to the
            run on the transform.
        factorization: how (A - sigma B)^-1 is applied ("auto", "ldl", "lu", "cholesky", "minres",
            "cg"; ``explorer.operators.inverse.shifted_inverse``).
        lower, upper: spectrum slicing (``explorer.solvers.slicing``): every eigenvalue in
            [lower, upper), counted by the LDL^T inertia at both ends; at most k (a larger count
            is refused with the number).
    Returns:
        EigenResult with k pairs in ``which`` order; status MAX_ITER when the limit was hit,
        BREAKDOWN (with the partial result and a message) when the method broke down.

    Raises:
        ValueError / TypeError: invalid arguments (see ``validate_common``), an unknown method,
            backend or preconditioner, a block smaller than k, n < 3 k with n too large for
            the dense fallback.
    """
    if sigma is not None or lower is not None or upper is not None:  # shift-invert / spectrum slicing
        return spectral_entry("lobpcg", operator, k, which=which, sigma=sigma, lower=lower, upper=upper,
                              factorization=factorization, tol=tol, max_iter=max_iter, X0=X0, seed=seed,
                              tracker=tracker, B=B, method=method, backend=backend, block_size=block_size,
                              preconditioner=preconditioner, products=products)
    which = "LA" if which is None else which
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
    T = preconditioner_operator(preconditioner, v_units.operator)
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
        return dense_fallback(v, monitor, f"n = {n} < 3 k = {3 * k}: LOBPCG does not apply, solved densely "
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
        return run_torch(v_units, monitor, m=m, method=method, largest=largest, T=T, X_start=X_start)
    if m == 1 and method == "ortho" and v.B is None and products != "recomputed":
        return single_vector(v_units, monitor, largest=largest, T=T, x=X_start[:, 0])
    recompute = products == "recomputed" or (products == "auto" and _cheap_sparse(v.operator, m))
    return Engine(v_units, monitor, m=m, method=method, largest=largest, T=T, X_start=X_start,
                  recompute_AX=recompute).run()


def _cheap_sparse(op: LinearOperator, m: int) -> bool:
    """True for a sparse operator with fewer than m nonzeros per row.

    The rule behind ``products="auto"``. Cost model (one CPU thread): a sparse product with m
    columns does a multiply-add at roughly 1/5 of GEMM speed, and updating A X, A P costs
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
        ParamSpec("sigma", "float", None, SPECTRAL_PARAMS_HELP["sigma"], optional=True),
        ParamSpec("factorization", "choice", "auto", SPECTRAL_PARAMS_HELP["factorization"],
                  choices=("auto", "ldl", "lu", "cholesky", "minres", "cg")),
        ParamSpec("lower", "float", None, SPECTRAL_PARAMS_HELP["lower"], optional=True),
        ParamSpec("upper", "float", None, SPECTRAL_PARAMS_HELP["upper"], optional=True),
    ),
    supports_B=True,
    matrix_free=True,
    default_tol=1e-6,
    default_max_iter=1000,
    k_limit=lambda n: max(1, n // 3) if n > _DENSE_FALLBACK_MAX_N else n,
    references=("Knyazev 2001, Algorithm 4.1", "Duersch, Shao, Yang & Gu 2018, Algorithms 3-4",
                "Hetmaniuk & Lehoucq 2006", "Stathopoulos & Wu 2002 (SVQB)"),
))
