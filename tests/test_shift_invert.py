"""Shift-invert (explorer.operators.inverse, explorer.solvers.shift_invert) and spectrum slicing
(explorer.solvers.slicing), against closed-form spectra and dense eigh.

Tolerances: a pair with true residual r (unit x) has an eigenvalue within ||r|| (symmetric
Bauer-Fike); the reported residuals meet tol max(|lambda|, sqrt(eps) ||A||), and a float32
operator differs from the exact matrix by up to n eps ||A||. So each computed eigenvalue is within
``2 max(tol, n eps) ||A||`` of the exact one, as in the contract tests; with B the residual
||A x - lambda B x|| / ||B x|| bounds the error times ||B^-1|| (Mikota: ||B^-1|| = n).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from explorer import problems
from explorer.operators import CallableOperator, as_operator
from explorer.operators.inverse import Inertia, SingularShiftError, ShiftInvertOperator, shifted_inverse
from explorer.tracking.results import SolveStatus
from explorer.solvers.shift_invert import nearest_order, shift_invert
from explorer.solvers.slicing import interval_count, spectrum_slice
from explorer.tracking import HistoryTracker, NullTracker, StopSolve

TOL = {torch.float64: 1e-8, torch.float32: 1e-4}
INNER = ("lanczos", "lobpcg")


def _nearest(eigenvalues: torch.Tensor, sigma: float, k: int, which: str = "LM") -> torch.Tensor:
    """The exact answer in shift-invert order; asserts it is well defined (a gap after the k-th)."""
    order = nearest_order(eigenvalues, sigma, which)
    d = (eigenvalues.double() - sigma).abs()[order]
    if which == "LM":
        assert float(d[k] - d[k - 1]) > 1e-6, "the k nearest are ambiguous here: pick another sigma or k"
    return eigenvalues[order][:k].double()


def _bound(tol: float, dtype: torch.dtype, n: int, norm: float) -> float:
    return 2 * max(tol, n * torch.finfo(dtype).eps) * norm


def _check(result, problem, exact, tol, dtype, *, B_inverse_norm: float = 1.0):
    n = problem.operator.shape[0]
    norm = float(problem.eigenvalues.abs().max())
    assert result.status is SolveStatus.CONVERGED, result.status_message
    assert result.k == exact.numel() and bool(result.converged.all())
    err = (result.eigenvalues.double() - exact).abs().max()
    assert float(err) <= _bound(tol, dtype, n, norm) * B_inverse_norm, (result.eigenvalues, exact)
    # the reported residuals are true residuals of the original problem (float64 recomputation)
    A = problem.operator.to(dtype=torch.float64).to_dense()
    A = A.to_dense() if A.layout != torch.strided else A
    X = result.eigenvectors.double()
    if problem.B is None:
        R = A @ X - X * result.eigenvalues.double()
        recomputed = R.norm(dim=0)
    else:
        Bd = problem.B.to(dtype=torch.float64).to_dense()
        Bd = Bd.to_dense() if Bd.layout != torch.strided else Bd
        recomputed = (A @ X - Bd @ X * result.eigenvalues.double()).norm(dim=0) / (Bd @ X).norm(dim=0)
    eps = torch.finfo(dtype).eps
    assert torch.allclose(result.residual_norms.double(), recomputed, rtol=0,
                          atol=10 * math.sqrt(n) * eps * norm), (result.residual_norms, recomputed)
    # history: records of the inner iterations (Lanczos's "auto" ritz_every: a subset, strictly
    # increasing, the last at n_iter; see the contract suite), costs non-decreasing
    iterations = [r.iteration for r in result.history]
    assert all(1 <= it <= result.n_iter for it in iterations) and iterations == sorted(set(iterations))
    assert iterations[-1] == result.n_iter
    costs = [r.n_matvec for r in result.history]
    assert costs == sorted(costs) and costs[-1] <= result.n_matvec


# ----------------------------------------------------------------------------------------
# The shifted inverses and their inertia
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["sparse", "dense"])
@pytest.mark.parametrize("sigma", [-0.5, 0.37, 2.01, 5.3, 7.7])
def test_inertia_counts_eigenvalues_below_sigma(kind: str, sigma: float) -> None:
    problem = problems.laplacian_2d(12, 9)
    op = problem.operator if kind == "sparse" else as_operator(problem.operator.to_dense())
    inverse = shifted_inverse(op, sigma)
    below = int((problem.eigenvalues < sigma).sum())
    assert inverse.inertia == Inertia(below, 0, op.shape[0] - below)
    x = torch.randn(op.shape[0], 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    M = problem.operator.to_dense() - sigma * torch.eye(op.shape[0], dtype=torch.float64)
    assert torch.allclose(M @ inverse.solve(x), x, atol=1e-10)


def test_dense_bunch_kaufman_inertia_with_2x2_blocks() -> None:
    # a zero diagonal forces 2x2 pivots in sytrf
    values = torch.tensor([-3.0, -1.0, -0.5, 0.25, 2.0, 4.0, 6.0, 9.0], dtype=torch.float64)
    Q, _ = torch.linalg.qr(torch.randn(8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    A = Q @ torch.diag(values) @ Q.T
    A = A - torch.diag(torch.diagonal(A)) + torch.diag(torch.diagonal(A)).mean() * 0
    exact = torch.linalg.eigvalsh(A)
    for sigma in (-2.0, 0.0, 1.0, 3.0):
        inverse = shifted_inverse(as_operator(A), sigma, method="ldl")
        assert inverse.inertia.negative == int((exact < sigma).sum())


@pytest.mark.parametrize("kind", ["sparse", "dense", "matrix-free"])
def test_sigma_at_an_eigenvalue_is_refused_with_a_suggestion(kind: str) -> None:
    problem = problems.laplacian_1d(200)
    op = {"sparse": problem.operator, "dense": as_operator(problem.operator.to_dense()),
          "matrix-free": CallableOperator(problem.operator.matvec, 200)}[kind]
    # 1 = 2 - 2 cos(67 pi / 201) exactly (A - I singular in exact arithmetic), and the float64
    # value of another eigenvalue (singular to rounding only)
    for sigma in (1.0, float(problem.eigenvalues[40])):
        with pytest.raises(SingularShiftError, match=r"is an eigenvalue.*Move sigma a little, e.g. sigma = "):
            shift_invert("lanczos", op, 3, sigma=sigma)


def test_bad_arguments_say_what_to_do() -> None:
    problem = problems.laplacian_1d(50)
    with pytest.raises(ValueError, match="nearest sigma"):
        shift_invert("lanczos", problem.operator, 3, sigma=0.5, which="BE")
    with pytest.raises(ValueError, match="finite real"):
        shift_invert("lanczos", problem.operator, 3, sigma=math.nan)
    with pytest.raises(ValueError, match="factorization"):
        shift_invert("lanczos", problem.operator, 3, sigma=0.5, factorization="qr")
    with pytest.raises(ValueError, match="cholesky"):
        shift_invert("lanczos", as_operator(problem.operator.to_dense()), 3, sigma=1.5, factorization="cholesky")
    with pytest.raises(ValueError, match="assembled matrix"):
        shift_invert("lanczos", CallableOperator(problem.operator.matvec, 50), 3, sigma=0.5, factorization="ldl")


def test_shift_invert_operator_forms_agree() -> None:
    problem = problems.mikota_pair(30)
    sigma = 10.5
    inverse = shifted_inverse(problem.operator, sigma, problem.B)
    x = torch.randn(30, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    A, B = problem.operator.to_dense(), problem.B.to_dense()
    A = A.to_dense() if A.layout != torch.strided else A
    B = B.to_dense() if B.layout != torch.strided else B
    op = ShiftInvertOperator(inverse, B=problem.B, form="op")
    assert not op.is_symmetric
    assert torch.allclose(op.matmat(x), torch.linalg.solve(A - sigma * B, B @ x), atol=1e-10)
    pencil = ShiftInvertOperator(inverse, B=problem.B, form="pencil")
    assert torch.allclose(pencil.matmat(x), B @ torch.linalg.solve(A - sigma * B, B @ x), atol=1e-10)


# ----------------------------------------------------------------------------------------
# Shift-invert solves against closed forms
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("inner", INNER)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_interior_eigenvalues_of_the_2d_laplacian(inner: str, dtype: torch.dtype) -> None:
    problem = problems.laplacian_2d(30)
    sigma, k = 3.71, 6
    exact = _nearest(problem.eigenvalues, sigma, k)
    tol = TOL[dtype]
    result = shift_invert(inner, problem.operator.to(dtype=dtype), k, sigma=sigma, tol=tol, seed=0)
    _check(result, problem, exact, tol, dtype)
    assert result.eigenvalues.dtype == dtype
    assert "Shift-invert at sigma = 3.71" in result.message and "LDL^T" in result.message


@pytest.mark.parametrize("inner", INNER)
def test_smallest_of_a_stiff_matrix_take_tens_of_solves(inner: str) -> None:
    problem = problems.laplacian_2d(100)  # n = 10^4, lambda_1 = 9.7e-4, ||A|| = 8
    exact = problem.eigenvalues[:4].double()
    result = shift_invert(inner, problem.operator, 4, sigma=0.0, tol=1e-8, seed=0)
    _check(result, problem, exact, 1e-8, torch.float64)
    # SA without the transform needs well over a thousand matvecs here (bench: lanczos k = 10 SA at
    # n = 10^4); the transformed gaps make it tens of solves
    assert result.n_matvec < 300, result.message


@pytest.mark.parametrize("which", ["LA", "SA"])
def test_which_picks_the_side_of_sigma(which: str) -> None:
    problem = problems.laplacian_1d(150)
    sigma = 1.234
    exact = _nearest(problem.eigenvalues, sigma, 4, which)
    result = shift_invert("lanczos", problem.operator, 4, sigma=sigma, which=which, tol=1e-8, seed=0)
    _check(result, problem, exact, 1e-8, torch.float64)
    assert bool((result.eigenvalues > sigma).all() if which == "LA" else (result.eigenvalues < sigma).all())


@pytest.mark.parametrize("inner", INNER)
@pytest.mark.parametrize("kind", ["sparse", "dense"])
def test_mikota_pencil_with_sigma(inner: str, kind: str) -> None:
    problem = problems.mikota_pair(100)  # K x = lambda M x, lambda = 1, 4, 9, ..., 10^4
    op, B = problem.operator, problem.B
    if kind == "dense":
        op, B = as_operator(op.to_dense().to_dense()), as_operator(B.to_dense().to_dense())
    sigma = 30.0
    exact = torch.tensor([25.0, 36.0, 16.0, 49.0], dtype=torch.float64)
    result = shift_invert(inner, op, 4, sigma=sigma, B=B, tol=1e-8, seed=0)
    _check(result, problem, exact, 1e-8, torch.float64, B_inverse_norm=100.0)
    assert "(A - sigma B)^-1 B" in result.message


def test_matrix_free_minres_path() -> None:
    problem = problems.laplacian_1d(120)
    op = CallableOperator(problem.operator.matvec, 120)
    sigma = 0.77
    exact = _nearest(problem.eigenvalues, sigma, 3)
    result = shift_invert("lanczos", op, 3, sigma=sigma, tol=1e-6, seed=0)
    _check(result, problem, exact, 1e-6, torch.float64)
    assert "MINRES" in result.message
    # matrix-free: the cost is the products with A inside the MINRES solves
    assert result.n_matvec > 10 * result.n_iter


def test_warm_start_and_seed_reproduce() -> None:
    problem = problems.laplacian_1d(100)
    a = shift_invert("lanczos", problem.operator, 3, sigma=0.5, seed=3)
    b = shift_invert("lanczos", problem.operator, 3, sigma=0.5, seed=3)
    assert torch.equal(a.eigenvalues, b.eigenvalues) and a.n_matvec == b.n_matvec
    warm = shift_invert("lanczos", problem.operator, 3, sigma=0.5, X0=a.eigenvectors, seed=4)
    assert warm.status is SolveStatus.CONVERGED and warm.n_matvec <= a.n_matvec


def test_records_are_in_original_units_and_stop_works() -> None:
    problem = problems.laplacian_1d(200)
    history = HistoryTracker()
    result = shift_invert("lanczos", problem.operator, 3, sigma=0.3, seed=0, tracker=history)
    last = result.history[-1]
    assert torch.allclose(torch.sort(last.ritz_values.double()).values, torch.sort(result.eigenvalues.double()).values,
                          atol=1e-6)
    assert history.start is not None and history.start.extras["sigma"] == 0.3
    assert history.result is result

    class StopAt3(NullTracker):
        def on_iteration(self, record):  # noqa: ANN001, ANN201
            if record.iteration >= 3:
                raise StopSolve("enough")

    stopped = shift_invert("lanczos", problem.operator, 3, sigma=0.3, seed=0, tracker=StopAt3())
    assert stopped.status is SolveStatus.STOPPED and "enough" in stopped.message


# ----------------------------------------------------------------------------------------
# Spectrum slicing
# ----------------------------------------------------------------------------------------
def test_interval_count_matches_the_closed_form() -> None:
    problem = problems.laplacian_2d(40, 31)
    ev = problem.eigenvalues
    for lower, upper in ((0.1, 0.7), (2.5, 2.9), (6.3, 8.5), (-1.0, 0.01)):
        count = interval_count(problem.operator, lower, upper)
        assert count.count == int(((ev >= lower) & (ev < upper)).sum())
        dense = interval_count(as_operator(problem.operator.to_dense()), lower, upper)
        assert dense.count == count.count


@pytest.mark.parametrize("inner", INNER)
def test_slice_finds_every_eigenvalue_of_the_interval(inner: str) -> None:
    problem = problems.laplacian_2d(30)  # doubles everywhere
    lower, upper = 2.2, 2.6
    ev = problem.eigenvalues
    exact = ev[(ev >= lower) & (ev < upper)]
    result = spectrum_slice(problem.operator, lower, upper, inner=inner, tol=1e-8, seed=0, max_per_shift=12)
    assert result.status is SolveStatus.CONVERGED, result.status_message
    assert result.k == exact.numel() > 12  # more than one shift
    assert float((result.eigenvalues - exact).abs().max()) <= _bound(1e-8, torch.float64, 900, 8.0)
    assert f"so {exact.numel()} eigenvalues lie in" in result.message and "none was missed" in result.message
    V = result.eigenvectors
    assert float((V.T @ V - torch.eye(V.shape[1], dtype=V.dtype)).abs().max()) < 1e-10


def test_slice_of_the_mikota_pencil() -> None:
    problem = problems.mikota_pair(60)
    result = spectrum_slice(problem.operator, 50.0, 700.0, B=problem.B, tol=1e-9, seed=0)
    exact = torch.tensor([float(j * j) for j in range(8, 27)], dtype=torch.float64)  # 64 .. 676
    assert result.status is SolveStatus.CONVERGED, result.status_message
    assert torch.allclose(result.eigenvalues, exact, rtol=1e-7)


def test_slice_edge_cases() -> None:
    problem = problems.laplacian_1d(200)
    empty = spectrum_slice(problem.operator, 4.5, 5.0)
    assert empty.status is SolveStatus.CONVERGED and empty.k == 0 and "none to find" in empty.message
    with pytest.raises(SingularShiftError, match="lower end of the interval.*to include it"):
        spectrum_slice(problem.operator, 1.0, 1.2)  # 1 is an eigenvalue
    with pytest.raises(ValueError, match="matrix-free"):
        spectrum_slice(CallableOperator(problem.operator.matvec, 200), 0.5, 0.6)
    with pytest.raises(ValueError, match="lower < upper"):
        spectrum_slice(problem.operator, 0.6, 0.5)
    with pytest.raises(ValueError, match="max_count"):
        spectrum_slice(problem.operator, 0.0, 4.0, max_count=50)


def test_slice_counts_at_integer_shifts_of_an_integer_matrix() -> None:
    # SuperLU's LDL^T without pivoting meets exact zero pivots at s = 2 and 3 here: the count is
    # taken at a nudged shift, and still exact
    problem = problems.laplacian_2d(40)
    ev = problem.eigenvalues
    count = interval_count(problem.operator, 2.0, 3.0)
    assert count.count == int(((ev >= 2.0) & (ev < 3.0)).sum())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("inner", INNER)
def test_dense_shift_invert_on_the_gpu(inner: str) -> None:
    problem = problems.laplacian_2d(20)
    op = as_operator(problem.operator.to_dense()).to("cuda")
    exact = _nearest(problem.eigenvalues, 3.1, 4)
    result = shift_invert(inner, op, 4, sigma=3.1, tol=1e-8, seed=0)
    assert result.eigenvalues.device.type == "cuda"
    assert result.status is SolveStatus.CONVERGED, result.status_message
    assert float((result.eigenvalues.cpu().double() - exact).abs().max()) <= _bound(1e-8, torch.float64, 400, 8.0)
    assert "on cuda" in result.message


# ----------------------------------------------------------------------------------------
# The solver entries and the registry
# ----------------------------------------------------------------------------------------
def test_sigma_and_interval_through_the_registered_solvers() -> None:
    from explorer.solvers import SOLVERS, lanczos, lobpcg, solve

    problem = problems.laplacian_2d(25)
    exact = _nearest(problem.eigenvalues, 3.71, 4)
    for fn in (lanczos, lobpcg):
        result = fn(problem.operator, 4, sigma=3.71, tol=1e-8, seed=0)  # which defaults to LM: the nearest
        _check(result, problem, exact, 1e-8, torch.float64)
    without = lanczos(problem.operator, 2, seed=0)  # no sigma: LA as before
    assert torch.allclose(without.eigenvalues, problem.reference(2, "LA"), atol=1e-5)
    ev = problem.eigenvalues
    inside = ev[(ev >= 1.0) & (ev < 1.3)]
    sliced = solve("lanczos", problem.operator, 40, lower=1.0, upper=1.3, tol=1e-8, seed=0)
    assert sliced.status is SolveStatus.CONVERGED and torch.allclose(sliced.eigenvalues, inside, atol=1e-7)
    with pytest.raises(ValueError, match=rf"more than k = 3; .*raise `k` to {inside.numel()}"):
        solve("lanczos", problem.operator, 3, lower=1.0, upper=1.3)
    with pytest.raises(ValueError, match="both ends"):
        solve("lobpcg", problem.operator, 3, lower=1.0)
    with pytest.raises(ValueError, match="not both"):
        solve("lanczos", problem.operator, 3, sigma=1.1, lower=1.0, upper=1.3)
    for name in ("lanczos", "lobpcg"):
        names = {p.name for p in SOLVERS[name].params}
        assert {"sigma", "factorization", "lower", "upper"} <= names
        assert SOLVERS[name].param("sigma").optional and SOLVERS[name].param("lower").optional


def test_bench_shift_invert_rows() -> None:
    from explorer.bench.matrix import SHIFT_INVERT_ROWS, make_problems, run_benchmark

    problem = make_problems(["laplace2d_si_N30"], cases=((4, "SI0"), (4, "SImid")))[0]
    frame = run_benchmark([problem], ("lanczos", "arpack") + SHIFT_INVERT_ROWS, cap_s=20, isolate=False,
                          repeat_below_s=0)
    # only the shift-invert rows run on these cases; LOBPCG + LU only on the smallest
    assert set(frame["solver"]) == set(SHIFT_INVERT_ROWS)
    assert list(frame[frame["which"] == "SImid"]["solver"]) == ["lanczos_si", "lobpcg_si", "arpack_si"]
    # ours find the doubles of the square grid (the block); single-vector ARPACK may miss a copy here
    ours = frame[frame["solver"].isin(["lanczos_si", "lobpcg_si", "scipy_lobpcg_lu"])]
    assert bool(ours["ok"].all()), ours[["solver", "which", "status", "eig_err", "note"]]
    assert bool((frame["status"] == "done").all())
    assert bool((frame["matvecs"] > 0).all())
    assert frame.loc[frame["solver"] == "arpack_si", "mv/arpack"].eq(1.0).all()
