"""Power iteration: the measured rate against |lambda_2 / lambda_1|^t, momentum, deflation, shifts.

Diagonal problems make the theory exact: x_t = A^t x_0 / ||.||, so the component along
e_2 (and with it the residual) shrinks exactly like (lambda_2 / lambda_1)^t once the third
component has died out.
"""

from __future__ import annotations

import math

import pytest
import torch

from explorer import problems
from explorer.tracking.results import SolveStatus
from explorer.solvers import power_iteration


def _diag(values: list[float] | torch.Tensor) -> problems.Problem:
    return problems.diagonal(torch.as_tensor(values, dtype=torch.float64))


def _fit_slope(t: list[float], y: list[float]) -> float:
    tt = torch.tensor(t, dtype=torch.float64)
    yy = torch.tensor(y, dtype=torch.float64)
    tc = tt - tt.mean()
    return float((tc * (yy - yy.mean())).sum() / (tc * tc).sum())


@pytest.mark.parametrize("ratio", [0.8, 0.5])
def test_residual_decays_like_the_eigenvalue_ratio(ratio: float) -> None:
    # lambda = 1, ratio, then <= 0.3 * ratio: after ~15 steps only the e_2 component matters.
    values = [1.0, ratio] + torch.linspace(0.3 * ratio, 0.01, 48).tolist()
    problem = _diag(values)
    result = power_iteration(problem.operator, 1, tol=1e-13, seed=0, max_iter=60, record_every=1)
    residuals = [float(r.residual_norms[0]) for r in result.history]
    window = range(15, 45 if ratio == 0.8 else 35)  # stay above the rounding floor
    slope = _fit_slope(list(window), [math.log(residuals[i]) for i in window])
    # measured convergence factor exp(slope) against the theoretical ratio, within 10 %
    assert abs(slope / math.log(ratio) - 1.0) <= 0.10, (math.exp(slope), ratio)


def test_rayleigh_quotient_error_decays_like_the_squared_ratio() -> None:
    ratio = 0.8
    values = [1.0, ratio] + torch.linspace(0.2, 0.01, 48).tolist()
    result = power_iteration(_diag(values).operator, 1, tol=1e-15, seed=0, max_iter=40, record_every=1)
    errors = [1.0 - float(r.ritz_values[0]) for r in result.history]
    window = range(10, 30)
    slope = _fit_slope(list(window), [math.log(errors[i]) for i in window])
    assert abs(slope / (2 * math.log(ratio)) - 1.0) <= 0.10


def test_momentum_cuts_the_iterations_on_a_small_gap() -> None:
    values = [1.0, 0.99] + torch.linspace(0.95, 0.0, 98).tolist()
    problem = _diag(values)
    plain = power_iteration(problem.operator, 1, tol=1e-8, seed=0)
    heavy = power_iteration(problem.operator, 1, tol=1e-8, seed=0, momentum=0.99)
    for result in (plain, heavy):
        assert result.status is SolveStatus.CONVERGED
        assert abs(float(result.eigenvalues[0]) - 1.0) <= 1e-8  # |theta - lambda| <= ||r|| <= tol |theta|
    # theory: ~log(1/tol) / gap = 1800 steps versus ~log(1/tol) / sqrt(2 gap) (De Sa et al. 2018)
    assert heavy.n_iter * 3 < plain.n_iter, (heavy.n_iter, plain.n_iter)


def test_deflation_finds_k_pairs_in_order_with_true_residuals() -> None:
    problem = problems.prescribed_spectrum(120, "geometric", seed=3, decay=0.7)
    k, tol = 4, 1e-8
    result = power_iteration(problem.operator, k, tol=tol, seed=0, record_every=1)
    assert result.status is SolveStatus.CONVERGED and bool(result.converged.all())
    exact = problem.reference(k, "LM")
    assert float((result.eigenvalues - exact).abs().max()) <= 2 * tol  # ||A|| = 1
    A = problem.operator.to_dense()
    X = result.eigenvectors
    recomputed = torch.linalg.vector_norm(A @ X - X * result.eigenvalues, dim=0)
    assert torch.allclose(result.residual_norms, recomputed, atol=1e-13, rtol=0)
    assert bool((recomputed <= tol * result.eigenvalues.abs()).all())
    assert float((X.T @ X - torch.eye(k, dtype=torch.float64)).abs().max()) < 1e-12
    # record_every=1: one record per matvec; pairs appear one by one; n_converged only grows
    assert len(result.history) == result.n_iter == result.n_matvec
    sizes = [r.ritz_values.numel() for r in result.history]
    assert sizes == sorted(sizes) and sizes[0] == 1 and sizes[-1] == k
    counts = [r.n_converged for r in result.history]
    assert counts == sorted(counts) and counts[-1] == k


def test_the_deflation_floor_does_not_stall_later_pairs() -> None:
    # pair 1 is only accurate to ~tol; without the deflated residual test and the final
    # Rayleigh-Ritz, pair 2 (smaller |lambda|) could never meet a relative tol.
    result = power_iteration(_diag([1.0, 0.9, 0.5, 0.4] + [0.1] * 20).operator, 3, tol=1e-6, seed=0)
    assert result.status is SolveStatus.CONVERGED
    assert torch.allclose(result.eigenvalues, torch.tensor([1.0, 0.9, 0.5], dtype=torch.float64), atol=1e-6)


@pytest.mark.parametrize(("which", "expected"), [("LM", -3.0), ("LA", 2.0), ("SA", -3.0)])
def test_which_by_magnitude_or_by_shift(which: str, expected: float) -> None:
    problem = _diag([-3.0, -1.0, 0.5, 2.0] + [0.0] * 10)
    result = power_iteration(problem.operator, 1, which=which, tol=1e-9, seed=0)
    assert result.status is SolveStatus.CONVERGED
    assert abs(float(result.eigenvalues[0]) - expected) <= 3e-9 * 3


def test_max_iter_returns_locked_plus_current_pair() -> None:
    values = [1.0, 0.5, 0.499] + [0.1] * 20
    result = power_iteration(_diag(values).operator, 3, tol=1e-10, seed=0, max_iter=80)
    assert result.status is SolveStatus.MAX_ITER and "pairs converged" in result.message
    assert result.n_iter == 80
    assert 1 <= result.k <= 3
    assert bool(result.converged[0]) and not bool(result.converged.all())


def test_momentum_must_be_a_ratio_below_one() -> None:
    problem = _diag([2.0, 1.0, 0.5])
    with pytest.raises(ValueError, match=r"`momentum` must be a number in \[0, 1\)"):
        power_iteration(problem.operator, 1, momentum=1.0)
    with pytest.raises(ValueError, match="`momentum`"):
        power_iteration(problem.operator, 1, momentum=-0.1)


def test_auto_records_fewer_iterations_with_the_same_solve_and_every_event() -> None:
    """record_every="auto" (default) changes only what reaches the tracker: the same iterations,
    matvecs and pairs as record_every=1, far fewer records (about 64 per doubling of the count:
    ~64 (1 + ln(n_iter / 64)), and a 20 ms clock against ~10 us iterations), among them the first
    64 iterations, each one that locks a pair (n_converged steps up there) and the last; every
    record is the per-iteration record of its iteration."""
    problem = _diag([1.0, 0.99, 0.98] + [0.5] * 40)
    every = power_iteration(problem.operator, 2, tol=1e-10, seed=0, record_every=1)
    auto = power_iteration(problem.operator, 2, tol=1e-10, seed=0)
    assert every.status is auto.status is SolveStatus.CONVERGED
    assert (auto.n_iter, auto.n_matvec) == (every.n_iter, every.n_matvec) and every.n_iter > 3000
    assert torch.equal(auto.eigenvalues, every.eigenvalues)
    iterations = [r.iteration for r in auto.history]
    assert iterations == sorted(set(iterations)) and iterations[:64] == list(range(1, 65))
    assert len(iterations) < every.n_iter // 4
    locks = [r.iteration for r in every.history if r.n_converged > (every.history[r.iteration - 2].n_converged
                                                                      if r.iteration > 1 else 0)]
    assert len(locks) == 2 and set(locks) <= set(iterations)
    assert iterations[0] == 1 and iterations[-1] == auto.n_iter
    by_iteration = {r.iteration: r for r in every.history}
    for record in auto.history:
        same = by_iteration[record.iteration]
        assert torch.equal(record.ritz_values, same.ritz_values) and record.n_converged == same.n_converged
    # an integer s: every s-th iteration and the events
    tenth = power_iteration(problem.operator, 2, tol=1e-10, seed=0, record_every=10)
    assert {r.iteration for r in tenth.history} == set(range(10, tenth.n_iter + 1, 10)) | set(locks)
    with pytest.raises(ValueError, match="record_every"):
        power_iteration(problem.operator, 1, record_every="often")
