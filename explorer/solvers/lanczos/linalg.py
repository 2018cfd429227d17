"""Small dense linear algebra for the Lanczos solver: thin row-block products and tiny factorizations.

The basis is stored as rows (``Vt``, shape (m, n)), so every per-step product pairs a few
rows (one block) with many (the basis). ``dots`` / ``combine`` / ``sub_combine`` write those
products as loops of matrix-vector products over the thin side; ``mix`` switches to one GEMM
for the restart-sized combinations, where one pass over the basis pays. The projected
matrices (at most ``max_basis`` square) live in numpy float64; ``to_numpy`` / ``to_tensor``
move them between numpy and the basis' dtype and device. ``small_cholesky`` /
``small_lower_inverse`` are the block-size (b x b) Cholesky QR factors, ``small_eigh`` the
Rayleigh-Ritz eigenproblem of the projected matrix.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["GEMM_WORK", "to_numpy", "to_tensor", "dots", "combine", "mix", "sub_combine", "small_cholesky",
           "small_lower_inverse", "small_eigh"]

# Restart products with n * p * L below this many multiply-adds run as GEMVs (see dots).
GEMM_WORK = 4_000_000


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A float64 numpy view (or copy) of a small tensor."""
    if t.dtype == torch.float64 and t.device.type == "cpu":
        return t.numpy()
    return t.detach().to("cpu", torch.float64).numpy()


def to_tensor(a: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """A small numpy matrix as a contiguous tensor with ``like``'s dtype and device."""
    return torch.from_numpy(np.ascontiguousarray(a)).to(device=like.device, dtype=like.dtype)


def dots(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """``A @ B.T`` for row blocks A (a, n), B (c, n) with few rows on one side, as GEMVs.

    torch sends small GEMMs to MKL, whose OpenMP team can stall for milliseconds per call
    when torch has more than one thread on a busy host; matrix-vector products do not, and
    they read the basis at the same memory speed. So every per-step product loops over the
    thin side.
    """
    if A.shape[0] <= B.shape[0]:
        return torch.stack([B.mv(A[i]) for i in range(A.shape[0])]) if A.shape[0] else A.new_zeros(0, B.shape[0])
    return torch.stack([A.mv(B[i]) for i in range(B.shape[0])], dim=1) if B.shape[0] else A.new_zeros(A.shape[0], 0)


def combine(M: torch.Tensor, X: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``M @ X`` for a small coefficient matrix M (r, q) and rows X (q, n), as r GEMVs."""
    if out is None:
        out = X.new_empty(M.shape[0], X.shape[1])
    XT = X.T
    for i in range(M.shape[0]):
        torch.mv(XT, M[i], out=out[i])
    return out


def mix(M: torch.Tensor, X: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``M @ X`` for the restart-sized products (kept Ritz vectors and their products): one
    GEMM (reads X once) when ``n * r * q`` reaches ``GEMM_WORK``, else GEMVs (``combine``)."""
    if X.shape[1] * M.shape[0] * M.shape[1] >= GEMM_WORK:
        return torch.mm(M, X, out=out) if out is not None else torch.mm(M, X)
    return combine(M, X, out=out)


def sub_combine(W: torch.Tensor, M: torch.Tensor, X: torch.Tensor) -> None:
    """``W -= M @ X`` in place (rows), as GEMVs."""
    XT = X.T
    for i in range(M.shape[0]):
        W[i].addmv_(XT, M[i], alpha=-1.0)


def small_cholesky(G: np.ndarray) -> np.ndarray | None:
    """Lower Cholesky factor of a tiny (block-size) SPD matrix in plain Python, cheaper than a
    numpy.linalg call at b = 2 (docs/benchmarks-lanczos.md); None when G is not numerically
    positive definite."""
    b = G.shape[0]
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
