"""The block engine's state and settings, shared by its steps (``ortho``, ``basic``, ``drift``)
and its loop (``engine``).

``BlockState`` is the block [X, P] with its stored products A [X, P], B [X, P] and the
carried projected matrix [X, P]^T A [X, P]; ``EngineBase`` holds one solve's settings,
tolerances and buffers and the building blocks every step uses (B products, the
convergence threshold, the Ritz values of a projected matrix).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from explorer.operators import LinearOperator
from explorer.solvers._common import Monitor, Validated, residual_threshold
from explorer.solvers.lobpcg.linalg import apply_rows, sym_eigh

# Every REFRESH iterations the carried Gram block [X, P]^T A [X, P] is recomputed and the
# B-orthonormality of the whole [X, P] block audited (amortized: 2 small GEMMs / 10 iterations).
# The single-vector path audits on the same period.
REFRESH = 10
# What a breakdown keeps (``nonfinite_message``).
KEPT = "the last iterate before it, with true residuals"


@dataclass
class BlockState:
    """The current block and its stored products, as rows (the layout of ``linalg``).

    ``XPt`` is one contiguous (m + p, n) tensor: the rows of X (the m Ritz vectors, best
    first) followed by those of the p conjugate directions P. For "ortho", [X, P] is
    B-orthonormal; for "basic", P has m rows aligned with X (P_j is the last update of X_j).
    ``AXPt`` holds A [X, P], or only A X (m rows) when A X is recomputed each step.
    """

    XPt: torch.Tensor
    AXPt: torch.Tensor
    BXPt: torch.Tensor
    theta: torch.Tensor  # (m,)
    m: int
    G: torch.Tensor | None = None  # [X, P]^T A [X, P] (float64) when known without recomputing

    @property
    def Xt(self) -> torch.Tensor:
        return self.XPt[: self.m]

    @property
    def AXt(self) -> torch.Tensor:
        return self.AXPt[: self.m]

    @property
    def BXt(self) -> torch.Tensor:
        return self.BXPt[: self.m]

    @property
    def p(self) -> int:
        return self.XPt.shape[0] - self.m


class EngineBase:
    """One block LOBPCG solve's settings, tolerances and buffers (see ``engine.Engine``)."""

    def __init__(self, v: Validated, monitor: Monitor, *, m: int, method: str, largest: bool,
                 T: LinearOperator | None, X_start: torch.Tensor, recompute_AX: bool = False) -> None:
        # recompute_AX: apply A to the new X every step instead of updating stored A X, A P
        # (only for "ortho"; "basic" needs A P for its explicit Gram matrices).
        self.recompute_AX = recompute_AX and method == "ortho"
        self.A = v.operator
        self.B = v.B
        self.k, self.m, self.tol, self.max_iter = v.k, m, v.tol, v.max_iter
        self.method = method
        self.largest = largest
        self.T = T
        self.monitor = monitor
        self.X_start = X_start
        dtype = v.operator.dtype
        self.eps = torch.finfo(dtype).eps
        n = v.operator.shape[0]
        # Directions whose relative Gram eigenvalue is below this are dependent to working precision.
        self.drop_tol = 10 * self.eps * m
        # Orthogonality accepted for [X, P]: Gram entries of n-vectors carry about sqrt(n) eps
        # of rounding, so asking for less would re-orthonormalize every step.
        self.ortho_tol = 10 * self.eps * math.sqrt(n) * math.sqrt(m)
        # float32: rebuild the X rows of the carried projected matrix each step (_carried_gram)
        self.fresh_rows = self.recompute_AX and dtype == torch.float32
        self.norm_estimate = 0.0
        # smallest residual norm of the active columns in the current step (set by _step)
        self.smallest_active_residual = math.inf
        self.notes: list[str] = []
        self.n_refreshed = 0  # audits that rebuilt the projected matrix from fresh products
        # Double buffers of the "ortho" step (``OrthoStep._pair``): the rows of [X, P] (or
        # A [X, P]) sit in one, with room above them for the new directions W (and A W), so that
        # the Gram products and the update of the block are single GEMMs over a contiguous
        # [W; X; P], written into the other buffer. Allocated on first use.
        self._buffers: dict[str, list[torch.Tensor]] = {}
        self._eyes: dict[int, torch.Tensor] = {}

    # -- building blocks --------------------------------------------------------
    def _B(self, Yt: torch.Tensor) -> torch.Tensor:
        """B Y as rows (Y itself without B)."""
        return Yt if self.B is None else apply_rows(self.B, Yt)

    def _threshold(self, theta: torch.Tensor) -> torch.Tensor:
        """Per-column convergence threshold of the residual norms (``residual_threshold``)."""
        return residual_threshold(theta, self.tol, self.norm_estimate)

    def _ritz(self, G: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Ritz values (best first) and vectors of the projected matrix G; they update the
        ||A|| estimate of the threshold."""
        values, Z = sym_eigh(G, self.largest)
        if values.numel():
            self.norm_estimate = max(self.norm_estimate, abs(float(values[0])), abs(float(values[-1])))
        return values, Z
