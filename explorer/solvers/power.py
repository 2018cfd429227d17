"""Power iteration with orthogonal-projection deflation and optional heavy-ball momentum.

The method: repeat x <- A x / ||A x||. If |lambda_1| > |lambda_2|, the component of x
along the dominant eigenvector wins, and the angle to it shrinks like
|lambda_2 / lambda_1|^t (the Rayleigh quotient's error like its square). One iteration is
one matvec, which makes power iteration the simplest way to watch an eigensolver work --
and, for small gaps, the slowest (PEERS.md: 57 227 matvecs for one eigenvalue of a
cluster with 1e-4 spacing).

k > 1 by deflation, one pair at a time. When pair j has converged, its vector is
*locked* and every later iterate is projected onto the orthogonal complement of the
locked vectors V: x <- (I - V V^T) A x. This is orthogonal-projection deflation
(Saad 2011, Sec. 4.2.2 "Wielandt/Schur deflation"; the form used by PyHessian and
hessian-eigenthings). We do not use Hotelling's deflation A - lambda v v^T: with an
approximate pair (lambda, v) it leaves A - lambda v v^T with an eigenvalue of size
|lambda| ||v - v_exact|| and a perturbed spectrum, so errors compound from pair to pair
(Mackey 2008, Sec. 2.1), whereas the projection keeps the iterate exactly in the
complement of span V and only the (small) error of V itself leaks in.

Momentum (De Sa, He, Mitliagkas, Re & Xu 2018, "Accelerated stochastic power iteration",
Algorithm 1): x_{t+1} = A x_t - beta x_{t-1}. With beta = lambda_2^2 / 4, every eigenvalue
|lambda| <= lambda_2 is damped like a Chebyshev polynomial, and the convergence factor
improves from lambda_2/lambda_1 to about (lambda_2/lambda_1) / (1 + sqrt(1 - (lambda_2/lambda_1)^2)),
i.e. the number of iterations drops from O(1/gap) to O(1/sqrt(gap)). We parametrize it by
the dimensionless ``momentum`` = r, your guess of |lambda_{j+1} / lambda_j|, and use
beta = (r theta)^2 / 4 with theta the running Rayleigh quotient of the current pair, so one
value fits every pair of a deflated solve. r = 0 is plain power iteration. Too large an r
(r > |lambda_{j+1}/lambda_j| by much) slows convergence again, and r >= 1 would let the
damped part grow like the target, hence 0 <= r < 1. The recurrence's growth factor
(|lambda| + sqrt(lambda^2 - 4 beta)) / 2 depends on |lambda| only, so it works for a
dominant eigenvalue of either sign.

which: "LM" is native. "LA" and "SA" are supported by a shift: iterate with A + sigma I
(LA) or sigma I - A (SA), sigma = 1.1 x a 20-step power estimate of ||A|| (a lower bound,
hence the 10 % margin), so the wanted end becomes the largest in magnitude. The shift
slows convergence to (lambda_2 + sigma)/(lambda_1 + sigma), often close to 1: use
``lobpcg`` or ``lanczos`` for LA/SA. The registry therefore declares only "LM".

Stopping, per pair: both the Rayleigh quotient change |theta_t - theta_{t-1}| <= tol |theta_t|
and the true residual ||A x - theta x|| <= tol max(|theta|, sqrt(eps) ||A||_est)
(``residual_threshold``). A stall of theta alone is not enough: PyHessian stops on it and
returns residuals of 1e-3 at tol = 1e-6 (PEERS.md).

Deflation floor and the final Rayleigh-Ritz: a locked vector is only accurate to its own
residual, and that error lies mostly along the *next* eigenvectors, so the true residual
of pair j + 1 cannot drop below about the residual of pair j -- with a relative tol and
|lambda_(j+1)| < |lambda_j| the solve would never finish. Pair j is therefore tested on its
residual projected onto the complement of the locked vectors (what the deflated iteration
controls), and at the end one Rayleigh-Ritz step on span of all vectors (k x k ``eigh``,
using the stored products A x, no extra matvecs) removes the floor; the reported residuals
and ``converged`` are the true ones after that step.

Records hold the locked pairs followed by the current pair (so fewer than k values until
the last pair starts; views pad with NaN). Residuals are the true ones (A x is at hand),
``estimated=False``; ``extras`` has the deflated residual and the Rayleigh-quotient change
that the stopping test uses. ``record_every=1`` records every iteration (one matvec; the
lesson's curves); the default "auto" records every locked pair, the last iteration, about
every 20 ms and at least 64 iterations per doubling of the count (every one of the first 64;
``_common.RecordSchedule``): an iteration on a cheap operator costs about as much as building
its record (2-D Laplacian n = 10^4: 0.16 ms per iteration, of which the record took 20-29 %,
docs/benchmarks.md "Records of power iteration"). The iterations, matvecs and answer are the
same either way.

References:
    Y. Saad (2011), Numerical Methods for Large Eigenvalue Problems, 2nd ed., SIAM,
    Sec. 4.1 (power method), Sec. 4.2 (deflation).
    C. De Sa, B. He, I. Mitliagkas, C. Re, P. Xu (2018), Accelerated stochastic power
    iteration, AISTATS, Algorithm 1 and Theorem 1 (optimal beta = lambda_2^2 / 4).
    L. Mackey (2008), Deflation methods for sparse PCA, NIPS (why not Hotelling).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from explorer.tracking.results import EigenResult, SolveStatus
from explorer.solvers._common import (
    Monitor,
    ProductUnits,
    RecordSchedule,
    check_every,
    UnitsOperator,
    is_real_number,
    nonfinite_message,
    make_generator,
    random_block,
    residual_threshold,
    select_order,
    threshold_floor,
    validate_common,
)
from explorer.solvers.registry import ParamSpec, SolverSpec, record_cadence, register_solver
from explorer.tracking import Tracker

__all__ = ["power_iteration"]

_NORM_STEPS = 20  # power steps for the ||A|| estimate behind the LA / SA shift
_SHIFT_MARGIN = 1.1


_KEPT = "the last iterate before it, with true residuals"  # (nonfinite_message)


def power_iteration(
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
    momentum: float = 0.0,
    record_every: int | str = "auto",
) -> EigenResult:
    """k eigenpairs of largest magnitude, one at a time, by power iteration with deflation.

    Args:
        operator: symmetric n x n operator.
        k: number of eigenpairs (found in turn; each needs its own iterations).
        which: "LM" (native), or "LA"/"SA" through a shift (slow; see the module docstring).
        tol: a pair converges when its Rayleigh quotient changed by at most tol |theta| in the
            last step and its residual is at most tol max(|theta|, sqrt(eps) ||A||_est).
        max_iter: total iterations (matvecs) over all k pairs; default 20 000.
        X0: optional starting vectors (n,) or (n, b); column j starts pair j (random otherwise).
        seed: seed of the random starts (local generator).
        tracker: receives the records (``record_every``); raise StopSolve to stop.
        B: not supported (a clear ValueError points to lobpcg / eigh).
        momentum: r in [0, 1): heavy-ball momentum beta = (r theta)^2 / 4 (De Sa et al. 2018);
            r = |lambda_{j+1} / lambda_j| is optimal, 0 is plain power iteration.
        record_every: which iterations reach the tracker. "auto" (default): each one that
            locks a pair, the last, one about every 20 ms (``RECORD_INTERVAL_S``, the live
            view) and at least 64 per doubling of the iteration count (all of the first 64; the
            charts and the diagnosis); 1: every iteration (per-iteration curves, the lessons);
            s: every s-th (and those events). A record's ``iteration`` is always the
            iteration's number.

    Returns:
        EigenResult, pairs in ``which`` order, after a final Rayleigh-Ritz step on all vectors;
        residuals and ``converged`` are the true ones. On MAX_ITER or STOPPED it holds the
        locked pairs plus the current one, so possibly fewer than k.

    Raises:
        ValueError / TypeError: invalid arguments (named, with the rule and a hint).
    """
    v = validate_common("power_iteration", operator, k, which=which, tol=tol, max_iter=max_iter,
                        default_max_iter=20_000, supported_which=("LM", "LA", "SA"), X0=X0, B=B)
    if not is_real_number(momentum) or not 0.0 <= momentum < 1.0:
        raise ValueError(f"`momentum` must be a number in [0, 1) (the expected ratio |lambda_2 / lambda_1|), "
                         f"got momentum={momentum!r}; use 0 for plain power iteration")
    schedule = RecordSchedule(check_every("record_every", record_every))
    n, dtype, device = v.operator.shape[0], v.operator.dtype, v.operator.device
    generator = make_generator(seed)
    monitor = Monitor("power_iteration", v, tracker, extras={"momentum": float(momentum),
                                                              "deflation": "orthogonal projection"})
    # A / 2^e when A's scale would over/underflow norms; the monitor reports back in A's units
    units = monitor.units = ProductUnits(dtype)
    op = UnitsOperator(v.operator, units)

    def start_vector(j: int) -> torch.Tensor:
        if v.X0 is not None and j < v.X0.shape[1]:
            x = v.X0[:, j].clone()
        else:
            x = random_block(n, 1, generator, dtype=dtype, device=device).squeeze(1)
        return x

    # Shift for LA / SA: a short power run estimates ||A|| (these matvecs count, not as iterations).
    sigma = 0.0
    norm_estimate = 0.0
    if v.which != "LM":
        x = start_vector(v.X0.shape[1] if v.X0 is not None else 0)
        for _ in range(_NORM_STEPS):
            x = x / torch.linalg.vector_norm(x)
            x = op.matvec(x)
        norm_estimate = float(torch.linalg.vector_norm(x))
        sigma = _SHIFT_MARGIN * norm_estimate
    sign = -1.0 if v.which == "SA" else 1.0  # iterate with sign * A + sigma I

    locked_vectors: list[torch.Tensor] = []
    locked_products: list[torch.Tensor] = []  # A x of each locked x (for the final Rayleigh-Ritz)
    locked_values: list[float] = []
    locked_residuals: list[float] = []
    V = torch.zeros(n, 0, dtype=dtype, device=device)
    status = SolveStatus.MAX_ITER
    message = ""
    it = 0
    x = _normalized_start(start_vector(0), V, generator)
    x_prev = torch.zeros_like(x)
    theta_prev: float | None = None
    current: tuple[torch.Tensor, torch.Tensor] | None = None
    floor = threshold_floor(norm_estimate, torch.float64)  # residual_threshold on float64 scalars

    def emit(it: int, theta: float, residual: float, deflated: float, theta_prev: float | None,
             n_converged: int) -> bool:
        """One record (the locked pairs, then the current one); True when the tracker asked to stop."""
        u = units.scale  # for the extras (the monitor scales values and residuals)
        values = torch.tensor(locked_values + [theta], dtype=torch.float64)
        residuals = torch.tensor(locked_residuals + [residual], dtype=torch.float64)
        return monitor.record(it, values, residuals, estimated=False, n_converged=n_converged,
                              extras={"pair": float(len(locked_values) + 1), "deflated_residual": deflated * u,
                                      "rayleigh_change": abs(theta - theta_prev) * u if theta_prev is not None
                                      else float("nan")})

    pending: tuple[Any, ...] | None = None  # the last completed iteration, when it was not recorded
    while it < v.max_iter:
        Ax = op.matvec(x)
        it += 1
        theta = float(x @ Ax)
        r = Ax - theta * x
        residual = float(torch.linalg.vector_norm(r))
        # The deflated iteration can only remove the residual *outside* span V: the part
        # inside is the error of the locked vectors (~ their own residuals), a floor that
        # would stop every later pair. So pair j is tested on (I - V V^T) r; the final
        # Rayleigh-Ritz on all vectors removes that floor from the reported pairs.
        deflated = residual if not V.shape[1] else float(torch.linalg.vector_norm(r - V @ (V.T @ r)))
        if not (math.isfinite(theta) and math.isfinite(residual)):
            it -= 1  # not completed (and not recorded); `current` keeps the iterate before it
            status, message = SolveStatus.BREAKDOWN, nonfinite_message(f"iteration {it + 1}", monitor.n_matvec, _KEPT)
            break
        if abs(theta) > norm_estimate:
            norm_estimate = abs(theta)
            floor = threshold_floor(norm_estimate, torch.float64)
        current = (x, Ax)
        threshold = v.tol * max(abs(theta), floor)  # residual_threshold on one float64 value
        stalled = theta_prev is not None and abs(theta - theta_prev) <= v.tol * abs(theta)
        pair_done = stalled and deflated <= threshold
        n_converged = len(locked_values) + int(pair_done)
        if schedule.due(it, event=pair_done or it >= v.max_iter):
            pending = None
            stop = emit(it, theta, residual, deflated, theta_prev, n_converged)
        else:
            pending, stop = (it, theta, residual, deflated, theta_prev, n_converged), False
        if pair_done:
            locked_vectors.append(x)
            locked_products.append(Ax)
            locked_values.append(theta)
            locked_residuals.append(residual)
            current = None
            if len(locked_values) == v.k:
                status = SolveStatus.CONVERGED
                break
            V = torch.stack(locked_vectors, dim=1)
            x = _normalized_start(start_vector(len(locked_values)), V, generator)
            x_prev = torch.zeros_like(x)
            theta_prev = None
            if stop:
                status = SolveStatus.STOPPED
                break
            continue
        if stop:
            status = SolveStatus.STOPPED
            break
        # y = (I - V V^T)(sign * A + sigma I) x - beta x_prev
        y = sign * Ax + sigma * x if v.which != "LM" else Ax
        if V.shape[1]:
            y = y - V @ (V.T @ y)
        if momentum > 0:
            beta = (momentum * (sign * theta + sigma)) ** 2 / 4.0
            y = y - beta * x_prev
        norm = float(torch.linalg.vector_norm(y))
        if not math.isfinite(norm):
            status, message = SolveStatus.BREAKDOWN, nonfinite_message(f"iteration {it + 1}", monitor.n_matvec, _KEPT)
            break
        if not norm > 0:
            status = SolveStatus.BREAKDOWN
            message = "The iterate vanished (A x = 0 in the deflated space); no further progress is possible."
            break
        x_prev = x / norm
        x = y / norm
        theta_prev = theta
    if pending is not None:  # a breakdown after an iteration that was not recorded: record it
        emit(*pending)
    vectors, products = list(locked_vectors), list(locked_products)
    n_locked = len(vectors)
    if current is not None and status is not SolveStatus.CONVERGED:
        vectors.append(current[0])
        products.append(current[1])
    if not vectors:
        empty = torch.zeros(0, dtype=dtype, device=device)
        return monitor.finish(eigenvalues=empty, eigenvectors=torch.zeros(n, 0, dtype=dtype, device=device),
                              residual_norms=empty, converged=torch.zeros(0, dtype=torch.bool), n_iter=it,
                              status=status, message=message)
    # Rayleigh-Ritz on span of all vectors, with the stored products A x: no extra matvecs.
    X, AX = torch.stack(vectors, dim=1), torch.stack(products, dim=1)
    G = (X.T @ AX).to(torch.float64)
    values64, Z = torch.linalg.eigh(0.5 * (G + G.T))
    Zd = Z.to(dtype)
    X, AX = X @ Zd, AX @ Zd
    values_t = values64.to(dtype)
    residuals_t = torch.linalg.vector_norm(AX - X * values_t.unsqueeze(0), dim=0)
    norm_estimate = max(norm_estimate, float(values64.abs().max()))
    converged_t = (residuals_t.to(torch.float64) <= residual_threshold(values64, v.tol, norm_estimate)).cpu()
    order = select_order(values_t, v.which)[: v.k]
    if status is SolveStatus.CONVERGED and not bool(converged_t[order.cpu()].all()):
        status = SolveStatus.MAX_ITER
        message = ("Every pair met tol in the deflated space, but after the final Rayleigh-Ritz some true "
                   "residuals exceed it; lower `tol` or use lobpcg/lanczos.")
    counted = status is SolveStatus.MAX_ITER and not message
    if counted:
        message = (f"{n_locked} of {v.k} pairs converged within max_iter={v.max_iter} iterations "
                   f"(the gap |lambda_(j+1) / lambda_j| decides the speed; try `momentum` or lobpcg/lanczos).")
    return monitor.finish(eigenvalues=values_t[order], eigenvectors=X[:, order], residual_norms=residuals_t[order],
                          converged=converged_t[order.cpu()], n_iter=it, status=status, message=message,
                          counts_in_message=counted)


def _normalized_start(x: torch.Tensor, V: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """x projected onto the complement of span V (twice, for rounding) and normalized."""
    for _ in range(2):
        if V.shape[1]:
            x = x - V @ (V.T @ x)
    norm = torch.linalg.vector_norm(x)
    if not float(norm) > 0:  # a start inside span V: fall back to a random vector
        x = random_block(x.numel(), 1, generator, dtype=x.dtype, device=x.device).squeeze(1)
        if V.shape[1]:
            x = x - V @ (V.T @ x)
        norm = torch.linalg.vector_norm(x)
    return x / norm


register_solver(SolverSpec(
    name="power_iteration",
    label="Power iteration (deflated)",
    fn=power_iteration,
    summary=("x <- A x / ||A x||, one eigenpair at a time; converged vectors are locked and projected out "
             "(orthogonal deflation). Converges like |lambda_(j+1) / lambda_j|^t: fine for a clear gap, "
             "hopeless for clusters. Optional heavy-ball momentum."),
    which=("LM",),
    params=(
        ParamSpec("momentum", "float", 0.0, "Heavy-ball momentum: your guess of the ratio |lambda_2 / lambda_1| "
                  "between the next and the current eigenvalue. Each step subtracts beta times the previous "
                  "iterate, beta = (momentum x current estimate)^2 / 4; a good guess turns ~1/gap iterations "
                  "into ~1/sqrt(gap). 0 = plain power iteration.", minimum=0.0, maximum=0.999),
        record_cadence("record_every", "iteration",
                       "Which iterations are recorded. 'auto': each converged pair, the last, about every 20 ms "
                       "(the live view) and at least 64 per doubling of the count (the first 64 all): on a cheap "
                       "matrix a record costs about as much as an iteration. 1: every iteration (a curve point "
                       "per iteration). Any whole number s: every s iterations."),
    ),
    supports_B=False,
    matrix_free=True,
    default_tol=1e-6,
    default_max_iter=20_000,
    references=("Saad 2011, Sec. 4.1-4.2", "De Sa, He, Mitliagkas, Re & Xu 2018, Algorithm 1"),
    # each wanted pair needs a clear gap to the next eigenvalue in magnitude, else the
    # iteration count grows like 1 / gap
    spectrum_assumption="gap",
))
