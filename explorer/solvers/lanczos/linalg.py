"""Small dense linear algebra for the Lanczos solver: thin row-block products and tiny factorizations.

The basis is stored as rows (``Vt``, shape (m, n)), so every product pairs a few rows (one
block) with many (the basis): ``dots`` / ``combine`` / ``sub_combine`` are single GEMM calls
on the caller's torch threads (on one thread a small GEMM is one library call, where a loop
of matrix-vector products made one per row: 2-2.5x the time at b = 2, n = 10^4,
docs/benchmarks-lanczos.md). On a shared host run on one thread: a multi-threaded MKL call
this small can wait milliseconds for a descheduled thread. The projected
matrices (at most ``max_basis`` square) live in numpy float64; ``to_numpy`` / ``to_tensor``
move them between numpy and the basis' dtype and device. ``small_cholesky`` /
``small_lower_inverse`` are the block-size (b x b) Cholesky QR factors, ``small_eigh`` the
Rayleigh-Ritz eigenproblem of the projected matrix.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["to_numpy", "to_tensor", "dots", "combine", "sub_combine", "combine_rows_", "small_cholesky",
           "small_lower_inverse", "small_eigh"]


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A float64 numpy view (or copy) of a small tensor."""
    if t.dtype == torch.float64 and t.device.type == "cpu":
        return t.numpy()
    return t.detach().to("cpu", torch.float64).numpy()


def to_tensor(a: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """A small numpy matrix as a contiguous tensor with ``like``'s dtype and device.

    A float64 CPU ``like`` (the usual case) skips the ``.to`` call: it would return the same
    tensor, after a few microseconds of dispatch, several times per Lanczos step."""
    t = torch.from_numpy(np.ascontiguousarray(a))
    if like.dtype == t.dtype and like.device.type == "cpu":
        return t
    return t.to(device=like.device, dtype=like.dtype)


def dots(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """``A @ B.T`` for row blocks A (a, n), B (c, n): the overlaps of two sets of rows."""
    return torch.mm(A, B.T)


def combine(M: torch.Tensor, X: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``M @ X`` for a small coefficient matrix M (r, q) and rows X (q, n)."""
    return torch.mm(M, X, out=out) if out is not None else torch.mm(M, X)


def sub_combine(W: torch.Tensor, M: torch.Tensor, X: torch.Tensor) -> None:
    """``W -= M @ X`` in place (rows)."""
    W.addmm_(M, X, alpha=-1.0)


# combine_rows_: columns per GEMM so that the chunk of the basis it reads (q rows) is ~2 MiB.
_CHUNK_BYTES = 1 << 21


def combine_rows_(M: torch.Tensor, X: torch.Tensor) -> None:
    """``X[:r] = M @ X[:q]`` in place for M (r, q), r <= q, one column chunk at a time.

    The thick restart and the kept-block cleanup rewrite the basis with it: no second
    ``n x max_basis`` buffer (memory stays n (max_basis + block) numbers), and each GEMM
    reads a chunk of the basis that fits in cache. Each output column is the same dot
    products as one big GEMM's; only the columns are split.
    """
    r, q = M.shape
    n = X.shape[1]
    width = max(256, _CHUNK_BYTES // (X.element_size() * max(q, 1)))
    buffer = X.new_empty(r * min(width, n))
    for c0 in range(0, n, width):
        c1 = min(n, c0 + width)
        chunk = buffer[: r * (c1 - c0)].view(r, c1 - c0)
        torch.mm(M, X[:q, c0:c1], out=chunk)
        X[:r, c0:c1].copy_(chunk)


def small_cholesky(G: np.ndarray) -> np.ndarray | None:
    """Lower Cholesky factor of a tiny (block-size) SPD matrix in plain Python, cheaper than a
    numpy.linalg call at b = 2 (docs/benchmarks-lanczos.md); None when G is not numerically
    positive definite."""
    b = G.shape[0]
    if b == 2:  # the default block: the loop below written out (the same operations, in order)
        g00, g10, g11 = float(G[0, 0]), float(G[1, 0]), float(G[1, 1])
        if g00 <= 0.0:
            return None
        l00 = math.sqrt(g00)
        l10 = g10 / l00
        acc = g11 - l10 * l10
        if acc <= 0.0:
            return None
        return np.array([[l00, 0.0], [l10, math.sqrt(acc)]])
    L = np.zeros((b, b))
    for i in range(b):
        for j in range(i + 1):
            acc = float(G[i, j]) - sum(L[i, t] * L[j, t] for t in range(j))
            if i == j:
                if acc <= 0.0:
                    return None
                L[i, i] = math.sqrt(acc)
            else:
                L[i, j] = acc / L[j, j]
    return L


def small_lower_inverse(L: np.ndarray) -> np.ndarray:
    """Inverse of a tiny lower-triangular matrix (forward substitution on the identity)."""
    b = L.shape[0]
    if b == 2:  # the loop below written out (the same operations, in order)
        l00, l10, l11 = float(L[0, 0]), float(L[1, 0]), float(L[1, 1])
        x00 = 1.0 / l00
        return np.array([[x00, 0.0], [(0.0 - l10 * x00) / l11, 1.0 / l11]])
    X = np.zeros((b, b))
    for col in range(b):
        for i in range(col, b):
            acc = (1.0 if i == col else 0.0) - sum(L[i, t] * X[t, col] for t in range(col, i))
            X[i, col] = acc / L[i, i]
    return X


def small_eigh(H: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenpairs (ascending) of the small symmetric float64 projected matrix.

    ``torch.linalg.eigh`` (MKL ``syevd``) on the caller's torch threads: the solver does not
    change the thread count (process state). Run it on one thread on a shared host, as the
    app's jobs, the bench and the tests do: a multi-threaded LAPACK call on a matrix this
    small waits for descheduled threads. numpy's and scipy's LAPACK are not used because
    their OpenBLAS threads cannot be limited per call (docs/benchmarks-lanczos.md).
    """
    theta, S = torch.linalg.eigh(torch.from_numpy(H))
    return theta.numpy(), S.numpy()
