"""Sharded vectors: each rank holds its rows of every vector, and inner products are reduced.

With a row-sharded matrix (``operators.RowShardedOperator(..., vectors="sharded")``) rank r
holds rows ``ranges[r]`` of the matrix *and* the same rows of every vector the solver keeps:
the Lanczos basis (``max_basis`` x n numbers in one process) then costs ``max_basis x n / p``
numbers per rank. :class:`ShardedSpace` is the ``explorer.solvers._space`` interface for that
layout:

* a Gram block ``X Y^T``, a norm, a dot product is computed on the local rows and summed over
  the ranks with one all-reduce, in float64 (a float32 solve sums its partial products in
  float64 too). Every rank receives the same sum bit for bit, so every rank's solver takes the
  same decisions (restarts, convergence, breakdowns) with no further agreement; ``reductions``
  and ``reduced_bytes`` count what that cost.
* norms: the local 2-norms, squared (in float64), summed, and the square root taken: at one
  rank ``sqrt(fl(s^2)) = s`` exactly (binary floating point, round to nearest), so a one-rank
  sharded run is the one-process run.
* the QR of a block of columns: TSQR (J. Demmel, L. Grigori, M. Hoemmen and J. Langou,
  Communication-optimal parallel and sequential QR and LU factorizations, SIAM J. Sci.
  Comput. 34, 2012), one level: a local Householder QR ``M_r = Q_r R_r``, the R factors stacked
  by one all-reduce of a (p c, c) buffer, the QR of that stack on every rank, ``Q = Q_r Q2_r``.
  As stable as Householder QR on the whole block. (The Lanczos block orthonormalization is
  Cholesky QR twice on a reduced Gram matrix, CholQR2: Fukaya, Nakatsukasa, Yanagisawa and
  Yamamoto, CholeskyQR2: a simple and communication-avoiding algorithm for computing a tall-skinny
  QR factorization on a large-scale parallel system, ScalA 2014; it needs only ``dots`` here.)
* random blocks: every rank draws the whole (n, b) Gaussian block from the solver's seeded
  generator and keeps its rows, so the start (and every breakdown vector) is the one of a
  one-process run and the generators of all ranks stay in the same state.
"""

from __future__ import annotations

from typing import Any

import torch

from explorer.distributed.context import DistContext
from explorer.operators import DeflatedOperator
from explorer.solvers._common import random_block
from explorer.solvers._space import LocalSpace, gram_rows

__all__ = ["ShardedSpace"]


class ShardedSpace(LocalSpace):
    """Rows ``ranges[rank]`` of every vector on each rank; inner products all-reduced in float64.

    Args:
        context: the process group (``DistContext.local()`` for one process).
        ranges: every rank's (start, stop) rows (``sharding.row_ranges``).
    """

    sharded = True

    def __init__(self, context: DistContext, ranges: list[tuple[int, int]]) -> None:
        if len(ranges) != context.world_size:
            raise ValueError(f"`ranges` has {len(ranges)} entries for {context.world_size} ranks")
        self.context, self.ranges = context, [(int(a), int(b)) for a, b in ranges]
        self.start, self.stop = self.ranges[context.rank]
        self.n = self.ranges[-1][1]
        self.rows_max = max(b - a for a, b in self.ranges)
        self.reductions = 0
        self.reduced_bytes = 0

    def __repr__(self) -> str:
        return (f"ShardedSpace(n={self.n}, rows {self.start}:{self.stop} on rank {self.context.rank} of "
                f"{self.context.world_size})")

    # -- layout ----------------------------------------------------------------
    def rows(self, n: int) -> int:
        if n != self.n:
            raise ValueError(f"a sharded space holds vectors of length {self.n}, not {n}")
        return self.stop - self.start

    def local(self, X: torch.Tensor) -> torch.Tensor:
        return X[self.start:self.stop]

    # -- reductions --------------------------------------------------------------
    def _reduce(self, buffer: torch.Tensor, *, op: str = "sum", where: str) -> torch.Tensor:
        """All-reduce ``buffer`` in place, counted in ``reductions`` / ``reduced_bytes``."""
        self.context.all_reduce(buffer, op=op, where=where)
        self.reductions += 1
        self.reduced_bytes += buffer.numel() * buffer.element_size()
        return buffer

    def _sum(self, t: torch.Tensor, where: str = "an inner product") -> torch.Tensor:
        """The sum over ranks of the local partial results ``t``, in float64, back in t's dtype."""
        return self._reduce(t.to(torch.float64, copy=True), where=where).to(t.dtype)

    def dots(self, A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
        return self._sum(torch.mm(A, B.T), where=f"a Gram block {A.shape[0]} x {B.shape[0]}")

    def gram(self, X: torch.Tensor) -> torch.Tensor:
        return self._sum(gram_rows(X), where=f"a Gram matrix {X.shape[0]} x {X.shape[0]}")

    def mv(self, V: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self._sum(V.mv(w), where=f"{V.shape[0]} inner products")

    def dot(self, w: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        return self._sum(torch.dot(w, q).reshape(1), where="a dot product")[0]

    def _norms(self, s: torch.Tensor) -> torch.Tensor:
        return self._reduce(s.to(torch.float64) ** 2, where="norms").sqrt().to(s.dtype)

    def norm(self, w: torch.Tensor) -> torch.Tensor:
        return self._norms(torch.linalg.vector_norm(w).reshape(1))[0]

    def norms(self, W: torch.Tensor) -> torch.Tensor:
        return self._norms(torch.linalg.vector_norm(W, dim=1))

    def rowdots(self, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        return self._sum((X * Y).sum(dim=1), where="row inner products")

    def max_abs(self, W: torch.Tensor) -> float:
        top = torch.tensor([float(W.abs().max()) if W.numel() else 0.0], dtype=torch.float64,
                           device=self.context.device)
        return float(self._reduce(top, op="max", where="the largest entry")[0])

    def qr(self, M: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """TSQR of the columns M (local rows, c): (this rank's rows of Q, the c x c R, the same on
        every rank). One rank: the local QR (the one-process call)."""
        world, rank = self.context.world_size, self.context.rank
        if world == 1:
            return torch.linalg.qr(M)
        c = M.shape[1]
        Q1, R1 = torch.linalg.qr(M)  # (rows, r), (r, c) with r = min(rows, c)
        r = R1.shape[0]
        stack = torch.zeros(world * c, c, dtype=torch.float64, device=M.device)
        stack[rank * c:rank * c + r] = R1
        self._reduce(stack, where=f"TSQR of {c} columns")
        Q2, R = torch.linalg.qr(stack)  # the same numbers on every rank: the same factors
        Q = Q1 @ Q2[rank * c:rank * c + r].to(M.dtype)
        return Q, R.to(M.dtype)

    def random(self, n: int, b: int, generator: torch.Generator, *, dtype: torch.dtype,
               device: torch.device) -> torch.Tensor:
        whole = random_block(n, b, generator, dtype=dtype, device=device)
        return whole[self.start:self.stop].contiguous()

    def deflated(self, base: Any, vectors: torch.Tensor, values: torch.Tensor) -> Any:
        return _ShardedDeflated(base, vectors, values, self)

    # -- gathering ---------------------------------------------------------------
    def gather(self, X: torch.Tensor, *, where: str = "gathering the eigenvectors") -> torch.Tensor | None:
        """The whole (n, c) from every rank's rows X (local rows, c), on rank 0; None elsewhere."""
        context = self.context
        if not context.distributed or context.world_size == 1:
            return X
        rows, c = X.shape
        if rows == self.rows_max and X.is_contiguous():
            piece = X
        else:
            piece = torch.zeros(self.rows_max, c, dtype=X.dtype, device=X.device)
            piece[:rows] = X
        pieces = context.gather(piece, where=where)
        if pieces is None:
            return None
        return torch.cat([p[:b - a] for p, (a, b) in zip(pieces, self.ranges)])

    def describe(self) -> dict[str, Any]:
        return {"vectors": "sharded", "reductions": self.reductions, "reduced_bytes": self.reduced_bytes}


class _ShardedDeflated(DeflatedOperator):
    """``A - V diag(values) V^T`` on sharded vectors: ``V^T X`` is reduced over the ranks."""

    def __init__(self, base: Any, vectors: torch.Tensor, values: torch.Tensor, space: ShardedSpace) -> None:
        super().__init__(base, vectors, values)
        self.space = space

    def _matmat(self, X: torch.Tensor) -> torch.Tensor:
        coef = self.space._sum(self.vectors.T @ X, where="a deflated product")
        return self.base._matmat(X) - self.vectors @ (self.values.unsqueeze(1) * coef)

    def _to(self, device: torch.device, dtype: torch.dtype) -> "_ShardedDeflated":
        return _ShardedDeflated(self.base.to(device, dtype), self.vectors, self.values, self.space)
