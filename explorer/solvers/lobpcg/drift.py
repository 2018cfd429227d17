"""Rounding-drift control of the block engine: the periodic audits of its implicit quantities.

The block engine updates A [X, P] (with stored products) and the projected matrix
[X, P]^T A [X, P] with the small Rayleigh-Ritz coefficients instead of recomputing them,
and keeps [X, P] B-orthonormal only through those coefficients. Rounding accumulates in
all three. Every ``REFRESH`` iterations the engine audits them:

* ``_refresh_products``: recompute the products (and the projected matrix) where they
  drifted, from fresh matvecs;
* ``_maybe_reorthonormalize``: restore the B-orthonormality of X and P with one small
  transform (SVQB, Stathopoulos & Wu 2002), applied to the vectors and to their stored
  products, so no matvecs are spent.
"""

from __future__ import annotations

import torch

from explorer.solvers.lobpcg.linalg import apply_rows, combine, gram, svqb_from_gram
from explorer.solvers.lobpcg.state import REFRESH, BlockState, EngineBase

# With stored products, A [X, P] is recomputed from scratch every _FRESH_EVERY audits (every
# 50 iterations): the stored products drift by rounding.
_FRESH_EVERY = 5


class DriftAudit(EngineBase):
    """The audits (methods of ``engine.Engine``)."""

    def _refresh_products(self, s: BlockState, threshold: torch.Tensor, it: int) -> bool:
        """At an audit: replace implicitly updated products by fresh ones where they drifted.

        The Ritz step uses [X, P]^T A [X, P] carried over from step to step (and, with stored
        products, A P and A X updated by the Ritz coefficients); their rounding accumulates.
        Unchecked, it drove Ritz values below the spectrum of a positive definite matrix (float32
        1-D Laplacian, SA) and far off after long stagnation (float64, a multiple zero
        eigenvalue), with the residuals stalled until ``max_iter``. With A X recomputed each step the check is free: the carried Ritz values must match
        the fresh Rayleigh quotients x^T A x / x^T B x to within each column's convergence
        threshold, else A P is computed (p matvecs) and the block rebuilt exactly. With stored
        products A [X, P] is recomputed every ``_FRESH_EVERY`` audits (q matvecs; runs shorter
        than that pay nothing). Returns True when the state changed (recompute the residuals).
        """
        m, p = self.m, s.p
        if self.recompute_AX:
            quotients = (s.Xt * s.AXt).sum(1) / (s.Xt * s.BXt).sum(1)  # x^T A x / x^T B x
            # a difference at the rounding level of a Rayleigh quotient is not drift (and a tol
            # below it, which cannot be met anyway, must not trigger a recomputation each audit)
            allowed = torch.clamp(threshold, min=self.ortho_tol * self.norm_estimate)
            if p == 0 or not bool(((quotients - s.theta).abs() > allowed).any()):
                return False
            APt = apply_rows(self.A, s.XPt[m:])
            G = gram([s.XPt], [torch.cat([s.AXt, APt])])
            s.G, s.theta = 0.5 * (G + G.T), quotients
            self.n_refreshed += 1
            return True
        if it % (_FRESH_EVERY * REFRESH) != 0 or s.AXPt.shape[0] != s.XPt.shape[0]:
            return False
        s.AXPt = apply_rows(self.A, s.XPt)
        s.G = None
        s.theta = (s.Xt * s.AXt).sum(1) / (s.Xt * s.BXt).sum(1)
        return True

    def _maybe_reorthonormalize(self, s: BlockState, loss: float) -> BlockState:
        """Restore B-orthonormality of X (and, for "ortho", of P and P _|_ X) after update drift.

        Builds one small (q, q') transform M (SVQB of X, then P projected against the new X and
        SVQB'd) and applies it to X P and to the stored products, so no matvecs are spent;
        the carried Gram block becomes M^T G M.
        """
        if loss <= 10 * self.ortho_tol:
            return s
        self.notes.append("re-orthonormalized the block after rounding drift")
        m, q = self.m, s.XPt.shape[0]
        f64 = torch.float64
        _, Tx, _ = svqb_from_gram(s.Xt @ s.BXt.T, 0.0)
        if Tx.shape[1] != m:
            return s
        M = torch.zeros(q, m, dtype=f64)
        M[:m] = Tx.to("cpu", f64)
        if self.method == "ortho" and s.p > 0:
            BXn = Tx.T @ s.BXt
            Cx = (BXn @ s.XPt[m:].T).to("cpu", f64)  # (m, p): overlap of P with the new X
            Mp = torch.zeros(q, s.p, dtype=f64)
            Mp[:m] = -Tx.to("cpu", f64) @ Cx
            Mp[m:] = torch.eye(s.p, dtype=f64)
            Pt, BPt = combine([s.XPt], Mp), combine([s.BXPt], Mp)
            keep, Tp, _ = svqb_from_gram(Pt @ BPt.T, self.drop_tol)
            M = torch.cat([M, Mp[:, keep] @ Tp.to("cpu", f64)], 1)
        elif s.p > 0:  # "basic": P is aligned with the columns of X and is not B-orthogonal to it; keep it
            M = torch.cat([M, torch.cat([torch.zeros(m, s.p, dtype=f64), torch.eye(s.p, dtype=f64)], 0)], 1)
        XPt = combine([s.XPt], M)
        AXPt = combine([s.AXPt], M[:m, :m]) if s.AXPt.shape[0] == m else combine([s.AXPt], M)
        BXPt = combine([s.BXPt], M) if self.B is not None else XPt
        G = None if s.G is None else M.T @ s.G @ M
        return BlockState(XPt, AXPt, BXPt, s.theta, m, G=G)
