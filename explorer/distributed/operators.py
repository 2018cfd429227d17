"""Distributed linear operators, and the tracker that lets only rank 0 record.

With *replicated* vectors an operator takes a vector that every rank holds whole and
returns the product whole on every rank, so every registry solver runs on it unchanged:
each rank runs the same solver with the same seed on the same numbers, and the ranks stay
in step because the products they receive are bit-for-bit the same (the collectives copy
one result to everyone). Every rank then holds the solver's whole basis.

* :class:`RowShardedOperator`: each rank holds a block of rows (CSR); a product is the
  block times the whole vector, then an all-gather of the pieces. Per product each rank
  receives the n - n/p entries it does not own, (p - 1)/p n entries: about 8 n bytes in
  float64 whatever p is (a ring all-gather also sends as much).
  With ``vectors="sharded"`` its input and output are this rank's rows only (``.space``,
  ``space.ShardedSpace``: the solver reduces its inner products over the ranks, so each
  rank keeps its rows of the basis, max_basis x n / p numbers): a product all-gathers the
  input's pieces into the whole vector (the same bytes as above: the gather moves from the
  output to the input) and multiplies the local block; its result is not exchanged.
* :class:`DataParallelOperator`: each rank holds the curvature operator of its shard of
  the data; a product is the shard's product weighted by its share of the samples, then
  an all-reduce (sum). A ring all-reduce sends and receives 2 (p - 1)/p n entries per rank.

Every collective carries two more things in a few extra entries:

* a checksum of the input vector from every rank (a fixed weighted sum). If two ranks'
  inputs differ beyond rounding, their solvers no longer run the same solve (a different
  restart, a different number of products next), which would end in mismatched
  collectives; the operator raises :class:`RanksDivergedError` at once instead.
* rank 0's stop flag (``DistContext.sync``), so a Stop from rank 0's tracker (the app, a
  run store) reaches every rank with no extra message; :class:`RootTracker` then stops
  all of them at the same iteration.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from explorer.distributed.context import DistContext, RanksDivergedError
from explorer.operators import LinearOperator
from explorer.tracking import NullTracker, StopSolve, Tracker

try:  # scipy's CSR SpMV into a given output, as explorer.operators.SparseOperator uses it (private API)
    from scipy.sparse._sparsetools import csr_matvec as _csr_matvec
except ImportError:  # pragma: no cover - then the product takes one temporary more
    _csr_matvec = None

__all__ = ["RowShardedOperator", "DataParallelOperator", "RootTracker", "checksum_weights", "VECTORS"]

#: How a row-sharded operator's vectors are laid out (``RowShardedOperator``'s ``vectors``).
VECTORS = ("replicated", "sharded")

# Relative difference of two ranks' checksums still taken as rounding (64 eps, of the
# weighted 1-norm): identical hardware gives identical numbers, so this only matters across
# machines whose kernels round differently.
_CHECK_ULPS = 64.0


def checksum_weights(n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """w_i = 1 + frac(i * golden ratio): positive, deterministic, no two alike (a vector
    difference orthogonal to it is as unlikely as for random weights)."""
    index = torch.arange(n, dtype=torch.float64)
    return (1.0 + torch.frac(index * 0.6180339887498949)).to(device=device, dtype=dtype)


class _Checked:
    """The checksum and stop-flag part that both operators share."""

    context: DistContext
    _weights: torch.Tensor | None

    def _checksum(self, X: torch.Tensor) -> torch.Tensor:
        if self._weights is None or self._weights.dtype != X.dtype or self._weights.device != X.device:
            self._weights = checksum_weights(X.shape[0], X.dtype, X.device)
        return self._weights @ X

    def _stop_flag(self) -> float:
        return 1.0 if (self.context.is_root and self.context.sync.stop_requested) else 0.0

    def _check(self, sums: torch.Tensor, X: torch.Tensor, flag: torch.Tensor, where: str) -> None:
        """``sums`` (world, b): every rank's checksum of its input X; ``flag``: rank 0's stop flag."""
        if bool(flag.item() > 0):
            self.context.sync.stop_seen = True
        if sums.shape[0] == 1 or bool((sums == sums[:1]).all()):  # the usual case: identical inputs
            return
        assert self._weights is not None
        eps = torch.finfo(sums.dtype).eps
        spread = (sums - sums[:1]).abs().amax(dim=0)
        limit = _CHECK_ULPS * eps * (self._weights @ X.abs())
        if bool((spread > limit).any()):
            worst = int(torch.argmax((sums - sums[:1]).abs().amax(dim=1)))
            raise RanksDivergedError(
                f"{where}: rank {worst}'s input vector differs from rank 0's (checksums "
                f"{float(sums[0, 0]):.17g} and {float(sums[worst, 0]):.17g}), so the ranks' solvers no longer run "
                "the same solve. This happens when ranks compute with different kernels (mixed hardware or "
                "libraries, or different thread counts): run every rank on the same kind of node with the same "
                "torch and OMP_NUM_THREADS.")


class RowShardedOperator(_Checked, LinearOperator):
    """Rows ``ranges[rank]`` of a symmetric (n, n) matrix on each rank; vectors replicated or sharded.

    Args:
        block: this rank's rows, (rows, n), as a scipy CSR matrix.
        ranges: every rank's (start, stop) rows (``sharding.row_ranges``).
        context: the process group (``DistContext.local()`` for one process).
        dtype: float32 or float64.
        nnz_total: stored entries of the whole matrix; counted with one all-reduce when not given.
        vectors: "replicated" (products take and return whole vectors, every rank the same)
            or "sharded" (they take and return this rank's rows ``start:stop``; ``space`` is the
            ``ShardedSpace`` a solver reduces its inner products with).

    The all-gather pads every piece to the largest block (at most one row more) and adds
    two entries (checksum, stop flag) per column; ``exchange_bytes`` is what one product
    moves into each rank. With sharded vectors the checksum entry is unused (the ranks'
    inputs differ by design; their solvers stay in step because every inner product they
    use is one all-reduced sum, the same on every rank) and the stop flag rides as before.
    """

    def __init__(self, block: sp.csr_matrix, ranges: list[tuple[int, int]], context: DistContext, *,
                 dtype: torch.dtype = torch.float64, nnz_total: int | None = None,
                 is_symmetric: bool = True, vectors: str = "replicated") -> None:
        if vectors not in VECTORS:
            raise ValueError(f"`vectors` must be one of {list(VECTORS)}, got {vectors!r}")
        n = ranges[-1][1]
        start, stop = ranges[context.rank]
        if len(ranges) != context.world_size:
            raise ValueError(f"`ranges` has {len(ranges)} entries for {context.world_size} ranks")
        if block.shape != (stop - start, n):
            raise ValueError(f"rank {context.rank}'s block is {block.shape}, expected ({stop - start}, {n})")
        super().__init__((n, n), dtype, context.device, is_symmetric=is_symmetric)
        self.context, self.ranges = context, list(ranges)
        self.start, self.stop = start, stop
        self.vectors = vectors
        if vectors == "sharded":
            from explorer.distributed.space import ShardedSpace

            self.space = ShardedSpace(context, self.ranges)
        self._weights = None
        np_dtype = np.float64 if dtype == torch.float64 else np.float32
        self.block = sp.csr_matrix(block, dtype=np_dtype, copy=False)
        if nnz_total is None:  # Lanczos weighs its restarts by the whole matrix's density
            count = torch.tensor([float(self.block.nnz)], dtype=torch.float64, device=context.device)
            nnz_total = int(context.all_reduce(count, where="counting the stored entries")[0]) if \
                context.world_size > 1 else self.block.nnz
        self._nnz_total = int(nnz_total)
        self.rows_max = max(b - a for a, b in self.ranges)
        self._torch_block: torch.Tensor | None = None
        if self.device.type != "cpu":  # NCCL: the block as a torch CSR tensor on this rank's GPU
            self._torch_block = torch.sparse_csr_tensor(
                torch.from_numpy(self.block.indptr.astype(np.int64)), torch.from_numpy(self.block.indices.astype(np.int64)),
                torch.from_numpy(self.block.data), size=self.block.shape).to(self.device)
        # Where the real rows sit in the gathered (world, rows_max + 2) layout, flattened.
        width = self.rows_max + 2
        self._rows_index = torch.cat([torch.arange(r * width, r * width + (b - a)) for r, (a, b) in
                                      enumerate(self.ranges)]).to(self.device)

    # -- sizes -----------------------------------------------------------------
    @property
    def block_bytes(self) -> int:
        """Bytes of this rank's CSR arrays (values, column indices, row pointers)."""
        b = self.block
        return int(b.data.nbytes + b.indices.nbytes + b.indptr.nbytes)

    def exchange_bytes(self, columns: int = 1) -> int:
        """Bytes one product of ``columns`` vectors gathers into each rank (its own piece included)."""
        return self.context.world_size * (self.rows_max + 2) * columns * torch.finfo(self.dtype).bits // 8

    @property
    def nnz_total(self) -> int:
        """Stored entries of the whole matrix."""
        return self._nnz_total

    @property
    def nnz(self) -> int | None:
        """None, on purpose: the solvers read a known ``nnz`` (with kind "sparse") as "products are
        cheap, recompute them" (Lanczos ``products="auto"``, LOBPCG's ``_cheap_sparse``). Here every
        product is a collective, so they should store them and apply fewer (docs/benchmarks.md
        has the counts). ``nnz_total`` has the count."""
        return None

    @property
    def kind(self) -> str:
        return "sparse (row-sharded)"

    def __repr__(self) -> str:
        return (f"RowShardedOperator(n={self.shape[0]}, rows {self.start}:{self.stop} on rank {self.context.rank} "
                f"of {self.context.world_size}, dtype={self.dtype}, vectors={self.vectors!r})")

    # -- products ----------------------------------------------------------------
    def _local_into(self, X: torch.Tensor, out: torch.Tensor) -> None:
        """``out = block @ X`` (rows, b). One CPU column: scipy's CSR kernel writes into ``out``
        (no temporary; the kernel ``A @ x`` runs, so the rows are the full matrix's bit for bit)."""
        if self._torch_block is not None:
            out.copy_(self._torch_block @ X)
            return
        A = self.block
        if X.shape[1] == 1 and _csr_matvec is not None and out.is_contiguous():
            x = X[:, 0].numpy()
            if x.dtype == A.dtype:
                y = out.numpy().reshape(-1)
                y.fill(0.0)
                _csr_matvec(A.shape[0], A.shape[1], A.indptr, A.indices, A.data, x, y)
                return
        out.copy_(torch.from_numpy(np.asarray(A @ X.numpy())))

    def _local(self, X: torch.Tensor) -> torch.Tensor:
        out = torch.empty(self.stop - self.start, X.shape[1], dtype=self.dtype, device=self.device)
        self._local_into(X, out)
        return out

    def _matmat(self, X: torch.Tensor) -> torch.Tensor:
        if self.vectors == "sharded":
            return self._matmat_sharded(X)
        b = X.shape[1]
        rows, width = self.stop - self.start, self.rows_max + 2
        piece = torch.empty(width, b, dtype=self.dtype, device=self.device)
        self._local_into(X, piece[:rows])
        piece[rows:self.rows_max] = 0.0  # padding (at most one row)
        piece[self.rows_max] = self._checksum(X)
        piece[self.rows_max + 1] = self._stop_flag()
        world = self.context.world_size
        out = torch.empty(world * width, b, dtype=self.dtype, device=self.device)
        where = f"product {self.n_matvec} (all-gather of {self.shape[0]} rows x {b})"
        self.context.all_gather_into(out, piece, where=where)
        layout = out.view(world, width, b)
        self._check(layout[:, self.rows_max], X, layout[0, self.rows_max + 1, :1], where)
        if world == 1:
            return out[:rows]  # no gaps to close: a view
        return out.index_select(0, self._rows_index)

    def _matmat_sharded(self, X: torch.Tensor) -> torch.Tensor:
        """This rank's rows of ``A X`` from this rank's rows of X: all-gather X, multiply the block."""
        b = X.shape[1]
        rows, width = self.stop - self.start, self.rows_max + 2
        world = self.context.world_size
        result = torch.empty(rows, b, dtype=self.dtype, device=self.device)
        if world == 1:  # nothing to gather: this rank's rows are the whole vector
            if self._stop_flag() > 0:
                self.context.sync.stop_seen = True
            self._local_into(X, result)
            return result
        piece = torch.zeros(width, b, dtype=self.dtype, device=self.device)
        piece[:rows] = X
        piece[self.rows_max + 1] = self._stop_flag()
        out = torch.empty(world * width, b, dtype=self.dtype, device=self.device)
        self.context.all_gather_into(out, piece, where=f"product {self.n_matvec} (all-gather of the input, "
                                                       f"{self.shape[0]} rows x {b})")
        del piece
        if bool(out[self.rows_max + 1, 0].item() > 0):  # rank 0's stop flag
            self.context.sync.stop_seen = True
        whole = out.index_select(0, self._rows_index)
        del out
        self._local_into(whole, result)
        return result

    def _matvec(self, x: torch.Tensor) -> torch.Tensor:
        return self._matmat(x.unsqueeze(1)).squeeze(1)

    def diagonal(self) -> torch.Tensor:
        if self.vectors == "sharded":  # this rank's rows of the diagonal
            diag = np.asarray(self.block.diagonal(k=self.start))
            return torch.from_numpy(diag.astype(self.block.dtype, copy=True)).to(self.device)
        local = torch.zeros(self.rows_max + 2, 1, dtype=self.dtype)
        rows = self.stop - self.start
        local[:rows, 0] = torch.from_numpy(np.asarray(self.block.diagonal(k=self.start)))
        local = local.to(self.device)
        out = torch.empty(self.context.world_size * (self.rows_max + 2), 1, dtype=self.dtype, device=self.device)
        self.context.all_gather_into(out, local, where="gathering the diagonal")
        return out.index_select(0, self._rows_index).squeeze(1)

    def _to(self, device: torch.device, dtype: torch.dtype) -> "RowShardedOperator":
        if device != self.context.device:
            raise TypeError(f"a row-sharded operator lives on its rank's device {self.context.device}; it cannot "
                            f"move to {device}")
        return RowShardedOperator(self.block, self.ranges, self.context, dtype=dtype, nnz_total=self._nnz_total,
                                  is_symmetric=self.is_symmetric, vectors=self.vectors)

    def with_vectors(self, vectors: str) -> "RowShardedOperator":
        """The same block (shared, not copied) with ``vectors`` "replicated" or "sharded"."""
        if vectors == self.vectors:
            return self
        return RowShardedOperator(self.block, self.ranges, self.context, dtype=self.dtype, nnz_total=self._nnz_total,
                                  is_symmetric=self.is_symmetric, vectors=vectors)


class DataParallelOperator(_Checked, LinearOperator):
    """The sum over ranks of each rank's operator times its weight, by all-reduce.

    Args:
        local: this rank's operator (e.g. the Hessian over its shard of the data).
        weight: its share, n_rank / N for a data shard, so that the sum is the Hessian of
            the mean loss over all N samples (``H = sum_r (n_r / N) H_r``).
        context: the process group.

    ``exchange_bytes`` is the size of the all-reduced buffer per product.
    """

    def __init__(self, local: LinearOperator, weight: float, context: DistContext, *,
                 description: str = "") -> None:
        super().__init__(local.shape, local.dtype, local.device, is_symmetric=local.is_symmetric)
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"`weight` must be a finite non-negative number, got {weight!r}")
        self.local, self.weight, self.context = local, float(weight), context
        self._weights = None
        self._description = description

    @property
    def description(self) -> str:
        return self._description or getattr(self.local, "description", "")

    @property
    def kind(self) -> str:
        return "matrix-free (data-parallel)"

    def exchange_bytes(self, columns: int = 1) -> int:
        return (self.shape[0] + self.context.world_size + 1) * columns * torch.finfo(self.dtype).bits // 8

    def __repr__(self) -> str:
        return (f"DataParallelOperator(n={self.shape[0]}, rank {self.context.rank} of {self.context.world_size}, "
                f"weight {self.weight:.4g}, local={type(self.local).__name__})")

    def _matmat(self, X: torch.Tensor) -> torch.Tensor:
        n, b = X.shape
        world, rank = self.context.world_size, self.context.rank
        buffer = torch.zeros(n + world + 1, b, dtype=self.dtype, device=self.device)
        if self.weight > 0:
            buffer[:n] = self.local.matmat(X) * self.weight
        buffer[n + rank] = self._checksum(X)
        buffer[n + world] = self._stop_flag()
        where = f"product {self.n_matvec} (all-reduce of {n} x {b})"
        self.context.all_reduce(buffer, where=where)
        self._check(buffer[n:n + world], X, buffer[n + world, :1], where)
        return buffer[:n]

    def _matvec(self, x: torch.Tensor) -> torch.Tensor:
        return self._matmat(x.unsqueeze(1)).squeeze(1)

    def _to(self, device: torch.device, dtype: torch.dtype) -> "DataParallelOperator":
        return DataParallelOperator(self.local.to(device, dtype), self.weight, self.context,
                                    description=self._description)


class RootTracker(NullTracker):
    """Every rank's tracker: rank 0 passes the hooks on to ``inner``; the others record nothing.

    A ``StopSolve`` from ``inner`` on rank 0 does not stop rank 0 alone (the others would
    wait for it in the next collective): it sets the stop flag, which rides in the next
    product's collective, and at the first iteration after it every rank raises
    ``StopSolve`` together. The solve therefore stops one iteration later than a
    single-process one would.

    ``space``: a ``ShardedSpace`` when the solve runs on sharded vectors; ``on_finish`` (run on
    every rank) then gathers the eigenvectors on rank 0 first, so that ``inner`` and
    :attr:`finished` see the whole vectors there (the other ranks keep their rows).
    """

    def __init__(self, context: DistContext, inner: Tracker | None = None, *, space: Any = None) -> None:
        self.context = context
        self.inner = inner if context.is_root else None
        self.space = space
        self.finished: Any = None  # the result as on_finish saw it (gathered with sharded vectors)

    def on_start(self, start: Any) -> None:
        if self.inner is not None:
            self.inner.on_start(start)

    def on_iteration(self, record: Any) -> None:
        sync = self.context.sync
        if sync.stop_seen:
            raise StopSolve(sync.stop_reason or "stopped by rank 0's tracker")
        if self.inner is not None and not sync.stop_requested:
            try:
                self.inner.on_iteration(record)
            except StopSolve as stop:
                sync.stop_requested, sync.stop_reason = True, stop.reason
                if not self.context.distributed:
                    raise

    def on_finish(self, result: Any) -> None:
        if self.space is not None and getattr(result, "eigenvectors", None) is not None:
            import dataclasses

            whole = self.space.gather(result.eigenvectors)
            if whole is not None:
                result = dataclasses.replace(result, eigenvectors=whole)
        self.finished = result
        if self.inner is not None:
            self.inner.on_finish(result)
