"""The vector space a Krylov solver works in: where its vectors live and how their inner products are formed.

The Lanczos code (``explorer.solvers.lanczos``) keeps its basis as rows and does three kinds
of work on them: products with the operator, *local* combinations of rows (``M @ V``, the
restart's GEMM, the three-term recurrence), and *inner products* over the vectors' length
(Gram blocks ``X Y^T``, norms, dot products, the QR of a block) plus the random start. Only
the last kind depends on where the entries are: in one process every vector is whole, with
sharded vectors (``explorer.distributed.space.ShardedSpace``) each rank holds a block of rows
of every vector and each inner product is a local one summed over the ranks.

:class:`LocalSpace` is the one-process space: its methods are exactly the torch calls the
solver made before they were gathered here (``torch.mm(A, B.T)``, ``torch.linalg.vector_norm``,
``torch.linalg.qr``, ``random_block``), so a one-process run is the same bit for bit. A solver
takes the space from its operator (``operator.space``; None means this one), so its code is
one path for both.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy.linalg import blas as _blas

from explorer.solvers._common import random_block

__all__ = ["LocalSpace", "space_of", "gram_rows"]


class LocalSpace:
    """Whole vectors in one process: inner products are plain torch calls."""

    #: True where inner products are reduced across processes.
    sharded = False

    def rows(self, n: int) -> int:
        """How many entries of an n-vector this process holds (all of them)."""
        return n

    def local(self, X: torch.Tensor) -> torch.Tensor:
        """This process's rows of ``X`` (n, c), a tensor every process holds whole: X itself."""
        return X

    def dots(self, A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
        """``A @ B.T`` for row blocks A (a, n), B (c, n): their inner products (a, c)."""
        return torch.mm(A, B.T)

    def gram(self, X: torch.Tensor) -> torch.Tensor:
        """``X @ X.T`` for rows X (q, n): their Gram matrix (exactly symmetric), see ``gram_rows``."""
        return gram_rows(X)

    def mv(self, V: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """``V @ w`` for rows V (p, n) and a vector w (n,): its inner products with every row."""
        return V.mv(w)

    def dot(self, w: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """The inner product of two vectors (a 0-d tensor)."""
        return torch.dot(w, q)

    def norm(self, w: torch.Tensor) -> torch.Tensor:
        """The 2-norm of a vector (a 0-d tensor)."""
        return torch.linalg.vector_norm(w)

    def norms(self, W: torch.Tensor) -> torch.Tensor:
        """The 2-norms of the rows of W (r, n)."""
        return torch.linalg.vector_norm(W, dim=1)

    def rowdots(self, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        """``(X * Y).sum(dim=1)``: the inner products of matching rows."""
        return (X * Y).sum(dim=1)

    def qr(self, M: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The reduced QR of the columns M (n, c): ``torch.linalg.qr(M)``."""
        return torch.linalg.qr(M)

    def max_abs(self, W: torch.Tensor) -> float:
        """The largest |entry| of W (0 for an empty one)."""
        return float(W.abs().max()) if W.numel() else 0.0

    def random(self, n: int, b: int, generator: torch.Generator, *, dtype: torch.dtype,
               device: torch.device) -> torch.Tensor:
        """A Gaussian (n, b) block from ``generator`` (``_common.random_block``), this process's rows."""
        return random_block(n, b, generator, dtype=dtype, device=device)

    def deflated(self, base: Any, vectors: torch.Tensor, values: torch.Tensor) -> Any:
        """``base - vectors diag(values) vectors^T`` (Hotelling deflation), vectors (n, d) orthonormal."""
        from explorer.operators import DeflatedOperator

        return DeflatedOperator(base, vectors, values)

    def describe(self) -> dict[str, Any]:
        """What the space did, for reports: nothing to count in one process."""
        return {"vectors": "local"}


# gram_rows: fewest rows for BLAS ?syrk. SYRK forms one triangle, half GEMM's flops: q = 46 kept
# rows at n = 10^6 (the thick restart's measured Gram), one thread: 104 ms against 211 ms for
# torch.mm; for the 2-row blocks of a Lanczos step the GEMM is faster (0.8 ms against 2.4 ms).
_SYRK_MIN_ROWS = 8


def gram_rows(X: torch.Tensor) -> torch.Tensor:
    """``X @ X.T`` for rows X (q, n), symmetric bit for bit: BLAS ``?syrk`` on the CPU for
    float32/float64 blocks of at least ``_SYRK_MIN_ROWS`` rows with unit stride along n (the upper
    triangle, mirrored), ``torch.mm`` otherwise."""
    if (X.shape[0] < _SYRK_MIN_ROWS or X.device.type != "cpu" or X.dtype not in (torch.float32, torch.float64)
            or X.stride(-1) != 1 or X.requires_grad):
        return torch.mm(X, X.T)
    routine = _blas.dsyrk if X.dtype == torch.float64 else _blas.ssyrk
    upper = routine(1.0, X.numpy().T, trans=1)  # (X^T)^T X^T with X^T an F-ordered (n, q) view: no copy
    G = np.triu(upper)
    G += np.triu(upper, 1).T
    return torch.from_numpy(G)


def space_of(operator: Any) -> Any:
    """The space an operator's vectors live in: ``operator.space``, else a :class:`LocalSpace`."""
    return getattr(operator, "space", None) or LocalSpace()
