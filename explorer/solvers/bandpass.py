"""Every eigenpair in an interior interval [lower, upper) with a band-pass Chebyshev-Jackson filter.

What ``chebyshev(A, k, lower=a, upper=b)`` runs: subspace iteration with a polynomial of A that
approximates the indicator of [a, b), then Rayleigh-Ritz; matvecs only, no factorization (so it
works on matrix-free operators too, e.g. a Hessian).

The filter
----------
With the spectrum in [l, u] (bounds from a few Lanczos steps, ``theta_min - ||f||`` and
``theta_max + ||f||``, widened by ``MARGIN``), ``t = (A - c) / e`` (``c = (u + l) / 2``,
``e = (u - l) / 2``) has its spectrum in [-1, 1], and the interval maps to ``[ta, tb]``. The
Chebyshev series of the indicator of ``[ta, tb]`` is

    h(t) = sum_j gamma_j T_j(t),   gamma_0 = (acos ta - acos tb) / pi,
    gamma_j = 2 (sin(j acos ta) - sin(j acos tb)) / (j pi),

and its degree-m truncation oscillates (Gibbs). The Jackson damping factors

    g_j = [(1 - j / (m + 2)) sin(alpha) cos(j alpha) + cos(alpha) sin(j alpha) / (m + 2)] / sin(alpha),
    alpha = pi / (m + 2),

make the truncated series a convolution with a positive kernel: ``p(t) = sum_j g_j gamma_j T_j(t)``
lies in [0, 1], is ~1 well inside the interval, ~1/2 at its ends and decays outside
(E. Di Napoli, E. Polizzi & Y. Saad, Numer. Linear Algebra Appl. 23 (2016) 674-692, "Efficient
estimation of eigenvalue counts in an interval", Sec. 3; R. Li, Y. Xi, E. Vecharynski, C. Yang &
Y. Saad, SIAM J. Sci. Comput. 38 (2016) A2512-A2534, "A thick-restart Lanczos algorithm with
polynomial filtering", Sec. 3). ``p(A) X`` takes m block products by the three-term recurrence
``T_(j+1) = 2 t T_j - T_(j-1)``.

The degree: the Jackson kernel is about ``pi / (m + 2)`` wide in ``theta = acos t``; an interval of
width ``acos ta - acos tb`` there is resolved with ``m ~ RESOLUTION pi / width`` (``RESOLUTION`` = 4:
the kernel a quarter of the interval). ``degree`` is the least degree used; it is raised to that
(the records and the message give the degree used).

The count
---------
With an assembled matrix (sparse or dense): exact, from the inertia of the LDL^T of ``A - s I`` at
both ends (Sylvester's law, ``explorer.solvers.slicing.interval_count``). Matrix-free: estimated,
``trace p(A) ~ (1 / N) sum_i z_i^T p(A) z_i`` over N Rademacher vectors (Hutchinson; Di Napoli et al.
2016, Sec. 3), with its standard error: an *estimate* (p is not the exact indicator, and the sample
is finite), which the result says. The probes, filtered, are the first block of the iteration, so
the estimate costs nothing extra when the block is at most ``probes`` wide.

The iteration
-------------
A block of ``max(3 c / 2, c + 8)`` vectors (c: the count; guard vectors hold the eigenvalues just
outside the interval, where p is still large): ``Y = p(A) X``, orthonormalize (QR), Rayleigh-Ritz
with A (one more block product), true residuals ``||A x - theta x||``. The run is CONVERGED when the
Ritz values in [a, b) meet tol, their number is the count (exact count) or has not changed for
two iterations (estimated count), and no unconverged Ritz value could still move into the interval
(its residual interval ``[theta - r, theta + r]`` does not reach [a, b)). A Ritz value outside the
bounds (they were too tight) widens them and rebuilds the filter.

Records: the Ritz values in [a, b) (ascending) with their true residuals; ``extras``: ``degree``,
``pass_low`` / ``pass_high`` (the interval), ``count`` (the inertia count, or the rounded estimate with
``count_estimate`` and ``count_stderr``), ``bound_low`` / ``bound_high`` (the spectrum's bounds).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch

from explorer.operators.inverse import assembled_matrix
from explorer.solvers._common import Monitor, check_int, is_real_number, make_generator, orthogonality_loss, random_block
from explorer.tracking.results import EigenResult, SolveStatus

__all__ = ["jackson_coefficients", "bandpass_coefficients", "bandpass_filter", "bandpass_values", "interval_degree",
           "interval_chebyshev", "RESOLUTION", "PROBES", "MAX_DEGREE"]

RESOLUTION = 4.0  # the Jackson kernel's width, in units of the interval's width (in acos t)
MAX_DEGREE = 2000  # a narrower interval (relative to the spectrum) is refused: it needs a factorization
PROBES = 30  # Rademacher vectors of the stochastic count (its standard error falls as 1 / sqrt(PROBES))
MARGIN = 0.01  # the Lanczos bounds are widened by this share of the spread (p grows fast outside [-1, 1])


def jackson_coefficients(degree: int) -> np.ndarray:
    """The Jackson damping factors ``g_0 .. g_m`` (``g_0 = 1``; module docstring)."""
    m = int(degree)
    alpha = math.pi / (m + 2)
    j = np.arange(m + 1, dtype=np.float64)
    return ((1 - j / (m + 2)) * math.sin(alpha) * np.cos(j * alpha) + math.cos(alpha) * np.sin(j * alpha) / (m + 2)) \
        / math.sin(alpha)


def bandpass_coefficients(degree: int, ta: float, tb: float) -> np.ndarray:
    """``g_j gamma_j``, j = 0..m: the damped Chebyshev series of the indicator of [ta, tb] (in [-1, 1])."""
    ta, tb = max(-1.0, min(1.0, float(ta))), max(-1.0, min(1.0, float(tb)))
    a, b = math.acos(ta), math.acos(tb)
    j = np.arange(1, int(degree) + 1, dtype=np.float64)
    gamma = np.concatenate([[(a - b) / math.pi], 2.0 * (np.sin(j * a) - np.sin(j * b)) / (j * math.pi)])
    return gamma * jackson_coefficients(degree)


def bandpass_filter(apply: Callable[[torch.Tensor], torch.Tensor], X: torch.Tensor, coefficients: np.ndarray,
                    center: float, half_width: float) -> torch.Tensor:
    """``p(A) X = sum_j coefficients[j] T_j((A - center) / half_width) X``: ``len(coefficients) - 1`` calls of
    ``apply`` (X -> A X) by the three-term recurrence, no inner product."""
    def t(Y: torch.Tensor) -> torch.Tensor:
        return torch.sub(apply(Y), Y, alpha=center).div_(half_width)

    out = X * float(coefficients[0])
    if len(coefficients) == 1:
        return out
    previous, current = X, t(X)
    out.add_(current, alpha=float(coefficients[1]))
    for j in range(2, len(coefficients)):
        previous, current = current, t(current).mul_(2.0).sub_(previous)
        out.add_(current, alpha=float(coefficients[j]))
    return out


def bandpass_values(x: Any, coefficients: np.ndarray, center: float, half_width: float) -> np.ndarray:
    """The filter ``p`` at the points ``x`` (A's units): what :func:`bandpass_filter` multiplies each
    eigen-direction of eigenvalue x by (for drawing it over a spectrum)."""
    t = np.clip((np.asarray(x, dtype=np.float64) - center) / half_width, -1.0, 1.0)
    return np.polynomial.chebyshev.chebval(t, np.asarray(coefficients, dtype=np.float64))


def interval_degree(ta: float, tb: float, least: int) -> int:
    """The degree that resolves [ta, tb] (``RESOLUTION`` kernel widths across it), at least ``least``."""
    width = math.acos(max(-1.0, min(1.0, ta))) - math.acos(max(-1.0, min(1.0, tb)))
    if width <= 0:
        return int(least)
    return max(int(least), int(math.ceil(RESOLUTION * math.pi / width)))


def _lanczos_bounds(apply: Callable[[torch.Tensor], torch.Tensor], start: torch.Tensor, steps: int) -> tuple[float, float]:
    from explorer.solvers.chebyshev import lanczos_upper_bound

    theta, f_norm = lanczos_upper_bound(apply, start, steps)
    low, high = float(theta[0]) - f_norm, float(theta[-1]) + f_norm
    spread = max(high - low, 1e-300)
    return low - MARGIN * spread, high + MARGIN * spread


def interval_chebyshev(v: Any, lower: Any, upper: Any, *, tracker: Any, degree: int, block_size: int | None,
                       bound_steps: int, seed: int | None, probes: int = PROBES) -> EigenResult:
    """Every eigenpair of ``v.operator`` in [lower, upper), ascending (module docstring); ``v.k`` is the most
    accepted. ``v``: the validated common arguments of :func:`explorer.solvers.chebyshev.chebyshev`."""
    for name, value in (("lower", lower), ("upper", upper)):
        if value is None or not is_real_number(value) or not math.isfinite(float(value)):
            raise ValueError(f"an interval needs both ends as finite numbers: `{name}` is {value!r}")
    lower, upper = float(lower), float(upper)
    if not lower < upper:
        raise ValueError(f"the interval must have lower < upper, got [{lower:g}, {upper:g}]; swap them")
    A = v.operator
    n, dtype, device = A.shape[0], A.dtype, A.device
    eps = float(torch.finfo(dtype).eps)
    generator = make_generator(seed)

    def apply(X: torch.Tensor) -> torch.Tensor:
        return A.matmat(X)

    start = random_block(n, 1, generator, dtype=dtype, device=device).squeeze(1)
    low, high = _lanczos_bounds(apply, start, bound_steps)

    # the count: exact from the inertia where the matrix is assembled, else estimated (later)
    exact_count = None
    count_text = ""
    if assembled_matrix(A) is not None:
        from explorer.solvers.slicing import interval_count

        counted = interval_count(A, lower, upper, seed=0 if seed is None else int(seed))
        exact_count = counted.count
        count_text = (f"Sylvester's law of inertia (LDL^T at both ends: {counted.below_lower} and "
                      f"{counted.below_upper} negative pivots) puts {exact_count} eigenvalue"
                      f"{'' if exact_count == 1 else 's'} in [{lower:g}, {upper:g})")
        if exact_count > v.k:
            raise ValueError(f"[{lower:g}, {upper:g}) holds {exact_count} eigenvalues (inertia count), more than k = "
                             f"{v.k}; narrow the interval or raise `k` to {exact_count} (the result keeps n x count "
                             "numbers)")

    def geometry() -> tuple[float, float, float, float]:
        c, e = 0.5 * (high + low), 0.5 * (high - low)
        return c, e, (lower - c) / e, (upper - c) / e

    c, e, ta, tb = geometry()
    m = interval_degree(ta, tb, degree)
    if m > MAX_DEGREE:
        raise ValueError(f"[{lower:g}, {upper:g}) is too narrow for a polynomial filter on a spectrum in about "
                         f"[{low:.4g}, {high:.4g}]: it would need degree {m} (> {MAX_DEGREE}) per iteration. Widen the "
                         "interval, or use lanczos / lobpcg with `lower`, `upper` (spectrum slicing with a "
                         "factorization) or `sigma` (shift-invert)")
    coefficients = bandpass_coefficients(m, ta, tb)
    monitor = Monitor("chebyshev", v, tracker, extras={"degree": m, "lower": lower, "upper": upper,
                                                       "bound_steps": bound_steps,
                                                       "count_method": "inertia" if exact_count is not None
                                                       else "stochastic estimate"})

    if exact_count == 0 or (ta >= 1.0 or tb <= -1.0):
        found = 0 if exact_count is None else exact_count
        if found == 0:
            empty = torch.zeros(0, dtype=dtype, device=device)
            why = count_text or (f"[{lower:g}, {upper:g}) lies outside the spectrum's bounds [{low:.4g}, {high:.4g}]")
            monitor.k = 0
            return monitor.finish(eigenvalues=empty, eigenvectors=torch.zeros(n, 0, dtype=dtype, device=device),
                                  residual_norms=empty, converged=torch.zeros(0, dtype=torch.bool), n_iter=0,
                                  status=SolveStatus.CONVERGED, message=f"{why}: none to find.",
                                  counts_in_message=True)

    first_filtered: torch.Tensor | None = None
    estimate = stderr = math.nan
    if exact_count is None:
        Z = (torch.randint(0, 2, (n, probes), generator=generator, dtype=torch.int64).to(dtype) * 2 - 1).to(device)
        PZ = bandpass_filter(apply, Z, coefficients, c, e)
        samples = (Z * PZ).sum(dim=0).double().cpu().numpy()
        estimate, stderr = float(samples.mean()), float(samples.std(ddof=1) / math.sqrt(probes))
        count_text = (f"a stochastic estimate of the count (trace of the filter over {probes} Rademacher vectors, "
                      f"Di Napoli, Polizzi & Saad 2016) is {estimate:.1f} \u00b1 {stderr:.1f}: an estimate, so "
                      "completeness is not proven")
        if estimate - 2 * stderr > v.k:
            raise ValueError(f"[{lower:g}, {upper:g}) holds about {estimate:.0f} \u00b1 {stderr:.0f} eigenvalues "
                             f"(stochastic estimate), more than k = {v.k}; narrow the interval or raise `k`")
        first_filtered = PZ
        guess = max(1, int(math.ceil(estimate + 2 * stderr)))
    else:
        guess = exact_count
    if block_size is not None:
        nb = check_int("block_size", block_size)
        if exact_count is not None and nb < exact_count:
            raise ValueError(f"`block_size` = {nb} is below the {exact_count} eigenvalues of the interval; leave it "
                             f"empty (default max(3 c / 2, c + 8)) or pass at least {exact_count + 8}")
    else:
        nb = max(int(math.ceil(1.5 * guess)), guess + 8)
    nb = min(nb, n)
    if first_filtered is not None and first_filtered.shape[1] >= nb:
        Y = first_filtered[:, :nb]
    else:
        X = random_block(n, nb if first_filtered is None else nb - first_filtered.shape[1], generator, dtype=dtype,
                         device=device)
        Y = bandpass_filter(apply, X, coefficients, c, e)
        if first_filtered is not None:
            Y = torch.cat([first_filtered, Y], dim=1)

    norm = max(abs(low), abs(high))
    status, message = SolveStatus.MAX_ITER, ""
    values = residuals = np.zeros(0)
    vectors = torch.zeros(n, 0, dtype=dtype, device=device)
    previous_inside: int | None = None
    widened = 0
    iteration = 0
    while iteration < v.max_iter:
        iteration += 1
        Q = torch.linalg.qr(Y).Q
        AQ = apply(Q)
        if not bool(torch.isfinite(AQ).all()):
            status, message = SolveStatus.BREAKDOWN, "the operator returned NaN or Inf; check it"
            break
        H = (Q.T @ AQ).double().cpu().numpy()
        theta, W = np.linalg.eigh(0.5 * (H + H.T))
        Wt = torch.as_tensor(W, dtype=dtype, device=device)
        X, AX = Q @ Wt, AQ @ Wt
        res = torch.linalg.vector_norm(AX - X * torch.as_tensor(theta, dtype=dtype, device=device),
                                       dim=0).double().cpu().numpy()
        norm = max(norm, float(np.abs(theta).max()))
        thresholds = v.tol * np.maximum(np.abs(theta), math.sqrt(eps) * norm)
        met = res <= thresholds
        inside = (theta >= lower) & (theta < upper)
        values, residuals = theta[inside], res[inside]
        vectors = X[:, torch.as_tensor(np.flatnonzero(inside), device=device)]
        n_inside, n_met = int(inside.sum()), int((inside & met).sum())
        # an unconverged Ritz value whose residual interval reaches [lower, upper) may still move in
        reaches = (~met) & (theta + res >= lower) & (theta - res < upper)
        count = exact_count if exact_count is not None else max(1, int(round(estimate)))
        stop = monitor.record(iteration, torch.as_tensor(values.copy(), dtype=dtype),
                              torch.as_tensor(residuals.copy(), dtype=dtype), estimated=False, n_converged=n_met,
                              orthogonality_loss=orthogonality_loss(Q), all_ritz_values=theta,
                              extras={"degree": float(m), "pass_low": lower, "pass_high": upper,
                                      "count": float(count), "bound_low": low, "bound_high": high,
                                      **({} if exact_count is not None
                                         else {"count_estimate": estimate, "count_stderr": stderr})})
        complete = (n_inside == exact_count) if exact_count is not None else (n_inside == previous_inside)
        if n_met == n_inside and not reaches.any() and complete:
            status = SolveStatus.CONVERGED
            break
        if stop:
            status = SolveStatus.STOPPED
            break
        previous_inside = n_inside
        if float(theta[0]) < low or float(theta[-1]) > high:  # the bounds were too tight: widen, rebuild
            spread = max(high - low, 1e-300)
            low, high = min(low, float(theta[0]) - MARGIN * spread), max(high, float(theta[-1]) + MARGIN * spread)
            c, e, ta, tb = geometry()
            m = max(m, interval_degree(ta, tb, degree))
            coefficients = bandpass_coefficients(m, ta, tb)
            widened += 1
        if exact_count is None and n_inside >= nb - 2 and nb < n:  # no guard vectors left: grow the block
            extra = min(n - nb, max(8, nb // 2))
            X = torch.cat([X, random_block(n, extra, generator, dtype=dtype, device=device)], dim=1)
            nb += extra
        Y = bandpass_filter(apply, X, coefficients, c, e)

    got = int(np.sum(residuals <= v.tol * np.maximum(np.abs(values), math.sqrt(eps) * norm)))
    if exact_count is not None:
        if status is SolveStatus.CONVERGED:
            summary = f"{count_text}; all {exact_count} found with residuals below tol: none was missed"
        else:
            summary = f"{count_text}; {got} of {exact_count} found with residuals below tol"
    else:
        summary = f"{got} eigenvalue{'' if got == 1 else 's'} found in [{lower:g}, {upper:g}); {count_text}"
    message = (f"{message + ' ' if message else ''}Band-pass Chebyshev-Jackson filter of degree {m} on the "
               f"spectrum's bounds [{low:.4g}, {high:.4g}], block of {nb}: {summary}."
               + (f" The Lanczos bounds were too tight and were widened {widened} time(s)." if widened else ""))
    monitor.k = max(int(values.size), exact_count or 0)
    converged = torch.as_tensor(residuals <= v.tol * np.maximum(np.abs(values), math.sqrt(eps) * norm))
    return monitor.finish(eigenvalues=torch.as_tensor(values.copy(), dtype=dtype, device=device), eigenvectors=vectors,
                          residual_norms=torch.as_tensor(residuals.copy(), dtype=dtype, device=device),
                          converged=converged, n_iter=iteration, status=status, message=message, norm_estimate=norm,
                          counts_in_message=True)
