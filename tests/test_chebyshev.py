"""Chebyshev-filtered subspace iteration (``explorer.solvers.chebyshev``) beyond the shared contract.

References are closed-form (Dirichlet Laplacians, diagonal matrices) or numpy's Chebyshev series;
eigenvalue tolerances follow the contract: 2 max(tol, n eps) ||A|| (Bauer-Fike plus the float32
rounding of A).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from explorer import problems, solve
from explorer.solvers import SOLVERS, chebyshev
from explorer.solvers.chebyshev import chebyshev_filter, filter_values, lanczos_upper_bound
from explorer.tracking.results import SolveStatus
from explorer.tracking import HistoryTracker

chebyshev_module = __import__("explorer.solvers.chebyshev", fromlist=["chebyshev"])


def _bound(tol: float, n: int, dtype: torch.dtype, norm: float) -> float:
    return 2 * max(tol, n * torch.finfo(dtype).eps) * norm


def _chebyshev_T(m: int, x: np.ndarray) -> np.ndarray:
    return np.polynomial.chebyshev.chebval(x, [0.0] * m + [1.0])


@pytest.mark.parametrize("degree", [1, 2, 7, 20])
def test_filter_polynomial_is_the_scaled_chebyshev_polynomial(degree: int) -> None:
    low, high, a0 = 2.0, 10.0, -1.0
    c, e = (high + low) / 2, (high - low) / 2
    t = np.linspace(-1.0, 10.0, 23)
    expected = _chebyshev_T(degree, (t - c) / e) / _chebyshev_T(degree, (a0 - c) / e)
    np.testing.assert_allclose(filter_values(t, degree, low, high, a0), expected, rtol=1e-12, atol=1e-15)
    assert filter_values(np.array([a0]), degree, low, high, a0)[0] == pytest.approx(1.0, rel=1e-14)
    inside = np.linspace(low, high, 101)
    assert np.abs(filter_values(inside, degree, low, high, a0)).max() <= 1.0 / abs(
        _chebyshev_T(degree, np.array([(a0 - c) / e]))[0]) * (1 + 1e-12)


def test_block_filter_applies_the_polynomial_to_each_eigen_direction() -> None:
    d = torch.linspace(0.0, 4.0, 50, dtype=torch.float64)
    X = torch.eye(50, dtype=torch.float64)[:, :7] + 0.1
    Y = chebyshev_filter(lambda V: d.unsqueeze(1) * V, X, 9, 1.0, 4.0, 0.0)
    expected = torch.from_numpy(filter_values(d.numpy(), 9, 1.0, 4.0, 0.0)).unsqueeze(1) * X
    torch.testing.assert_close(Y, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("make", [lambda: problems.laplacian_1d(300), lambda: problems.laplacian_2d(20, 15),
                                  lambda: problems.prescribed_spectrum(150, "linear", low=-3.0, high=2.0, seed=1)],
                         ids=["laplacian_1d", "laplacian_2d", "linear"])
def test_lanczos_bound_is_above_the_spectrum(make) -> None:
    problem = make()
    op = problem.operator
    for seed in range(5):
        start = torch.randn(op.shape[0], generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        theta, f_norm = lanczos_upper_bound(op.matmat, start, 10)
        top = float(problem.eigenvalues.max())
        assert theta[-1] <= top + 1e-12  # a Ritz value never exceeds lambda_max
        assert theta[-1] + f_norm >= top  # Zhou & Li's bound
        assert theta[-1] + f_norm <= top + 2 * float(problem.eigenvalues.abs().max())  # and not absurd


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("which", ["SA", "LA"])
@pytest.mark.parametrize("make", [lambda d: problems.laplacian_1d(400, dtype=d),
                                  lambda d: problems.laplacian_2d(40, 37, dtype=d),
                                  lambda d: problems.laplacian_3d(9, 10, 8, dtype=d)],
                         ids=["1d", "2d", "3d"])
def test_laplacians_closed_form(make, which: str, dtype: torch.dtype) -> None:
    problem = make(dtype)
    n = problem.n
    tol = 10 * math.sqrt(torch.finfo(dtype).eps)
    result = chebyshev(problem.operator, 5, which=which, tol=tol, seed=0)
    assert result.status is SolveStatus.CONVERGED, result.status_message
    exact = problem.reference(5, which)
    norm = float(problem.eigenvalues.abs().max())
    assert float((result.eigenvalues.double() - exact).abs().max()) <= _bound(tol, n, dtype, norm)
    X = result.eigenvectors.double()
    assert float((X.T @ X - torch.eye(5, dtype=torch.float64)).abs().max()) <= 100 * math.sqrt(n) * torch.finfo(
        dtype).eps


def test_records_show_the_degree_and_the_bounds() -> None:
    problem = problems.laplacian_1d(200)
    tracker = HistoryTracker()
    result = chebyshev(problem.operator, 4, which="SA", tol=1e-8, seed=0, tracker=tracker)
    assert result.status is SolveStatus.CONVERGED
    assert tracker.start.extras["degree"] == 20 and tracker.start.extras["cut"] == "adaptive"
    lam = problem.eigenvalues
    for record in result.history:
        extras = record.extras
        assert 1 <= extras["degree"] <= 20
        assert extras["filter_high"] >= float(lam.max())  # the upper bound is above the spectrum
        # the damped interval starts above the wanted eigenvalues (Cauchy interlacing, module docstring)
        assert extras["filter_low"] >= float(lam[3]) - 1e-12
        assert extras["scale_point"] <= extras["filter_low"]
        assert not record.residuals_estimated
    locked = [record.extras["locked"] for record in result.history]
    assert locked == sorted(locked) and locked[-1] == 4
    assert result.history[0].extras["filter_low"] > result.history[-1].extras["filter_low"]  # the cut moves down
    row = result.history[-1].as_row()  # the summary table, the JSON export and the app's run table
    assert {"extra_degree", "extra_filter_low", "extra_filter_high", "extra_scale_point"} <= set(row)


def test_largest_uses_the_mirror_interval() -> None:
    problem = problems.laplacian_1d(200)
    result = chebyshev(problem.operator, 3, which="LA", tol=1e-8, seed=0)
    assert result.status is SolveStatus.CONVERGED
    lam = problem.eigenvalues
    for record in result.history:
        assert record.extras["filter_low"] <= float(lam.min())  # -upper
        assert record.extras["filter_high"] <= float(lam[-3]) + 1e-12  # -cut sits below the wanted ones
    assert torch.equal(result.eigenvalues, torch.sort(result.eigenvalues, descending=True).values)


def test_matvecs_are_the_lanczos_steps_plus_degree_times_the_active_block() -> None:
    problem = problems.laplacian_1d(150)
    result = chebyshev(problem.operator, 3, which="SA", tol=1e-8, seed=0, block_size=10, bound_steps=12)
    expected = 12
    locked = 0.0
    for record in result.history:
        active = 10 - int(locked)
        expected += (int(record.extras["degree"]) + 1) * active
        assert record.n_matvec == expected
        locked = record.extras["locked"]
    assert result.n_matvec == expected


def test_a_fixed_cut_amplifies_what_lies_below_it() -> None:
    values = torch.cat([torch.tensor([0.1, 0.2, 0.3]), torch.linspace(2.0, 10.0, 97)]).double()
    problem = problems.diagonal(values)
    result = chebyshev(problem.operator, 3, which="SA", tol=1e-10, seed=0, cut=1.0)
    assert result.status is SolveStatus.CONVERGED
    assert all(record.extras["filter_low"] == pytest.approx(1.0) for record in result.history)
    torch.testing.assert_close(result.eigenvalues, values[:3], rtol=0, atol=_bound(1e-10, 100, torch.float64, 10.0))
    short = chebyshev(problem.operator, 5, which="SA", tol=1e-10, seed=0, cut=1.0, max_iter=20)
    assert short.status is not SolveStatus.CONVERGED and "fixed `cut`" in short.message


def test_float32_lowers_the_degree_where_rounding_would_limit_the_accuracy() -> None:
    problem = problems.prescribed_spectrum(200, "geometric", seed=0, dtype=torch.float32)
    tol = 10 * math.sqrt(torch.finfo(torch.float32).eps)
    result = chebyshev(problem.operator, 4, which="LA", tol=tol, seed=0)
    assert result.status is SolveStatus.CONVERGED
    assert min(record.extras["degree"] for record in result.history) < 20
    assert float((result.eigenvalues.double() - problem.reference(4, "LA")).abs().max()) <= _bound(
        tol, 200, torch.float32, 1.0)
    float64 = chebyshev(problem.operator.to(dtype=torch.float64), 4, which="LA", tol=1e-8, seed=0)
    assert all(record.extras["degree"] == 20 for record in float64.history)


def test_a_bound_that_is_too_low_is_raised(monkeypatch) -> None:
    problem = problems.laplacian_1d(120)
    real = chebyshev_module.lanczos_upper_bound

    def too_low(apply, start, steps):  # type: ignore[no-untyped-def]
        theta, _ = real(apply, start, steps)
        return theta * 0.5, 0.0  # as if the top of the spectrum had been missed

    monkeypatch.setattr(chebyshev_module, "lanczos_upper_bound", too_low)
    result = chebyshev(problem.operator, 3, which="SA", tol=1e-8, seed=0)
    assert result.status is SolveStatus.CONVERGED, result.status_message
    assert "raised" in result.message
    assert float((result.eigenvalues - problem.reference(3, "SA")).abs().max()) <= _bound(1e-8, 120, torch.float64, 4.0)


def test_validation_and_the_registry() -> None:
    A = problems.laplacian_1d(30).operator
    with pytest.raises(ValueError, match=r"`block_size` must satisfy k = 4 <= block_size <= n = 30"):
        chebyshev(A, 4, block_size=3)
    with pytest.raises(ValueError, match="`degree` must be a positive integer"):
        chebyshev(A, 2, degree=0)
    with pytest.raises(ValueError, match="`bound_steps` must be >= 2"):
        chebyshev(A, 2, bound_steps=1)
    with pytest.raises(ValueError, match="`cut` must be a finite number"):
        chebyshev(A, 2, cut=math.nan)
    with pytest.raises(ValueError, match=r"`which` must be one of SA .*, LA .* for chebyshev"):
        chebyshev(A, 2, which="LM")
    spec = SOLVERS["chebyshev"]
    assert spec.kind == "eigen" and set(spec.which) == {"LA", "SA"} and spec.matrix_free
    result = solve("chebyshev", A, 2, which="SA", tol=1e-8, seed=0, degree=8, block_size=6)
    assert result.status is SolveStatus.CONVERGED and result.history[0].extras["degree"] <= 8


def test_small_problem_block_spans_the_space() -> None:
    problem = problems.laplacian_1d(8)
    result = chebyshev(problem.operator, 3, which="SA", tol=1e-10, seed=0)  # block = min(n, 11) = 8 = n
    assert result.status is SolveStatus.CONVERGED
    torch.testing.assert_close(result.eigenvalues, problem.reference(3, "SA"), rtol=0, atol=1e-12)


def test_the_live_chart_draws_the_cut_on_the_side_of_the_wanted_values() -> None:
    from explorer.plots.figures import filter_cut, live_figure
    from explorer.ui.live import extras_text

    problem = problems.laplacian_1d(100)
    lam = problem.eigenvalues
    smallest = chebyshev(problem.operator, 3, which="SA", tol=1e-8, seed=0)
    edge, degree = filter_cut(smallest.history)
    assert np.all(edge >= float(lam[2]) - 1e-12) and np.all(degree == 20)
    largest = chebyshev(problem.operator, 3, which="LA", tol=1e-8, seed=0)
    edge, _ = filter_cut(largest.history)
    assert np.all(edge <= float(lam[-3]) + 1e-12)
    names = [trace.name for trace in live_figure(smallest.history).data]
    assert "filter cut" in names
    assert filter_cut(SOLVERS["lanczos"].fn(problem.operator, 2, tol=1e-8, seed=0).history) is None
    text = extras_text(smallest.history[-1])
    assert text.startswith("degree 20 \u00b7 filter low ") and "locked 3" in text


# -- interval mode: a band-pass Chebyshev-Jackson filter --------------------------------
def _exact_1d(n: int) -> np.ndarray:
    """The closed form of problems.laplacian_1d(n): 2 - 2 cos(i pi / (n + 1)), ascending."""
    return 2.0 - 2.0 * np.cos(np.arange(1, n + 1) * np.pi / (n + 1))


def _exact_2d(n: int) -> np.ndarray:
    one = _exact_1d(n)
    return np.sort((one[:, None] + one[None, :]).ravel())


def test_the_jackson_filter_approximates_the_indicator_and_stays_in_0_1() -> None:
    from explorer.solvers.bandpass import bandpass_coefficients, bandpass_filter, bandpass_values, jackson_coefficients

    g = jackson_coefficients(50)
    assert g[0] == pytest.approx(1.0, abs=1e-14) and np.all(np.diff(g) < 0) and g[-1] > 0
    ta, tb = -0.3, 0.2
    coefficients = bandpass_coefficients(120, ta, tb)
    t = np.linspace(-1, 1, 4001)
    p = bandpass_values(t, coefficients, 0.0, 1.0)
    # a convolution of the indicator with the (positive, unit-mass) Jackson kernel: within [0, 1]
    assert p.min() >= -1e-12 and p.max() <= 1 + 1e-12
    np.testing.assert_allclose(bandpass_values([ta, tb], coefficients, 0.0, 1.0), 0.5, atol=1e-3)  # half at the ends
    assert bandpass_values([-0.05], coefficients, 0.0, 1.0)[0] > 0.99  # ~1 inside
    assert np.all(p[(t < ta - 0.2) | (t > tb + 0.2)] < 1e-3)  # ~0 away from it
    # on eigen-directions the block filter multiplies by p (a diagonal matrix in A's units)
    d = torch.linspace(-3.0, 5.0, 40, dtype=torch.float64)
    X = torch.eye(40, dtype=torch.float64)
    Y = bandpass_filter(lambda V: d[:, None] * V, X, coefficients, center=1.0, half_width=4.0)
    np.testing.assert_allclose(torch.diagonal(Y).numpy(), bandpass_values(d.numpy(), coefficients, 1.0, 4.0),
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-9), (torch.float32, 1e-4)])
def test_interval_of_the_1d_laplacian_finds_every_eigenvalue_in_it(dtype, tol) -> None:
    n, lower, upper = 300, 1.0, 1.5
    exact = _exact_1d(n)
    inside = exact[(exact >= lower) & (exact < upper)]
    problem = problems.laplacian_1d(n, dtype=dtype)
    tracker = HistoryTracker()
    result = chebyshev(problem.operator, 200, lower=lower, upper=upper, tol=tol, seed=0, tracker=tracker)
    assert result.status is SolveStatus.CONVERGED, result.message
    assert result.k == inside.size == 26
    values = result.eigenvalues.double().numpy()
    np.testing.assert_allclose(values, inside, rtol=0, atol=_bound(tol, n, dtype, 4.0))  # ascending, all of them
    assert "inertia" in result.message and "none was missed" in result.message
    assert tracker.start.extras["lower"] == lower and tracker.start.extras["upper"] == upper
    assert tracker.start.extras["count_method"] == "inertia"
    degree = tracker.start.extras["degree"]
    assert degree > chebyshev_module.DEFAULT_DEGREE  # raised to resolve the interval
    for record in result.history:
        assert record.extras["degree"] == degree and record.extras["count"] == 26
        assert (record.extras["pass_low"], record.extras["pass_high"]) == (lower, upper)
        theta = record.ritz_values.double().numpy()
        assert np.all((theta >= lower) & (theta < upper))  # a record holds the interval's Ritz values
    # n_matvec: the Lanczos bound steps plus (degree + 1) products per block vector per iteration
    assert result.n_matvec >= result.n_iter * degree


def test_interval_of_a_matrix_free_2d_laplacian_uses_a_stochastic_count() -> None:
    from explorer.operators.concrete import CallableOperator

    nx, lower, upper = 30, 1.0, 1.2
    exact = _exact_2d(nx)
    inside = exact[(exact >= lower) & (exact < upper)]
    A = problems.laplacian_2d(nx).operator
    free = CallableOperator(A.matvec, A.shape[0], matmat=A.matmat)
    tol = 1e-9
    result = solve("chebyshev", free, 100, lower=lower, upper=upper, tol=tol, seed=0)
    assert result.status is SolveStatus.CONVERGED, result.message
    np.testing.assert_allclose(result.eigenvalues.numpy(), inside, rtol=0, atol=_bound(tol, nx * nx, torch.float64, 8.0))
    assert inside.size == 16  # eight double eigenvalues: the block finds both copies of each
    assert "stochastic estimate" in result.message and "completeness is not proven" in result.message
    extras = result.history[-1].extras
    # the trace estimate of the filter: within 3 of its standard errors (~0.8 on 30 probes) of the count
    assert abs(extras["count_estimate"] - inside.size) < 3 * extras["count_stderr"]
    assert 0.1 < extras["count_stderr"] < 2
    assert result.history[-1].extras["pass_low"] == lower


def test_interval_mode_refuses_what_it_cannot_do() -> None:
    A = problems.laplacian_1d(300).operator
    with pytest.raises(ValueError, match="both ends"):
        chebyshev(A, 10, lower=1.0)
    with pytest.raises(ValueError, match="lower < upper"):
        chebyshev(A, 10, lower=1.5, upper=1.0)
    with pytest.raises(ValueError, match="`cut`.*say different things"):
        chebyshev(A, 10, lower=1.0, upper=1.5, cut=1.2)
    with pytest.raises(ValueError, match=r"holds 26 eigenvalues \(inertia count\), more than k = 10.*raise `k` to 26"):
        chebyshev(A, 10, lower=1.0, upper=1.5)
    with pytest.raises(ValueError, match="too narrow for a polynomial filter.*sigma"):
        chebyshev(A, 10, lower=1.0, upper=1.0 + 1e-7)
    empty = chebyshev(A, 10, lower=4.5, upper=5.0)  # above the spectrum: the inertia says none
    assert empty.status is SolveStatus.CONVERGED and empty.k == 0 and "none to find" in empty.message


def test_the_live_chart_draws_the_pass_band_of_an_interval_run() -> None:
    from explorer.plots.figures import filter_cut, live_figure

    result = chebyshev(problems.laplacian_1d(300).operator, 100, lower=1.0, upper=1.5, tol=1e-8, seed=0)
    assert filter_cut(result.history) is None  # no one-sided cut here
    figure = live_figure(result.history, reference=_exact_1d(300)[(_exact_1d(300) >= 1) & (_exact_1d(300) < 1.5)])
    band = next(t for t in figure.data if t.name == "filter pass band")
    assert [y for y in band.y if y is not None] == [1.0, 1.0, 1.5, 1.5]
