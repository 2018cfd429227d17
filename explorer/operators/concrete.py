"""Concrete operators: dense tensors, sparse matrices, matrix-free callables, wrappers."""

from __future__ import annotations

import math
import sys
import warnings
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp
import torch
from scipy.linalg import blas as _blas

from explorer.operators.base import LinearOperator

try:  # scipy's CSR SpMV that accumulates into a given output (what ``A @ x`` runs); private API
    from scipy.sparse._sparsetools import csr_matvec as _csr_matvec
except ImportError:  # pragma: no cover - a scipy without it: SparseOperator.matvecs_into is then off
    _csr_matvec = None

__all__ = [
    "DenseOperator",
    "SparseOperator",
    "CallableOperator",
    "ShiftedOperator",
    "DeflatedOperator",
    "SymmetrizedOperator",
    "CountedOperator",
]


# Dense symmetric products on the CPU (``DenseOperator``): up to this many vectors go through
# BLAS ``?symv`` one by one, more through one GEMM on rows. SYMV reads one triangle of the matrix
# and uses each entry twice, so a product streams half the bytes of GEMV: n = 4000, one thread,
# 2.2-3.4 ms against 5.5 ms; a block of 2 costs 4.9 ms by SYMV, 10.8 ms by the best GEMM layout
# (the libraries' 2-column GEMM reads the matrix twice) and 21.6 ms by ``A @ X`` on an (n, 2)
# tensor; SYMV stays ahead up to 8 vectors at n = 1000 and 4000 (docs/benchmarks-lanczos.md,
# "Dense symmetric products").
_SYMV_MAX_ROWS = 8

# Exact-symmetry test: strips of this many rows against the matching columns (cache-friendly;
# ``torch.equal(A, A.T)`` took 85 ms at n = 4000, the strips 27 ms).
_SYMMETRY_STRIP = 128


def exactly_symmetric(A: torch.Tensor) -> bool:
    """Whether the square matrix ``A`` equals its transpose bit for bit (upper triangle against
    lower, one strip of rows at a time)."""
    n = A.shape[0]
    for r0 in range(0, n, _SYMMETRY_STRIP):
        r1 = min(n, r0 + _SYMMETRY_STRIP)
        if not torch.equal(A[r0:r1, r0:], A[r0:, r0:r1].T):
            return False
    return True


class DenseOperator(LinearOperator):
    """A dense ``torch.Tensor`` (m, n).

    On the CPU a float32/float64 matrix that is *exactly* symmetric (checked once, bit for bit,
    at the first product: ``is_symmetric`` alone is a probe with a tolerance) is applied by
    BLAS ``?symv`` (scipy's BLAS) for up to ``_SYMV_MAX_ROWS`` vectors and by ``X^T A`` on rows
    otherwise: the same matrix, about half the memory traffic of ``A @ x`` (see
    ``_SYMV_MAX_ROWS``). Results agree with ``A @ X`` to rounding (the sums run in another
    order). Elsewhere, and for a matrix changed in place after its first product, ``A @ X``.
    """

    def __init__(self, matrix: torch.Tensor, *, is_symmetric: bool = True) -> None:
        super().__init__(tuple(matrix.shape), matrix.dtype, matrix.device, is_symmetric=is_symmetric)
        self.matrix = matrix
        self._symv_state: Any = None  # unknown; then False or (the BLAS routine, the matrix as F-order numpy)

    def _symv(self) -> Any:
        """(``?symv``, the matrix as an F-ordered numpy array) where the symmetric CPU path
        applies (decided once), else False."""
        state = self._symv_state
        if state is None:
            A = self.matrix
            state = False
            if (self.is_symmetric and A.device.type == "cpu" and A.dtype in (torch.float32, torch.float64)
                    and A.ndim == 2 and A.shape[0] == A.shape[1] and A.is_contiguous() and not A.requires_grad
                    and exactly_symmetric(A)):
                routine = _blas.dsymv if A.dtype == torch.float64 else _blas.ssymv
                state = (routine, A.numpy().T)  # the transpose of a C-ordered symmetric A is A, F-ordered
            self._symv_state = state
        return state

    def _matmat(self, X: torch.Tensor) -> torch.Tensor:
        if self._symv() and not X.requires_grad:
            out = X.new_empty((X.shape[1], X.shape[0]))
            # a few columns as contiguous rows take the SYMV branch (the copy is b x n, next to the
            # n x n matrix); more go to the GEMM on the transposed view as they are
            Xt = X.T.contiguous() if X.shape[1] <= _SYMV_MAX_ROWS else X.T
            self._matvecs_into(Xt, out)
            return out.T.contiguous()
        return self.matrix @ X

    def _matvec(self, x: torch.Tensor) -> torch.Tensor:
        state = self._symv()
        if state and x.dtype == self.dtype and not x.requires_grad:
            routine, AF = state
            return torch.from_numpy(routine(1.0, AF, x.numpy()))
        return self.matrix @ x

    @property
    def rows_kernel(self) -> bool:
        return bool(self._symv())

    def _matvecs_into(self, Xt: torch.Tensor, out: torch.Tensor) -> None:
        """``out = Xt A`` (= (A Xt^T)^T, A symmetric): ``?symv`` per row for a few rows, straight
        into ``out``'s rows; one GEMM on the rows for more (see ``_SYMV_MAX_ROWS``)."""
        routine, AF = self._symv()
        if (Xt.shape[0] > _SYMV_MAX_ROWS or Xt.dtype != self.dtype or not out.is_contiguous()
                or Xt.stride(-1) != 1):
            torch.mm(Xt, self.matrix, out=out)
            return
        X, Y = Xt.numpy(), out.numpy()
        for i in range(X.shape[0]):
            routine(1.0, AF, X[i], beta=0.0, y=Y[i], overwrite_y=1)

    def _rmatmat(self, X: torch.Tensor) -> torch.Tensor:
        return self.matrix.T @ X

    def _to(self, device: torch.device, dtype: torch.dtype) -> "DenseOperator":
        return DenseOperator(self.matrix.to(device=device, dtype=dtype), is_symmetric=self.is_symmetric)

    def diagonal(self) -> torch.Tensor:
        return torch.diagonal(self.matrix).clone()

    def to_dense(self) -> torch.Tensor:
        return self.matrix

    @property
    def kind(self) -> str:
        return "dense"


class SparseOperator(LinearOperator):
    """A sparse matrix, stored as torch sparse CSR.

    On the CPU the product runs through scipy's CSR kernel on the *same* memory
    (zero-copy views of crow/col/values): torch's CSR matvec is slower than scipy's
    on one CPU thread (docs/benchmarks.md). On other devices the torch CSR product
    is used.
    """

    def __init__(self, matrix: torch.Tensor | sp.spmatrix | sp.sparray, *, is_symmetric: bool = True) -> None:
        if isinstance(matrix, torch.Tensor):
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
                csr = matrix.to_sparse_csr() if matrix.layout != torch.sparse_csr else matrix
        else:
            scipy_csr = sp.csr_matrix(matrix)
            scipy_csr.sum_duplicates()
            scipy_csr.sort_indices()
            # Indices come from a validated scipy CSR (sorted, deduplicated), so torch's own
            # invariant check would only repeat that work; opting out explicitly also silences
            # its "checks are implicitly disabled" warning.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
                csr = torch.sparse_csr_tensor(
                    torch.from_numpy(scipy_csr.indptr.astype(np.int64)),
                    torch.from_numpy(scipy_csr.indices.astype(np.int64)),
                    torch.from_numpy(np.ascontiguousarray(scipy_csr.data)),
                    size=scipy_csr.shape,
                    check_invariants=False,
                )
        super().__init__(tuple(csr.shape), csr.dtype, csr.device, is_symmetric=is_symmetric)
        self.matrix = csr
        self._scipy: sp.csr_matrix | None = None
        if csr.device.type == "cpu":
            self._scipy = sp.csr_matrix(
                (csr.values().numpy(), csr.col_indices().numpy(), csr.crow_indices().numpy()),
                shape=tuple(csr.shape),
                copy=False,
            )

    def _matmat(self, X: torch.Tensor) -> torch.Tensor:
        if self._scipy is not None:
            return torch.from_numpy(np.asarray(self._scipy @ X.numpy()))
        return self.matrix @ X

    def _matvec(self, x: torch.Tensor) -> torch.Tensor:
        if self._scipy is not None:
            return torch.from_numpy(self._scipy @ x.numpy())
        return (self.matrix @ x.unsqueeze(1)).squeeze(1)

    def _rmatmat(self, X: torch.Tensor) -> torch.Tensor:
        if self._scipy is not None:
            return torch.from_numpy(np.asarray(self._scipy.T @ X.numpy()))
        return self.matrix.t() @ X

    @property
    def rows_kernel(self) -> bool:
        return self._scipy is not None and _csr_matvec is not None

    def _matvecs_into(self, Xt: torch.Tensor, out: torch.Tensor) -> None:
        """scipy's single-vector CSR kernel on each row, accumulating into ``out``'s rows in place
        (the kernel ``A @ x`` runs: the same numbers, without the allocation and the copies)."""
        A = self._scipy
        assert A is not None and _csr_matvec is not None
        X = Xt.numpy()
        if X.dtype != A.dtype or not (out.is_contiguous() and X.flags.c_contiguous):
            out.copy_(torch.from_numpy(np.asarray(A @ X.T)).T)
            return
        Y = out.numpy()
        Y.fill(0.0)
        rows, cols = A.shape
        for i in range(X.shape[0]):
            _csr_matvec(rows, cols, A.indptr, A.indices, A.data, X[i], Y[i])

    def affine_rows_kernel(self, scale: float, shift: float) -> Callable[[torch.Tensor, torch.Tensor], None] | None:
        """On the CPU: scipy's CSR kernel on ``M = scale (A - shift I)``, a CSR copy built here
        (O(nnz) memory; the diagonal joins the pattern where it is missing). See the base class."""
        A = self._scipy
        if A is None or _csr_matvec is None:
            return None
        M = sp.csr_matrix(A - shift * sp.identity(A.shape[0], dtype=A.dtype, format="csr"))
        M.data *= scale
        rows, cols = M.shape
        indptr, indices, data = M.indptr, M.indices, M.data

        def kernel(Xt: torch.Tensor, out: torch.Tensor) -> None:
            self._count(Xt.shape[0])
            X, Y = Xt.numpy(), out.numpy()
            if X.dtype != data.dtype or not (X.flags.c_contiguous and Y.flags.c_contiguous):
                out.add_(torch.from_numpy(np.asarray(M @ X.T)).T)
                return
            for i in range(X.shape[0]):
                _csr_matvec(rows, cols, indptr, indices, data, X[i], Y[i])

        return kernel

    def _to(self, device: torch.device, dtype: torch.dtype) -> "SparseOperator":
        return SparseOperator(self.matrix.to(device=device, dtype=dtype), is_symmetric=self.is_symmetric)

    def diagonal(self) -> torch.Tensor:
        if self._scipy is not None:
            return torch.from_numpy(self._scipy.diagonal().copy())
        return self.matrix.to_dense().diagonal()  # pragma: no cover - non-CPU path

    def to_scipy(self) -> sp.csr_matrix:
        """The matrix as scipy CSR (a copy to host memory when on a device)."""
        if self._scipy is not None:
            return self._scipy
        cpu = self.matrix.cpu()
        return sp.csr_matrix((cpu.values().numpy(), cpu.col_indices().numpy(), cpu.crow_indices().numpy()),
                             shape=tuple(cpu.shape))

    def to_dense(self) -> torch.Tensor:
        return self.matrix.to_dense()

    @property
    def nnz(self) -> int:
        return int(self.matrix.values().numel())

    @property
    def kind(self) -> str:
        return "sparse"


class CallableOperator(LinearOperator):
    """A matrix-free operator from a function ``v -> A v``.

    Args:
        matvec: maps (n,) to (n,). When ``matmat`` is not given, blocks are applied
            column by column.
        n: size.
        dtype, device: of the vectors the function accepts.
        matmat: optional ``X -> A X`` for (n, b) blocks.
        is_symmetric: declared symmetry.

    The functions may return a torch tensor or a numpy array (of the right size; (n, 1) is
    taken as (n,)), and may reuse one output buffer from call to call or return their
    input: a result that anything else still references (the input itself, a view, a
    buffer the function keeps) is copied before a solver holds on to it. Without that, a
    function writing into a preallocated ``out`` would give every stored product the value of
    the last one. A fresh result is used as it is.
    The function gets a private copy of its input, so it may also compute in place
    (``lambda v: v.mul_(d)``): solvers pass rows of their basis, and a function that wrote
    into them would corrupt the basis. The copy
    costs one pass over the vector, nothing next to a Hessian-vector product.
    """

    def __init__(self, matvec: Callable[[torch.Tensor], torch.Tensor], n: int, *,
                 dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu",
                 matmat: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 is_symmetric: bool = True, name: str = "matrix-free") -> None:
        super().__init__((n, n), dtype, device, is_symmetric=is_symmetric)
        self._fn = matvec
        self._fn_block = matmat
        self.name = name

    def _matvec(self, x: torch.Tensor) -> torch.Tensor:
        arg = x.clone()  # the function may write into its input; x is often a row of the solver's basis
        y = self._fn(arg)
        return self._own(y, arg, (self.shape[0],), sys.getrefcount(y) - (y is arg), "matvec")

    def _matmat(self, X: torch.Tensor) -> torch.Tensor:
        if self._fn_block is not None:
            arg = X.clone()
            Y = self._fn_block(arg)
            return self._own(Y, arg, (self.shape[0], X.shape[1]), sys.getrefcount(Y) - (Y is arg), "matmat")
        return torch.stack([self._matvec(X[:, j]) for j in range(X.shape[1])], dim=1)

    def _own(self, y: Any, arg: torch.Tensor, shape: tuple[int, ...], refs: int, which: str) -> torch.Tensor:
        """The function's result as a tensor of ``shape`` that nothing else references.

        ``arg`` is the private copy of the input the function was given (so returning it,
        e.g. after ``v.mul_(d)``, needs no further copy); ``refs`` is ``sys.getrefcount(y)``
        taken in the caller, less the caller's ``arg`` variable when ``y is arg``: a fresh
        result has exactly two references (the caller's variable and getrefcount's argument).
        """
        shared = refs > 2
        if isinstance(y, np.ndarray):
            shared = shared or y.base is not None
            y = torch.from_numpy(y)
        elif isinstance(y, torch.Tensor):
            if y.layout != torch.strided:  # a sparse result: densify (a fresh tensor)
                y, shared = y.to_dense(), False
            shared = shared or y._base is not None
            if y is not arg and y.numel() > 0 and y.data_ptr() == arg.data_ptr():
                shared = True  # another tensor over the private input: copy rather than alias it
        else:
            raise TypeError(f"the {which} function of this matrix-free operator must return a torch.Tensor or a "
                            f"numpy array of shape {shape}, got {type(y).__name__}")
        if y.shape != shape:
            if y.numel() != math.prod(shape):
                raise ValueError(f"the {which} function of this matrix-free operator must return shape {shape} "
                                 f"for an input of shape {tuple(arg.shape)}, got {tuple(y.shape)}")
            y = y.reshape(shape)
        if y.dtype != self.dtype or y.device != self.device:
            return y.to(device=self.device, dtype=self.dtype)  # a copy
        return y.clone() if shared else y


class ShiftedOperator(LinearOperator):
    """``A - sigma I``."""

    def __init__(self, base: LinearOperator, sigma: float) -> None:
        super().__init__(base.shape, base.dtype, base.device, is_symmetric=base.is_symmetric)
        self.base = base
        self.sigma = float(sigma)

    def _matmat(self, X: torch.Tensor) -> torch.Tensor:
        return self.base._matmat(X) - self.sigma * X

    def _matvec(self, x: torch.Tensor) -> torch.Tensor:
        return self.base._matvec(x) - self.sigma * x

    def _to(self, device: torch.device, dtype: torch.dtype) -> "ShiftedOperator":
        return ShiftedOperator(self.base.to(device, dtype), self.sigma)

    def diagonal(self) -> torch.Tensor | None:
        d = self.base.diagonal()
        return None if d is None else d - self.sigma


class DeflatedOperator(LinearOperator):
    """``A - V diag(values) V^T`` (Hotelling deflation; V has orthonormal columns)."""

    def __init__(self, base: LinearOperator, vectors: torch.Tensor, values: torch.Tensor) -> None:
        super().__init__(base.shape, base.dtype, base.device, is_symmetric=base.is_symmetric)
        if vectors.ndim == 1:
            vectors = vectors.unsqueeze(1)
        self.base = base
        self.vectors = vectors.to(base.device, base.dtype)  # (n, d)
        self.values = values.reshape(-1).to(base.device, base.dtype)  # (d,)

    def _matmat(self, X: torch.Tensor) -> torch.Tensor:
        return self.base._matmat(X) - self.vectors @ (self.values.unsqueeze(1) * (self.vectors.T @ X))

    def _to(self, device: torch.device, dtype: torch.dtype) -> "DeflatedOperator":
        return DeflatedOperator(self.base.to(device, dtype), self.vectors, self.values)


class SymmetrizedOperator(LinearOperator):
    """``(A + A^T) / 2`` for an operator that provides ``A^T``."""

    def __init__(self, base: LinearOperator) -> None:
        super().__init__(base.shape, base.dtype, base.device, is_symmetric=True)
        self.base = base

    def _matmat(self, X: torch.Tensor) -> torch.Tensor:
        return 0.5 * (self.base._matmat(X) + self.base._rmatmat(X))

    def _to(self, device: torch.device, dtype: torch.dtype) -> "SymmetrizedOperator":
        return SymmetrizedOperator(self.base.to(device, dtype))

    def diagonal(self) -> torch.Tensor | None:
        return self.base.diagonal()


class CountedOperator(LinearOperator):
    """A per-solve view that counts its own applications.

    Operators may be shared (across threads, across app sessions), so each solve
    wraps its operator in a fresh ``CountedOperator`` and reads ``n_matvec`` from it.
    """

    def __init__(self, base: LinearOperator) -> None:
        super().__init__(base.shape, base.dtype, base.device, is_symmetric=base.is_symmetric)
        self.base = base
        self.space = base.space  # sharded vectors stay sharded through the count

    def _matmat(self, X: torch.Tensor) -> torch.Tensor:
        return self.base.matmat(X)

    def _matvec(self, x: torch.Tensor) -> torch.Tensor:
        return self.base.matvec(x)

    def _rmatmat(self, X: torch.Tensor) -> torch.Tensor:
        return self.base._rmatmat(X)

    def diagonal(self) -> torch.Tensor | None:
        return self.base.diagonal()

    def to_dense(self) -> torch.Tensor:
        return self.base.to_dense()

    @property
    def kind(self) -> str:
        return self.base.kind

    @property
    def rows_kernel(self) -> bool:
        return self.base.rows_kernel

    def _matvecs_into(self, Xt: torch.Tensor, out: torch.Tensor) -> None:
        self.base.matvecs_into(Xt, out)

    def affine_rows_kernel(self, scale: float, shift: float) -> Callable[[torch.Tensor, torch.Tensor], None] | None:
        inner = self.base.affine_rows_kernel(scale, shift)
        if inner is None:
            return None

        def kernel(Xt: torch.Tensor, out: torch.Tensor) -> None:
            self._count(Xt.shape[0])
            inner(Xt, out)

        return kernel
