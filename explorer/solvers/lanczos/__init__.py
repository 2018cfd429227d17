"""Symmetric (block) Lanczos with thick restart, three re-orthogonalization modes and ghost detection.

The method
----------
Lanczos (1950) builds an orthonormal basis ``V = [v_1 .. v_m]`` of the Krylov space
``span{v_1, A v_1, ..., A^(m-1) v_1}`` with a three-term recurrence
``beta_j v_(j+1) = A v_j - alpha_j v_j - beta_(j-1) v_(j-1)``; the projected matrix
``T_m = V^T A V`` is tridiagonal and its eigenpairs (theta_i, s_i) give Ritz pairs
``(theta_i, V s_i)`` whose residual norm is ``|beta_m e_m^T s_i|`` (Golub & Van Loan,
Matrix Computations, 4th ed., 10.1). That estimate is free once the small projected
matrix is decomposed (a Rayleigh-Ritz step); records carry it (``estimated=True``), one per
step with ``ritz_every=1``, or at restarts, near convergence and about every 20 ms with the
default ``ritz_every="auto"`` (``iteration``). The *true*
residuals ``||A x - theta x||`` are computed when the estimates say "converged" and at the
end; only they decide ``converged`` and the CONVERGED status.

The parts, one module each:

* ``expansion``: the step. With ``block_size = b > 1`` the recurrence runs on blocks of b
  vectors (block Lanczos, Golub & Underwood 1977): T is banded and the Ritz residual is
  ``||R_m S_i[last b rows]||`` with the b x b coupling block ``R_m``.
* ``blocks``: orthonormalization of each new block (Cholesky QR, twice when needed), the
  start block, and breakdowns (``beta ~ 0``, an invariant subspace: the block continues with
  random vectors orthogonal to the basis, so the other eigenvalues are still found).
* ``reorthogonalization``: "full" (classical Gram-Schmidt, DGKS), "partial" (Simon's
  omega recurrence, 1984) and "none" (plain Lanczos: ghost eigenvalues appear).
* ``restart``: thick restart (Wu & Simon 2000) keeping a dynamically chosen number of Ritz
  vectors (Stathopoulos, Saad & Wu 1998); memory O(n * max_basis).
* ``ritz``: Ritz vectors, true residuals (free with stored products ``A V``), the closing
  Rayleigh-Ritz polish of "partial" / "none".
* ``convergence``: thresholds, ghost detection (Paige 1976), breakdown segments, stalls at
  the rounding level.
* ``iteration``: the loop; ``state``: the shared state; ``linalg``: thin row-block products
  and tiny factorizations.
* ``polynomial``: Chebyshev acceleration, the same Lanczos on ``p(A)`` (large sparse matrices).

Why a block of 2
----------------
A single-vector Krylov space contains one direction of each eigenspace only, so a
single-vector method (ARPACK; PRIMME with its default block size 1) returns one copy of a
double eigenvalue and then the next value: on the 2-D Laplacian its top-10 set is wrong
while every residual looks perfect (../shared/PEERS.md, "Multiplicity"). A block of b vectors
sees multiplicities up to b. Default: b = 1 for k = 1 (the largest eigenvalue is found
whatever its multiplicity, and one vector needs the fewest matvecs) and b = 2 for k >= 2
(catches the doubles of the Laplacian and other symmetric geometries). Single-vector
Lanczos plus a separate search for missing copies was rejected: the search needs a run of
its own, while the block finds everything in one (docs/benchmarks-lanczos.md, "Block size").
Set ``block_size`` to the largest multiplicity you expect.

Ghosts and records
------------------
Ghosts are flagged in ``ghost_mask`` and never count as converged; the result skips them and
returns k distinct pairs with true residuals (hessian-eigenthings 1.0.0a5 reports them as
converged). Each record holds ``ritz_values`` / ``residual_norms`` (estimates) of the
best k Ritz values in ``which`` order (fewer in the first steps, while the basis has fewer
than k vectors), ``all_ritz_values`` (every Ritz value: the "staircase"), ``ghost_mask`` and
``orthogonality_loss``: "full", the measured overlap when no correction was needed, else the
CGS rounding bound ``p eps ||w_before|| / ||w_after||``; "partial", the largest omega
estimate; "none", the exact ``max |V^T V - I|``.

Defaults and why
----------------
* ``tol=1e-6``: relative residual (``residual_threshold``, the ARPACK / PRIMME criterion).
* ``max_basis = max(40, 6 k + 10 b)``, capped at n (``default_max_basis``). Larger bases
  need fewer matvecs but each step costs O(n m); for expensive operators (Hessian-vector
  products) raise it.
* ``block_size``: 1 for k = 1, else 2 (above).
* ``reorthogonalization="auto"``: "partial" in float64, "full" in float32. In float64
  "partial" needs the same matvecs as "full" (the estimates and the true-residual checks
  decide convergence either way) in about half the time where the passes over the basis
  dominate (large sparse problems), and it switches to "full" by itself when
  semi-orthogonality limits the attainable residual. In float32 semi-orthogonality is only
  sqrt(eps) = 3e-4, so "partial" often has to switch, and on small eigenvalues it then stalls
  at the rounding level where "full" does not (docs/benchmarks-lanczos.md, "float32").
* ``products="auto"``: the products ``A V`` are stored (true residuals without matvecs)
  except for sparse CPU matrices, whose matvec is cheaper than carrying ``A V`` through
  restarts, or when the buffer would pass 1 GiB.
* ``max_iter = 10000`` Lanczos steps; one step applies A to one block (b matvecs).
* ``polynomial="auto"``: Chebyshev acceleration (``polynomial``: Lanczos on a degree-10
  Chebyshev polynomial of A, then Rayleigh quotients and true residuals of A) on sparse CPU
  matrices with n >= 5 x 10^4 and LA / SA, where a matvec is cheap next to a step: the 2-D
  Laplacian k = 10 LA at n = 10^6 in about a fifth of the time, with fewer products
  (docs/benchmarks.md, "Chebyshev acceleration"). Elsewhere plain Lanczos needs fewer products.
* ``ritz_every="auto"``: a live view needs a fresh record every 50-100 ms, not one per step;
  the Rayleigh-Ritz step is then skipped where neither a restart nor the convergence test
  needs it (same matvecs to a few steps, docs/benchmarks-lanczos.md, "ritz_every").

The projected eigenproblem runs on the caller's torch threads (``linalg.small_eigh``): on a
shared host, run the solver on one thread (the app's jobs, the bench and the tests do).
Measured costs against ARPACK and PRIMME are in docs/benchmarks-lanczos.md.

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

from typing import Any

import torch

from explorer.solvers._common import WHICH, Monitor, check_every, check_int, make_generator, validate_common
from explorer.solvers.lanczos.copies import COPY_CHECK
from explorer.solvers.lanczos.iteration import _Lanczos
from explorer.solvers.lanczos.polynomial import DEFAULT_DEGREE, auto_degree, polynomial_lanczos
from explorer.solvers.lanczos.state import sparse_on_cpu
from explorer.solvers.registry import ParamSpec, SolverSpec, record_cadence, register_solver
from explorer.solvers.shift_invert import B_WITH, SPECTRAL_PARAMS, spectral_entry
from explorer.tracking.results import EigenResult
from explorer.tracking import Tracker

__all__ = ["lanczos", "default_block_size", "default_max_basis"]

REORTHOGONALIZATION = ("auto", "full", "partial", "none")
PRODUCTS = ("auto", "stored", "recomputed")
# products="auto" keeps A V only while that buffer stays below this size.
_STORE_LIMIT_BYTES = 1 << 30
DEFAULT_MAX_ITER = 10_000


def default_block_size(k: int) -> int:
    """1 for a single eigenpair, 2 otherwise (sees double eigenvalues)."""
    return 1 if k == 1 else 2


def default_max_basis(k: int, block_size: int, n: int) -> int:
    """``max(40, 6 k + 10 b)`` capped at n: 40 for k = 1, 80 for k = 10 with b = 2.

    A larger basis needs fewer matvecs but costs O(n m) per step; on the 2-D Laplacian
    n = 10^5 the matvecs saved beyond these sizes no longer pay for the longer steps of a cheap
    operator (docs/benchmarks-lanczos.md, "Basis size"). For expensive operators
    (Hessian-vector products) a larger basis pays.
    """
    return min(n, max(40, 6 * k + 10 * block_size))


def lanczos(
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
    reorthogonalization: str = "auto",
    max_basis: int | None = None,
    block_size: int | None = None,
    products: str = "auto",
    ritz_every: int | str = "auto",
    copy_check: str = "auto",
    polynomial: int | str = "auto",
    sigma: float | None = None,
    factorization: str = "auto",
    lower: float | None = None,
    upper: float | None = None,
) -> EigenResult:
    """k extreme eigenpairs of a symmetric operator by thick-restart (block) Lanczos.

    Args:
        operator: symmetric n x n operator (anything ``as_operator`` accepts); only
            matvecs are used.
        k: number of eigenpairs, 1 <= k <= n.
        which: "LA" largest (default), "SA" smallest, "LM" largest magnitude, "BE" both ends
            (alternating largest, smallest, ...); with sigma, see ``sigma``.
        tol: relative residual tolerance, ``||A x - theta x|| <= tol * max(|theta|,
            sqrt(eps) ||A||)``, checked with true residuals.
        max_iter: Lanczos steps (each applies A to one block of ``block_size`` vectors);
            default 10000.
        X0: (n,) or (n, c) start. Fewer than ``block_size`` columns are padded with random
            ones; more are mixed into ``block_size`` random combinations (each keeps every
            column's directions). A zero or dependent start is replaced by random vectors.
        seed: seed of the local generator (random start, padding, breakdown vectors).
        tracker: receives the records (estimated residuals): one per Lanczos step with
            ``ritz_every=1``, fewer with the default "auto" (below).
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
        ritz_every: how often the Rayleigh-Ritz step on the projected matrix runs, and with it
            the record to the tracker and the convergence test. "auto" (default): at every
            restart, whenever the residual estimates (extrapolated geometrically from the last
            two such steps) say the wanted set may have converged, and otherwise once
            ``RECORD_INTERVAL_S`` (20 ms) has passed since the last record: a live view gets
            a fresh record every 50-100 ms while the steps in between cost only the
            recurrence. An integer s: every s steps (and at every restart and the last
            step); 1: every step (per-step curves, the lessons). A record's ``iteration`` is
            always the Lanczos step.
        copy_check: after convergence, look for a copy of a returned value that the block
            could not see (a value returned ``block_size`` times may have more copies) with a
            few block steps on the deflated operator, and add what it finds (``copies``).
            "auto" (default): on when ``block_size`` is left to its default and is below k
            (with k <= block_size every value of multiplicity up to k is seen; a block size
            you give states the largest multiplicity you expect, ``block_size=1`` simple
            eigenvalues, so the check is not needed); "on"; "off". Its cost in matvecs and
            what it found are in ``result.message``. Not run for ``which="BE"``.
        polynomial: Chebyshev acceleration (``polynomial``): Lanczos on a degree-d Chebyshev
            polynomial of A that damps the unwanted part of the spectrum, then Rayleigh quotients
            and true residuals of A. "auto" (default): degree 10 on a sparse CPU matrix with
            n >= 5 x 10^4 (LA / SA, float64; where a matvec is cheap next to a step), else off; an
            integer d >= 2 forces degree d (an assembled matrix, LA / SA); 0: off.

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
    if sigma is not None or lower is not None or upper is not None:  # shift-invert / spectrum slicing
        return spectral_entry("lanczos", operator, k, which=which, sigma=sigma, lower=lower, upper=upper,
                              factorization=factorization, tol=tol, max_iter=max_iter, X0=X0, seed=seed,
                              tracker=tracker, B=B, reorthogonalization=reorthogonalization, max_basis=max_basis,
                              block_size=block_size, products=products, ritz_every=ritz_every,
                              copy_check=copy_check, polynomial=0 if polynomial == "auto" else polynomial)
    which = "LA" if which is None else which
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
    every = check_every("ritz_every", ritz_every)
    if not isinstance(copy_check, str) or copy_check not in COPY_CHECK:
        raise ValueError(f"`copy_check` must be one of {list(COPY_CHECK)}, got {copy_check!r}; 'auto' checks when "
                         "block_size < k")
    if not isinstance(products, str) or products not in PRODUCTS:
        raise ValueError(f"`products` must be one of {list(PRODUCTS)}, got {products!r}; 'auto' picks per operator")
    op = v.operator
    if products == "auto":
        size = (m + b) * n * torch.finfo(op.dtype).bits // 8
        store = not sparse_on_cpu(op) and size <= _STORE_LIMIT_BYTES
    else:
        store = products == "stored"
    run_extras = {"reorthogonalization": reorthogonalization, "max_basis": m, "block_size": b,
                    "products": "stored" if store else "recomputed", "ritz_every": ritz_every,
                    "copy_check": copy_check}
    degree = auto_degree(polynomial, op, v.which, v.B, reorthogonalization)
    if degree:
        return polynomial_lanczos(v, degree=degree, inner=lanczos, tracker=tracker, seed=seed, extras=run_extras,
                                  block_size=block_size, max_basis=max_basis, b=b, m=m, copy_check=copy_check,
                                  reorthogonalization=reorthogonalization, products=products, ritz_every=ritz_every)
    generator = make_generator(seed)
    monitor = Monitor("lanczos", v, tracker, extras=run_extras)
    solver = _Lanczos(v, monitor, mode=reorthogonalization, m=m, b=b, generator=generator,
                      store_products=store, ritz_every=every, copy_check=copy_check)
    solver.block_size_given = block_size is not None
    return solver.run()


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
        record_cadence("ritz_every", "step",
                       "How often the Ritz values are extracted and recorded. 'auto': at restarts, when the wanted "
                       "pairs may have converged, and about every 20 ms (enough for the live view; the steps in "
                       "between cost only the recurrence). 1: every step (a curve point per Lanczos step, slower "
                       "on cheap operators). Any whole number s: every s steps."),
        ParamSpec("copy_check", "choice", "auto",
                  "After convergence, look for a hidden copy of a returned eigenvalue that a block of "
                  "block_size vectors cannot see (a few block steps on the deflated operator; the message says "
                  "what it cost in matvecs) and add what it finds. 'auto': when block_size is left empty "
                  "and is below k (a block size you set says which multiplicities to expect).",
                  choices=COPY_CHECK),
        ParamSpec("polynomial", "choice", "auto",
                  "Chebyshev acceleration: run Lanczos on a degree-d Chebyshev polynomial of A that damps the "
                  "unwanted part of the spectrum (its far end from a Gershgorin bound, its near end from a short "
                  "start), then take Rayleigh quotients and true residuals of A. Pays where a matvec is cheap next "
                  "to a Lanczos step (large sparse matrices): the step's work is shared by d products. 'auto': "
                  f"degree {DEFAULT_DEGREE} on sparse CPU matrices with n >= 50,000 (LA / SA), else off. Needs an "
                  "assembled matrix and LA / SA.",
                  choices=("auto", 0, 10, 20), labels=("auto (large sparse matrices)", "off", "degree 10",
                                                       "degree 20"),
                  integers=True, minimum=0, maximum=200),
        ParamSpec("products", "choice", "auto",
                  "How the final (true) residuals ||Ax - theta x|| are computed. 'stored' keeps A times every "
                  "basis vector (twice the memory) so checking costs no extra matvec; 'recomputed' applies A "
                  "to the k Ritz vectors at each check. 'auto' stores them unless the operator is a sparse "
                  "matrix on the CPU (cheap to apply) or the extra memory would pass 1 GiB.",
                  choices=PRODUCTS),
        *SPECTRAL_PARAMS,
    ),
    supports_B=False,
    supports_B_with=B_WITH,  # with sigma or an interval: shift-invert on (A - sigma B)^-1 B
    matrix_free=True,
    default_tol=1e-6,
    default_max_iter=DEFAULT_MAX_ITER,
    references=("Lanczos 1950", "Paige 1976", "Simon 1984", "Wu & Simon 2000",
                "Golub & Van Loan 10.1-10.3"),
))
