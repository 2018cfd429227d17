"""Cheap facts about a matrix for the problem preview: size, nnz, symmetry, a norm estimate, a picture.

Pure (torch/numpy/scipy). ``describe`` costs a few matvecs plus one pass over the
stored entries, so it is fine for n in the millions; ``block_abs`` aggregates
``|A|`` into at most ``cells x cells`` blocks (the "spy plot" of a large matrix).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from explorer.operators import LinearOperator, symmetry_error
from explorer.operators.concrete import DenseOperator, SparseOperator, SymmetrizedOperator

__all__ = ["MatrixFacts", "describe", "block_abs", "norm_estimate"]


@dataclass(frozen=True)
class MatrixFacts:
    n: int  # columns (the size of a square matrix)
    kind: str  # dense / sparse / matrix-free
    dtype: str
    nnz: int | None  # stored nonzeros (dense: counted nonzero entries)
    density: float | None  # nnz / (m n)
    symmetry_error: float  # random-probe |y^T A x - x^T A y| / (...) (0 = symmetric; NaN: rectangular)
    norm_lower: float  # ||A||_2 >= this (power steps)
    norm_upper: float | None  # ||A||_2 <= ||A||_F where the entries are at hand
    m: int | None = None  # rows, when not n (a rectangular matrix)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n if self.m is None else self.m, self.n)

    @property
    def rectangular(self) -> bool:
        return self.m is not None and self.m != self.n

    def as_rows(self) -> list[tuple[str, str]]:
        """(label, text) pairs for a small facts table."""
        if self.rectangular:
            m, n = self.shape
            orientation = "tall" if m > n else "wide"
            rows = [("shape m \u00d7 n", f"{m:,} \u00d7 {n:,} ({orientation}: singular values, SVD solvers)"),
                    ("storage", self.kind), ("dtype", self.dtype)]
        else:
            rows = [("size n", f"{self.n:,}"), ("storage", self.kind), ("dtype", self.dtype)]
        if self.nnz is not None:
            rows.append(("nonzeros", f"{self.nnz:,} ({100 * (self.density or 0):.3g} % dense)"))
        if not self.rectangular:
            rows.append(("symmetry probe error", f"{self.symmetry_error:.1e}"))
        norm = f"\u2265 {self.norm_lower:.4g}"
        if self.norm_upper is not None:
            norm += f", \u2264 {self.norm_upper:.4g} (Frobenius)"
        rows.append(("spectral norm \u2016A\u2016\u2082", norm))
        return rows


def _base(operator: LinearOperator) -> LinearOperator:
    while isinstance(operator, SymmetrizedOperator):
        operator = operator.base
    return operator


def norm_estimate(operator: LinearOperator, steps: int = 20, seed: int = 0) -> float:
    """A lower bound on ``||A||_2`` from ``steps`` power steps (``steps`` matvecs, seeded): ``||A x||``
    for a unit x. A rectangular operator: power steps on A^T A (one product with A and one with A^T each)."""
    m, n = operator.shape
    generator = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.randn(n, generator=generator, dtype=torch.float64).to(device=operator.device, dtype=operator.dtype)
    x = x / torch.linalg.vector_norm(x)
    estimate = 0.0
    for _ in range(steps):
        y = operator._matmat(x.unsqueeze(1)).squeeze(1)
        norm = float(torch.linalg.vector_norm(y))
        if not math.isfinite(norm) or norm == 0.0:
            return max(estimate, 0.0 if not math.isfinite(norm) else norm)
        estimate = max(estimate, norm) if m != n else norm
        if m != n:  # the next x: A^T A x, normalized
            y = operator._rmatmat(y.unsqueeze(1)).squeeze(1)
            size = float(torch.linalg.vector_norm(y))
            if not math.isfinite(size) or size == 0.0:
                return estimate
            x = y / size
        else:
            x = y / norm
    return estimate


def describe(operator: LinearOperator) -> MatrixFacts:
    """Size, storage, nnz, symmetry probe error and norm bounds of ``operator`` (a rectangular one: its
    shape, no symmetry probe)."""
    m, n = operator.shape
    base = _base(operator)
    nnz: int | None = None
    upper: float | None = None
    if isinstance(base, SparseOperator):
        nnz = base.nnz
        values = base.matrix.values() if base._scipy is None else torch.from_numpy(base._scipy.data)
        upper = float(torch.linalg.vector_norm(values.double()))
    elif isinstance(base, DenseOperator):
        nnz = int(torch.count_nonzero(base.matrix))
        upper = float(torch.linalg.matrix_norm(base.matrix.double(), "fro"))
    return MatrixFacts(
        n=n, kind=operator.kind if base is operator else f"{base.kind}, symmetrized (A+A\u1d40)/2",
        dtype=str(operator.dtype).replace("torch.", ""), nnz=nnz,
        density=None if nnz is None else nnz / (float(m) * float(n)),
        symmetry_error=symmetry_error(base, n_probes=2) if m == n else math.nan,
        norm_lower=norm_estimate(operator), norm_upper=upper, m=None if m == n else m,
    )


def block_abs(operator: LinearOperator, cells: int = 160, *, dense_limit: int = 3000) -> np.ndarray | None:
    """``|A|`` summed over an at most ``cells x cells`` grid of blocks (exact entries when n <= cells).

    Sparse: one pass over the stored entries. Dense: a reshape-sum. Matrix-free:
    assembled first when ``n <= dense_limit`` (n matvecs), otherwise None. A rectangular
    m x n matrix gets ``min(cells, m) x min(cells, n)`` blocks of (about) the same shape.
    """
    m, n = operator.shape
    rows_cells, cells = max(1, min(int(cells), m)), max(1, min(int(cells), n))
    base = _base(operator)
    if isinstance(base, SparseOperator):
        csr = base.to_scipy()
        coo = csr.tocoo()
        rows = (coo.row.astype(np.int64) * rows_cells) // m
        cols = (coo.col.astype(np.int64) * cells) // n
        out = np.zeros((rows_cells, cells))
        np.add.at(out, (rows, cols), np.abs(coo.data.astype(np.float64)))
        return out
    if isinstance(base, DenseOperator):
        dense = base.matrix.detach().cpu().double().abs().numpy()
    elif n <= dense_limit and m <= dense_limit:
        dense = base.to_dense().detach().cpu().double().abs().numpy()
    else:
        return None

    def starts(size: int, count: int) -> np.ndarray:
        edges = (np.arange(size) * count) // size
        return np.flatnonzero(np.r_[True, np.diff(edges) > 0])

    # Sum rows then columns into blocks (np.add.reduceat over block starts).
    return np.add.reduceat(np.add.reduceat(dense, starts(m, rows_cells), axis=0), starts(n, cells), axis=1)
