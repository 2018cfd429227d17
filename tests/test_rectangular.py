"""Rectangular matrices outside the solver: files, uploads, the preview facts, the run plumbing, the snippet.

References: matrices built from a known SVD (orthonormal U, V and prescribed singular values),
compared with the dense float64 SVD; no solver is checked against itself.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from explorer import problems
from explorer.analysis.compare import CompareSettings, RunConfig, run_comparison
from explorer.operators import as_rectangular_operator
from explorer.problems.files import load_matrix, load_operator, save_matrix
from explorer.problems.preview import block_abs, describe, norm_estimate
from explorer.problems.sources import ProblemSource, load_problem, reference_spectrum
from explorer.runs.config import SolveConfig, check_solver_fits, default_solver, make_target, solvers_for
from explorer.runs.snippet import solve_snippet
from explorer.solvers import SOLVERS
from explorer.tracking.results import SingularResult, SolveStatus
from explorer.tracking import NullTracker


def _known(m: int, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    r = min(m, n)
    U, _ = np.linalg.qr(rng.standard_normal((m, r)))
    V, _ = np.linalg.qr(rng.standard_normal((n, r)))
    values = np.geomspace(3.0, 0.3, r)
    return (U * values) @ V.T, values


def _bytes(suffix: str, matrix) -> bytes:  # type: ignore[no-untyped-def]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"A{suffix}"
        save_matrix(path, matrix)
        return path.read_bytes()


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".mtx", ".mtx.gz", ".csv", ".pt", ".safetensors"])
@pytest.mark.parametrize("shape", [(30, 12), (12, 30)])
def test_every_format_loads_a_rectangular_matrix(suffix: str, shape: tuple[int, int]) -> None:
    A, values = _known(*shape)
    data = _bytes(suffix, A)
    loaded = load_matrix(data, f"A{suffix}")
    assert loaded.shape == shape
    op = load_operator(data, f"A{suffix}", rectangular=True)
    assert op.shape == shape and not op.is_symmetric
    dense = op.to_dense()
    np.testing.assert_allclose(torch.linalg.svdvals(dense.double()).numpy(), values, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match=r"must be square.*SVD solver"):
        load_operator(data, f"A{suffix}")
    with pytest.raises(ValueError, match="exclude each other"):
        load_operator(data, f"A{suffix}", rectangular=True, symmetrize=True)


def test_a_sparse_rectangular_file_stays_sparse() -> None:
    grad = problems.gradient_1d(50)
    data = _bytes(".mtx", grad.operator.to_scipy())
    op = load_operator(data, "D.mtx", rectangular=True)
    assert op.kind == "sparse" and op.shape == (51, 50)
    x = torch.randn(50, 2, dtype=torch.float64)
    torch.testing.assert_close(op.matmat(x), grad.operator.matmat(x))
    torch.testing.assert_close(op.rmatmat(op.matmat(x)), problems.laplacian_1d(50).operator.matmat(x))


def test_an_upload_becomes_an_svd_problem_with_a_dense_svd_reference() -> None:
    A, values = _known(40, 15)
    data = _bytes(".npy", A)
    problem = load_problem(ProblemSource.upload("rect.npy", data), data)
    assert problem.kind == "svd" and problem.is_svd and problem.shape == (40, 15) and problem.k_max == 15
    assert problem.singular_values is None and problem.eigenvalues is None  # unknown until computed
    assert "40 x 15" in problem.description
    reference = reference_spectrum(problem)
    np.testing.assert_allclose(reference.numpy(), np.sort(values), rtol=0, atol=1e-13)
    with pytest.raises(ValueError, match="not square"):
        load_problem(ProblemSource.upload("rect.npy", data, symmetrize=True), data)
    eye = _bytes(".npy", np.eye(40))
    with pytest.raises(ValueError, match="needs a square A"):
        load_problem(ProblemSource.upload("rect.npy", data, b_filename="B.npy", b_data=eye), data, eye)


def test_known_singular_values_are_the_reference() -> None:
    problem = problems.gradient_2d(6, 5)
    assert torch.equal(reference_spectrum(problem), problem.singular_values)


def test_preview_facts_of_a_rectangular_matrix() -> None:
    A, values = _known(50, 20)
    op = as_rectangular_operator(A)
    facts = describe(op)
    assert facts.shape == (50, 20) and facts.rectangular
    rows = dict(facts.as_rows())
    assert "50 \u00d7 20" in rows["shape m \u00d7 n"] and "tall" in rows["shape m \u00d7 n"]
    assert "symmetry probe error" not in rows
    assert facts.density == pytest.approx(1.0)
    # ||A||_2 = values[0]: the power estimate is a lower bound close to it, Frobenius an upper one
    assert facts.norm_lower <= values[0] * (1 + 1e-12)
    assert facts.norm_lower >= 0.9 * values[0]
    assert facts.norm_upper == pytest.approx(float(np.linalg.norm(values)))
    wide = norm_estimate(as_rectangular_operator(A.T))
    assert wide <= values[0] * (1 + 1e-12) and wide >= 0.9 * values[0]
    blocks = block_abs(op, cells=10)
    assert blocks.shape == (10, 10)
    np.testing.assert_allclose(blocks.sum(), np.abs(A).sum())
    exact = block_abs(op, cells=100)
    np.testing.assert_allclose(exact, np.abs(A))
    sparse_blocks = block_abs(as_rectangular_operator(sp.csr_matrix(A)), cells=7)
    assert sparse_blocks.shape == (7, 7)
    np.testing.assert_allclose(sparse_blocks.sum(), np.abs(A).sum())


def test_solver_kinds_in_the_run_plumbing() -> None:
    svd_problem = problems.prescribed_singular_values(30, 12, "linear", low=0.5, high=2.0)
    eigen_problem = problems.laplacian_1d(20)
    assert default_solver("svd") == "golub_kahan" and SOLVERS[default_solver()].kind == "eigen"
    assert set(solvers_for(svd_problem)) == {n for n, s in SOLVERS.items() if s.kind == "svd"}
    assert "golub_kahan" not in solvers_for(eigen_problem)
    with pytest.raises(ValueError, match=r"30 x 12 \(singular values\): use an SVD solver \(golub_kahan"):
        check_solver_fits(svd_problem, "lanczos")
    with pytest.raises(ValueError, match="computes singular values"):
        check_solver_fits(eigen_problem, "golub_kahan")
    with pytest.raises(ValueError, match="use an SVD solver"):
        make_target(svd_problem, SolveConfig(solver="lobpcg", k=2, which="LA", tol=1e-8, max_iter=100))
    target = make_target(svd_problem, SolveConfig(solver="golub_kahan", k=2, which="SA", tol=1e-10, max_iter=500,
                                                  dtype="float32"))
    result = target(NullTracker())
    assert isinstance(result, SingularResult) and result.singular_values.dtype == torch.float32
    np.testing.assert_allclose(result.singular_values.double().numpy(), [0.5, 0.5 + 1.5 / 11], rtol=1e-5)


def test_the_snippet_reproduces_an_svd_run() -> None:
    source = ProblemSource.generated("prescribed_singular_values", {"m": 40, "n": 25, "spectrum": "gap"})
    code = solve_snippet(source, "golub_kahan", {"k": 3, "which": "LA", "tol": 1e-9, "max_iter": 1000, "seed": 0,
                                                  "reorthogonalization": "one-sided"})
    scope: dict = {}
    exec(compile(code, "<snippet>", "exec"), scope)  # noqa: S102 - our own generated code
    result = scope["result"]
    assert isinstance(result, SingularResult) and result.status is SolveStatus.CONVERGED
    problem = scope["problem"]
    np.testing.assert_allclose(result.singular_values.numpy(), problem.reference(3, "LA").numpy(), rtol=0, atol=1e-8)
    frame = result.to_frame(problem.reference(3, "LA"))
    assert list(frame.columns[:2]) == ["index", "singular_value"] and float(frame["abs_error"].max()) <= 1e-8


def test_a_comparison_refuses_an_eigensolver_on_an_svd_problem_and_runs_svd_solvers() -> None:
    problem = problems.prescribed_singular_values(60, 30, "geometric")
    settings = CompareSettings(k=2, which="LA", tol=1e-8, max_iter=500, budget=None, seed=0)
    with pytest.raises(ValueError, match="run 1 .*cannot solve this 60 x 30 singular-value problem"):
        run_comparison(problem, [RunConfig("lanczos", {}), RunConfig("golub_kahan", {})], settings)
    outcomes = run_comparison(problem, [RunConfig("golub_kahan", {"reorthogonalization": "full"}),
                                        RunConfig("golub_kahan", {"reorthogonalization": "one-sided"})], settings)
    for outcome in outcomes:
        assert outcome.result.status is SolveStatus.CONVERGED
        np.testing.assert_allclose(outcome.result.singular_values.numpy(), [1.0, 0.8], rtol=0, atol=1e-8)
