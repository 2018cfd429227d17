"""The linear-operator contract every solver relies on.

The whole contract: ``shape``, ``dtype``, ``device``, ``matvec`` / ``matmat`` and
``to(device, dtype)``. Subclasses implement ``_matmat`` (and may override
``_matvec``); the public methods check shapes and count applications
(scipy's ``LinearOperator`` template-method split). One column is one matvec.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import Any, Callable

import torch

__all__ = ["LinearOperator", "SUPPORTED_DTYPES", "canonical_device"]

SUPPORTED_DTYPES = (torch.float32, torch.float64)


def canonical_device(device: torch.device | str) -> torch.device:
    """``device`` with its index filled in for CUDA (``"cuda"`` -> ``cuda:<current>``).

    Tensors always report an index (``cuda:0``) while ``torch.device("cuda")`` has none, and
    the two compare unequal: without this an operator built for ``"cuda"`` would take its own
    products for foreign ones (copies where none are needed) and ``to("cuda")`` would copy an
    operator already there.
    """
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


class LinearOperator(ABC):
    """A square (or rectangular, for SVD) real linear operator on torch tensors.

    Attributes:
        shape: (m, n).
        dtype: torch.float32 or torch.float64.
        device: where ``matvec`` inputs and outputs live.
        is_symmetric: declared, not checked (see ``explorer.operators.check_symmetric``).
        n_matvec: columns applied since creation or ``reset_count()``.
    """

    def __init__(self, shape: tuple[int, int], dtype: torch.dtype, device: torch.device | str,
                 *, is_symmetric: bool = True) -> None:
        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype = dtype
        self.device = canonical_device(device)
        self.is_symmetric = is_symmetric
        self._count_lock = threading.Lock()
        self.n_matvec = 0

    #: Where the operator's input and output vectors live (``explorer.solvers._space``): None for
    #: whole vectors in this process; a sharded space (``explorer.distributed.space``) when each
    #: process holds only its rows of every vector (then ``matvec`` takes and returns those rows).
    space: Any = None

    # -- public API ---------------------------------------------------------
    def _vector_rows(self) -> int:
        """Entries of an input vector held here: n, or this process's rows with a sharded space."""
        return self.shape[1] if self.space is None else self.space.rows(self.shape[1])

    @property
    def n(self) -> int:
        """Number of columns (the size of a square operator)."""
        return self.shape[1]

    def matvec(self, x: torch.Tensor) -> torch.Tensor:
        """``A @ x`` for x of shape (n,)."""
        if x.shape != (self._vector_rows(),):
            raise ValueError(f"`matvec` expects a vector of shape ({self._vector_rows()},), got {tuple(x.shape)}")
        self._count(1)
        return self._matvec(x)

    def matmat(self, X: torch.Tensor) -> torch.Tensor:
        """``A @ X`` for X of shape (n, b); counts b matvecs."""
        if X.ndim != 2 or X.shape[0] != self._vector_rows():
            raise ValueError(f"`matmat` expects a matrix of shape ({self._vector_rows()}, b), got {tuple(X.shape)}")
        self._count(X.shape[1])
        return self._matmat(X)

    def matvecs_into(self, Xt: torch.Tensor, out: torch.Tensor) -> bool:
        """``out[i] = A @ Xt[i]`` for the rows of ``Xt`` (b, n), written into ``out`` (b, n),
        where the operator has a kernel for vectors stored as rows (``rows_kernel``); counts b
        matvecs. Returns False, having done and counted nothing, where it has none: then use
        ``matmat`` on ``Xt.T``.

        Solvers that keep their vectors as rows (LOBPCG's blocks, Lanczos's basis) save the two
        transposing copies that ``matmat`` needs in that layout (scipy CSR on the CPU, n = 10^4,
        13 rows: 372 us against 536 us, the same numbers bit for bit).
        """
        if not self.rows_kernel or Xt.ndim != 2 or Xt.shape != out.shape or Xt.shape[1] != self._vector_rows():
            return False
        self._count(Xt.shape[0])
        self._matvecs_into(Xt, out)
        return True

    @property
    def rows_kernel(self) -> bool:
        """Whether ``matvecs_into`` has a kernel here (see there)."""
        return False

    def affine_rows_kernel(self, scale: float, shift: float) -> Callable[[torch.Tensor, torch.Tensor], None] | None:
        """A kernel ``kernel(Xt, out)`` that *adds* ``scale (A - shift I) Xt[i]`` to ``out[i]`` for
        the rows of Xt (b, n), counting b matvecs per call; None (the default) where the operator
        has none. Each call builds one, which may hold a shifted and scaled copy of the matrix.

        The Chebyshev recurrence ``T_(j+1) = 2 y T_j - T_(j-1)``, ``y = (A - c I) / e``, is then
        one pass of the kernel into the negated ``T_(j-1)`` instead of a product followed by
        three vector updates and the zeroing of the output (``lanczos.polynomial``).
        """
        return None

    def __matmul__(self, X: torch.Tensor) -> torch.Tensor:
        return self.matvec(X) if X.ndim == 1 else self.matmat(X)

    def reset_count(self) -> None:
        with self._count_lock:
            self.n_matvec = 0

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "LinearOperator":
        """A copy on ``device`` with ``dtype`` (self when nothing changes)."""
        device = self.device if device is None else canonical_device(device)
        dtype = self.dtype if dtype is None else dtype
        if device == self.device and dtype == self.dtype:
            return self
        return self._to(device, dtype)

    def diagonal(self) -> torch.Tensor | None:
        """The diagonal if cheaply available (for Jacobi preconditioning), else None."""
        return None

    def to_dense(self) -> torch.Tensor:
        """The full matrix, by applying the operator to identity blocks when needed."""
        n = self.shape[1]
        blocks = []
        block = 256
        for start in range(0, n, block):
            stop = min(n, start + block)
            eye = torch.zeros(n, stop - start, dtype=self.dtype, device=self.device)
            eye[torch.arange(start, stop), torch.arange(stop - start)] = 1
            blocks.append(self._matmat(eye))
        return torch.cat(blocks, dim=1)

    def rmatmat(self, X: torch.Tensor) -> torch.Tensor:
        """``A^T @ X``; symmetric operators reuse ``matmat``."""
        if self.is_symmetric:
            return self.matmat(X)
        self._count(X.shape[1])
        return self._rmatmat(X)

    @property
    def nnz(self) -> int | None:
        """Stored nonzeros, where that means something (sparse); else None."""
        return None

    @property
    def kind(self) -> str:
        """A short word for previews: dense, sparse, matrix-free, ..."""
        return "matrix-free"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={self.shape}, dtype={self.dtype}, device={self.device})"

    # -- hooks for subclasses ---------------------------------------------
    @abstractmethod
    def _matmat(self, X: torch.Tensor) -> torch.Tensor:  # (n, b) -> (m, b)
        ...

    def _matvec(self, x: torch.Tensor) -> torch.Tensor:  # (n,) -> (m,)
        return self._matmat(x.unsqueeze(1)).squeeze(1)

    def _rmatmat(self, X: torch.Tensor) -> torch.Tensor:
        raise TypeError(f"{type(self).__name__} does not provide A^T; pass a symmetric operator")

    def _matvecs_into(self, Xt: torch.Tensor, out: torch.Tensor) -> None:  # only where rows_kernel
        raise NotImplementedError

    def _to(self, device: torch.device, dtype: torch.dtype) -> "LinearOperator":
        raise TypeError(f"{type(self).__name__} cannot be moved to {device} / {dtype}")

    def _count(self, columns: int) -> None:
        with self._count_lock:
            self.n_matvec += int(columns)
