"""Turning user input into a validated operator: ``as_operator`` and the symmetry probe."""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp
import torch

from explorer.operators.base import SUPPORTED_DTYPES, LinearOperator
from explorer.operators.concrete import CallableOperator, DenseOperator, SparseOperator, SymmetrizedOperator

__all__ = ["as_operator", "as_rectangular_operator", "check_symmetric", "symmetry_error", "NotSymmetricError"]


class NotSymmetricError(ValueError):
    """The operator failed the random-probe symmetry test."""

    def __init__(self, relative_error: float, tolerance: float) -> None:
        super().__init__(
            f"the matrix is not symmetric: the probe |y^T A x - x^T A y| / (||A x|| ||y||) = "
            f"{relative_error:.2e} exceeds the tolerance {tolerance:.1e} for this dtype. "
            "These solvers need a symmetric matrix; pass `symmetrize=True` to use (A + A^T)/2 instead."
        )
        self.relative_error = relative_error
        self.tolerance = tolerance


def _symmetry_tolerance(dtype: torch.dtype, n: int) -> float:
    # A rounding error of a length-n dot product is bounded by ~n*eps (Higham, Thm 3.1);
    # for random data it behaves like sqrt(n)*eps. 100*sqrt(n)*eps leaves room for the
    # matrix's own rounding (e.g. a symmetric matrix assembled in float32) without
    # hiding a genuinely non-symmetric entry of relative size > ~1e-10 (float64).
    return 100.0 * math.sqrt(max(n, 1)) * torch.finfo(dtype).eps


def symmetry_error(operator: LinearOperator, *, n_probes: int = 2, seed: int = 0) -> float:
    """max over probes of ``|y^T A x - x^T A y| / (||A x|| ||y|| + ||A y|| ||x||)``.

    Costs 2 * n_probes matvecs. Zero (up to rounding) for a symmetric operator.
    """
    n = operator.shape[1]
    generator = torch.Generator(device="cpu").manual_seed(seed)
    X = torch.randn(n, 2 * n_probes, generator=generator, dtype=torch.float64)
    X = X.to(device=operator.device, dtype=operator.dtype)
    AX = operator._matmat(X)
    worst = 0.0
    for probe in range(n_probes):
        x, y = X[:, 2 * probe], X[:, 2 * probe + 1]
        Ax, Ay = AX[:, 2 * probe], AX[:, 2 * probe + 1]
        num = float((y @ Ax - x @ Ay).abs())
        den = float(torch.linalg.vector_norm(Ax) * torch.linalg.vector_norm(y)
                    + torch.linalg.vector_norm(Ay) * torch.linalg.vector_norm(x))
        worst = max(worst, num / den if den > 0 else 0.0)
    return worst


def check_symmetric(operator: LinearOperator, *, n_probes: int = 2, seed: int = 0) -> float:
    """Raise :class:`NotSymmetricError` unless the probe passes; returns the error."""
    error = symmetry_error(operator, n_probes=n_probes, seed=seed)
    tolerance = _symmetry_tolerance(operator.dtype, operator.shape[1])
    if not error <= tolerance:
        raise NotSymmetricError(error, tolerance)
    return error


def _check_dtype(dtype: torch.dtype | None, name: str) -> None:
    if dtype is not None and dtype not in SUPPORTED_DTYPES:
        raise TypeError(
            f"`{name}` must have dtype float32 or float64, got {dtype}; "
            "convert it first (complex matrices are not supported)"
        )


def _torch_dtype(np_dtype: np.dtype) -> torch.dtype:
    if np.issubdtype(np_dtype, np.complexfloating):
        raise TypeError(f"complex matrices are not supported (got dtype {np_dtype}); pass the real part or a real matrix")
    if np.issubdtype(np_dtype, np.bool_) or np.issubdtype(np_dtype, np.integer) or np_dtype == np.float16:
        return torch.float64
    if np_dtype == np.float32:
        return torch.float32
    if np_dtype == np.float64:
        return torch.float64
    raise TypeError(f"unsupported dtype {np_dtype}; use float32 or float64")


def as_operator(
    data: Any,
    *,
    n: int | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    symmetrize: bool = False,
    check_symmetry: bool = True,
    name: str = "A",
) -> LinearOperator:
    """Validate ``data`` and wrap it as a :class:`LinearOperator`.

    Accepts a LinearOperator, a dense or sparse (COO/CSR) torch tensor, a numpy
    array, a scipy sparse matrix (converted once), or a callable ``v -> A v``
    (then ``n`` is required). Rejects empty, non-square, non-finite and
    non-symmetric input with a message that names the rule and the fix.

    Args:
        dtype: float32 or float64 (default: the input's, integers become float64).
        device: where to put it (default: the input's, else cpu).
        symmetrize: use (A + A^T)/2 instead of refusing a non-symmetric matrix.
        check_symmetry: run the random-probe test (4 matvecs).
    """
    _check_dtype(dtype, "dtype")
    if isinstance(data, LinearOperator):
        op = data
    elif callable(data) and not isinstance(data, (torch.Tensor, np.ndarray)) and not sp.issparse(data):
        if n is None or int(n) <= 0:
            raise ValueError(f"a matrix-free callable needs its size: pass `n` (a positive int), got n={n!r}")
        op = CallableOperator(data, int(n), dtype=dtype or torch.float64, device=device or "cpu")
    elif sp.issparse(data):
        _check_shape(data.shape, name)
        target = dtype or _torch_dtype(data.dtype)
        csr = sp.csr_matrix(data)
        if not np.all(np.isfinite(csr.data)):
            raise ValueError(f"`{name}` contains NaN or Inf entries; clean the data before solving")
        op = SparseOperator(csr.astype(np.float64 if target == torch.float64 else np.float32))
    elif isinstance(data, np.ndarray):
        if data.dtype == object:
            raise TypeError(f"`{name}` has dtype object; pass a numeric array")
        target = dtype or _torch_dtype(data.dtype)
        tensor = torch.from_numpy(np.ascontiguousarray(data)).to(target)
        return as_operator(tensor, dtype=target, device=device, symmetrize=symmetrize,
                           check_symmetry=check_symmetry, name=name)
    elif isinstance(data, torch.Tensor):
        if data.is_complex():
            raise TypeError(f"`{name}` is complex ({data.dtype}); complex matrices are not supported")
        target = dtype or (data.dtype if data.dtype in SUPPORTED_DTYPES else torch.float64)
        if data.layout in (torch.sparse_coo, torch.sparse_csr, torch.sparse_csc, torch.sparse_bsr):
            _check_shape(tuple(data.shape), name)
            csr = data.coalesce() if data.layout == torch.sparse_coo else data
            values = csr.values()
            if not bool(torch.isfinite(values).all()):
                raise ValueError(f"`{name}` contains NaN or Inf entries; clean the data before solving")
            op = SparseOperator(csr.to(target).to_sparse_csr())
        else:
            _check_shape(tuple(data.shape), name)
            if not bool(torch.isfinite(data).all()):
                bad = int((~torch.isfinite(data)).sum())
                raise ValueError(f"`{name}` contains {bad} NaN or Inf entries; clean the data before solving")
            op = DenseOperator(data.to(target))
    else:
        raise TypeError(
            f"`{name}` must be a torch tensor, numpy array, scipy sparse matrix, LinearOperator "
            f"or callable, got {type(data).__name__}"
        )
    if op.shape[0] != op.shape[1]:
        raise ValueError(f"`{name}` must be square, got shape {op.shape}")
    if op.shape[0] == 0:
        raise ValueError(f"`{name}` is empty (shape {op.shape}); load a matrix with at least one row")
    if dtype is not None or device is not None:
        op = op.to(device=device, dtype=dtype)
    if symmetrize:
        op = SymmetrizedOperator(op)
    elif check_symmetry:
        check_symmetric(op)
    return op


def _check_shape(shape: tuple[int, ...], name: str) -> None:
    if len(shape) != 2:
        raise ValueError(f"`{name}` must be a 2-D matrix, got {len(shape)} dimensions (shape {tuple(shape)})")
    if shape[0] == 0 or shape[1] == 0:
        raise ValueError(f"`{name}` is empty (shape {tuple(shape)}); load a matrix with at least one row")
    if shape[0] != shape[1]:
        raise ValueError(f"`{name}` must be square, got shape {tuple(shape)}; eigenvalues need an n x n matrix "
                         "(for the singular values of a rectangular matrix use an SVD solver, golub_kahan)")




def as_rectangular_operator(data: Any, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None,
                            name: str = "operator") -> LinearOperator:
    """Validate a possibly non-square ``data`` (m x n) and wrap it as a :class:`LinearOperator` with ``A^T``.

    For the SVD solvers: no square or symmetry requirement, but the same refusals as
    :func:`as_operator` otherwise (empty, not 2-D, NaN/Inf, complex, non-numeric). Accepts a
    LinearOperator (it must provide ``rmatmat`` unless it is symmetric), a dense or sparse torch
    tensor, a numpy array or a scipy sparse matrix. Integer, boolean and float16 data become
    float64 (the dtype policy of ``as_operator``).
    Dense and sparse inputs are declared non-symmetric, so ``rmatmat`` applies the transpose.
    """
    _check_dtype(dtype, "dtype")
    if isinstance(data, LinearOperator):
        op = data
    elif isinstance(data, torch.Tensor):
        if data.is_complex():
            raise TypeError(f"`{name}` is complex ({data.dtype}); complex matrices are not supported")
        if data.ndim != 2:
            raise ValueError(f"`{name}` must be a 2-D matrix, got {data.ndim} dimensions (shape {tuple(data.shape)})")
        if data.shape[0] == 0 or data.shape[1] == 0:
            raise ValueError(f"`{name}` is empty (shape {tuple(data.shape)}); pass a matrix with at least one entry")
        target = dtype or (data.dtype if data.dtype in SUPPORTED_DTYPES else torch.float64)  # as as_operator
        if data.layout == torch.strided:
            if not bool(torch.isfinite(data).all()):
                raise ValueError(f"`{name}` contains NaN or Inf entries; clean the data before solving")
            op = DenseOperator(data.to(target), is_symmetric=False)
        else:
            csr = data.coalesce() if data.layout == torch.sparse_coo else data
            if not bool(torch.isfinite(csr.values()).all()):
                raise ValueError(f"`{name}` contains NaN or Inf entries; clean the data before solving")
            op = SparseOperator(csr.to(target).to_sparse_csr(), is_symmetric=False)
    elif isinstance(data, np.ndarray):
        if data.dtype == object:
            raise TypeError(f"`{name}` has dtype object; pass a numeric array")
        target = dtype or _torch_dtype(data.dtype)
        return as_rectangular_operator(torch.from_numpy(np.ascontiguousarray(data)).to(target), dtype=target,
                                       device=device, name=name)
    elif sp.issparse(data):
        if len(data.shape) != 2 or data.shape[0] == 0 or data.shape[1] == 0:
            raise ValueError(f"`{name}` is empty (shape {data.shape}); pass a matrix with at least one entry")
        target = dtype or _torch_dtype(data.dtype)
        csr = sp.csr_matrix(data)
        if not np.all(np.isfinite(csr.data)):
            raise ValueError(f"`{name}` contains NaN or Inf entries; clean the data before solving")
        op = SparseOperator(csr.astype(np.float64 if target == torch.float64 else np.float32), is_symmetric=False)
    else:
        raise TypeError(f"`{name}` must be a torch tensor, numpy array, scipy sparse matrix or LinearOperator, "
                        f"got {type(data).__name__}")
    if op.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"`{name}` must be float32 or float64, got {op.dtype}; use `operator.to(dtype=torch.float64)`")
    if min(op.shape) == 0:
        raise ValueError(f"`{name}` is empty (shape {op.shape}); pass a matrix with at least one entry")
    if dtype is not None or device is not None:
        op = op.to(device=device, dtype=dtype)
    return op
