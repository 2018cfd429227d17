"""Chebyshev-accelerated Lanczos (``lanczos(..., polynomial=d)``) against closed forms and eigh.

References never come from the solver: the Chebyshev operator against ``T_d`` applied through
the eigendecomposition of a small matrix (``torch.linalg.eigh``), the 2-D and 3-D Laplacians
against their closed-form spectra. A returned value within its residual of an eigenvalue
(Parlett, Thm 4.5.1) and the sorted set compared with the sorted exact one: a wrong set fails
by a whole gap.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from explorer import problems
from explorer.operators import CallableOperator, CountedOperator, DenseOperator, SparseOperator
from explorer.solvers._common import residual_threshold
from explorer.solvers.lanczos import lanczos
from explorer.solvers.lanczos.polynomial import (
    AUTO_MIN_N,
    DEFAULT_DEGREE,
    ChebyshevOperator,
    auto_degree,
    gershgorin_bounds,
)
from explorer.tracking import HistoryTracker, NullTracker, StopSolve
from explorer.tracking.results import SolveStatus

EPS64 = float(torch.finfo(torch.float64).eps)

pytestmark = [
    pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta:UserWarning"),
]


def _chebyshev_reference(t: np.ndarray, degree: int, x_of: callable) -> np.ndarray:
    """T_d(x(t)) by the cos / cosh closed forms."""
    x = x_of(t)
    return np.where(np.abs(x) <= 1, np.cos(degree * np.arccos(np.clip(x, -1, 1))),
                    np.sign(x) ** degree * np.cosh(degree * np.arccosh(np.maximum(np.abs(x), 1))))


@pytest.mark.parametrize("side", [1, -1])
def test_the_chebyshev_operator_applies_t_d_of_the_shifted_matrix(side: int) -> None:
    """p(A) X by the recurrence equals Q T_d(x(Lambda)) Q^T X from eigh, to the rounding of d
    products (each ~ n eps ||A|| relative, amplified at most by max |p| over the spectrum);
    value / inverse / slope agree with the closed form and a finite difference."""
    n, degree = 60, 9
    g = torch.Generator().manual_seed(0)
    M = torch.randn(n, n, dtype=torch.float64, generator=g)
    A = 0.5 * (M + M.T)
    lam, Q = torch.linalg.eigh(A)
    low, high = (float(lam[0]), float(lam[-8])) if side == 1 else (float(lam[7]), float(lam[-1]))
    P = ChebyshevOperator(DenseOperator(A), degree, low, high, side)
    c, e = 0.5 * (low + high), 0.5 * (high - low)

    def x_of(t: np.ndarray) -> np.ndarray:
        return side * (t - c) / e

    p_lam = _chebyshev_reference(lam.numpy(), degree, x_of)
    X = torch.randn(n, 3, dtype=torch.float64, generator=g)
    expected = Q @ (torch.from_numpy(p_lam)[:, None] * (Q.T @ X))
    scale = float(np.abs(p_lam).max()) * float(X.abs().max())
    torch.testing.assert_close(P.matmat(X), expected, rtol=0, atol=degree * n * EPS64 * 10 * scale)
    out = torch.empty(3, n, dtype=torch.float64)
    assert P.rows_kernel and P.matvecs_into(X.T.contiguous(), out)
    torch.testing.assert_close(out, expected.T, rtol=0, atol=degree * n * EPS64 * 10 * scale)
    # the damped interval maps into [-1, 1]; the amplified side grows and inverts
    np.testing.assert_allclose(P.value(lam.numpy()), p_lam, rtol=1e-12, atol=1e-12)
    assert np.all(np.abs(P.value(np.linspace(low, high, 50))) <= 1 + 1e-12)
    far = lam.numpy()[-3:] if side == 1 else lam.numpy()[:3]
    np.testing.assert_allclose(P.inverse(P.value(far)), far, rtol=1e-10)
    h = 1e-6
    fd = np.abs(P.value(far + h) - P.value(far - h)) / (2 * h)
    np.testing.assert_allclose(P.slope(far), fd, rtol=1e-5)


@pytest.mark.parametrize("degree", [1, 2, 9])
def test_the_sparse_kernel_path_applies_t_d_and_counts_d_products_per_row(degree: int) -> None:
    """On a scipy CSR matrix the recurrence runs on the accumulating kernel of M = 2 s (A - c I) / e
    (``affine_rows_kernel``; half the diagonal missing from the pattern, so M's pattern grows).
    p(A) X equals Q T_d(x(Lambda)) Q^T X from eigh of the dense matrix, to the rounding of d
    products; each row costs d counted products; the input rows are left as they were."""
    n = 80
    rng = np.random.default_rng(1)
    R = sp.random(n, n, density=0.08, random_state=rng)
    S = sp.csr_matrix(R + R.T)
    S.setdiag(np.where(np.arange(n) % 2 == 0, rng.standard_normal(n), 0.0))
    S.eliminate_zeros()
    assert (S.diagonal() == 0).sum() >= n // 2 - 1
    counted = CountedOperator(SparseOperator(S))
    lam, Q = torch.linalg.eigh(torch.from_numpy(S.toarray()))
    low, high = float(lam[0]), float(lam[-6])
    P = ChebyshevOperator(counted, degree, low, high, 1)
    c, e = 0.5 * (low + high), 0.5 * (high - low)
    p_lam = _chebyshev_reference(lam.numpy(), degree, lambda t: (t - c) / e)
    X = torch.randn(n, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    expected = Q @ (torch.from_numpy(p_lam)[:, None] * (Q.T @ X))
    scale = float(np.abs(p_lam).max()) * float(X.abs().max())
    rows = X.T.contiguous()
    before = rows.clone()
    out = torch.full((3, n), float("nan"), dtype=torch.float64)
    assert P.matvecs_into(rows, out)
    assert P._kernel  # the kernel path ran
    torch.testing.assert_close(out, expected.T, rtol=0, atol=degree * n * EPS64 * 10 * scale)
    assert torch.equal(rows, before)
    assert counted.n_matvec == 3 * degree
    # the kernel itself adds scale (A - shift I) X to what the output holds
    kernel = SparseOperator(S).affine_rows_kernel(-0.5, 2.0)
    base = torch.ones(3, n, dtype=torch.float64)
    kernel(rows, base)
    dense = torch.from_numpy(S.toarray())
    torch.testing.assert_close(base, 1.0 - 0.5 * (rows @ dense - 2.0 * rows), rtol=0,
                               atol=n * EPS64 * float(dense.abs().sum(dim=1).max()) * float(rows.abs().max()) * 10)
    assert DenseOperator(dense).affine_rows_kernel(1.0, 0.0) is None  # no kernel: the generic recurrence


def test_gershgorin_bounds_hold_every_eigenvalue_for_sparse_and_dense_matrices() -> None:
    """Each bound contains the whole spectrum (eigvalsh); the 2-D Laplacian's is [0, 8] exactly
    (diagonal 4, four -1 neighbours); a matrix-free operator has none."""
    lap = problems.laplacian_2d(12)
    assert gershgorin_bounds(CountedOperator(lap.operator)) == (0.0, 8.0)
    rng = np.random.default_rng(0)
    S = sp.random(80, 80, density=0.1, random_state=1, format="csr")
    S = (S + S.T).tocsr()
    dense = torch.from_numpy(S.toarray())
    lam = torch.linalg.eigvalsh(dense)
    for op in (SparseOperator(S), DenseOperator(dense)):
        lo, hi = gershgorin_bounds(op)
        assert lo <= float(lam[0]) and float(lam[-1]) <= hi
    assert gershgorin_bounds(CallableOperator(lambda v: 2.0 * v, 10)) is None
    del rng


@pytest.mark.parametrize("which", ["LA", "SA"])
def test_accelerated_lanczos_returns_the_exact_extreme_set_of_the_2d_laplacian(which: str) -> None:
    """2-D Laplacian 40 x 40 (double eigenvalues), k = 8: the exact set, every pair within its
    true residual of an eigenvalue and below tol; n_matvec counts products with A (the
    caller's counter agrees); the message says how it ran."""
    N, k, tol = 40, 8, 1e-8
    problem = problems.laplacian_2d(N)
    exact = torch.sort(problem.eigenvalues, descending=(which == "LA")).values[:k]
    counted = CountedOperator(problem.operator)
    result = lanczos(counted, k, which=which, tol=tol, seed=0, polynomial=DEFAULT_DEGREE)
    assert result.status is SolveStatus.CONVERGED, result.message
    assert "Chebyshev acceleration" in result.message
    assert result.n_matvec == counted.n_matvec
    bound = result.residual_norms + 1e3 * EPS64 * 8.0
    assert torch.all((result.eigenvalues - exact).abs() <= bound), (result.eigenvalues, exact)
    X = result.eigenvectors
    true = torch.linalg.vector_norm(problem.operator.to_dense() @ X - X * result.eigenvalues, dim=0)
    assert torch.all(true <= residual_threshold(result.eigenvalues, tol, 8.0))
    assert float((X.T @ X - torch.eye(k, dtype=torch.float64)).abs().max()) <= 1e-10


def test_a_hidden_triple_eigenvalue_is_still_found_on_the_polynomial() -> None:
    """3-D Laplacian 10^3, k = 6 LA, block 2: the third copy of a triple is orthogonal to the
    Krylov space of p(A) as of A's; the hidden-copy check, which runs on p(A), finds it (the
    same eigenvectors), and the set is exact."""
    problem = problems.laplacian_3d(10)
    exact = torch.sort(problem.eigenvalues, descending=True).values[:6]
    result = lanczos(problem.operator, 6, which="LA", tol=1e-8, seed=0, polynomial=8)
    assert result.status is SolveStatus.CONVERGED, result.message
    assert "hidden-copy check found them" in result.message
    bound = result.residual_norms + 1e3 * EPS64 * 12.0
    assert torch.all((result.eigenvalues - exact).abs() <= bound), (result.eigenvalues, exact)


def test_records_are_in_the_units_of_a_and_a_stop_keeps_them() -> None:
    """The tracker sees the start's records and then the polynomial run's, iterations running
    on, values mapped back to A (the last ones within 1e-6 of the answer), products with A
    non-decreasing; a stop during the polynomial run returns STOPPED with the records kept."""
    problem = problems.laplacian_2d(30)
    history = HistoryTracker()
    result = lanczos(problem.operator, 4, which="LA", tol=1e-10, seed=0, polynomial=10, tracker=history,
                     ritz_every=1)
    records = history.records
    phases = [r.extras.get("phase") for r in records]
    assert phases[0] == "start" and phases[-1] == "polynomial"
    iterations = [r.iteration for r in records]
    assert iterations == sorted(iterations) and len(set(iterations)) == len(iterations)
    matvecs = [r.n_matvec for r in records]
    assert matvecs == sorted(matvecs) and matvecs[-1] <= result.n_matvec
    last = records[-1].ritz_values.double()
    torch.testing.assert_close(last, result.eigenvalues, rtol=1e-6, atol=0)
    assert records[-1].extras["degree"] == 10

    class StopInPolynomial(NullTracker):
        def on_iteration(self, record):  # noqa: ANN001, ANN202
            if record.extras.get("phase") == "polynomial":
                raise StopSolve("enough")

    stopped = lanczos(problem.operator, 4, which="LA", tol=1e-10, seed=0, polynomial=10, tracker=StopInPolynomial())
    assert stopped.status is SolveStatus.STOPPED and "enough" in stopped.message
    assert len(stopped.history) >= 2


def test_auto_turns_the_acceleration_on_only_for_large_sparse_cpu_matrices() -> None:
    """'auto': degree 10 for a sparse float64 CPU matrix with n >= AUTO_MIN_N, LA or SA; off for a
    smaller one, for LM / BE, float32, "none" and dense matrices. Bad values are refused with
    what is allowed."""
    big = problems.laplacian_2d(int(np.ceil(np.sqrt(AUTO_MIN_N)))).operator
    small = problems.laplacian_2d(50).operator
    assert auto_degree("auto", CountedOperator(big), "LA", None, "partial") == DEFAULT_DEGREE
    assert auto_degree("auto", CountedOperator(big), "SA", None, "full") == DEFAULT_DEGREE
    assert auto_degree("auto", CountedOperator(big), "LM", None, "partial") == 0
    assert auto_degree("auto", CountedOperator(big), "LA", None, "none") == 0
    assert auto_degree("auto", CountedOperator(big.to(dtype=torch.float32)), "LA", None, "full") == 0
    assert auto_degree("auto", CountedOperator(small), "LA", None, "partial") == 0
    plain = lanczos(small, 4, which="LA", tol=1e-8, seed=0)
    assert "Chebyshev" not in plain.message
    with pytest.raises(ValueError, match="degree from 2 to 200"):
        lanczos(small, 4, polynomial=1)
    with pytest.raises(ValueError, match="'auto', 0"):
        lanczos(small, 4, polynomial="fast")
    with pytest.raises(TypeError, match="whole number"):
        lanczos(small, 4, polynomial=2.5)
    with pytest.raises(ValueError, match="which='LA' or 'SA'"):
        lanczos(small, 4, which="LM", polynomial=10)
    with pytest.raises(ValueError, match="assembled"):
        lanczos(CallableOperator(lambda v: 2.0 * v, 50), 2, polynomial=10)


def test_a_wanted_value_at_the_cut_is_still_told_from_the_damped_interval() -> None:
    """Eigenvalues 1 (490 times) and 2 (10 times), k = 4 LA: the start converges, so its (k + b)-th
    Ritz value is 2 itself and the far end of the damped interval is the eigenvalue 1. Without a
    margin p(2) = p(1) = 1 and the run on p(A) found nothing (values 1.9983-1.9998, BREAKDOWN); the
    margin W / (4 d^2) below the cut gives p(2) ~ cosh(1) and the exact values."""
    D = SparseOperator(sp.diags(np.r_[np.ones(490), 2.0 * np.ones(10)]).tocsr())
    result = lanczos(D, 4, which="LA", tol=1e-8, seed=0, polynomial=10)
    assert result.status is SolveStatus.CONVERGED, result.message
    assert torch.all((result.eigenvalues - 2.0).abs() <= result.residual_norms + 1e3 * EPS64 * 2.0)


def test_a_stop_during_the_start_returns_what_it_has_and_says_why_once() -> None:
    class StopEarly(NullTracker):
        def on_iteration(self, record):  # noqa: ANN001, ANN202
            if record.iteration >= 3:
                raise StopSolve("user pressed Stop")

    result = lanczos(problems.laplacian_2d(60).operator, 6, seed=0, polynomial=10, tracker=StopEarly())
    assert result.status is SolveStatus.STOPPED
    assert result.message.count("user pressed Stop") == 1 and "Only" not in result.message
    assert len(result.history) == 3


def test_a_spectrum_with_nothing_to_damp_falls_back_to_plain_lanczos_and_says_why() -> None:
    """A multiple of the identity: the Gershgorin bound equals the cut, so there is no interval to
    damp; the solve goes on with plain Lanczos, returns the exact value and the message says so."""
    n = 400
    result = lanczos(SparseOperator(sp.identity(n, format="csr") * 2.5), 3, which="LA", tol=1e-8, seed=0,
                     polynomial=5)
    assert result.status is SolveStatus.CONVERGED
    np.testing.assert_allclose(result.eigenvalues.numpy(), 2.5, rtol=0, atol=10 * 2.5 * EPS64)
    assert "Chebyshev acceleration skipped (nothing to damp" in result.message
