"""SLQ spectral density, Hutchinson trace and weight spectra against exact answers.

Exactness used here:
* Lanczos from v builds the Gauss quadrature rule of the measure mu_v = sum_i (q_i^T v)^2
  delta_{lambda_i}: sum_k tau_k theta_k^p = v^T A^p v for p <= 2m - 1 (Golub & Meurant,
  Matrices, Moments and Quadrature, Thm 6.2). With as many steps as distinct eigenvalues
  the rule is the measure itself.
* For a diagonal A and Rademacher z (z_i^2 = 1), mu_{z/||z||} puts weight count_j / n on
  each distinct eigenvalue and z^T A z = tr(A): SLQ and Hutchinson are exact.
"""

from __future__ import annotations

import math

import pytest
import torch

from explorer.models import ModelInputError
from explorer.models.analysis import hutchinson_trace, lanczos_tridiagonal, spectral_density
from explorer.models.loading import load_state_dict
from explorer.models.samples import MODEL_SAMPLE_DIR
from explorer.models.weights import (
    GramOperator,
    empirical_spectral_density,
    marchenko_pastur,
    randomized_svd,
    singular_spectrum,
    tensor_table,
    top_singular_values,
    weight_matrix,
)
from explorer.operators import DenseOperator
from explorer.solvers import SOLVERS

from explorer.tracking import HistoryTracker, NullTracker, StopSolve

EPS = torch.finfo(torch.float64).eps




def _random_symmetric(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    lam = torch.linspace(-1.0, 3.0, n, dtype=torch.float64) ** 3
    return (Q * lam) @ Q.T, lam


def test_slq_is_exact_on_a_diagonal_matrix_with_few_distinct_eigenvalues() -> None:
    values = torch.tensor([-1.0] * 10 + [0.5] * 30 + [2.0] * 20 + [5.0] * 4, dtype=torch.float64)
    n = values.numel()
    A = DenseOperator(torch.diag(values))
    sd = spectral_density(A, n_probes=3, n_steps=10, seed=1)
    assert sd.n_probes == 3 and sd.status.ok
    # Lanczos stops after 4 steps (an invariant subspace): 3 probes x 4 matvecs
    assert sd.n_matvec == 12
    distinct = torch.tensor([-1.0, 0.5, 2.0, 5.0], dtype=torch.float64)
    counts = torch.tensor([10, 30, 20, 4], dtype=torch.float64)
    for p in range(3):
        mask = torch.isfinite(sd.nodes[p])
        torch.testing.assert_close(sd.nodes[p][mask], distinct, rtol=0, atol=100 * EPS * 5)
        torch.testing.assert_close(sd.weights[p][mask], counts / n, rtol=0, atol=100 * EPS)
    assert abs(sd.trace - float(values.sum())) < 1e3 * EPS * float(values.abs().sum())
    grid, density = sd.density(sigma=0.05)
    assert abs(float(torch.trapezoid(density, grid)) - 1.0) < 1e-6
    cdf = sd.cumulative(torch.tensor([0.0, 1.0, 10.0]))
    torch.testing.assert_close(cdf, torch.tensor([10 / 64, 40 / 64, 1.0], dtype=torch.float64), rtol=0, atol=1e-12)


def test_lanczos_quadrature_reproduces_moments() -> None:
    A, _ = _random_symmetric(60, seed=3)
    v = torch.randn(60, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    v /= v.norm()
    m = 4
    alpha, beta, _ = lanczos_tridiagonal(DenseOperator(A), v, m)
    T = torch.diag(alpha) + torch.diag(beta, 1) + torch.diag(beta, -1)
    theta, U = torch.linalg.eigh(T)
    tau = U[0] ** 2
    norm = float(torch.linalg.matrix_norm(A, 2))
    for p in range(0, 2 * m):  # exact for degree <= 2m - 1
        exact = float(v @ torch.linalg.matrix_power(A, p) @ v)
        rule = float((tau * theta ** p).sum())
        assert abs(rule - exact) <= 1e3 * EPS * norm ** p, (p, rule, exact)
    # degree 2m is not integrated exactly (a sanity check that the test can fail)
    exact = float(v @ torch.linalg.matrix_power(A, 2 * m) @ v)
    assert abs(float((tau * theta ** (2 * m)).sum()) - exact) > 1e-6 * norm ** (2 * m)


def test_slq_tracker_records_and_stop() -> None:
    A, lam = _random_symmetric(80, seed=5)
    history = HistoryTracker()
    sd = spectral_density(DenseOperator(A), n_probes=4, n_steps=30, seed=0, tracker=history)
    assert len(history) == 4 and sd.n_matvec == 120
    last = history.records[-1]
    # extreme nodes converge first: with 30 steps on n = 80 they match lambda_min / lambda_max
    assert abs(float(last.ritz_values[0]) - float(lam.max())) <= max(float(last.residual_norms[0]), 1e-10) + 1e-12
    assert "trace_estimate" in last.extras
    low, high = sd.support
    assert low >= float(lam.min()) - 1e-10 and high <= float(lam.max()) + 1e-10

    class StopAfterTwo(NullTracker):
        def on_iteration(self, record):  # type: ignore[no-untyped-def]
            if record.iteration >= 2:
                raise StopSolve("enough")

    stopped = spectral_density(DenseOperator(A), n_probes=10, n_steps=10, tracker=StopAfterTwo())
    assert stopped.n_probes == 2 and stopped.status.value == "stopped" and "enough" in stopped.message


def test_hutchinson_is_exact_for_diagonal_and_unbiased_for_dense() -> None:
    d = torch.linspace(-2, 7, 50, dtype=torch.float64)
    est = hutchinson_trace(DenseOperator(torch.diag(d)), n_probes=5, seed=0)
    assert abs(est.trace - float(d.sum())) < 1e3 * EPS * float(d.abs().sum()) and est.std_error < 1e-12
    A, lam = _random_symmetric(40, seed=6)
    est = hutchinson_trace(DenseOperator(A), n_probes=200, seed=1, block=8)
    off = A - torch.diag(torch.diagonal(A))
    sigma = float((2 * off.pow(2).sum()).sqrt()) / math.sqrt(200)  # exact std of the mean (Rademacher)
    assert abs(est.trace - float(lam.sum())) <= 4 * sigma
    assert est.n_matvec == 200
    early = hutchinson_trace(DenseOperator(A), n_probes=10_000, seed=1, rtol=0.05)
    assert early.n_probes < 10_000 and early.std_error <= 0.05 * abs(early.trace)
    with pytest.raises(ValueError, match="`n_probes` must be a positive integer"):
        hutchinson_trace(DenseOperator(A), n_probes=0)


# -- weights -------------------------------------------------------------------------------
def test_tensor_table_and_matrix_views() -> None:
    sd = load_state_dict(MODEL_SAMPLE_DIR / "cnn.safetensors")
    table = tensor_table(sd).set_index("name")
    assert table.loc["conv2.weight", "shape"] == "8x4x3x3" and table.loc["conv2.weight", "matrix"] == "8 x 36"
    assert table.loc["conv2.weight", "kind"].startswith("conv kernel")
    assert table.loc["fc.bias", "matrix"] == "" and table.loc["fc.weight", "dtype"] == "float32"
    W = weight_matrix(sd["conv2.weight"], "conv2.weight")
    assert W.shape == (8, 36) and W.dtype == torch.float64
    torch.testing.assert_close(W[3], sd["conv2.weight"][3].reshape(-1).double())
    with pytest.raises(ModelInputError, match="has no singular values; choose a 2-D weight"):
        weight_matrix(sd["fc.bias"], "fc.bias")


def _check_singular_values(result, exact: torch.Tensor) -> None:  # type: ignore[no-untyped-def]
    # (u, v)/sqrt(2) is a unit vector of [[0, W], [W^T, 0]] with residual <= max(r1, r2) = r,
    # so by Weyl some singular value lies within r of sigma (+ rounding of the reference).
    k = result.k
    assert torch.all((result.values - exact[:k]).abs() <= result.residuals + 1e3 * EPS * float(exact[0]))


def test_top_singular_values_randomized_and_gram_route() -> None:
    sd = load_state_dict(MODEL_SAMPLE_DIR / "mlp.safetensors")
    W = weight_matrix(sd["layers.2.weight"])
    exact = torch.linalg.svdvals(W)
    rs = randomized_svd(W, 4, tol=1e-10, seed=0, max_iter=200)
    assert rs.status.ok and bool(rs.converged.all())
    _check_singular_values(rs, exact)
    gram = GramOperator(torch.randn(30, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    assert gram.shape == (7, 7) and gram.side == "right"
    torch.testing.assert_close(torch.linalg.eigvalsh(gram.to_dense()).flip(0),
                               torch.linalg.svdvals(gram.matrix) ** 2, rtol=1e-12, atol=1e-12)
    solver = "lanczos" if "lanczos" in SOLVERS else "lobpcg"
    ls = top_singular_values(W, 3, method="lanczos", solver=solver, tol=1e-10, seed=0)
    assert ls.status.ok, ls.message
    _check_singular_values(ls, exact)
    with pytest.raises(ValueError, match=r"`k` must satisfy 1 <= k <= min\(m, n\) = 32"):
        top_singular_values(W, 40)


def test_full_spectrum_and_esd_against_marchenko_pastur() -> None:
    g = torch.Generator().manual_seed(8)
    N, M = 800, 200
    W = torch.randn(N, M, generator=g, dtype=torch.float64) * 0.5
    esd = empirical_spectral_density(W.T, bins=40)  # orientation is normalized inside
    assert esd["eigenvalues"].numel() == M and esd["ratio"] == pytest.approx(M / N)
    widths = esd["edges"][1:] - esd["edges"][:-1]
    assert abs(float((esd["density"] * widths).sum()) - 1.0) < 1e-12
    # MP density integrates to 1 (q <= 1), and an i.i.d. matrix's largest eigenvalue sits
    # at the edge sigma^2 (1 + sqrt q)^2 up to O(N^(-2/3)) fluctuations (Tracy-Widom).
    x = torch.linspace(0, 1.0, 200_001, dtype=torch.float64)
    assert abs(float(torch.trapezoid(marchenko_pastur(x, 0.25, 0.25), x)) - 1.0) < 1e-3
    assert abs(float(esd["eigenvalues"].max()) / esd["mp_edge"] - 1.0) < 0.05
    assert torch.equal(singular_spectrum(W), torch.linalg.svdvals(W))
    with pytest.raises(ModelInputError, match="limited to min"):
        singular_spectrum(W, max_size=100)
