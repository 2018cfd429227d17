"""Generators with known spectra: each one checked against dense eigh, plus the registry.

The tolerance for a computed spectrum is ``50 n eps ||A||``: a backward-stable
eigensolver returns eigenvalues within ``~n eps ||A||`` of those of the stored matrix
(Golub & Van Loan 8.7), and the stored matrix is within ``~n eps ||A||`` of the exact
one (Weyl). The factor 50 absorbs the constants.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import scipy.sparse as sp
import torch

from explorer import problems
from explorer.problems import generators
from explorer.operators import DenseOperator, SparseOperator, check_symmetric
from explorer.problems import GENERATORS, Problem, generate
from explorer.solvers._common import select_order

pytestmark = [
    pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta:UserWarning"),
    pytest.mark.filterwarnings("ignore:Sparse invariant checks are implicitly disabled:UserWarning"),
]

DTYPES = [torch.float64, torch.float32]


def _dense(problem: Problem) -> torch.Tensor:
    A = problem.operator.to_dense()
    return (A.to_dense() if A.layout != torch.strided else A).double()


def _tolerance(problem: Problem, dtype: torch.dtype) -> float:
    assert problem.eigenvalues is not None
    norm = float(problem.eigenvalues.abs().max())
    return 50 * problem.n * torch.finfo(dtype).eps * max(norm, 1.0)


def _check_spectrum(problem: Problem, dtype: torch.dtype) -> None:
    """Eigenvalues: float64, CPU, ascending, all n, equal to dense eigh of the stored matrix (pair).
    An SVD problem: its singular values against the dense SVD instead (``_check_singular_values``)."""
    if problem.is_svd:
        _check_singular_values(problem, dtype)
        return
    values = problem.eigenvalues
    assert values is not None
    assert values.dtype == torch.float64 and values.device.type == "cpu"
    assert values.shape == (problem.n,)
    assert bool((values[1:] >= values[:-1]).all()), "eigenvalues must be ascending"
    assert problem.operator.dtype == dtype
    if problem.B is None:
        computed = torch.linalg.eigvalsh(_dense(problem))
    else:
        B = problem.B.to_dense()
        B = (B.to_dense() if B.layout != torch.strided else B).double()
        computed = torch.from_numpy(scipy.linalg.eigh(_dense(problem).numpy(), B.numpy(), eigvals_only=True))
    error = float((computed - values).abs().max())
    assert error <= _tolerance(problem, dtype), f"{problem.name}: max error {error:.2e}"


def _check_singular_values(problem: Problem, dtype: torch.dtype) -> None:
    """Singular values: float64, CPU, ascending, all min(m, n), equal to the dense SVD of the stored matrix
    within 50 min(m, n) eps ||A|| (backward-stable SVD, Golub & Van Loan 8.6, plus Weyl for the rounding
    of the assembled matrix)."""
    values = problem.singular_values
    assert problem.kind == "svd" and problem.eigenvalues is None and values is not None
    assert values.dtype == torch.float64 and values.device.type == "cpu"
    assert values.shape == (min(problem.shape),)
    assert bool((values[1:] >= values[:-1]).all()), "singular values must be ascending"
    assert bool((values >= 0).all())
    assert problem.operator.dtype == dtype
    computed = torch.flip(torch.linalg.svdvals(_dense(problem)), [0])
    tolerance = 50 * min(problem.shape) * torch.finfo(dtype).eps * max(float(values.max()), 1.0)
    error = float((computed - values).abs().max())
    assert error <= tolerance, f"{problem.name}: max error {error:.2e}"


SVD_SMALL = {
    "singular-tall-geometric": lambda dtype: problems.prescribed_singular_values(70, 30, "geometric", dtype=dtype),
    "singular-wide-linear": lambda dtype: problems.prescribed_singular_values(30, 70, "linear", low=0.5, high=4.0,
                                                                           dtype=dtype),
    "singular-square-gap": lambda dtype: problems.prescribed_singular_values(40, 40, "gap", dtype=dtype),
    "singular-values": lambda dtype: problems.prescribed_singular_values(25, 12, values=np.arange(12.0), seed=4,
                                                                      dtype=dtype),
    "gradient_1d": lambda dtype: problems.gradient_1d(45, dtype=dtype),
    "gradient_2d": lambda dtype: problems.gradient_2d(7, 5, dtype=dtype),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("make", list(SVD_SMALL.values()), ids=list(SVD_SMALL))
def test_singular_values_match_dense_svd(make, dtype: torch.dtype) -> None:
    problem = make(dtype)
    _check_singular_values(problem, dtype)
    m, n = problem.shape
    assert problem.n == n and problem.k_max == min(m, n)
    assert problem.reference(3, "LA").tolist() == torch.flip(problem.singular_values, [0])[:3].tolist()
    assert problem.reference(3, "SA").tolist() == problem.singular_values[:3].tolist()


def test_gradient_is_the_square_root_of_the_laplacian() -> None:
    """G^T G is exactly the Laplacian (integer entries), so the closed forms agree."""
    for grad, lap in ((problems.gradient_1d(9), problems.laplacian_1d(9)),
                      (problems.gradient_2d(6, 4), problems.laplacian_2d(6, 4))):
        G = _dense(grad)
        assert torch.equal(G.T @ G, _dense(lap))
        assert torch.equal(grad.singular_values, torch.sqrt(lap.eigenvalues)) or torch.allclose(
            grad.singular_values ** 2, lap.eigenvalues, rtol=1e-15, atol=1e-15)
        assert set(G.unique().tolist()) <= {-1.0, 0.0, 1.0}


def test_singular_value_generator_checks_its_input() -> None:
    with pytest.raises(ValueError, match="must hold min\\(m, n\\) = 3"):
        problems.prescribed_singular_values(3, 5, values=[1.0, 2.0])
    with pytest.raises(ValueError, match="non-negative"):
        problems.prescribed_singular_values(3, 5, values=[1.0, -2.0, 0.5])
    with pytest.raises(ValueError, match="`low` must be >= 0"):
        problems.prescribed_singular_values(3, 5, "linear", low=-1.0)
    with pytest.raises(ValueError, match="dense limit"):
        problems.prescribed_singular_values(60_000, 60_000)


def test_haar_frames_have_orthonormal_columns_in_both_orientations() -> None:
    for m, n in ((50, 20), (20, 50)):
        problem = problems.prescribed_singular_values(m, n, values=np.ones(20), seed=3)
        A = _dense(problem)  # U V^T: every singular value is 1
        torch.testing.assert_close(torch.linalg.svdvals(A), torch.ones(20, dtype=torch.float64), rtol=0, atol=1e-13)


SMALL = {
    "laplacian_1d": lambda dtype: problems.laplacian_1d(50, dtype=dtype),
    "laplacian_2d-square": lambda dtype: problems.laplacian_2d(9, dtype=dtype),
    "laplacian_2d-rect": lambda dtype: problems.laplacian_2d(7, 5, dtype=dtype),
    "laplacian_3d": lambda dtype: problems.laplacian_3d(4, 5, 3, dtype=dtype),
    "diagonal": lambda dtype: problems.diagonal([3.0, -1.0, 2.0, 2.0, 0.5], dtype=dtype),
    "prescribed-linear": lambda dtype: problems.prescribed_spectrum(60, "linear", low=-2.0, high=3.0, dtype=dtype),
    "prescribed-geometric": lambda dtype: problems.prescribed_spectrum(60, "geometric", dtype=dtype),
    "prescribed-gap": lambda dtype: problems.prescribed_spectrum(60, "gap", gap_ratio=0.95, dtype=dtype),
    "prescribed-cluster": lambda dtype: problems.prescribed_spectrum(60, "cluster", dtype=dtype),
    "prescribed-repeated": lambda dtype: problems.prescribed_spectrum(60, "repeated", multiplicity=4, dtype=dtype),
    "wishart": lambda dtype: problems.wishart(40, seed=3, dtype=dtype),
    "wishart-rank-deficient": lambda dtype: problems.wishart(40, m=25, dtype=dtype),
    "graph-laplacian": lambda dtype: problems.random_graph_laplacian(80, p=0.1, seed=2, dtype=dtype),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("make", list(SMALL.values()), ids=list(SMALL))
def test_eigenvalues_match_dense_eigh(make, dtype: torch.dtype) -> None:
    problem = make(dtype)
    _check_spectrum(problem, dtype)
    check_symmetric(problem.operator)
    assert str(problem.n) in problem.description.replace(",", "")


def test_laplacian_closed_form_and_stencil() -> None:
    n = 20
    problem = problems.laplacian_1d(n)
    i = torch.arange(1, n + 1, dtype=torch.float64)
    torch.testing.assert_close(problem.eigenvalues, 2 - 2 * torch.cos(i * math.pi / (n + 1)), rtol=0, atol=1e-14)
    assert isinstance(problem.operator, SparseOperator)
    for make, centre in ((lambda: problems.laplacian_1d(6), 2.0), (lambda: problems.laplacian_2d(6), 4.0),
                         (lambda: problems.laplacian_3d(6), 6.0)):
        A = _dense(make())
        assert torch.all(torch.diagonal(A) == centre)
        off = A - torch.diag(torch.diagonal(A))
        assert set(off.unique().tolist()) <= {0.0, -1.0}
        assert torch.equal(A, A.T)


def test_square_laplacian_has_exact_double_eigenvalues() -> None:
    problem = problems.laplacian_2d(30)
    top = problem.reference(3, "LA")
    assert top[0] > top[1] and top[1] == top[2], "lambda_2 = lambda_3 exactly on a square grid"
    values = problem.eigenvalues
    multiplicities = torch.unique(values, return_counts=True)[1]
    assert int((multiplicities == 2).sum()) >= 400
    rectangular = problems.laplacian_2d(30, 29).eigenvalues
    assert int((torch.unique(rectangular, return_counts=True)[1] > 1).sum()) < int((multiplicities > 1).sum())


def test_laplacian_3d_defaults_to_a_cube() -> None:
    problem = problems.laplacian_3d(5)
    assert problem.n == 125 and problem.params == {"nx": 5, "ny": 5, "nz": 5}


def test_prescribed_spectra_have_their_shape() -> None:
    geometric = problems.prescribed_spectrum(30, "geometric", decay=0.5).eigenvalues.flip(0)
    torch.testing.assert_close(geometric[1:] / geometric[:-1], torch.full((29,), 0.5, dtype=torch.float64))
    gap = problems.prescribed_spectrum(30, "gap", gap_ratio=0.9, high=2.0).eigenvalues
    assert float(gap[-2] / gap[-1]) == pytest.approx(0.9, abs=1e-15)
    cluster = problems.prescribed_spectrum(30, "cluster", cluster_size=4, cluster_spread=1e-3).eigenvalues
    assert float(cluster[-1] - cluster[-4]) == pytest.approx(1e-3, rel=1e-12)
    assert float(cluster[-5]) <= 0.5
    repeated = problems.prescribed_spectrum(30, "repeated", multiplicity=3, high=4.0).eigenvalues
    assert repeated[-3:].tolist() == [4.0, 4.0, 4.0] and float(repeated[-4]) < 4.0
    linear = problems.prescribed_spectrum(5, "linear", low=1.0, high=5.0).eigenvalues
    assert linear.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_prescribed_is_exactly_symmetric_dense_and_seeded() -> None:
    first = problems.prescribed_spectrum(40, seed=7)
    again = problems.prescribed_spectrum(40, seed=7)
    other = problems.prescribed_spectrum(40, seed=8)
    A = _dense(first)
    assert isinstance(first.operator, DenseOperator)
    assert torch.equal(A, A.T)
    assert torch.equal(A, _dense(again))
    assert not torch.allclose(A, _dense(other))


def test_haar_orthogonal_is_orthogonal_with_positive_r() -> None:
    Q = generators._haar_orthogonal(50, torch.Generator().manual_seed(0))
    torch.testing.assert_close(Q.T @ Q, torch.eye(50, dtype=torch.float64), rtol=0, atol=1e-13)


def test_generators_leave_global_rng_alone() -> None:
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()
    problems.prescribed_spectrum(20, seed=1)
    problems.wishart(20, seed=1)
    problems.random_graph_laplacian(50, seed=1)
    assert torch.equal(torch.get_rng_state(), torch_state)
    after = np.random.get_state()
    assert after[0] == numpy_state[0] and np.array_equal(after[1], numpy_state[1]) and after[2:] == numpy_state[2:]


def test_wishart_against_scipy_and_definiteness() -> None:
    problem = problems.wishart(60, seed=5)
    A = _dense(problem).numpy()
    reference = scipy.linalg.eigvalsh(A)  # an independent LAPACK call path
    np.testing.assert_allclose(problem.eigenvalues.numpy(), reference, rtol=0, atol=_tolerance(problem, torch.float64))
    assert float(problem.eigenvalues[0]) > 0
    deficient = problems.wishart(30, m=10)
    zeros = deficient.eigenvalues[:20]
    assert float(zeros.abs().max()) <= _tolerance(deficient, torch.float64)
    assert float(deficient.eigenvalues[20]) > 1e-3


def test_graph_laplacian_structure() -> None:
    problem = problems.random_graph_laplacian(120, p=0.1, seed=4)
    L = problem.operator.to_scipy()
    assert abs(L.sum(axis=1)).max() == 0, "rows of D - W sum to zero"
    assert (L != L.T).nnz == 0
    W = -(L - sp.diags(L.diagonal()))
    assert set(np.unique(W.data).tolist()) <= {1.0}
    assert float(problem.eigenvalues[0]) == pytest.approx(0.0, abs=1e-12)
    edges = W.nnz // 2
    assert f"{edges:,} edges" in problem.description
    expected = 0.1 * 120 * 119 / 2
    assert abs(edges - expected) < 5 * math.sqrt(expected), "edge count ~ Binomial(n(n-1)/2, p)"


def test_upper_pairs_enumerates_the_strict_upper_triangle() -> None:
    for n in (2, 3, 10, 101):
        rows, cols = generators._upper_pairs(np.arange(n * (n - 1) // 2), n)
        expected_rows, expected_cols = np.triu_indices(n, k=1)
        assert np.array_equal(rows, expected_rows) and np.array_equal(cols, expected_cols)


def test_graph_laplacian_eigenvalues_unknown_when_large() -> None:
    problem = problems.random_graph_laplacian(problems.MAX_EIGVALSH_N + 1, p=2e-4)
    assert problem.eigenvalues is None
    assert problem.reference(3) is None


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
def test_mikota_pair_generalized_eigenvalues(dtype: torch.dtype) -> None:
    n = 40
    problem = problems.mikota_pair(n, dtype=dtype)
    assert problem.B is not None and problem.B.dtype == dtype
    K = _dense(problem).numpy()
    M = problem.B.to_dense().to_dense().double().numpy()
    np.testing.assert_array_equal(np.diag(M), (1.0 / np.arange(1, n + 1)).astype(
        np.float32 if dtype == torch.float32 else np.float64))
    computed = scipy.linalg.eigh(K, M, eigvals_only=True)
    exact = problem.eigenvalues.numpy()
    np.testing.assert_array_equal(exact, np.arange(1, n + 1, dtype=np.float64) ** 2)
    # float32 rounds M (relative eps32 per entry), which moves each eigenvalue by ~eps32 relative
    np.testing.assert_allclose(computed, exact, rtol=50 * n * torch.finfo(dtype).eps, atol=0)


def test_mikota_pair_matches_scipy() -> None:
    special = pytest.importorskip("scipy.sparse.linalg._special_sparse_arrays")
    pair = special.MikotaPair(12)
    problem = problems.mikota_pair(12)
    np.testing.assert_array_equal(_dense(problem).numpy(), pair.k.toarray())
    np.testing.assert_array_equal(problem.B.to_dense().to_dense().numpy(), pair.m.toarray())
    np.testing.assert_array_equal(problem.eigenvalues.numpy(), pair.eigenvalues().astype(np.float64))


# --------------------------------------------------------------------------------------
# Problem.reference
# --------------------------------------------------------------------------------------
def test_reference_orders_like_the_solvers() -> None:
    problem = problems.diagonal([-5.0, -1.0, 0.0, 2.0, 3.0])
    assert problem.reference(5, "LA").tolist() == [3.0, 2.0, 0.0, -1.0, -5.0]
    assert problem.reference(2, "SA").tolist() == [-5.0, -1.0]
    assert problem.reference(3, "LM").tolist() == [-5.0, 3.0, 2.0]
    assert problem.reference(4, "BE").tolist() == [3.0, -5.0, 2.0, -1.0]
    assert problem.reference(3, "la").tolist() == [3.0, 2.0, 0.0]
    for which in ("LA", "SA", "LM", "BE"):
        values = problem.eigenvalues
        assert torch.equal(problem.reference(5, which), values[select_order(values, which)])


@pytest.mark.parametrize("k, which, message", [
    (0, "LA", "1 <= k <= n = 5"), (6, "LA", "1 <= k <= n = 5"), (2.5, "LA", "must be an integer"),
    (2, "XX", "`which` must be one of"),
])
def test_reference_refuses(k, which, message) -> None:
    with pytest.raises(TypeError if isinstance(k, float) else ValueError, match=message):
        problems.diagonal([1.0, 2.0, 3.0, 4.0, 5.0]).reference(k, which)


# --------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("call, error, message", [
    (lambda: problems.laplacian_1d(0), ValueError, r"`n` must be between 1 and"),
    (lambda: problems.laplacian_1d(2.5), TypeError, "`n` must be an integer"),
    (lambda: problems.laplacian_2d(2000, 2000), ValueError, r"n = 4,000,000, above the sparse limit"),
    (lambda: problems.laplacian_3d(200), ValueError, "above the sparse limit"),
    (lambda: problems.prescribed_spectrum(20_001), ValueError, r"between 1 and 20,000.*dense"),
    (lambda: problems.wishart(50_000), ValueError, r"between 1 and 20,000"),
    (lambda: problems.prescribed_spectrum(10, "zigzag"), ValueError, "`spectrum` must be one of"),
    (lambda: problems.prescribed_spectrum(10, decay=1.5), ValueError, r"`decay` must lie in \(0, 1\)"),
    (lambda: problems.prescribed_spectrum(10, "cluster", cluster_size=11), ValueError, "`cluster_size` must be <="),
    (lambda: problems.prescribed_spectrum(10, "cluster", cluster_spread=0.9), ValueError, "reach the bulk"),
    (lambda: problems.prescribed_spectrum(10, "repeated", multiplicity=11), ValueError, "`multiplicity` must be"),
    (lambda: problems.prescribed_spectrum(10, low=2.0, high=1.0), ValueError, "`low` must be below `high`"),
    (lambda: problems.prescribed_spectrum(10, "geometric", low=-2.0, high=-1.0), ValueError, "must be > 0"),
    (lambda: problems.prescribed_spectrum(10, "gap", low=0.95), ValueError, "below gap_ratio"),
    (lambda: problems.prescribed_spectrum(10, seed=-1), ValueError, "`seed` must be >= 0"),
    (lambda: problems.random_graph_laplacian(10, p=0.0), ValueError, "`p` must be > 0"),
    (lambda: problems.random_graph_laplacian(10, p=1.5), ValueError, r"`p` must lie in \[0, 1\]"),
    (lambda: problems.random_graph_laplacian(1_000_000, p=0.5), ValueError, "expects .* edges, above the limit"),
    (lambda: problems.diagonal([]), ValueError, "non-empty 1-D"),
    (lambda: problems.diagonal([[1.0]]), ValueError, "non-empty 1-D"),
    (lambda: problems.diagonal([1.0, float("nan")]), ValueError, "NaN or Inf"),
    (lambda: problems.diagonal([1j, 2]), TypeError, "must be real"),
    (lambda: problems.diagonal(["a"]), TypeError, "must be real numbers"),
    (lambda: problems.laplacian_1d(5, dtype=torch.int64), TypeError, "`dtype` must be torch.float32"),
    (lambda: problems.laplacian_1d(5, device="nowhere"), ValueError, "`device` must name a torch device"),
])
def test_generators_refuse_bad_arguments(call, error, message) -> None:
    with pytest.raises(error, match=message):
        call()


# --------------------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------------------
def test_registry_lists_every_generator_with_valid_defaults() -> None:
    assert set(GENERATORS) == {"laplacian_1d", "laplacian_2d", "laplacian_3d", "diagonal", "prescribed_spectrum",
                               "wishart", "mikota_pair", "random_graph_laplacian", "prescribed_singular_values",
                               "gradient_2d"}
    assert next(iter(GENERATORS)) == "laplacian_2d"
    for name, spec in GENERATORS.items():
        assert spec.name == name and spec.label and spec.summary
        for param in spec.params:
            assert param.validate(param.default) == param.default, f"{name}.{param.name}"
            assert param.help


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_generate_with_defaults_and_rebuild_from_params(name: str) -> None:
    small = {"laplacian_1d": {"n": 40}, "laplacian_2d": {"nx": 6, "ny": 5}, "laplacian_3d": {"nx": 3, "ny": 4, "nz": 2},
             "prescribed_spectrum": {"n": 30, "spectrum": "cluster"}, "diagonal": {"n": 30, "spacing": "geometric"},
             "wishart": {"n": 30, "m": 45}, "random_graph_laplacian": {"n": 40, "p": 0.2}, "mikota_pair": {"n": 20},
             "prescribed_singular_values": {"m": 40, "n": 25, "spectrum": "gap"}, "gradient_2d": {"nx": 5, "ny": 4}}
    problem = generate(name, **small[name])
    assert isinstance(problem, Problem)
    _check_spectrum(problem, torch.float64)
    rebuilt = generate(problem.name, **problem.params)
    assert torch.equal(_dense(rebuilt), _dense(problem))
    float32 = generate(name, dtype=torch.float32, **small[name])
    assert float32.operator.dtype == torch.float32


def test_generate_app_defaults() -> None:
    problem = generate("laplacian_2d")
    assert problem.n == 900
    assert generate("prescribed_spectrum").n == 500


@pytest.mark.parametrize("call, error, message", [
    (lambda: generate("nope"), ValueError, "unknown generator 'nope'; choose one of"),
    (lambda: generate("laplacian_2d", nz=3), TypeError, r"unexpected parameter\(s\) \['nz'\]"),
    (lambda: generate("laplacian_2d", nx=0), ValueError, "`nx` must be >= 1"),
    (lambda: generate("laplacian_2d", nx=5000), ValueError, "`nx` must be <= 1000"),
    (lambda: generate("prescribed_spectrum", n=30, spectrum="zigzag"), ValueError, "`spectrum` must be one of"),
    (lambda: generate("wishart", n="big"), TypeError, "`n` must be an integer"),
])
def test_generate_validates(call, error, message) -> None:
    with pytest.raises(error, match=message):
        call()
