"""Randomized SVD / eigh against torch.linalg.svd / analytic spectra, and the HMT error estimate."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from explorer import problems
from explorer.operators import CallableOperator, DenseOperator
from explorer.tracking.results import SolveStatus, SVDResult
from explorer.solvers import randomized_eigh, randomized_svd
from explorer.solvers.randomized import error_estimate_constant
from explorer.tracking import HistoryTracker

EPS64 = torch.finfo(torch.float64).eps


def _low_rank_plus_noise(m: int, n: int, rank: int = 8, noise: float = 1e-6, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    left = torch.linalg.qr(torch.randn(m, rank, generator=g, dtype=torch.float64)).Q
    right = torch.linalg.qr(torch.randn(n, rank, generator=g, dtype=torch.float64)).Q
    sigma = torch.logspace(2, 0, rank, dtype=torch.float64)  # 100 ... 1
    return (left * sigma) @ right.T + noise * torch.randn(m, n, generator=g, dtype=torch.float64)


@pytest.mark.parametrize(("m", "n"), [(300, 200), (150, 400)])
def test_singular_values_and_vectors_match_dense_svd(m: int, n: int) -> None:
    A = _low_rank_plus_noise(m, n)
    k = 5
    result = randomized_svd(A, k, seed=0)
    assert isinstance(result, SVDResult) and result.status is SolveStatus.CONVERGED
    assert result.U.shape == (m, k) and result.S.shape == (k,) and result.Vh.shape == (k, n)
    U_true, S_true, Vh_true = torch.linalg.svd(A, full_matrices=False)
    # Each sigma_i of Q^T A is within ||(I - QQ^T) A|| of the true one (Weyl), and that is
    # bounded by the range error estimate; the probes make that hold w.p. 1 - 1e-10.
    range_error = result.history[-1].extras["range_error_estimate"]
    assert float((result.S - S_true[:k]).abs().max()) <= range_error + 100 * EPS64 * float(S_true[0])
    # vectors: orthonormal, and aligned with the true ones (gaps are >= 30 % here)
    assert torch.allclose(result.U.T @ result.U, torch.eye(k, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(result.Vh @ result.Vh.T, torch.eye(k, dtype=torch.float64), atol=1e-12)
    cos_u = (U_true[:, :k].T @ result.U).diagonal().abs()
    cos_v = (Vh_true[:k] @ result.Vh.T).diagonal().abs()
    assert float((1 - cos_u).max()) < 1e-8 and float((1 - cos_v).max()) < 1e-8


def test_error_estimate_bounds_the_true_error_for_every_seed() -> None:
    A = _low_rank_plus_noise(300, 200, noise=1e-3)
    for k in (3, 8, 12):
        for seed in range(5):
            result = randomized_svd(A, k, seed=seed, n_power_iter=1)
            E = A - result.U @ torch.diag(result.S) @ result.Vh
            true_error = float(torch.linalg.matrix_norm(E, ord=2))
            assert result.error_estimate >= true_error, (k, seed, result.error_estimate, true_error)
            # and it is informative: a probe sees E[||M w||^2] = ||M||_F^2 for M = (I - QQ^T) A, whose
            # Frobenius norm is at most ||E||_F; so the estimate is about the constant 10 sqrt(2/pi)
            # times ||E||_F (3x slack for the max over 10 probes), plus sigma_{k+1} <= ||E||_2.
            frobenius = float(torch.linalg.matrix_norm(E))
            assert result.error_estimate <= 3 * error_estimate_constant * frobenius + true_error


def test_one_record_per_pass_with_estimates_and_true_residuals() -> None:
    A = _low_rank_plus_noise(300, 200)
    history = HistoryTracker()
    result = randomized_svd(A, 4, n_power_iter=3, seed=1, tracker=history)
    assert result.n_iter == 4 == len(result.history) == len(history)  # range finder + 3 power iterations
    matvecs = [r.n_matvec for r in history.records]
    assert matvecs == sorted(matvecs) and matvecs[-1] == result.n_matvec
    S_true = torch.linalg.svdvals(A)[:4]
    for record in history.records:
        assert record.ritz_values.shape == (4,) and record.residuals_estimated is False
        assert record.extras["error_estimate"] >= record.extras["range_error_estimate"] > 0
    last = history.records[-1]
    assert torch.allclose(last.ritz_values, S_true, rtol=1e-10)
    U, S, V = result.U, result.S, result.Vh.T
    recomputed = torch.linalg.vector_norm(A @ V - U * S, dim=0)
    assert torch.allclose(last.residual_norms, recomputed, atol=1e-10, rtol=0)
    assert history.result is result


def test_tol_stops_early_and_unmet_tol_is_max_iter() -> None:
    A = _low_rank_plus_noise(300, 200, noise=0.0)  # exactly rank 8: one pass captures it
    quick = randomized_svd(A, 4, tol=1e-8, n_power_iter=5, seed=0)
    assert quick.status is SolveStatus.CONVERGED and quick.n_iter == 1
    flat = torch.diag(torch.linspace(1.0, 0.9, 100, dtype=torch.float64))  # no decay at all
    slow = randomized_svd(flat, 4, tol=1e-8, n_power_iter=2, seed=0)
    assert slow.status is SolveStatus.MAX_ITER and "n_power_iter" in slow.message
    assert slow.n_iter == 3
    fixed = randomized_svd(flat, 4, seed=0)  # tol=None: fixed work, like torch.svd_lowrank
    assert fixed.status is SolveStatus.CONVERGED and fixed.n_iter == 3 and "no `tol`" in fixed.message


def test_rectangular_inputs_of_every_kind() -> None:
    A = _low_rank_plus_noise(120, 80)
    S_true = torch.linalg.svdvals(A)[:3]
    for data in (A, A.numpy(), sp.csr_matrix(A.numpy()), DenseOperator(A, is_symmetric=False), A.T.contiguous()):
        result = randomized_svd(data, 3, seed=0)
        assert torch.allclose(result.S, S_true, rtol=1e-9), type(data)


def test_rectangular_validation() -> None:
    A = torch.randn(30, 20, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"1 <= k <= min\(m, n\) = 20"):
        randomized_svd(A, 21)
    with pytest.raises(ValueError, match="`n_oversamples` must be >= 0"):
        randomized_svd(A, 2, n_oversamples=-1)
    with pytest.raises(TypeError, match="`n_power_iter` must be an integer"):
        randomized_svd(A, 2, n_power_iter=1.5)
    with pytest.raises(ValueError, match="`tol` must be None or a positive"):
        randomized_svd(A, 2, tol=0.0)
    bad = A.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        randomized_svd(bad, 2)
    with pytest.raises(ValueError, match="empty"):
        randomized_svd(torch.zeros(0, 5, dtype=torch.float64), 1)
    with pytest.raises(TypeError, match="complex"):
        randomized_svd(A.to(torch.complex128), 2)
    # float16 is promoted to float64 (the dtype policy of as_operator, tests/test_validation.py)
    assert randomized_svd(A.to(torch.float16), 2, seed=0).S.dtype == torch.float64
    with pytest.raises(TypeError, match="float32 or float64"):
        randomized_svd(CallableOperator(lambda x: x, 20, dtype=torch.float16), 2)
    with pytest.raises(ValueError, match="`max_iter` must be a positive integer"):
        randomized_svd(A, 2, max_iter=0)


def test_seeded_and_independent_of_the_global_rng() -> None:
    A = _low_rank_plus_noise(100, 60)
    state = torch.get_rng_state()
    first, second = randomized_svd(A, 3, seed=11), randomized_svd(A, 3, seed=11)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first.S, second.S) and first.error_estimate == second.error_estimate


# -- the symmetric version in the registry --------------------------------------------------
def test_randomized_eigh_on_a_fast_decay_spectrum() -> None:
    problem = problems.prescribed_spectrum(300, "geometric", seed=2, decay=0.7)
    tol = 1e-8
    result = randomized_eigh(problem.operator, 5, tol=tol, seed=0)
    assert result.status is SolveStatus.CONVERGED
    exact = problem.reference(5, "LM")
    assert float((result.eigenvalues - exact).abs().max()) <= 2 * tol  # ||A|| = 1, see the contract suite
    # each pass costs l = k + 10 matvecs plus the range finder's l
    assert result.n_matvec == (result.n_iter + 1) * 15
    assert len(result.history) == result.n_iter


def test_randomized_eigh_reports_a_flat_spectrum_instead_of_pretending() -> None:
    problem = problems.laplacian_1d(200)
    result = randomized_eigh(problem.operator, 4, seed=0, n_power_iter=3)
    assert result.status is SolveStatus.MAX_ITER and "decaying spectrum" in result.message
    assert result.n_iter == 4


def test_randomized_eigh_negative_dominant_eigenvalues_by_magnitude() -> None:
    values = torch.tensor([-8.0, 4.0, -2.0, 1.0] + [0.5 ** i for i in range(1, 60)], dtype=torch.float64)
    problem = problems.diagonal(values)
    result = randomized_eigh(problem.operator, 3, tol=1e-10, seed=0)
    assert result.status is SolveStatus.CONVERGED
    assert torch.allclose(result.eigenvalues, torch.tensor([-8.0, 4.0, -2.0], dtype=torch.float64), atol=1e-9)
    assert math.isclose(float(result.residual_norms.max()), 0.0, abs_tol=1e-9)


def test_x0_columns_seed_the_sketch() -> None:
    problem = problems.prescribed_spectrum(100, "geometric", seed=4)
    _, vectors = torch.linalg.eigh(problem.operator.to_dense())
    result = randomized_eigh(problem.operator, 3, X0=vectors[:, -3:], tol=1e-10, seed=0)
    assert result.status is SolveStatus.CONVERGED and result.n_iter == 1
    with pytest.raises(ValueError, match="`X0` has 40 columns"):
        randomized_eigh(problem.operator, 3, X0=torch.randn(100, 40, dtype=torch.float64))
    assert np.isfinite(result.eigenvalues.numpy()).all()
