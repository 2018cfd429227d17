"""The bound formulas of explorer.analysis.theory: exact values, and measured errors staying under them.

Each bound is checked twice where possible: against a tiny independent numpy kernel
written here (so a bug in a project solver cannot hide a wrong formula), and against
the project's solver on a problem where the theorem's assumptions hold. Slack factors
only cover rounding: ``ROUND = 1e3 eps ||A||`` is added to every bound once the error
reaches the rounding level.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from numpy.polynomial import chebyshev as npcheb

from explorer import problems
from explorer.analysis import theory
from explorer.solvers import SOLVERS, solve

EPS = float(np.finfo(np.float64).eps)

@pytest.fixture(autouse=True)
def _one_torch_thread():  # noqa: ANN202
    """One intra-op thread: on a loaded 2-core box two OpenMP threads slow small ops ~30x (../shared/LIVE.md 2.4)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)





def _start(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# --------------------------------------------------------------------------------------
# Chebyshev, angles, small formulas
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("degree", [0, 1, 2, 5, 17])
@pytest.mark.parametrize("x", [-1.0, -0.3, 0.0, 0.7, 1.0, 1.05, 2.0, -3.0])
def test_chebyshev_matches_numpy(degree: int, x: float) -> None:
    expected = npcheb.chebval(x, [0] * degree + [1])
    assert theory.chebyshev_t(degree, x) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_inverse_chebyshev_survives_large_degrees() -> None:
    assert theory.inverse_chebyshev_t(10_000, 1.5) == 0.0 or theory.inverse_chebyshev_t(10_000, 1.5) < 1e-300
    # 1/T_j(1 + small) decays like rho^-j with rho = x + sqrt(x^2 - 1)
    x = 1.001
    rho = x + math.sqrt(x * x - 1)
    assert theory.inverse_chebyshev_t(400, x) == pytest.approx(2 / (rho ** 400 + rho ** -400), rel=1e-10)
    with pytest.raises(ValueError, match="x"):
        theory.inverse_chebyshev_t(3, 0.5)


def test_tangents_of_a_known_vector() -> None:
    v = np.array([3.0, 4.0, 0.0])
    assert theory.tan_angle(v, np.array([1.0, 0.0, 0.0])) == pytest.approx(4 / 3)
    assert theory.tan_angle(v, np.eye(3)[:, :2]) == pytest.approx(0.0, abs=1e-15)
    assert theory.tan_angle(v, np.array([0.0, 0.0, 1.0])) == math.inf
    np.testing.assert_allclose(theory.start_tangents(v)[:2], [4 / 3, 3 / 4])
    Q = np.linalg.qr(np.random.default_rng(0).standard_normal((3, 3)))[0]
    np.testing.assert_allclose(theory.start_tangents(Q @ v, Q)[:2], [4 / 3, 3 / 4], rtol=1e-12)


def test_momentum_formulas() -> None:
    spectrum = np.array([1.0, 0.9, 0.5, 0.1, -0.3])
    ratios = theory.momentum_polynomial_ratio(spectrum, 0.0, 30)
    np.testing.assert_allclose(ratios, 0.9 ** np.arange(31), rtol=1e-12)
    beta = theory.optimal_momentum(0.9)
    assert beta == pytest.approx(0.2025)
    assert theory.momentum_rate(1.0, 0.9, beta) == pytest.approx(0.9 / (1 + math.sqrt(1 - 0.81)))
    assert theory.momentum_rate(1.0, 0.9, 0.0) == pytest.approx(0.9)
    # The polynomial ratio decays at the asymptotic rate (up to the (t+1) factor of a double root).
    long = theory.momentum_polynomial_ratio(spectrum, beta, 400)
    measured = (long[400] / long[300]) ** (1 / 100)
    assert measured == pytest.approx(theory.momentum_rate(1.0, 0.9, beta), rel=0.01)


def test_kps_gamma_and_bound_shape() -> None:
    lam = np.array([2.0, 1.0, 0.5, 0.0])
    assert theory.kps_gamma(lam, 1) == pytest.approx(1 + 2 * 1.0 / 1.0)
    bounds = [theory.kps_bound(lam, m, 1, 1.0) for m in range(1, 5)]
    assert bounds[0] == pytest.approx(2.0)  # T_0 = 1: (lambda_1 - lambda_n) tan^2
    assert all(b2 < b1 for b1, b2 in zip(bounds, bounds[1:]))
    assert theory.kps_bound(lam, 1, 2, 1.0, [2.0]) == math.inf  # m < i: nothing to say
    with pytest.raises(ValueError, match="ritz"):
        theory.kps_bound(lam, 3, 2, 1.0)


def test_hmt_bounds_values() -> None:
    sigma = 0.5 ** np.arange(30)
    k, p = 5, 5
    tail = sigma[k:]
    expected = (1 + math.sqrt(k / (p - 1))) * sigma[k] + math.e * math.sqrt(k + p) / p * math.sqrt(np.sum(tail ** 2))
    assert theory.hmt_expected_spectral(sigma, k, p, 0) == pytest.approx(expected)
    assert theory.hmt_expected_frobenius(sigma, k, p) == pytest.approx(math.sqrt(1 + k / (p - 1))
                                                                       * math.sqrt(np.sum(tail ** 2)))
    # more power iterations: the bound decreases towards sigma_{k+1} (never below it)
    values = [theory.hmt_expected_spectral(sigma, k, p, q) for q in range(6)]
    assert all(b <= a for a, b in zip(values, values[1:]))
    assert values[-1] >= sigma[k]
    assert theory.hmt_expected_spectral(sigma, k, 1) == math.inf
    assert theory.hmt_truncated_spectral(sigma, k, p, 2) == pytest.approx(sigma[k] + values[2])


def test_pinvit_sigma_and_curve() -> None:
    assert theory.optimal_gamma(1.0) == 0.0
    assert theory.pinvit_sigma(1.0, 2.0, 0.0) == pytest.approx(0.5)  # exact inverse: inverse iteration
    assert theory.pinvit_sigma(1.0, 2.0, 0.5) == pytest.approx(0.75)
    curve = theory.pinvit_bound_curve(1.5, 1.0, 2.0, 0.5, np.arange(4))
    assert curve[0] == pytest.approx(0.5)
    assert all(b < a for a, b in zip(curve, curve[1:]))
    with pytest.raises(ValueError, match="SPD"):
        theory.pinvit_sigma(0.0, 1.0, 0.5)


def test_power_law_fit_and_flops() -> None:
    n = np.array([100.0, 200.0, 400.0, 800.0])
    a, c = theory.fit_power_law(n, 3e-9 * n ** 3)
    assert a == pytest.approx(3.0) and c == pytest.approx(3e-9)
    assert theory.eigh_flops(10) == pytest.approx(9000.0)
    assert theory.eigh_flops(10, vectors=False) == pytest.approx(4000 / 3)


def test_paige_level() -> None:
    assert theory.paige_orthogonality_level([1.0, 1e-10], 1.0, EPS) == pytest.approx(EPS / 1e-10)
    assert theory.paige_orthogonality_level([0.0], 1.0, EPS) == 1.0


# --------------------------------------------------------------------------------------
# Bounds against measurements: independent kernels
# --------------------------------------------------------------------------------------
def _power_numpy(values: np.ndarray, x0: np.ndarray, steps: int, beta: float = 0.0) -> np.ndarray:
    """Rayleigh quotients of (heavy-ball) power iteration on diag(values), x_t = p_t(A) x0 normalised."""
    prev = np.zeros_like(x0)
    cur = x0 / np.linalg.norm(x0)
    out = []
    for _ in range(steps + 1):
        out.append(float(cur @ (values * cur)))
        nxt = values * cur - beta * prev
        scale = np.linalg.norm(nxt)
        prev, cur = cur / scale, nxt / scale
    return np.asarray(out)


@pytest.mark.parametrize("beta_factor", [0.0, 1.0])
def test_power_bound_holds_for_an_independent_kernel(beta_factor: float) -> None:
    spectrum = np.concatenate([[1.0, 0.85], np.linspace(0.7, 0.0, 98)])
    x0 = _start(100, 1).numpy()
    tan0 = float(theory.start_tangents(x0)[0])
    beta = beta_factor * theory.optimal_momentum(0.85)
    quotients = _power_numpy(spectrum, x0, 120, beta)
    err = np.abs(quotients - 1.0)
    spread = float(np.max(np.abs(1.0 - spectrum)))
    bound = spread * tan0 ** 2 * theory.momentum_polynomial_ratio(spectrum, beta, 120) ** 2
    assert np.all(err <= bound + 100 * EPS)
    if beta == 0.0:
        np.testing.assert_allclose(bound, theory.power_rayleigh_bound(spectrum, tan0, np.arange(121)), rtol=1e-10)


def _lanczos_numpy(A: np.ndarray, v: np.ndarray, m: int) -> list[np.ndarray]:
    """Ritz values of T_j, j = 1..m (Lanczos with full re-orthogonalization, twice)."""
    n = v.size
    Q = np.zeros((n, m))
    Q[:, 0] = v / np.linalg.norm(v)
    alpha, beta, out = [], [], []
    for j in range(m):
        w = A @ Q[:, j]
        for _ in range(2):
            w -= Q[:, : j + 1] @ (Q[:, : j + 1].T @ w)
        alpha.append(float(Q[:, j] @ (A @ Q[:, j])))
        T = np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1)
        out.append(np.linalg.eigvalsh(T))
        b = np.linalg.norm(w)
        if j + 1 < m:
            beta.append(b)
            Q[:, j + 1] = w / b
    return out


def test_kps_bound_holds_for_an_independent_lanczos() -> None:
    n = 300
    spectrum = np.concatenate([[1.1, 1.05], np.linspace(1.0, 0.0, n - 2)])
    A = np.diag(spectrum)
    v = _start(n, 2).numpy()
    tangents = theory.start_tangents(v)
    ritz = _lanczos_numpy(A, v, 60)
    for m, values in enumerate(ritz, start=1):
        theta = np.sort(values)[::-1]
        for i in (1, 2):
            if m < i:
                continue
            bound = theory.kps_bound(np.sort(spectrum)[::-1], m, i, float(tangents[i - 1]), theta)
            err = spectrum[i - 1] - theta[i - 1]
            assert -1e3 * EPS <= err <= bound + 1e3 * EPS, (m, i, err, bound)


def test_hmt_expected_bound_holds_for_an_independent_range_finder() -> None:
    # torch (one thread) rather than numpy: OpenBLAS threads crawl on a loaded 2-core box.
    generator = torch.Generator().manual_seed(3)
    n, k, p = 120, 6, 4
    sigma = 0.9 ** np.arange(n)
    U = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))[0]
    A = (U * torch.from_numpy(sigma)) @ U.T
    for q in (0, 1, 2):
        errors = []
        for _ in range(30):
            Y = A @ torch.randn(n, k + p, generator=generator, dtype=torch.float64)
            for _ in range(q):
                Y = A @ (A.T @ Y)
            Q = torch.linalg.qr(Y)[0]
            errors.append(float(torch.linalg.matrix_norm(A - Q @ (Q.T @ A), ord=2)))
        assert np.mean(errors) <= theory.hmt_expected_spectral(sigma, k, p, q)
        assert min(errors) >= sigma[k + p] * (1 - 1e-10)  # rank k + p: never better than sigma_{k+p+1}


# --------------------------------------------------------------------------------------
# Bounds against the project's solvers
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("r", [0.0, 0.8])
def test_power_iteration_error_stays_under_the_bound(r: float) -> None:
    """GVL Thm 8.2.1 (r = 0) and its heavy-ball version with the solver's own beta schedule."""
    spectrum = np.concatenate([[1.0, 0.8], np.linspace(0.6, 0.0, 148)])
    problem = problems.diagonal(spectrum)
    x0 = _start(150, 4)
    tan0 = float(theory.start_tangents(x0)[0])
    result = solve("power_iteration", problem.operator, 1, which="LM", tol=1e-10, max_iter=400, X0=x0, momentum=r)
    assert result.status.ok
    its = np.asarray([rec.iteration for rec in result.history], dtype=float)
    theta = np.asarray([float(rec.ritz_values[0]) for rec in result.history])
    err = np.abs(theta - 1.0)
    # Record t holds the Rayleigh quotient of x_(t-1) = p_(t-1)(A) x_0 / ||.||; the solver's
    # beta_t = (r theta_t)^2 / 4 builds p_(t+1).
    spread = float(np.max(np.abs(1.0 - spectrum)))
    ratios = theory.momentum_polynomial_ratio(spectrum, (r * theta) ** 2 / 4.0, int(its[-1]) - 1)
    bound = spread * tan0 ** 2 * ratios ** 2
    assert np.all(err <= bound + 1e3 * EPS)
    if r == 0.0:
        np.testing.assert_allclose(bound, theory.power_rayleigh_bound(spectrum, tan0, its - 1), rtol=1e-10)
    assert err[-1] < 1e-12


def test_lanczos_largest_ritz_value_stays_under_kps_bound() -> None:
    n = 400
    spectrum = np.concatenate([[1.05], np.linspace(1.0, 0.0, n - 1)])
    problem = problems.diagonal(spectrum)
    x0 = _start(n, 5)
    tan1 = float(theory.start_tangents(x0)[0])
    result = solve("lanczos", problem.operator, 1, which="LA", tol=1e-12, max_iter=200, X0=x0,
                   reorthogonalization="full", max_basis=250, block_size=1)
    assert result.status.ok
    checked = 0
    for record in result.history:
        values = record.all_ritz_values if record.all_ritz_values is not None else record.ritz_values
        m = int(values.numel())
        bound = theory.lanczos_bound_curve(spectrum, tan1, [m])[0]
        err = 1.05 - float(record.ritz_values[0])
        assert -1e3 * EPS <= err <= bound + 1e3 * EPS, (record.iteration, m, err, bound)
        checked += 1
    assert checked >= 5


def test_lobpcg_steps_obey_the_knyazev_neymeyr_contraction() -> None:
    problem = problems.laplacian_2d(12, 11)  # no double eigenvalues at the bottom
    lam = problem.eigenvalues.numpy()
    A = problem.operator.to_dense().numpy()
    values = np.linalg.eigvalsh(A)
    sigma = theory.pinvit_sigma(lam[0], lam[1], theory.optimal_gamma(values[-1] / values[0]))
    result = solve("lobpcg", problem.operator, 1, which="SA", tol=1e-10, max_iter=500, block_size=1, seed=0)
    assert result.status.ok
    theta = np.asarray([float(r.ritz_values[0]) for r in result.history])
    floor = 1e4 * EPS * values[-1]
    steps = 0
    for before, after in zip(theta, theta[1:]):
        if before >= lam[1] or before - lam[0] < floor:
            continue
        delta_before = theory.pinvit_ratio(before, lam[0], lam[1])
        delta_after = theory.pinvit_ratio(after, lam[0], lam[1])
        assert delta_after <= sigma ** 2 * delta_before * (1 + 1e-6) + floor, (before, after)
        steps += 1
    assert steps >= 3


def test_randomized_svd_mean_error_stays_under_hmt_bound() -> None:
    n, k, p, q = 150, 5, 5, 1
    problem = problems.prescribed_spectrum(n, "geometric", decay=0.9, seed=1)
    sigma = np.sort(problem.eigenvalues.numpy())[::-1]
    A = problem.operator.to_dense()
    from explorer.solvers.randomized import randomized_svd  # the SVD (the registry lists the eigen version)

    errors = []
    for seed in range(12):
        result = randomized_svd(problem.operator, k, n_oversamples=p, n_power_iter=q, seed=seed)
        assert result.n_iter == q + 1  # tol=None: exactly q power iterations
        approx = (result.U * result.S.unsqueeze(0)) @ result.Vh
        errors.append(float(torch.linalg.matrix_norm(A - approx, ord=2)))
    # The output is truncated to rank k: HMT Thm 9.3 adds sigma_{k+1} to the range-finder bound.
    assert np.mean(errors) <= theory.hmt_truncated_spectral(sigma, k, p, q)
    assert min(errors) >= sigma[k] * (1 - 1e-8)
