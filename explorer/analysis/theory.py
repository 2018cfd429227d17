"""Convergence theory: the a-priori bounds the Learn page draws over live measurements.

Every function here is pure numpy (float64), takes the exact spectrum (or singular
values) of a test problem plus what the bound needs about the start, and returns the
bound as numbers. Nothing here runs a solver; :mod:`explorer.teaching` pairs each bound
with a measurement and :mod:`tests.test_theory` checks that converged runs stay under
it on problems where the theorem's assumptions hold.

Bounds and where they come from:

* Power iteration (:func:`power_rayleigh_bound`): Golub & Van Loan, *Matrix
  Computations*, 4th ed., Thm 8.2.1: ``|theta_t - lambda_1| <= max_i |lambda_1 -
  lambda_i| tan^2(theta_0) |lambda_2/lambda_1|^{2t}``.
* Power iteration with heavy-ball momentum (:func:`momentum_polynomial_ratio`): the
  iterate is ``p_t(A) x_0`` with ``p_{t+1}(x) = x p_t(x) - beta p_{t-1}(x)``; the same
  argument as Thm 8.2.1 with ``p_t`` in place of ``x^t`` (Xu, He, De Sa, Mitliagkas,
  Re, "Accelerated stochastic power iteration", AISTATS 2018, Thm 1; the optimal
  ``beta = lambda_2^2 / 4`` turns ``p_t`` into a scaled Chebyshev polynomial).
* Lanczos (:func:`kps_bound`): Kaniel-Paige-Saad, Saad, *Numerical Methods for Large
  Eigenvalue Problems*, 2nd ed. (SIAM 2011), Thm 6.4; Golub & Van Loan 4th ed. 10.1.5
  (Kaniel-Paige convergence theory).
* Loss of orthogonality in Lanczos (:func:`paige_orthogonality_level`): Paige 1976/1980;
  Parlett, *The Symmetric Eigenvalue Problem*, ch. 13.
* LOBPCG / preconditioned steepest descent (:func:`pinvit_sigma`): Knyazev & Neymeyr,
  "A geometric theory for preconditioned inverse iteration III", Linear Algebra Appl.
  358 (2003) 95-114, Thm 1.1; LOBPCG is at least as fast per step because its trial
  subspace contains ``span{x, T r}`` (Knyazev, SIAM J. Sci. Comput. 23(2), 2001).
* Randomized SVD (:func:`hmt_expected_spectral`, :func:`hmt_expected_frobenius`):
  Halko, Martinsson & Tropp, "Finding structure with randomness", SIAM Review 53(2),
  2011: Thm 10.5 (Frobenius), Thm 10.6 (spectral), Cor. 10.10 (power scheme), Thm 9.3
  (rank-k truncation).
* Dense ``eigh`` cost (:func:`eigh_flops`): Golub & Van Loan 4th ed., 8.3 (symmetric QR:
  about 4n^3/3 flops for eigenvalues, about 9n^3 with eigenvectors).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = [
    "chebyshev_t",
    "inverse_chebyshev_t",
    "tan_angle",
    "start_tangents",
    "power_rayleigh_bound",
    "power_rate",
    "momentum_polynomial_ratio",
    "momentum_rate",
    "optimal_momentum",
    "kps_gamma",
    "kps_bound",
    "lanczos_bound_curve",
    "paige_orthogonality_level",
    "pinvit_sigma",
    "optimal_gamma",
    "pinvit_ratio",
    "pinvit_bound_curve",
    "hmt_expected_frobenius",
    "hmt_expected_spectral",
    "hmt_truncated_spectral",
    "eigh_flops",
    "fit_power_law",
    "attainable_residual",
]

ArrayLike = Sequence[float] | np.ndarray


def _asarray(values: ArrayLike) -> np.ndarray:
    """A float64 numpy copy of a sequence, numpy array or torch tensor."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().double().numpy()  # type: ignore[union-attr]
    return np.asarray(values, dtype=np.float64).copy()


# --------------------------------------------------------------------------------------
# Chebyshev polynomials and angles
# --------------------------------------------------------------------------------------
def _log_chebyshev_t(degree: int, x: float) -> float:
    """``log T_degree(x)`` for ``x >= 1``, without overflow.

    ``T_d(x) = (rho^d + rho^-d) / 2`` with ``rho = x + sqrt(x^2 - 1)`` for ``x >= 1``.
    """
    if degree < 0:
        raise ValueError(f"`degree` must be >= 0, got {degree}")
    if x < 1.0:
        raise ValueError(f"`x` must be >= 1 here (outside [-1, 1] the polynomial grows), got {x}")
    log_rho = math.log(x + math.sqrt(x * x - 1.0))
    # log((rho^d + rho^-d)/2) = d log rho + log((1 + rho^-2d)/2)
    return degree * log_rho + math.log1p(math.exp(-2.0 * degree * log_rho)) - math.log(2.0)


def chebyshev_t(degree: int, x: float) -> float:
    """Chebyshev polynomial of the first kind ``T_degree(x)`` (any real x).

    ``T_d(x) = cos(d arccos x)`` on [-1, 1], ``cosh(d arccosh |x|)`` (with sign
    ``sign(x)^d``) outside; ``inf`` when it overflows.
    """
    if degree < 0:
        raise ValueError(f"`degree` must be >= 0, got {degree}")
    if abs(x) <= 1.0:
        return math.cos(degree * math.acos(x))
    log_value = _log_chebyshev_t(degree, abs(x))
    sign = -1.0 if (x < 0 and degree % 2 == 1) else 1.0
    return sign * (math.exp(log_value) if log_value < 709.0 else math.inf)


def inverse_chebyshev_t(degree: int, x: float) -> float:
    """``1 / T_degree(x)`` for ``x >= 1`` (underflows gracefully to 0)."""
    return math.exp(-_log_chebyshev_t(degree, x))


def tan_angle(v: ArrayLike, u: ArrayLike) -> float:
    """``tan`` of the angle between vector ``v`` and the span of the columns of ``u``.

    Args:
        v: (n,) start vector (any norm).
        u: (n,) or (n, d) orthonormal basis of the target eigenspace.

    Returns:
        ``||(I - P) v|| / ||P v||`` with ``P`` the orthogonal projector on span(u);
        ``inf`` when v is orthogonal to it.
    """
    v = _asarray(v).reshape(-1)
    u = _asarray(u)
    if u.ndim == 1:
        u = u[:, None]
    coefficients = u.T @ v
    inside = float(np.linalg.norm(coefficients))
    outside = float(np.sqrt(max(float(v @ v) - inside * inside, 0.0)))
    if inside == 0.0:
        return math.inf
    return outside / inside


def start_tangents(v: ArrayLike, eigenvectors: ArrayLike | None = None) -> np.ndarray:
    """``tan theta(v, u_i)`` for every eigenvector ``u_i`` (columns of ``eigenvectors``).

    Args:
        v: (n,) start vector.
        eigenvectors: (n, n) orthonormal eigenvectors in the order of the spectrum;
            None means the identity (a diagonal operator).

    Returns:
        (n,) tangents, in the order of the columns.
    """
    v = _asarray(v).reshape(-1)
    coefficients = v if eigenvectors is None else _asarray(eigenvectors).T @ v
    total = float(v @ v)
    with np.errstate(divide="ignore", invalid="ignore"):
        squared = coefficients * coefficients
        tangents = np.sqrt(np.maximum(total - squared, 0.0)) / np.abs(coefficients)
    return np.where(coefficients == 0.0, np.inf, tangents)


# --------------------------------------------------------------------------------------
# Power iteration
# --------------------------------------------------------------------------------------
def _dominant_order(spectrum: np.ndarray) -> np.ndarray:
    """Indices sorting by descending magnitude (power iteration finds |lambda| largest)."""
    return np.argsort(-np.abs(spectrum), kind="stable")


def power_rate(spectrum: ArrayLike) -> float:
    """``|lambda_2 / lambda_1|`` for eigenvalues ordered by magnitude (the linear rate)."""
    values = _asarray(spectrum)
    order = _dominant_order(values)
    if values.size < 2 or values[order[0]] == 0.0:
        return 0.0
    return float(abs(values[order[1]]) / abs(values[order[0]]))


def power_rayleigh_bound(spectrum: ArrayLike, tan0: float, steps: ArrayLike) -> np.ndarray:
    """Bound on the Rayleigh-quotient error of the power method after ``t`` steps.

    For symmetric A with ``|lambda_1| > |lambda_2| >= ...`` and a start ``x_0`` with
    ``tan theta_0 = tan angle(x_0, u_1)``, the iterate ``x_t = A^t x_0 / ||A^t x_0||``
    satisfies ``tan theta_t <= tan theta_0 |lambda_2/lambda_1|^t`` and

        |x_t^T A x_t - lambda_1| <= max_i |lambda_1 - lambda_i| tan^2(theta_0) |lambda_2/lambda_1|^{2t}.

    Args:
        spectrum: all eigenvalues of A (any order).
        tan0: tangent of the angle between the start vector and the dominant eigenvector.
        steps: the numbers of multiplications by A, ``t``.

    Returns:
        The bound for each ``t`` (same shape as ``steps``).

    References:
        Golub & Van Loan, Matrix Computations, 4th ed., Thm 8.2.1.
    """
    values = _asarray(spectrum)
    order = _dominant_order(values)
    lam1 = values[order[0]]
    spread = float(np.max(np.abs(lam1 - values)))
    rate = power_rate(values)
    t = _asarray(steps)
    return spread * tan0 ** 2 * rate ** (2.0 * t)


def momentum_polynomial_ratio(spectrum: ArrayLike, beta: float | ArrayLike, steps: int) -> np.ndarray:
    """``max_{i>=2} |p_t(lambda_i)| / |p_t(lambda_1)|`` for ``t = 0..steps``.

    ``p_{t+1}(x) = x p_t(x) - beta_t p_{t-1}(x)``, ``p_0 = 1``, ``p_{-1} = 0`` is the
    polynomial that the heavy-ball power iteration ``x_{t+1} = A x_t - beta_t x_{t-1}``
    (with consistent normalisation of both vectors) applies to the start vector, so
    ``tan theta_t <= tan theta_0 * ratio_t`` exactly as in Thm 8.2.1 with ``x^t``
    replaced by ``p_t``; ``beta = 0`` gives the plain ``|lambda_2/lambda_1|^t``.
    ``lambda_1`` is the eigenvalue with the largest magnitude. The recurrence is run on
    the eigenvalues themselves, rescaled each step so nothing overflows.

    Args:
        spectrum: all eigenvalues (any order).
        beta: momentum coefficient (>= 0), or one per step (``beta[t]`` builds
            ``p_{t+1}``; the last value is repeated when the sequence is short). A
            solver whose beta follows its running Rayleigh quotient passes that schedule.
        steps: last ``t``.

    Returns:
        (steps + 1,) ratios.

    References:
        Xu et al., "Accelerated stochastic power iteration", AISTATS 2018 (Alg. 1, Thm 1).
    """
    values = _asarray(spectrum)
    order = _dominant_order(values)
    values = values[order]
    schedule = np.atleast_1d(_asarray(beta))
    if schedule.size == 0:
        schedule = np.zeros(1)
    previous = np.zeros_like(values)
    current = np.ones_like(values)
    ratios = np.empty(steps + 1)
    for t in range(steps + 1):
        lead = abs(current[0])
        ratios[t] = 0.0 if values.size < 2 else (np.inf if lead == 0 else float(np.max(np.abs(current[1:])) / lead))
        beta_t = float(schedule[min(t, schedule.size - 1)])
        following = values * current - beta_t * previous
        scale = max(float(np.max(np.abs(following))), np.finfo(np.float64).tiny)
        previous, current = current / scale, following / scale
    return ratios


def momentum_rate(lambda1: float, lambda2: float, beta: float) -> float:
    """Asymptotic linear rate of heavy-ball power iteration.

    The roots of ``z^2 - lambda z + beta`` govern ``p_t(lambda)``; the rate is the ratio of
    the largest root modulus at ``lambda_2`` to that at ``lambda_1``. With
    ``beta = lambda_2^2/4`` it is ``lambda_2 / (lambda_1 + sqrt(lambda_1^2 - lambda_2^2))``,
    against ``lambda_2/lambda_1`` without momentum (Xu et al. 2018, Thm 1).
    """

    def root_modulus(lam: float) -> float:
        disc = lam * lam - 4.0 * beta
        if disc >= 0:
            return (abs(lam) + math.sqrt(disc)) / 2.0
        return math.sqrt(beta)

    top = root_modulus(lambda1)
    return 0.0 if top == 0.0 else root_modulus(lambda2) / top


def optimal_momentum(lambda2: float) -> float:
    """``beta* = lambda_2^2 / 4`` (Xu et al. 2018): the Chebyshev-optimal momentum."""
    return lambda2 * lambda2 / 4.0


# --------------------------------------------------------------------------------------
# Lanczos: Kaniel-Paige-Saad
# --------------------------------------------------------------------------------------
def kps_gamma(descending: ArrayLike, i: int) -> float:
    """``gamma_i = 1 + 2 (lambda_i - lambda_{i+1}) / (lambda_{i+1} - lambda_n)`` (1-based i)."""
    lam = _asarray(descending)
    if not 1 <= i < lam.size:
        raise ValueError(f"`i` must satisfy 1 <= i < n = {lam.size}, got {i}")
    spread = lam[i] - lam[-1]
    if spread <= 0:
        return math.inf
    return float(1.0 + 2.0 * (lam[i - 1] - lam[i]) / spread)


def kps_bound(descending: ArrayLike, m: int, i: int, tan_start: float,
              ritz_descending: ArrayLike | None = None) -> float:
    """Kaniel-Paige-Saad bound on the i-th largest Ritz value after m Lanczos steps.

    With the eigenvalues labelled decreasingly and ``theta_i^(m)`` the i-th largest
    eigenvalue of ``T_m`` (a Krylov space of dimension m, exact arithmetic):

        0 <= lambda_i - theta_i^(m) <= (lambda_1 - lambda_n) (kappa_i tan theta(v_1, u_i) / T_{m-i}(gamma_i))^2,

    ``gamma_i = 1 + 2 (lambda_i - lambda_{i+1}) / (lambda_{i+1} - lambda_n)``,
    ``kappa_1 = 1`` and ``kappa_i = prod_{j<i} (theta_j^(m) - lambda_n) / (theta_j^(m) - lambda_i)``.

    Args:
        descending: the whole spectrum, largest first.
        m: Krylov dimension (number of Lanczos vectors, the size of T_m).
        i: 1-based index of the Ritz value (i <= m).
        tan_start: ``tan`` of the angle between the start vector and ``u_i``.
        ritz_descending: Ritz values of ``T_m``, largest first; needed for ``i > 1``.

    Returns:
        The bound (``inf`` when it says nothing, e.g. ``m < i``).

    References:
        Saad, Numerical Methods for Large Eigenvalue Problems, 2nd ed., Thm 6.4;
        Golub & Van Loan 4th ed. 10.1.5.
    """
    lam = _asarray(descending)
    n = lam.size
    if m < i or not math.isfinite(tan_start):
        return math.inf
    if i >= n:
        return 0.0 if m >= n else math.inf
    kappa = 1.0
    if i > 1:
        if ritz_descending is None:
            raise ValueError("`ritz_descending` (the Ritz values of T_m) is needed for i > 1")
        theta = _asarray(ritz_descending)
        for j in range(i - 1):
            denominator = theta[j] - lam[i - 1]
            if denominator <= 0:  # theta_j has not passed lambda_i yet: the bound says nothing
                return math.inf
            kappa *= (theta[j] - lam[-1]) / denominator
    gamma = kps_gamma(lam, i)
    inv_t = 0.0 if math.isinf(gamma) else inverse_chebyshev_t(m - i, gamma)
    return float((lam[0] - lam[-1]) * (kappa * tan_start * inv_t) ** 2)


def lanczos_bound_curve(spectrum: ArrayLike, tan_start: float, ms: ArrayLike, *, i: int = 1,
                        which: str = "LA", ritz_values: Sequence[ArrayLike] | None = None) -> np.ndarray:
    """KPS bound for a sequence of Krylov dimensions, for the largest (LA) or smallest (SA) end.

    ``SA`` applies the theorem to ``-A``. ``ritz_values[j]`` (all Ritz values of ``T_m`` at
    ``ms[j]``, any order) is needed only for ``i > 1``.
    """
    values = _asarray(spectrum)
    if which == "LA":
        descending = np.sort(values)[::-1]
        sign = 1.0
    elif which == "SA":
        descending = np.sort(-values)[::-1]
        sign = -1.0
    else:
        raise ValueError(f"`which` must be 'LA' or 'SA' for the KPS bound, got {which!r}")
    out = []
    for j, m in enumerate(_asarray(ms).astype(int)):
        ritz = None
        if ritz_values is not None:
            ritz = np.sort(sign * _asarray(ritz_values[j]))[::-1]
        out.append(kps_bound(descending, int(m), i, tan_start, ritz))
    return np.asarray(out)


def paige_orthogonality_level(residual_estimates: ArrayLike, norm_a: float, eps: float) -> float:
    """Orthogonality loss Paige's theory predicts for plain Lanczos: ``eps ||A|| / min_i |beta_m s_mi|``.

    Paige showed that in floating point the new Lanczos vector leans towards the
    Ritz vector ``y_i`` as ``|y_i^T q_{m+1}| ~ eps ||A|| / |beta_m s_mi|``: orthogonality
    is lost exactly in the direction of the Ritz pairs that have converged (small
    residual estimate ``|beta_m s_mi|``), which is how ghost copies appear. Capped at 1.

    References:
        Paige, "Error analysis of the Lanczos algorithm for tridiagonalizing a symmetric
        matrix", J. Inst. Math. Appl. 18 (1976) 373-381; Paige, Linear Algebra Appl. 34
        (1980) 235-258; Parlett, The Symmetric Eigenvalue Problem, ch. 13.
    """
    residuals = np.abs(_asarray(residual_estimates))
    if residuals.size == 0:
        return 0.0
    smallest = float(np.min(residuals))
    if smallest <= 0:
        return 1.0
    return float(min(1.0, eps * norm_a / smallest))


# --------------------------------------------------------------------------------------
# LOBPCG: preconditioned steepest descent (PINVIT) guarantee
# --------------------------------------------------------------------------------------
def optimal_gamma(kappa: float) -> float:
    """``min_alpha ||I - alpha T A||_A = (kappa - 1) / (kappa + 1)``, kappa = cond(TA).

    LOBPCG does not depend on the scale of the preconditioner T (only ``span{T r}``
    enters), so the best scaling may be assumed in the bound.
    """
    if kappa < 1:
        raise ValueError(f"`kappa` must be >= 1, got {kappa}")
    return (kappa - 1.0) / (kappa + 1.0)


def pinvit_sigma(lambda_i: float, lambda_next: float, gamma: float) -> float:
    """Knyazev-Neymeyr contraction factor ``sigma = gamma + (1 - gamma) lambda_i / lambda_{i+1}``.

    For SPD A and a preconditioner with ``||I - T A||_A <= gamma < 1``, one step of
    preconditioned inverse iteration from ``x`` with ``lambda_i <= lambda(x) < lambda_{i+1}``
    gives ``Delta(x') <= sigma^2 Delta(x)`` where ``Delta(x) = (lambda(x) - lambda_i) /
    (lambda_{i+1} - lambda(x))``. LOBPCG minimises the Rayleigh quotient over a subspace
    containing that step, so its smallest Ritz value obeys the same per-step bound.

    References:
        Knyazev & Neymeyr, Linear Algebra Appl. 358 (2003) 95-114, Thm 1.1;
        Knyazev, SIAM J. Sci. Comput. 23(2) (2001) 517-541.
    """
    if not 0 <= gamma < 1:
        raise ValueError(f"`gamma` must satisfy 0 <= gamma < 1, got {gamma}")
    if not 0 < lambda_i < lambda_next:
        raise ValueError("the bound needs 0 < lambda_i < lambda_{i+1} (an SPD problem and a gap)")
    return gamma + (1.0 - gamma) * lambda_i / lambda_next


def pinvit_ratio(value: float, lambda_i: float, lambda_next: float) -> float:
    """``Delta = (lambda - lambda_i) / (lambda_{i+1} - lambda)``; ``inf`` at or above lambda_{i+1}."""
    if value >= lambda_next:
        return math.inf
    return max(value - lambda_i, 0.0) / (lambda_next - value)


def pinvit_bound_curve(start_value: float, lambda_i: float, lambda_next: float, sigma: float,
                       steps: ArrayLike) -> np.ndarray:
    """Eigenvalue-error bound ``lambda(x_t) - lambda_i`` after ``t`` more steps from ``start_value``.

    ``Delta_t <= sigma^{2t} Delta_0`` turned back into an eigenvalue error:
    ``lambda - lambda_i = Delta (lambda_{i+1} - lambda_i) / (1 + Delta)``.
    """
    delta0 = pinvit_ratio(start_value, lambda_i, lambda_next)
    t = _asarray(steps)
    if math.isinf(delta0):
        return np.full(t.shape, math.inf)
    delta = delta0 * sigma ** (2.0 * t)
    return delta * (lambda_next - lambda_i) / (1.0 + delta)


# --------------------------------------------------------------------------------------
# Randomized SVD: Halko-Martinsson-Tropp
# --------------------------------------------------------------------------------------
def _tail(singular_values: ArrayLike, k: int) -> np.ndarray:
    s = np.sort(np.abs(_asarray(singular_values)))[::-1]
    if not 1 <= k <= s.size:
        raise ValueError(f"`k` must satisfy 1 <= k <= {s.size}, got {k}")
    return s[k:]


def hmt_expected_frobenius(singular_values: ArrayLike, k: int, p: int) -> float:
    """``E ||(I - QQ^T) A||_F <= (1 + k/(p-1))^{1/2} (sum_{j>k} sigma_j^2)^{1/2}``.

    Gaussian test matrix with ``k + p`` columns, ``p >= 2``; ``inf`` for ``p < 2`` (the
    theorem needs it). Halko, Martinsson & Tropp 2011, Thm 10.5.
    """
    if p < 2:
        return math.inf
    tail = _tail(singular_values, k)
    return float(math.sqrt(1.0 + k / (p - 1.0)) * math.sqrt(float(np.sum(tail ** 2))))


def hmt_expected_spectral(singular_values: ArrayLike, k: int, p: int, q: int = 0) -> float:
    """Expected spectral error of the randomized range finder with q power iterations.

    ``E ||(I - QQ^T) A|| <= [ (1 + sqrt(k/(p-1))) sigma_{k+1}^{2q+1}
    + (e sqrt(k+p) / p) (sum_{j>k} sigma_j^{2(2q+1)})^{1/2} ]^{1/(2q+1)}``

    where Q is an orthonormal basis of ``(A A^T)^q A Omega`` for a Gaussian ``Omega`` with
    ``k + p`` columns. ``q = 0`` is HMT Thm 10.6; ``q >= 1`` is Cor. 10.10. Needs
    ``p >= 2`` (returns ``inf`` otherwise).

    References:
        Halko, Martinsson & Tropp, SIAM Review 53(2) 2011, Thm 10.6 and Cor. 10.10.
    """
    if p < 2:
        return math.inf
    if q < 0:
        raise ValueError(f"`q` must be >= 0, got {q}")
    tail = _tail(singular_values, k)
    if tail.size == 0:
        return 0.0
    power = 2 * q + 1
    # Scale by sigma_{k+1} so sigma^(2q+1) cannot under/overflow for large q.
    scale = float(tail[0])
    if scale == 0.0:
        return 0.0
    scaled = tail / scale
    inner = (1.0 + math.sqrt(k / (p - 1.0))) + (math.e * math.sqrt(k + p) / p) * math.sqrt(
        float(np.sum(scaled ** (2 * power))))
    return float(scale * inner ** (1.0 / power))


def hmt_truncated_spectral(singular_values: ArrayLike, k: int, p: int, q: int = 0) -> float:
    """Bound for the rank-k truncation ``||A - U_k S_k V_k^T|| <= sigma_{k+1} + ||(I - QQ^T) A||``.

    HMT 2011 Thm 9.3 (truncating ``Q Q^T A`` to rank k costs at most ``sigma_{k+1}``),
    combined with :func:`hmt_expected_spectral` for the expectation.
    """
    tail = _tail(singular_values, k)
    sigma_next = float(tail[0]) if tail.size else 0.0
    return sigma_next + hmt_expected_spectral(singular_values, k, p, q)


# --------------------------------------------------------------------------------------
# Dense reference cost and attainable accuracy
# --------------------------------------------------------------------------------------
def eigh_flops(n: int | np.ndarray, *, vectors: bool = True) -> np.ndarray | float:
    """Flops of the dense symmetric eigensolver: ``9 n^3`` with eigenvectors, ``4 n^3 / 3`` without.

    Golub & Van Loan 4th ed., 8.3 (tridiagonalisation ``4n^3/3`` plus implicit QR, with
    the orthogonal factors accumulated). LAPACK's divide and conquer (xSYEVD) has the
    same ``O(n^3)`` order with a smaller constant in practice.
    """
    n_arr = np.asarray(n, dtype=np.float64)
    return (9.0 if vectors else 4.0 / 3.0) * n_arr ** 3


def fit_power_law(sizes: ArrayLike, seconds: ArrayLike) -> tuple[float, float]:
    """Least-squares fit ``seconds ~ c n^a`` in log-log space; returns ``(a, c)``."""
    x = np.log(_asarray(sizes))
    y = np.log(_asarray(seconds))
    if x.size < 2:
        raise ValueError("need at least two sizes to fit a power law")
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope), float(math.exp(intercept))


def attainable_residual(norm_a: float, eps: float, factor: float = 10.0) -> float:
    """The smallest residual ``||A x - theta x||`` one can expect to reach: ``factor * eps * ||A||``.

    A matrix-vector product in floating point carries an error of order ``eps ||A|| ||x||``
    (backward stability of the product; Higham, *Accuracy and Stability of Numerical
    Algorithms*, 2nd ed., 3.5), so no solver can certify a residual much below it.
    ``factor`` absorbs the modest growth with n seen in practice.
    """
    return float(factor * eps * norm_a)
