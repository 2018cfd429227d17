"""The state of one thick-restart (block) Lanczos solve, shared by the parts in this package.

``LanczosState`` holds the basis and everything the parts read and write: the rows ``Vt``
(basis vectors, ``max_basis + block_size`` of them) and, with stored products, ``AVt``
(``A Vt[i]`` for every row multiplied so far); the projected matrix ``H = V^T A V`` (numpy
float64); the per-mode bookkeeping of re-orthogonalization (``G``, the exact Gram matrix in
"none"; ``Omega``, Simon's estimates of ``V^T V - I`` in "partial"); the norm estimate
``anorm`` (largest |Ritz value| seen), the orthogonality loss ``loss`` that every record
reports, and the counters that end up in the result's message. The methods live in the
mixins (``expansion``, ``blocks``, ``reorthogonalization``, ``restart``, ``ritz``,
``convergence``); ``iteration._Lanczos`` combines them and runs the loop.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from explorer.solvers._common import Monitor, ProductUnits, UnitsOperator
from explorer.solvers._space import space_of

__all__ = ["LanczosState", "sparse_on_cpu", "restart_weight"]


def sparse_on_cpu(op: Any) -> bool:
    """A sparse matrix on the CPU: a matvec is cheap (scipy's CSR kernel), columns go one by one
    (``Expansion.apply``) and products are recomputed rather than stored (``products="auto"``)."""
    return getattr(op, "kind", "") == "sparse" and op.device.type == "cpu"


# restart_weight's cost model (CPU, where it was measured): a new basis vector costs the product
# with A plus the local step, both memory-bound: ~16 bytes per stored entry of a sparse matrix
# (value and int64 index) plus 16 for x and y, 8 per entry of a dense one, and _STEP_BYTES per
# row for the step's passes over its blocks; a kept vector costs 2 m flops per row of the
# restart's GEMM. One thread of this host does ~12 GFLOP/s of DGEMM and streams ~12-16 GB/s, so
# a flop and a byte are counted alike (docs/benchmarks-lanczos.md, "Restart cost").
_STEP_BYTES = 64.0


def restart_weight(op: Any, m: int) -> float:
    """The cost of keeping one Ritz vector at a restart, in new basis vectors (``choose_keep``).

    0 (the restart is free next to the products) for matrix-free operators (Hessian-vector
    products and other callables: their cost is unknown and usually far above a GEMM's) and off
    the CPU (not measured there). A row-sharded matrix (``explorer.distributed``) is weighed as
    the whole matrix, so that every rank count keeps the same vectors as one process and the
    runs agree bit for bit."""
    if op.device.type != "cpu":
        return 0.0
    n = op.shape[0]
    kind = op.kind
    if kind in ("sparse", "sparse (row-sharded)"):
        nnz = operator_nnz(op)
        per_row = 16.0 * (nnz / n if nnz else 5.0) + 16.0
    elif kind == "dense":
        per_row = 8.0 * n
    else:
        return 0.0
    return 2.0 * m / (per_row + _STEP_BYTES)


def operator_nnz(op: Any) -> int | None:
    """Stored entries of a sparse operator (of the whole matrix for a row-sharded one), through
    the wrappers (units, counting) around it."""
    while op is not None:
        nnz = getattr(op, "nnz", None) or getattr(op, "nnz_total", None)
        if nnz:
            return int(nnz)
        op = getattr(op, "base", None)
    return None


# "full": skip the Gram-Schmidt correction when the measured overlap is below this many eps
# (the level CGS2 itself reaches on a basis of ~64 vectors) and below what the tolerance
# allows (see _Lanczos.run); the loss then stays at the rounding level.
SKIP_FACTOR = 64.0


class LanczosState:
    """Basis, projected matrix and bookkeeping of one solve. Rows of ``Vt`` are basis vectors."""

    def __init__(self, v: Any, monitor: Monitor, *, mode: str, m: int, b: int,
                 generator: torch.Generator, store_products: bool = False, ritz_every: int = 1,
                 copy_check: str = "off") -> None:
        self.v = v
        # Where the vectors live (``explorer.solvers._space``): every inner product over the
        # vectors' length goes through it, so sharded vectors (each rank holds its rows) and
        # whole ones run the same code.
        self.space = space_of(v.operator)
        self.copy_check = copy_check  # "auto" / "on" / "off" (see copies.py)
        self.ritz_every = ritz_every  # 0 = "auto" (see iteration._Lanczos.run)
        self.alpha_max = 0.0  # largest |diagonal entry| of the last step's block (a Rayleigh quotient)
        self._look_ratios: np.ndarray | None = None  # "auto": estimate / threshold at the last look
        self._look_at = 0
        # Products are divided by 2^e (exact) when the first one is so large or so small that
        # squares of its entries would overflow or underflow (ProductUnits); the monitor reports
        # values and residuals back in A's units.
        self.units = monitor.units = ProductUnits(v.operator.dtype, self.space if self.space.sharded else None)
        self.op = UnitsOperator(v.operator, self.units)
        self.monitor = monitor
        self.mode = mode
        self.k, self.which, self.tol = v.k, v.which, v.tol
        self.n = self.op.shape[0]  # the vectors' length (every rank's, with sharded vectors)
        self.n_local = self.space.rows(self.n)  # the entries of each vector held here
        self.dtype, self.device = self.op.dtype, self.op.device
        self.eps = float(torch.finfo(self.dtype).eps)
        self.tiny = float(torch.finfo(self.dtype).tiny)
        self.m, self.b = m, b
        self.generator = generator
        cap = m + b
        self.Vt = torch.empty(cap, self.n_local, dtype=self.dtype, device=self.device)
        # products="stored": AVt[i] = A Vt[i] for every row that has been multiplied (the
        # current block included), carried through restarts with the same coefficients.
        self.AVt = torch.empty_like(self.Vt) if store_products else None
        self.av_drift = 0.0  # bound on the rounding the restart combinations left in AVt
        self.H = np.zeros((cap, cap))
        # "none": exact Gram matrix V^T V; "partial": omega estimates (V^T V - I).
        self.G = np.eye(cap) if mode == "none" else None
        self.Omega = np.zeros((cap, cap)) if mode == "partial" else None
        self.anorm = 0.0
        self.loss = 0.0
        self.tol_factor = 1.0  # tightened when a true-residual check fails
        self.n_restarts = 0
        self.n_reorth = 0  # partial: how many blocks were re-orthogonalized
        self.n_breakdowns = 0
        self._stall_worst: float | None = None  # see _stalled_at_rounding
        self._stall_checks = 0
        self.n_cleanups = 0  # "partial": restarts that re-orthonormalized the kept Ritz vectors
        self.n_measured = 0  # "partial": restarts that measured the kept block's Gram matrix
        self._kept_level = 0.0  # "partial": bound on ||Y^T Y - I||_2 of the kept block
        self._cycle_start = 0  # "partial": first basis row created in the current cycle
        self.n_skipped = 0  # "full": Gram-Schmidt corrections skipped (overlap already at eps level)
        self.n_resolve = 0  # checks that met tol with an unresolved set (convergence._unresolved)
        self.switched_at: int | None = None  # "partial": iteration where the run switched to "full"
        self.skip_level = SKIP_FACTOR * self.eps  # "full": largest overlap left uncorrected
        # Basis rows of the current Krylov "segment": all of them until a breakdown; after one,
        # only the rows grown from the fresh random vector (see _segment_settled).
        self.segment = np.ones(cap, dtype=bool)
        self.previous_segment = np.zeros(cap, dtype=bool)
        self._iteration = 0
        self._segment_started = 0
        self._wait_since: int | None = None
        # The last true-residual check (see ritz.py): (wanted, X, AX, values, residuals, ok).
        self._checked: tuple[Any, ...] | None = None
        self._n_ok = 0  # pairs that met tol at the last check
        self._j = 0  # first row of the current block after a restart (set by _restart)
        # scipy's CSR kernel with several right-hand sides is slower per column than
        # single-column products on one thread (csr_matvecs), so sparse CPU operators are
        # applied column by column; every other operator gets the block (one GEMM / HVP batch).
        self.columnwise = sparse_on_cpu(self.op)
        self.rows_kernel = bool(self.op.rows_kernel)  # the operator writes products into rows (apply)
        self._work_rows: torch.Tensor | None = None  # the block step's product rows (see _work)
        self.restart_weight = restart_weight(self.op, m)  # a kept vector's cost at a restart (choose_keep)

    def _work(self, rows: int) -> torch.Tensor:
        """A reusable (rows, n) buffer for the block step's ``A Q`` (one allocation per solve)."""
        if self._work_rows is None or self._work_rows.shape[0] < rows:
            self._work_rows = torch.empty(max(rows, self.b), self.n_local, dtype=self.dtype, device=self.device)
        return self._work_rows[:rows]
