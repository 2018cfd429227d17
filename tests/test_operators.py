"""The operator contract, for every operator kind, against a dense reference.

One table of cases (linear_operator's ``LinearOperatorTestCase`` idea, in pytest form):
each case builds an operator and the dense matrix it must equal; every contract test
runs over the whole table. Then the symmetry probe and ``as_operator``'s refusals.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from explorer.operators import (
    CallableOperator,
    CountedOperator,
    DeflatedOperator,
    DenseOperator,
    LinearOperator,
    NotSymmetricError,
    ShiftedOperator,
    SparseOperator,
    SymmetrizedOperator,
    as_operator,
    check_symmetric,
    symmetry_error,
)

pytestmark = [
    pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta:UserWarning"),
    pytest.mark.filterwarnings("ignore:Sparse invariant checks are implicitly disabled:UserWarning"),
]

N = 24


def _symmetric(n: int = N, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    X = torch.randn(n, n, generator=generator, dtype=torch.float64)
    return (0.5 * (X + X.T)).to(dtype)


def _sparse_symmetric(n: int = N, seed: int = 0) -> sp.csr_matrix:
    M = sp.random(n, n, density=0.2, random_state=np.random.default_rng(seed), format="csr")
    return sp.csr_matrix(M + M.T + sp.identity(n))


def _nonsymmetric(n: int = N, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, n, generator=generator, dtype=torch.float64)


def _orthonormal(n: int, d: int, seed: int = 2) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(n, d, generator=generator, dtype=torch.float64)).Q


# name -> () -> (operator, dense reference in float64)
def _case_dense64() -> tuple[LinearOperator, torch.Tensor]:
    A = _symmetric()
    return DenseOperator(A), A


def _case_dense32() -> tuple[LinearOperator, torch.Tensor]:
    A = _symmetric(dtype=torch.float32)
    return DenseOperator(A), A.double()


def _case_torch_coo() -> tuple[LinearOperator, torch.Tensor]:
    A = torch.from_numpy(_sparse_symmetric().toarray())
    return as_operator(A.to_sparse_coo()), A


def _case_torch_csr() -> tuple[LinearOperator, torch.Tensor]:
    A = torch.from_numpy(_sparse_symmetric().toarray())
    return as_operator(A.to_sparse_csr()), A


def _case_numpy() -> tuple[LinearOperator, torch.Tensor]:
    A = _symmetric()
    return as_operator(A.numpy()), A


def _case_scipy_csr() -> tuple[LinearOperator, torch.Tensor]:
    M = _sparse_symmetric()
    return as_operator(M), torch.from_numpy(M.toarray())


def _case_scipy_coo() -> tuple[LinearOperator, torch.Tensor]:
    M = _sparse_symmetric(seed=3)
    return as_operator(M.tocoo()), torch.from_numpy(M.toarray())


def _case_sparse_operator() -> tuple[LinearOperator, torch.Tensor]:
    M = _sparse_symmetric(seed=4)
    return SparseOperator(M), torch.from_numpy(M.toarray())


def _case_callable() -> tuple[LinearOperator, torch.Tensor]:
    A = _symmetric(seed=5)
    return CallableOperator(lambda v: A @ v, N), A


def _case_callable_block() -> tuple[LinearOperator, torch.Tensor]:
    A = _symmetric(seed=6)
    return CallableOperator(lambda v: A @ v, N, matmat=lambda X: A @ X), A


def _case_shifted() -> tuple[LinearOperator, torch.Tensor]:
    A = _symmetric(seed=7)
    return ShiftedOperator(DenseOperator(A), 1.5), A - 1.5 * torch.eye(N, dtype=torch.float64)


def _case_deflated() -> tuple[LinearOperator, torch.Tensor]:
    A = _symmetric(seed=8)
    V = _orthonormal(N, 3)
    values = torch.tensor([2.0, -1.0, 0.5], dtype=torch.float64)
    return DeflatedOperator(DenseOperator(A), V, values), A - V @ torch.diag(values) @ V.T


def _case_symmetrized() -> tuple[LinearOperator, torch.Tensor]:
    A = _nonsymmetric()
    return SymmetrizedOperator(DenseOperator(A, is_symmetric=False)), 0.5 * (A + A.T)


def _case_symmetrized_sparse() -> tuple[LinearOperator, torch.Tensor]:
    M = sp.random(N, N, density=0.3, random_state=np.random.default_rng(9), format="csr")
    return as_operator(M, symmetrize=True), torch.from_numpy(0.5 * (M + M.T).toarray())


def _case_counted() -> tuple[LinearOperator, torch.Tensor]:
    M = _sparse_symmetric(seed=10)
    return CountedOperator(SparseOperator(M)), torch.from_numpy(M.toarray())


CASES: dict[str, Callable[[], tuple[LinearOperator, torch.Tensor]]] = {
    "dense-float64": _case_dense64,
    "dense-float32": _case_dense32,
    "torch-sparse-coo": _case_torch_coo,
    "torch-sparse-csr": _case_torch_csr,
    "numpy": _case_numpy,
    "scipy-csr": _case_scipy_csr,
    "scipy-coo": _case_scipy_coo,
    "sparse-operator": _case_sparse_operator,
    "callable": _case_callable,
    "callable-matmat": _case_callable_block,
    "shifted": _case_shifted,
    "deflated": _case_deflated,
    "symmetrized": _case_symmetrized,
    "symmetrized-sparse": _case_symmetrized_sparse,
    "counted": _case_counted,
}


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> tuple[LinearOperator, torch.Tensor]:
    return CASES[request.param]()


def _tolerance(dtype: torch.dtype, A: torch.Tensor) -> float:
    """Forward error of a length-n dot product: <= n eps sum|a||x| (Higham, Thm 3.1); x ~ 1."""
    return 10 * A.shape[0] * torch.finfo(dtype).eps * max(float(A.abs().sum(dim=1).max()), 1.0)


def _probe(n: int, b: int | None, dtype: torch.dtype, seed: int = 11) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    shape = (n,) if b is None else (n, b)
    return torch.rand(shape, generator=generator, dtype=torch.float64).to(dtype)


def test_shape_dtype_device(case: tuple[LinearOperator, torch.Tensor]) -> None:
    op, A = case
    assert op.shape == tuple(A.shape) == (N, N)
    assert op.n == N
    assert op.dtype in (torch.float32, torch.float64)
    assert op.device == torch.device("cpu")


def test_matvec_matches_dense(case: tuple[LinearOperator, torch.Tensor]) -> None:
    op, A = case
    x = _probe(N, None, op.dtype)
    y = op.matvec(x)
    assert y.shape == (N,) and y.dtype == op.dtype
    torch.testing.assert_close(y.double(), A @ x.double(), rtol=0, atol=_tolerance(op.dtype, A))
    torch.testing.assert_close((op @ x).double(), y.double(), rtol=0, atol=0)


def test_matmat_matches_dense(case: tuple[LinearOperator, torch.Tensor]) -> None:
    op, A = case
    X = _probe(N, 5, op.dtype)
    Y = op.matmat(X)
    assert Y.shape == (N, 5) and Y.dtype == op.dtype
    torch.testing.assert_close(Y.double(), A @ X.double(), rtol=0, atol=_tolerance(op.dtype, A))


def test_to_dense_and_diagonal(case: tuple[LinearOperator, torch.Tensor]) -> None:
    op, A = case
    dense = op.to_dense()
    dense = dense.to_dense() if dense.layout != torch.strided else dense
    torch.testing.assert_close(dense.double(), A, rtol=0, atol=_tolerance(op.dtype, A))
    diagonal = op.diagonal()
    if diagonal is not None:
        torch.testing.assert_close(diagonal.double(), torch.diagonal(A), rtol=0, atol=_tolerance(op.dtype, A))


def test_counting(case: tuple[LinearOperator, torch.Tensor]) -> None:
    op, _ = case
    op.reset_count()
    assert op.n_matvec == 0
    op.matvec(_probe(N, None, op.dtype))
    assert op.n_matvec == 1
    op.matmat(_probe(N, 3, op.dtype))
    assert op.n_matvec == 4, "one matmat of b columns counts b matvecs"
    op @ _probe(N, 2, op.dtype)
    assert op.n_matvec == 6
    op.reset_count()
    assert op.n_matvec == 0


def test_shape_errors_name_the_method(case: tuple[LinearOperator, torch.Tensor]) -> None:
    op, _ = case
    with pytest.raises(ValueError, match=rf"`matvec` expects a vector of shape \({N},\)"):
        op.matvec(torch.zeros(N + 1, dtype=op.dtype))
    with pytest.raises(ValueError, match=rf"`matmat` expects a matrix of shape \({N}, b\)"):
        op.matmat(torch.zeros(N + 1, 2, dtype=op.dtype))
    assert op.n_matvec == 0, "a refused call must not be counted"


def test_symmetric_rmatmat_is_matmat(case: tuple[LinearOperator, torch.Tensor]) -> None:
    op, A = case
    assert op.is_symmetric
    X = _probe(N, 2, op.dtype)
    torch.testing.assert_close(op.rmatmat(X).double(), A.T @ X.double(), rtol=0, atol=_tolerance(op.dtype, A))


@pytest.mark.parametrize("target", [torch.float32, torch.float64])
def test_to_dtype(case: tuple[LinearOperator, torch.Tensor], target: torch.dtype) -> None:
    op, A = case
    if target == op.dtype:
        assert op.to(dtype=target) is op, "to() with nothing to change returns self"
        return
    try:
        moved = op.to(dtype=target)
    except TypeError as err:  # matrix-free operators may not know how to convert
        assert type(op).__name__ in str(err)
        return
    assert moved.dtype == target and moved.shape == op.shape
    x = _probe(N, None, target)
    # the converted matrix carries the rounding of the coarser dtype
    coarse = torch.float32 if torch.float32 in (op.dtype, target) else torch.float64
    torch.testing.assert_close(moved.matvec(x).double(), A @ x.double(), rtol=0, atol=_tolerance(coarse, A))
    assert op.n_matvec == 0, "the copy counts its own matvecs"


def test_counted_operator_is_a_private_counter() -> None:
    base = DenseOperator(_symmetric())
    first, second = CountedOperator(base), CountedOperator(base)
    first.matmat(torch.ones(N, 3, dtype=torch.float64))
    second.matvec(torch.ones(N, dtype=torch.float64))
    assert (first.n_matvec, second.n_matvec, base.n_matvec) == (3, 1, 4)


def test_callable_operator_without_matmat_applies_columns() -> None:
    A = _symmetric()
    calls = []

    def matvec(v: torch.Tensor) -> torch.Tensor:
        calls.append(v.shape)
        return A @ v

    op = CallableOperator(matvec, N)
    op.matmat(torch.ones(N, 4, dtype=torch.float64))
    assert calls == [(N,)] * 4


# --------------------------------------------------------------------------------------
# Symmetry probe
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_probe_passes_symmetric(dtype: torch.dtype) -> None:
    A = _symmetric(200, dtype=dtype)
    error = check_symmetric(DenseOperator(A))
    assert error <= 100 * math.sqrt(200) * torch.finfo(dtype).eps


def test_probe_passes_float32_product_symmetric_up_to_rounding() -> None:
    generator = torch.Generator().manual_seed(3)
    X = torch.randn(300, 300, generator=generator, dtype=torch.float32)
    A = X @ X.T  # symmetric only up to float32 rounding of the products
    as_operator(A)  # must not raise
    assert symmetry_error(DenseOperator(A)) < 1e-5


def test_probe_catches_nonsymmetric() -> None:
    with pytest.raises(NotSymmetricError, match="not symmetric.*symmetrize=True") as info:
        as_operator(_nonsymmetric())
    assert info.value.relative_error > info.value.tolerance
    assert isinstance(info.value, ValueError)


def test_probe_catches_one_asymmetric_entry_in_sparse() -> None:
    M = _sparse_symmetric().tolil()
    M[0, 5] += 1.0
    with pytest.raises(NotSymmetricError):
        as_operator(M.tocsr())


def test_symmetrize_is_opt_in() -> None:
    A = _nonsymmetric()
    op = as_operator(A, symmetrize=True)
    assert isinstance(op, SymmetrizedOperator)
    torch.testing.assert_close(op.to_dense(), 0.5 * (A + A.T), rtol=0, atol=1e-14)
    check_symmetric(op)


def test_check_symmetry_can_be_skipped() -> None:
    op = as_operator(_nonsymmetric(), check_symmetry=False)
    assert op.shape == (N, N)


# --------------------------------------------------------------------------------------
# as_operator refusals
# --------------------------------------------------------------------------------------
BAD_INPUTS = [
    pytest.param(np.ones((3, 4)), ValueError, r"must be square, got shape \(3, 4\)", id="non-square"),
    pytest.param(torch.ones(3, 4).to_sparse(), ValueError, "must be square", id="non-square-sparse"),
    pytest.param(np.zeros((0, 0)), ValueError, "is empty", id="empty"),
    pytest.param(sp.csr_matrix((0, 0)), ValueError, "is empty", id="empty-sparse"),
    pytest.param(np.array([[1.0, np.nan], [np.nan, 1.0]]), ValueError, "NaN or Inf", id="nan"),
    pytest.param(np.array([[1.0, np.inf], [np.inf, 1.0]]), ValueError, "NaN or Inf", id="inf"),
    pytest.param(sp.csr_matrix(np.array([[1.0, np.nan], [np.nan, 1.0]])), ValueError, "NaN or Inf", id="nan-sparse"),
    pytest.param(torch.tensor([[1.0, float("nan")], [float("nan"), 1.0]]).to_sparse(), ValueError, "NaN or Inf",
                 id="nan-torch-sparse"),
    pytest.param(np.eye(3) * (1 + 1j), TypeError, "complex", id="complex-numpy"),
    pytest.param(torch.eye(3, dtype=torch.complex128), TypeError, "complex", id="complex-torch"),
    pytest.param(np.ones((2, 2, 2)), ValueError, "2-D matrix, got 3 dimensions", id="3-D"),
    pytest.param(np.ones(4), ValueError, "2-D matrix, got 1 dimensions", id="1-D"),
    pytest.param(np.array([[object(), 1], [1, 1]], dtype=object), TypeError, "dtype object", id="object"),
    pytest.param("not a matrix", TypeError, "must be a torch tensor, numpy array", id="string"),
    pytest.param(lambda v: v, ValueError, "needs its size: pass `n`", id="callable-without-n"),
]


@pytest.mark.parametrize("data, error, message", BAD_INPUTS)
def test_as_operator_refuses(data: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        as_operator(data)


def test_as_operator_refuses_unsupported_dtype() -> None:
    with pytest.raises(TypeError, match="float32 or float64"):
        as_operator(np.eye(3), dtype=torch.int32)


def test_as_operator_converts_integers_and_keeps_float32() -> None:
    assert as_operator(np.eye(3, dtype=np.int64)).dtype == torch.float64
    assert as_operator(np.eye(3, dtype=np.float32)).dtype == torch.float32
    assert as_operator(np.eye(3), dtype=torch.float32).dtype == torch.float32
    op = as_operator(lambda v: 2 * v, n=5)
    torch.testing.assert_close(op.matvec(torch.ones(5, dtype=torch.float64)), 2 * torch.ones(5, dtype=torch.float64))


def test_as_operator_passes_operators_through() -> None:
    op = DenseOperator(_symmetric())
    assert as_operator(op) is op


@pytest.mark.parametrize("kind", ["reused torch buffer", "reused numpy buffer", "a view", "(n, 1)", "float32 result",
                                  "writes into its input", "numpy, writes into its input"])
def test_a_matrix_free_function_may_reuse_its_output_buffer(kind: str) -> None:
    """A function writing into one preallocated ``out`` (or returning a view of it, a column,
    another dtype) is as good as one returning fresh tensors: every solver stores products,
    so before this the stored ones all turned into the last (dense eigh of diag(1..30) via
    to_dense gave [97.2, 0.0]; Lanczos broke down, power iteration missed). A function that
    computes in place on its input gets a private copy: solvers pass rows of their basis, and
    before this Lanczos returned [321662, -57317] as CONVERGED, LOBPCG broke down."""
    from explorer.solvers import SOLVERS

    d = torch.arange(1.0, 31.0, dtype=torch.float64)
    buffer, numpy_buffer = torch.zeros(30, dtype=torch.float64), np.zeros(30)
    functions = {
        "reused torch buffer": lambda x: torch.mul(d, x, out=buffer),
        "reused numpy buffer": lambda x: np.multiply(d.numpy(), x.numpy(), out=numpy_buffer),
        "a view": lambda x: torch.mul(d, x, out=buffer)[:],
        "(n, 1)": lambda x: (d * x).unsqueeze(1),
        "float32 result": lambda x: (d * x).float(),
        "writes into its input": lambda x: x.mul_(d),
        "numpy, writes into its input": lambda x: np.multiply(x.numpy(), d.numpy(), out=x.numpy()),
    }
    op = CallableOperator(functions[kind], 30, dtype=torch.float64)
    x = torch.ones(30, dtype=torch.float64)
    torch.testing.assert_close(op.matvec(x), d)
    torch.testing.assert_close(op.matmat(torch.ones(30, 2, dtype=torch.float64)), torch.stack([d, d], dim=1))
    assert torch.equal(x, torch.ones(30, dtype=torch.float64))  # the caller's vector is untouched
    for name, spec in SOLVERS.items():
        which = "LA" if "LA" in spec.which else spec.which[0]
        result = spec.fn(op, 2, which=which, tol=1e-8, seed=0, max_iter=5000)
        if name == "randomized_svd":  # no fast decay here: only the values it reports are checked
            assert result.eigenvalues[0] == pytest.approx(30.0, rel=1e-3), name
            continue
        expected = torch.tensor([30.0, 29.0], dtype=torch.float64)
        # float32 results: the operator is exact to ~eps_32 ||A||
        tol = 1e-5 if kind == "float32 result" else 1e-7
        torch.testing.assert_close(result.eigenvalues, expected, rtol=tol, atol=0.0, msg=name)


def test_a_block_function_that_writes_into_its_input_gets_a_private_copy() -> None:
    from explorer.solvers import lobpcg

    d = torch.arange(1.0, 31.0, dtype=torch.float64)
    op = CallableOperator(lambda x: d * x, 30, matmat=lambda X: X.mul_(d.unsqueeze(1)))
    X = torch.ones(30, 3, dtype=torch.float64)
    torch.testing.assert_close(op.matmat(X), d.unsqueeze(1).expand(30, 3))
    assert torch.equal(X, torch.ones(30, 3, dtype=torch.float64))
    result = lobpcg(op, 2, which="LA", tol=1e-8, seed=0)
    torch.testing.assert_close(result.eigenvalues, torch.tensor([30.0, 29.0], dtype=torch.float64),
                               rtol=1e-7, atol=0.0)


@pytest.mark.parametrize(("function", "error", "match"), [
    (lambda x: 3.0, TypeError, r"must return a torch.Tensor or a numpy array of shape \(30,\), got float"),
    (lambda x: torch.zeros(31, dtype=torch.float64), ValueError, r"must return shape \(30,\) .* got \(31,\)"),
])
def test_a_matrix_free_function_returning_the_wrong_thing_is_named(function, error, match) -> None:  # noqa: ANN001
    with pytest.raises(error, match=match):
        CallableOperator(function, 30).matvec(torch.ones(30, dtype=torch.float64))


def test_matvecs_into_writes_the_rows_of_a_sparse_product_bit_for_bit_and_counts_them() -> None:
    """Vectors stored as rows (LOBPCG's blocks, Lanczos's basis) go through scipy's CSR kernel
    row by row into the caller's buffer: the same numbers as ``matmat`` (the same kernel), the
    same count; operators without such a kernel say so and count nothing."""
    from explorer.solvers._common import ProductUnits, UnitsOperator

    rng = np.random.default_rng(0)
    M = sp.random(300, 300, density=0.05, random_state=1, format="csr")
    M = (M + M.T).tocsr()
    op = SparseOperator(M)
    Xt = torch.from_numpy(rng.standard_normal((7, 300)))
    expected = op.matmat(Xt.T).T
    counted = CountedOperator(op)
    out = torch.full_like(Xt, float("nan"))  # the kernel accumulates: the buffer must be cleared first
    assert counted.rows_kernel and counted.matvecs_into(Xt, out)
    assert torch.equal(out, expected) and counted.n_matvec == 7
    # a slice of rows that is not contiguous, and a float32 block for a float64 matrix: still right
    strided = torch.from_numpy(rng.standard_normal((7, 600)))[:, ::2]
    out2 = torch.empty(7, 300, dtype=torch.float64)
    assert op.matvecs_into(strided, out2)
    torch.testing.assert_close(out2, op.matmat(strided.T.contiguous()).T, rtol=1e-14, atol=0.0)
    # in a solver's units (ProductUnits): 2^-e A once the first product is large
    units = ProductUnits(torch.float64)
    big = UnitsOperator(CountedOperator(SparseOperator(M * 2.0**600)), units)
    out3 = torch.empty_like(Xt)
    assert big.matvecs_into(Xt, out3) and units.scale > 2.0**500
    torch.testing.assert_close(out3 * units.scale, expected * 2.0**600, rtol=1e-15, atol=0.0)
    # no kernel: a dense matrix not declared symmetric and matrix-free operators decline and count nothing
    for other in (CountedOperator(DenseOperator(torch.from_numpy(M.toarray()), is_symmetric=False)),
                  CountedOperator(CallableOperator(lambda v: v * 2.0, 300))):
        assert not other.rows_kernel and not other.matvecs_into(Xt, torch.empty_like(Xt))
        assert other.n_matvec == 0


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_an_exactly_symmetric_dense_matrix_is_applied_by_symv_and_agrees_with_gemm(dtype: torch.dtype) -> None:
    """A dense matrix equal to its transpose bit for bit takes the SYMV path (one triangle, half
    the memory traffic) for a few vectors and the rows' GEMM for more; every entry agrees with
    ``A @ X`` to the rounding of an n-term sum, and counts are unchanged. One entry off by one
    ulp, or ``is_symmetric=False``, keeps the plain product (bit for bit ``A @ X``)."""
    n = 200
    g = torch.Generator().manual_seed(0)
    A = torch.randn(n, n, dtype=torch.float64, generator=g)
    A = (A + A.T).to(dtype)
    op = CountedOperator(DenseOperator(A))
    assert op.rows_kernel
    eps = torch.finfo(dtype).eps
    for b in (1, 3, 12):  # 12 > _SYMV_MAX_ROWS: the GEMM branch
        X = torch.randn(n, b, dtype=dtype, generator=g)
        expected = A @ X
        # a sum of n products is exact to n eps times the sum of their magnitudes
        atol = float(n * eps * (A.abs() @ X.abs()).max())
        torch.testing.assert_close(op.matmat(X), expected, rtol=0.0, atol=atol)
        assert op.matmat(X).is_contiguous()
        out = torch.full((b, n), float("nan"), dtype=dtype)
        assert op.matvecs_into(X.T.contiguous(), out)
        torch.testing.assert_close(out, expected.T, rtol=0.0, atol=atol)
        torch.testing.assert_close(op.matvec(X[:, 0]), expected[:, 0], rtol=0.0, atol=atol)
    assert op.n_matvec == 3 * (1 + 3 + 12) + 3  # two matmat calls and one matvecs_into per b, three matvecs
    off = A.clone()
    off[3, 7] = torch.nextafter(off[3, 7], torch.tensor(math.inf, dtype=dtype))
    x = torch.randn(n, dtype=dtype, generator=g)
    for plain in (DenseOperator(off), DenseOperator(A, is_symmetric=False)):
        assert not plain.rows_kernel
        assert torch.equal(plain.matvec(x), plain.matrix @ x)
