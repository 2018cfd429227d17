"""Golub-Kahan-Lanczos SVD (``explorer.solvers.svd.golub_kahan``) beyond the shared contract.

References are analytic (``prescribed_singular_values``: U diag(s) V^T with Haar U, V; the
difference matrices, whose singular values are closed-form) or the dense float64 SVD; tolerances
follow the contract's argument (tests/test_solvers_contract.py, ``test_svd_solver_contract``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from explorer import problems, solve
from explorer.solvers import SOLVERS, golub_kahan
from explorer.tracking.results import SingularResult, SolveStatus
from explorer.tracking import HistoryTracker, NullTracker, StopSolve


def _values(r: int) -> np.ndarray:
    """r singular values with gaps at both ends: 10, 9, 8, 7, a bulk in [1, 5], then 0.4 ... 0.1."""
    return np.concatenate([[10.0, 9.0, 8.0, 7.0], np.linspace(5.0, 1.0, r - 8), [0.4, 0.3, 0.2, 0.1]])


def _bound(tol: float, size: int, dtype: torch.dtype, norm: float) -> float:
    return 2 * max(tol, size * torch.finfo(dtype).eps) * norm


@pytest.mark.parametrize("shape", [(300, 80), (80, 300), (120, 120)])
@pytest.mark.parametrize("which", ["LA", "SA"])
@pytest.mark.parametrize("mode", ["full", "one-sided"])
def test_known_singular_values_in_both_orientations(shape: tuple[int, int], which: str, mode: str) -> None:
    m, n = shape
    problem = problems.prescribed_singular_values(m, n, values=_values(min(m, n)), seed=2)
    tol = 1e-9
    result = golub_kahan(problem.operator, 4, which=which, tol=tol, seed=0, reorthogonalization=mode)
    assert isinstance(result, SingularResult)
    assert result.status is SolveStatus.CONVERGED, result.status_message
    exact = problem.reference(4, which)
    assert float((result.singular_values - exact).abs().max()) <= _bound(tol, min(m, n), torch.float64, 10.0)
    assert result.U.shape == (m, 4) and result.V.shape == (n, 4) and result.Vh.shape == (4, n)
    A = problem.operator.to_dense()
    # the triplets reproduce A on their span: U^T A V = diag(S) to the residual level
    projected = result.U.T @ A @ result.V
    torch.testing.assert_close(projected, torch.diag(result.singular_values), rtol=0, atol=100 * tol * 10.0)


def test_a_square_non_symmetric_matrix_and_every_input_type() -> None:
    """SVD solvers take any matrix: not symmetric, dense or sparse, torch, numpy or scipy."""
    generator = torch.Generator().manual_seed(5)
    A = torch.randn(70, 70, generator=generator, dtype=torch.float64)
    A[0, 1] += 5.0  # clearly not symmetric
    exact = torch.linalg.svdvals(A)[:3]
    for data in (A, A.numpy(), sp.csr_matrix(A.numpy()), A.to_sparse()):
        result = golub_kahan(data, 3, tol=1e-10, seed=0)
        assert result.status is SolveStatus.CONVERGED, type(data)
        assert float((result.singular_values - exact).abs().max()) <= _bound(1e-10, 70, torch.float64,
                                                                            float(exact[0]))


def test_closed_form_difference_matrix_largest_and_smallest() -> None:
    problem = problems.gradient_1d(400)
    for which in ("LA", "SA"):
        result = golub_kahan(problem.operator, 3, which=which, tol=1e-10, seed=0)
        assert result.status is SolveStatus.CONVERGED, result.status_message
        assert float((result.singular_values - problem.reference(3, which)).abs().max()) <= _bound(
            1e-10, 400, torch.float64, 2.0)


def test_thick_restart_keeps_the_kept_directions() -> None:
    """A small basis restarts many times and still converges to the analytic values; the full basis
    (max_basis = min(m, n)) is an exact reduction within min(m, n) steps."""
    problem = problems.prescribed_singular_values(200, 90, values=_values(90), seed=1)
    small = golub_kahan(problem.operator, 4, which="SA", tol=1e-9, seed=0, max_basis=12)
    assert small.status is SolveStatus.CONVERGED, small.status_message
    restarts = [record.extras["restarts"] for record in small.history]
    assert restarts[-1] >= 3 and restarts == sorted(restarts)
    assert max(record.extras["basis"] for record in small.history) <= 12
    assert float((small.singular_values - problem.reference(4, "SA")).abs().max()) <= _bound(1e-9, 90,
                                                                                            torch.float64, 10.0)
    full = golub_kahan(problem.operator, 4, which="SA", tol=1e-9, seed=0, max_basis=90)
    assert full.status is SolveStatus.CONVERGED and full.n_iter <= 90
    assert full.history[-1].extras["restarts"] == 0


def test_each_step_costs_one_product_with_A_and_one_with_A_transpose() -> None:
    problem = problems.prescribed_singular_values(150, 60, values=_values(60), seed=0)
    result = golub_kahan(problem.operator, 2, tol=1e-8, seed=0)
    steps = [record.n_matvec for record in result.history]
    assert steps == [2 * (i + 1) for i in range(len(steps))]
    assert result.n_matvec == 2 * result.n_iter + 2 * 2  # plus A V and A^T U of the final check


def test_rank_deficient_matrix_meets_invariant_subspaces() -> None:
    """Rank 3 and k = 5: the Krylov space is exhausted after 3 steps; the run continues with random
    vectors (beta = 0) and finds the zero singular values too. (For sigma = 0 the threshold is its
    floor tol sqrt(eps) ||A||, which must stay above the rounding of a residual, ~eps ||A||: tol 1e-6;
    with tol 1e-8 the run says BREAKDOWN, the tolerance is below the rounding level.)"""
    values = np.zeros(40)
    values[:3] = [3.0, 2.0, 1.0]
    problem = problems.prescribed_singular_values(60, 40, values=values, seed=3)
    result = golub_kahan(problem.operator, 5, which="LA", tol=1e-6, seed=0)
    assert result.status is SolveStatus.CONVERGED, result.status_message
    torch.testing.assert_close(result.singular_values, torch.tensor([3.0, 2.0, 1.0, 0.0, 0.0], dtype=torch.float64),
                               rtol=0, atol=1e-6 * 3.0 * 2)
    assert "invariant subspace" in result.message
    tight = golub_kahan(problem.operator, 5, which="LA", tol=1e-8, seed=0)
    assert tight.status is SolveStatus.BREAKDOWN and "rounding level" in tight.message
    gram = result.V.T @ result.V
    torch.testing.assert_close(gram, torch.eye(5, dtype=torch.float64), rtol=0, atol=1e-12)


def test_records_are_singular_value_estimates() -> None:
    problem = problems.prescribed_singular_values(120, 50, values=_values(50), seed=0)
    tracker = HistoryTracker()
    result = golub_kahan(problem.operator, 3, tol=1e-8, seed=0, tracker=tracker)
    assert tracker.start is not None and tracker.start.extras["shape"] == "120 x 50"
    assert tracker.start.n == 50 and tracker.start.extras["reorthogonalization"] == "full"
    last = result.history[-1]
    assert last.residuals_estimated and last.ritz_values.shape == (3,)
    # the last estimates are within the tolerance of the exact values
    assert float((last.ritz_values - problem.reference(3, "LA")).abs().max()) <= _bound(1e-8, 50, torch.float64, 10.0)
    assert last.all_ritz_values is not None and last.all_ritz_values.numel() == int(last.extras["basis"])
    assert all(r.orthogonality_loss is not None and r.orthogonality_loss < 1e-10 for r in result.history)
    frame = tracker.to_frame()
    assert {"ritz_value", "residual_norm"} <= set(frame.columns)


def test_one_sided_measures_the_long_side_and_recomputes_it() -> None:
    problem = problems.prescribed_singular_values(400, 60, values=_values(60), seed=0)
    result = golub_kahan(problem.operator, 4, tol=1e-10, seed=0, reorthogonalization="one-sided")
    assert result.status is SolveStatus.CONVERGED
    for X in (result.U, result.V):
        torch.testing.assert_close(X.T @ X, torch.eye(4, dtype=torch.float64), rtol=0, atol=1e-10)


def test_stop_keeps_the_partial_result() -> None:
    class StopAt(NullTracker):
        def on_iteration(self, record):  # type: ignore[no-untyped-def]
            if record.iteration == 5:
                raise StopSolve("enough")

    problem = problems.prescribed_singular_values(100, 60, values=_values(60), seed=0)
    result = golub_kahan(problem.operator, 3, tol=1e-12, seed=0, tracker=StopAt())
    assert result.status is SolveStatus.STOPPED and "enough" in result.message
    assert result.n_iter == 5 and len(result.history) == 5 and result.k == 3
    A = problem.operator.to_dense()
    recomputed = torch.sqrt(torch.linalg.vector_norm(A @ result.V - result.U * result.singular_values, dim=0) ** 2
                            + torch.linalg.vector_norm(A.T @ result.U - result.V * result.singular_values, dim=0) ** 2)
    torch.testing.assert_close(result.residual_norms, recomputed, rtol=0, atol=1e-12)


def test_scaling_a_rectangular_matrix_only_scales_the_answer() -> None:
    problem = problems.prescribed_singular_values(90, 40, values=_values(40), seed=0)
    A = problem.operator.to_dense()
    reference = golub_kahan(A, 3, which="SA", tol=1e-9, seed=0)
    for exponent in (700, -700):
        scale = math.ldexp(1.0, exponent)
        scaled = golub_kahan(A * scale, 3, which="SA", tol=1e-9, seed=0)
        assert scaled.status is reference.status is SolveStatus.CONVERGED
        assert (scaled.n_iter, scaled.n_matvec) == (reference.n_iter, reference.n_matvec)
        assert torch.equal(scaled.singular_values / scale, reference.singular_values)


def test_aliases_validation_and_the_registry() -> None:
    A = problems.prescribed_singular_values(50, 30, values=_values(30), seed=0).operator
    largest = golub_kahan(A, 2, which="LM", tol=1e-8, seed=0)
    smallest = golub_kahan(A, 2, which="sm", tol=1e-8, seed=0)
    assert largest.which == "LA" and smallest.which == "SA"
    with pytest.raises(ValueError, match=r"`k` must satisfy 1 <= k <= 30, got k=31"):
        golub_kahan(A, 31)
    with pytest.raises(ValueError, match=r"`X0` must have shape \(30,\)"):
        golub_kahan(A, 2, X0=torch.ones(50, dtype=torch.float64))
    with pytest.raises(ValueError, match="`reorthogonalization` must be 'full' or 'one-sided'"):
        golub_kahan(A, 2, reorthogonalization="partial")
    with pytest.raises(ValueError, match="`max_basis` must be at least k \\+ 1 = 4"):
        golub_kahan(A, 3, max_basis=3)
    with pytest.raises(ValueError, match="does not solve generalized problems"):
        golub_kahan(A, 2, B=torch.eye(30, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"`which` must be one of LA \(largest singular values\)"):
        golub_kahan(A, 2, which="BE")
    spec = SOLVERS["golub_kahan"]
    assert spec.kind == "svd" and spec.which == ("LA", "SA")
    via_registry = solve("golub_kahan", A, 2, tol=1e-8, seed=0, reorthogonalization="one-sided")
    assert torch.allclose(via_registry.singular_values, largest.singular_values, rtol=1e-8)


def test_eigensolvers_refuse_a_rectangular_matrix_and_say_what_to_use() -> None:
    A = torch.ones(6, 4, dtype=torch.float64)
    for name, spec in SOLVERS.items():
        if spec.kind == "eigen":
            with pytest.raises(ValueError, match="must be square"):
                spec.fn(A, 1, seed=0)
    from explorer.operators import DenseOperator

    with pytest.raises(ValueError, match="golub_kahan"):
        SOLVERS["lobpcg"].fn(DenseOperator(A, is_symmetric=False), 1, seed=0)


@pytest.mark.parametrize("which", ["LA", "SA"])
def test_float32_meets_a_float32_tolerance(which: str) -> None:
    problem = problems.prescribed_singular_values(200, 70, values=_values(70), seed=0, dtype=torch.float32)
    tol = 10 * math.sqrt(torch.finfo(torch.float32).eps)
    result = golub_kahan(problem.operator, 4, which=which, tol=tol, seed=0)
    assert result.status is SolveStatus.CONVERGED and result.singular_values.dtype == torch.float32
    assert float((result.singular_values.double() - problem.reference(4, which)).abs().max()) <= _bound(
        tol, 70, torch.float32, 10.0)
