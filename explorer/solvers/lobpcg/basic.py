"""The "basic" step of block LOBPCG: Knyazev's original step on the raw basis [X, W, P].

Knyazev (2001), Alg. 4.1 and Sec. 4: the columns of W and P are only normalized, and the
generalized Rayleigh-Ritz problem is reduced by a Cholesky factor of S^T B S; the new
P = W C_W + P C_P is the new X without its X component. Cheaper orthogonalization than
"ortho", but the Gram matrix becomes ill-conditioned near convergence. When its Cholesky
fails (or is numerically singular) the step is retried without P, the usual restart
(Hetmaniuk & Lehoucq 2006, "Basis selection in LOBPCG"); when that fails too, the engine
switches to the "ortho" step for the rest of the solve (``engine.Engine._step``).
"""

from __future__ import annotations

import torch

from explorer.solvers.lobpcg.linalg import apply_rows, combine, gram, selection, take_rows
from explorer.solvers.lobpcg.state import BlockState, EngineBase


class BasicStep(EngineBase):
    """The "basic" step (methods of ``engine.Engine``)."""

    def _step_basic(self, s: BlockState, active: torch.Tensor, Rt: torch.Tensor) -> BlockState | None:
        """Rayleigh-Ritz on [X, W, P] (active columns of W and P); without P when that fails;
        None when that fails too (the engine then switches to "ortho")."""
        m = self.m
        sel = selection(active)
        Wt = take_rows(Rt, sel)
        if self.T is not None:
            Wt = apply_rows(self.T, Wt)
        BWt = self._B(Wt) if self.B is not None else Wt
        # Normalize W to unit B-norm; Knyazev 2001 works with the raw residual directions.
        norms = torch.sqrt(torch.clamp((Wt * BWt).sum(1), min=torch.finfo(Wt.dtype).tiny)).unsqueeze(1)
        Wt = Wt / norms
        BWt = BWt / norms if self.B is not None else Wt
        AWt = apply_rows(self.A, Wt)
        blocks = [(s.Xt, s.AXt, s.BXt), (Wt, AWt, BWt)]
        if s.p > 0:
            Pt, APt = take_rows(s.XPt[m:], sel), take_rows(s.AXPt[m:], sel)
            BPt = take_rows(s.BXPt[m:], sel) if self.B is not None else Pt
            pn = torch.sqrt(torch.clamp((Pt * BPt).sum(1), min=torch.finfo(Pt.dtype).tiny)).unsqueeze(1)
            Pt, APt = Pt / pn, APt / pn
            BPt = BPt / pn if self.B is not None else Pt
            state = self._rayleigh_ritz_general(blocks + [(Pt, APt, BPt)])
            if state is not None:
                return state
            self.notes.append("restarted without P after an ill-conditioned Gram matrix")
        return self._rayleigh_ritz_general(blocks)

    def _rayleigh_ritz_general(self, blocks: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
                               ) -> BlockState | None:
        """Rayleigh-Ritz on a raw (non-orthonormal) basis: Cholesky of S^T B S (Knyazev 2001, Sec. 4)."""
        m = self.m
        S = [b[0] for b in blocks]
        GA = gram(S, [b[1] for b in blocks])
        GB = gram(S, [b[2] for b in blocks])
        d = GB.diagonal().clamp_min(1e-300).rsqrt()
        L, info = torch.linalg.cholesky_ex(d[:, None] * GB * d[None, :])
        if int(info) != 0:
            return None
        # Reject a numerically singular Gram matrix (cond > ~1/(1e4 eps) from the Cholesky diagonal):
        # the Ritz vectors would lose B-orthonormality by cond * eps.
        diag_L = L.diagonal()
        if float(diag_L.min()) ** 2 < 1e4 * self.eps * float(diag_L.max()) ** 2:
            return None
        Linv = torch.linalg.solve_triangular(L, torch.eye(L.shape[0], dtype=torch.float64), upper=False)
        Ci = d[:, None] * Linv.T  # S @ Ci is B-orthonormal
        values, Z = self._ritz(Ci.T @ GA @ Ci)
        Yx = Ci @ Z[:, :m]  # coefficients of the new X in the raw basis
        Yp = Yx.clone()
        Yp[:m] = 0  # Knyazev 2001: P = W C_W + P C_P (the new X without its X component)
        C = torch.cat([Yx, Yp], 1)
        XPt = combine(S, C)
        AXPt = combine([b[1] for b in blocks], C)
        BXPt = combine([b[2] for b in blocks], C) if self.B is not None else XPt
        return BlockState(XPt, AXPt, BXPt, values[:m].to(XPt.device, XPt.dtype), m)
