"""The preconditioner T of LOBPCG (W = T R, Knyazev 2001, Alg. 4.1), for either backend.

``preconditioner_operator`` normalizes what the user passed to one ``LinearOperator`` T:
None / "none" (no preconditioner), "jacobi" (``1 / |diag(A)|``, from
``operator.diagonal()``), a callable mapping an (n, b) block to (n, b), an (n, n) tensor
or a ``LinearOperator``. T should approximate (A - sigma B)^{-1} and be symmetric positive
definite. Jacobi helps the smallest eigenvalues of diagonally dominant matrices with a
varying diagonal; it does nothing for a constant diagonal (Laplacian) or for LA.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from explorer.operators import LinearOperator, as_operator


class _DiagonalOperator(LinearOperator):
    """``diag(d)`` as an operator (the Jacobi preconditioner for either backend)."""

    def __init__(self, d: torch.Tensor) -> None:
        super().__init__((d.numel(), d.numel()), d.dtype, d.device, is_symmetric=True)
        self.d = d

    def _matmat(self, X: torch.Tensor) -> torch.Tensor:
        return self.d.unsqueeze(1) * X

    def diagonal(self) -> torch.Tensor:
        return self.d.clone()


def preconditioner_operator(preconditioner: Any, op: LinearOperator) -> LinearOperator | None:
    """Normalize ``preconditioner`` to an operator T (applied as W = T R), or None."""
    n = op.shape[0]
    if preconditioner is None or (isinstance(preconditioner, str) and preconditioner.lower() == "none"):
        return None
    if isinstance(preconditioner, str):
        if preconditioner.lower() != "jacobi":
            raise ValueError(f"`preconditioner` must be None, 'jacobi', a callable, a tensor or a LinearOperator, "
                             f"got {preconditioner!r}; use 'jacobi' for 1/|diag(A)|")
        d = op.diagonal()
        if d is None:
            raise ValueError(f"`preconditioner='jacobi'` needs the diagonal of the operator, but this {op.kind} "
                             "operator does not provide `diagonal()`; pass your own preconditioner callable")
        d = d.to(device=op.device, dtype=op.dtype).abs()
        # A zero diagonal entry carries no scaling information: leave that row unscaled.
        inverse = torch.where(d > 0, 1.0 / torch.where(d > 0, d, torch.ones_like(d)), torch.ones_like(d))
        return _DiagonalOperator(inverse)
    if isinstance(preconditioner, LinearOperator):
        pre = preconditioner
    elif isinstance(preconditioner, torch.Tensor):
        pre = as_operator(preconditioner, check_symmetry=False, name="preconditioner")
    elif callable(preconditioner):
        fn = preconditioner
        pre = _BlockCallableOperator(fn, n, op.dtype, op.device)
    else:
        raise TypeError(f"`preconditioner` must be None, 'jacobi', a callable, a tensor or a LinearOperator, "
                        f"got {type(preconditioner).__name__}")
    if pre.shape != (n, n):
        raise ValueError(f"`preconditioner` must have shape ({n}, {n}) like the operator, got {pre.shape}")
    return pre.to(op.device, op.dtype)


class _BlockCallableOperator(LinearOperator):
    """A preconditioner given as a function of an (n, b) block."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], n: int, dtype: torch.dtype,
                 device: torch.device) -> None:
        super().__init__((n, n), dtype, device, is_symmetric=True)
        self._fn = fn

    def _matmat(self, X: torch.Tensor) -> torch.Tensor:
        Y = self._fn(X)
        if not isinstance(Y, torch.Tensor) or Y.shape != X.shape:
            raise ValueError(f"the `preconditioner` callable must map an (n, b) block to (n, b); got "
                             f"{type(Y).__name__} {tuple(getattr(Y, 'shape', ()))} for input {tuple(X.shape)}")
        return Y
