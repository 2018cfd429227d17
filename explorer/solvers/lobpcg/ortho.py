"""The "ortho" step of block LOBPCG: Rayleigh-Ritz on [X, P, W] with [X, P] B-orthonormal.

Duersch, Shao, Yang & Gu (2018), "A robust and efficient implementation of LOBPCG":

* P is chosen inside the span of the discarded Ritz vectors so that it is B-orthogonal to
  the new X and spans what the old X contributed (their Sec. 3.2:
  P = S Z_r basis(Z_r[x-rows]^T)), so [X, P] stays B-orthonormal.
* W = T R is B-orthonormalized with SVQB (Stathopoulos & Wu 2002; Duersch et al. Alg. 4,
  dropping dependent directions). Duersch et al. also B-orthogonalize W against [X, P]
  (their Alg. 3); we compute the overlap C = [X, P]^T B W (one small GEMM) and project only
  when its largest singular value, for the orthonormalized W, exceeds 0.9
  (``_nearly_inside``); otherwise that overlap enters the Gram matrix
  S^T B S = [[I, C], [C^T, I]] exactly and the Rayleigh-Ritz step is a Cholesky-reduced
  ``eigh`` of a (3 m x 3 m) matrix. Without preconditioner and B, W = R is orthogonal to
  the last Rayleigh-Ritz space (Galerkin condition) up to the drift of the stored products,
  so the projection rarely runs.
* S^T A S needs only [X, P]^T A W and W^T A W: the [X, P] block is carried over from the
  previous step as Y^T G Y (``_carried_gram``; audited in ``drift``).

Two implementations of the same mathematics. ``_step_ortho_general`` (with B or a
preconditioner) works on separate blocks. ``_step_ortho`` (B = I, T = I) keeps the block
in one of two (4 m, n) buffers with the residuals W directly above [X, P] and A W directly
above W, so [W; X; P] [A W; W]^T is one GEMM that yields W^T A W, W^T W, [X, P]^T A W and
C = [X, P]^T W, and the new [X, P] is one GEMM into the other buffer; the SVQB transform
of W is folded into the small matrices and the update coefficients instead of applied to
W (unless its Gram matrix is nearly singular). Per iteration that is two passes over the
(3 m, n) basis plus the operator products, instead of about five.
"""

from __future__ import annotations

import torch

from explorer.solvers.lobpcg.linalg import (
    apply_rows,
    combine,
    gram,
    orth_basis_of_rows,
    selection,
    svqb_from_gram,
    take_rows,
    transform_rows,
)
from explorer.solvers.lobpcg.state import BlockState, EngineBase

# The SVQB transform of W is folded into the small matrices instead of applied to W when the
# scaled Gram matrix of W has eigenvalue ratio >= this (and nothing is dropped). Either way the
# new W is orthonormal only to ~eps / ratio (Stathopoulos & Wu 2002); the Gram entries then
# carry the same ~eps / ratio, so folding loses nothing, and the drift audit catches any excess.
_FOLD_MIN_CONDITIONING = 1e-6


def _transformed_overlap(C: torch.Tensor, keep: torch.Tensor, Tm: torch.Tensor) -> torch.Tensor:
    """``C[:, keep] T``: the overlap of [X, P] with the SVQB-orthonormalized W (from its raw
    overlap C and the transform ``keep, T`` of ``svqb_from_gram``)."""
    return (C if bool(keep.all()) else C[:, keep]) @ Tm


def _nearly_inside(Ct: torch.Tensor) -> bool:
    """Whether span W comes within ~25 degrees of span [X, P]: the largest singular value of
    ``Ct``, the overlap of the orthonormalized W (``_transformed_overlap``; the cosine of the
    smallest principal angle), exceeds 0.9, and W must be projected before the Rayleigh-Ritz step.

    Tested after the transform, not on the columns of W one by one: when W is ill-conditioned
    (residual norms from 1e-11 to 1e-4 on a 20-fold zero eigenvalue), a combination that the
    transform scales up can lie almost inside span [X, P] (cosine 1.0) while each column's
    cosine stays below 0.9; the Cholesky factor of [[I, C], [C^T, I]] then multiplied the
    rounding of the stored products by ~50 in a step (and a Ritz value fell to -4e-9).
    ||.||_2 <= ||.||_F: the SVD runs only when the cheap bound is inconclusive.
    """
    Ct = Ct.to("cpu", torch.float64)
    return float(torch.linalg.vector_norm(Ct)) > 0.9 and float(torch.linalg.matrix_norm(Ct, ord=2)) > 0.9


class OrthoStep(EngineBase):
    """The "ortho" step (methods of ``engine.Engine``)."""

    def _new_directions(self, s: BlockState, Rt: torch.Tensor, res: torch.Tensor,
                        active: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """W = T R (active columns), B-orthonormal, plus its overlap C = [X, P]^T B W.

        Knyazev's Rayleigh-Ritz tolerates a W that is not B-orthogonal to [X, P] as long as the
        Gram matrix stays well conditioned, so we only pay for a projection when it is needed:
        the overlap C is computed (one small GEMM); if its largest singular value (the cosine of
        the smallest angle between span W and span [X, P]) exceeds 0.9, W is projected
        (classical Gram-Schmidt, twice when the projection cancelled more than 99 % of a
        column: "twice is enough"), and its overlap is then zero to working precision.
        Otherwise C enters the B-Gram matrix exactly. Returns None when no direction is left.
        (Without preconditioner and B, R is orthogonal to the last Rayleigh-Ritz space in exact
        arithmetic; with stored products that drifted, a cosine of 1.0 was measured.)
        """
        sel = selection(active)
        Wt = take_rows(Rt, sel)
        if self.T is not None:
            Wt = apply_rows(self.T, Wt)
        BWt = self._B(Wt) if self.B is not None else Wt
        if self.T is None and self.B is None:
            norms = res[sel]  # W = R: its norms are the residual norms
        else:
            norms = torch.sqrt(torch.clamp((Wt * BWt).sum(1), min=torch.finfo(Wt.dtype).tiny))
        XPt, BXPt = s.XPt, s.BXPt
        C = BXPt @ Wt.T  # (q, a)
        keep, Tm, _ = svqb_from_gram(Wt @ BWt.T, self.drop_tol)
        if Tm.shape[1] == 0:
            return None
        Ct = _transformed_overlap(C, keep, Tm)
        projected = _nearly_inside(Ct)
        if projected:
            for _ in range(2):
                Wt = torch.addmm(Wt, C.T, XPt, alpha=-1)
                BWt = torch.addmm(BWt, C.T, BXPt, alpha=-1) if self.B is not None else Wt
                remaining = float(((Wt * BWt).sum(1) / norms.clamp_min(torch.finfo(Wt.dtype).tiny) ** 2).min())
                if remaining > 1e-4:  # lost at most 2 digits: one projection is enough
                    break
                C = BXPt @ Wt.T
            keep, Tm, _ = svqb_from_gram(Wt @ BWt.T, self.drop_tol)
            if Tm.shape[1] == 0:
                return None
        Wt = transform_rows(Wt, keep, Tm)
        BWt = transform_rows(BWt, keep, Tm) if self.B is not None else Wt
        if projected:
            Ct = torch.zeros(XPt.shape[0], Wt.shape[0], dtype=Wt.dtype, device=Wt.device)
        return Wt, BWt, Ct

    def _amplifies_rounding(self, conditioning: float) -> bool:
        """Whether A W must be recomputed after an ill-conditioned SVQB transform of W.

        A W is computed before W is orthonormalized (so one GEMM yields every small matrix);
        its rounding, ~eps ||A|| per unit column, is multiplied by the transform by up to
        1 / sqrt(conditioning). When that exceeds the smallest residual norm of the active
        columns, the transformed products cannot resolve that residual any more and the stored
        A P, A X drift: on a 20-fold zero eigenvalue (n = 40, SA) the stored A P drifted by 5e-6
        within 11 steps and a Ritz value reached -7e-6 before the periodic refresh. Then
        A (T^T W) is applied afresh (a matvecs), as Duersch et al. (2018) always do; otherwise
        the transform of A W is kept (no matvecs). Comparing with the convergence threshold
        instead also recomputed it on an eigenvalue at 0 whose residual was still far above the
        rounding (dense cluster n = 1000, k = 10 SA: 3918 -> 4859 matvecs, no gain); figures in
        docs/benchmarks-lobpcg.md.
        """
        if conditioning <= 0.0:
            return True
        return self.eps * self.norm_estimate / conditioning ** 0.5 > self.smallest_active_residual

    # -- the double buffers of the B = I, T = I step --------------------------------
    def _pair(self, name: str, like: torch.Tensor) -> list[torch.Tensor]:
        """The two (4 m, n) buffers of ``name`` (allocated on first use). Layout of one buffer,
        with Z = 2 m: rows [Z, Z + q) hold [X, P] (or A [X, P]); rows [Z - m, Z) the residuals
        of X, of which the active ones W end up in [Z - a, Z), directly above [X, P]; rows
        [Z - 2a, Z - a) hold A W. So [W; X; P] and [A W; W] are contiguous row blocks."""
        pair = self._buffers.get(name)
        if pair is None:
            shape = (4 * self.m, like.shape[1])
            pair = [torch.empty(shape, dtype=like.dtype, device=like.device) for _ in range(2)]
            self._buffers[name] = pair
        return pair

    def _home(self, name: str, top: torch.Tensor) -> int | None:
        """Index of the buffer of ``name`` whose rows [Z, Z + q) are ``top`` (no copy needed)."""
        pair = self._buffers.get(name)
        if pair is not None and top.is_contiguous():
            z = 2 * self.m
            for i, buf in enumerate(pair):
                if top.data_ptr() == buf[z].data_ptr():
                    return i
        return None

    def _stage(self, name: str, top: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(buffer with ``top`` at rows [Z, Z + q), the other buffer of the pair ``name``).

        ``top`` is copied in only when it does not live there already (the first step, after
        a re-orthonormalization or a "basic" step); a step reads one buffer and writes the new
        block into the other.
        """
        pair = self._pair(name, top)
        i = self._home(name, top)
        if i is None:
            z = 2 * self.m
            pair[0][z: z + top.shape[0]].copy_(top)
            i = 0
        return pair[i], pair[1 - i]

    def _fast_ortho(self) -> bool:
        """Whether the buffered step ``_step_ortho`` applies ("ortho", B = I, T = I)."""
        return self.method == "ortho" and self.B is None and self.T is None

    # -- one Rayleigh-Ritz step --------------------------------------------------
    def _step_ortho(self, s: BlockState, active: torch.Tensor, Rt: torch.Tensor,
                    res: torch.Tensor) -> BlockState | None:
        """The "ortho" step for B = I, T = I with fewer passes over the n-vectors.

        Same mathematics as ``_step_ortho_general`` (see there). W = R (active rows) sits
        directly above [X, P] in a buffer and A W directly above W, so one GEMM
        [W; X; P] [A W; W]^T gives W^T A W, W^T W, [X, P]^T A W and C = [X, P]^T W. When the
        SVQB transform of W is reasonably conditioned (``_FOLD_MIN_CONDITIONING``) it is not
        applied to W but folded into these small matrices and into the update coefficients,
        and the new [X, P] (and A [X, P]) is one GEMM into the other buffer. With T = I and
        B = I, W is orthogonal to [X, P] up to rounding (Galerkin), so the projection of the
        general step is not needed; if the overlap says otherwise we fall back to it.
        """
        if not self._fast_ortho():
            return self._step_ortho_general(s, active, Rt, res)
        m, q, z = self.m, s.XPt.shape[0], 2 * self.m
        f64 = torch.float64
        sel = selection(active)
        a = int(active.sum())
        xbuf, xnext = self._stage("x", s.XPt)
        W = xbuf[z - a: z]
        if not (Rt.data_ptr() == xbuf[z - m].data_ptr() and isinstance(sel, slice) and sel.stop == m):
            # Not in place: a gather, or residuals computed elsewhere. A slice of the buffer's own
            # residual rows may overlap W, so it is copied out first.
            W.copy_(take_rows(Rt, sel).clone() if isinstance(sel, slice) else take_rows(Rt, sel))
        AW = apply_rows(self.A, W, out=xbuf[z - 2 * a: z - a])
        G = (xbuf[z - a: z + q] @ xbuf[z - 2 * a: z].T).to("cpu", f64)  # rows [W; X; P], columns [A W, W]
        WW, C = G[:a, a:], G[a:, a:]
        keep, Tm, conditioning = svqb_from_gram(WW, self.drop_tol)
        if Tm.shape[1] == 0:
            return None
        C = _transformed_overlap(C, keep, Tm)  # of the orthonormalized W, as every branch below needs it
        if _nearly_inside(C):
            Rt = s.AXt - s.Xt * s.theta.unsqueeze(1)  # the buffer rows were reused: recompute
            return self._step_ortho_general(s, active, Rt, torch.linalg.vector_norm(Rt, dim=1))
        if conditioning >= _FOLD_MIN_CONDITIONING and bool(keep.all()):
            fold: torch.Tensor | None = Tm
            WAW, XAW = fold.T @ G[:a, :a] @ fold, G[a:, :a] @ fold
        else:  # ill-conditioned or dependent directions: transform W (and A W) explicitly
            fold = None
            Tw = Tm.to(W.device, W.dtype)
            Wt = transform_rows(W, keep, Tw)
            AWt = apply_rows(self.A, Wt) if self._amplifies_rounding(conditioning) else transform_rows(AW, keep, Tw)
            a = Wt.shape[0]
            xbuf[z - a: z].copy_(Wt)
            xbuf[z - 2 * a: z - a].copy_(AWt)
            W, AW = xbuf[z - a: z], xbuf[z - 2 * a: z - a]
            G = (xbuf[z - a: z + q] @ xbuf[z - 2 * a: z - a].T).to("cpu", f64)
            WAW, XAW = G[:a], G[a:]
        rr = self._rayleigh_ritz_ortho(s, active, XAW, 0.5 * (WAW + WAW.T), C, sel)
        if rr is None:
            return None
        values, Cf, GA = rr
        # Coefficients on the buffer rows [W (raw); X; P].
        Craw = torch.cat([Cf[q:] if fold is None else fold @ Cf[q:], Cf[:q]], 0)
        CrawT = Craw.T.to(W.device, W.dtype).contiguous()
        q_new = Craw.shape[1]
        XPt = torch.mm(CrawT, xbuf[z - a: z + q], out=xnext[z: z + q_new])
        if self.recompute_AX:
            AXPt = apply_rows(self.A, XPt[:m])  # fresh A X; A P is never needed in this mode
        else:
            abuf, anext = self._stage("a", s.AXPt)
            abuf[z - a: z].copy_(AW)
            AXPt = torch.mm(CrawT, abuf[z - a: z + q], out=anext[z: z + q_new])
        G_new, theta = self._carried_gram(Cf.T @ GA @ Cf, values[:m], XPt, AXPt, XPt)
        return BlockState(XPt, AXPt, XPt, theta.to(XPt.device, XPt.dtype), m, G=G_new)

    def _step_ortho_general(self, s: BlockState, active: torch.Tensor, Rt: torch.Tensor,
                            res: torch.Tensor) -> BlockState | None:
        """Rayleigh-Ritz on [X, P, W] with Duersch et al.'s choice of P, reusing stored products.

        [X, P] is B-orthonormal, so S^T B S = [[I, C], [C^T, I]] needs only C (computed in
        ``_new_directions``) and S^T A S needs only [X, P]^T A W and W^T A W: the [X, P]
        block is carried over from the previous step as Y^T G Y (refreshed explicitly every
        ``REFRESH`` iterations when A P is stored).
        """
        m = self.m
        directions = self._new_directions(s, Rt, res, active)
        if directions is None:
            return None  # every new direction lies in span[X, P]: stagnation at rounding level
        Wt, BWt, C = directions
        AWt = apply_rows(self.A, Wt)
        rr = self._rayleigh_ritz_ortho(s, active, (s.XPt @ AWt.T).to("cpu", torch.float64),
                                       (Wt @ AWt.T).to("cpu", torch.float64), C.to("cpu", torch.float64))
        if rr is None:
            return None
        values, Cf, GA = rr
        XPt = combine([s.XPt, Wt], Cf)
        if self.recompute_AX:
            AXPt = apply_rows(self.A, XPt[:m])  # fresh A X; A P is never needed in this mode
        else:
            AXPt = combine([s.AXPt, AWt], Cf)
        BXPt = combine([s.BXPt, BWt], Cf) if self.B is not None else XPt
        G_new, theta = self._carried_gram(Cf.T @ GA @ Cf, values[:m], XPt, AXPt, BXPt)
        return BlockState(XPt, AXPt, BXPt, theta.to(XPt.device, XPt.dtype), m, G=G_new)

    def _carried_gram(self, G: torch.Tensor, values: torch.Tensor, XPt: torch.Tensor, AXPt: torch.Tensor,
                      BXPt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The projected matrix [X, P]^T A [X, P] carried to the next step, and the Ritz values.

        ``G = Y^T GA Y`` is exact in exact arithmetic, but its rounding (~eps ||A|| a step)
        accumulates from step to step. In float64 the audit (``_refresh_products``) keeps that
        far below any threshold. In float32 it does not: thresholds are within 10-100x of
        eps ||A||, and on the float32 1-D Laplacian the carried values sank below the smallest
        eigenvalue of the positive definite matrix while the residuals, which contain that
        drift, stalled near the threshold (some seeds until ``max_iter``). So when A X is
        recomputed each step (``fresh_rows``: float32), the X rows of G are rebuilt from the
        fresh products, [X; P] (A X)^T (one (q, m) GEMM, a few % of a step), and the values
        become the fresh Rayleigh quotients x^T A x / x^T B x; only the P^T A P block stays
        carried. Iteration counts with it: docs/benchmarks-lobpcg.md.
        """
        m = self.m
        if not self.fresh_rows:
            return 0.5 * (G + G.T), values
        fresh = (XPt @ AXPt[:m].T).to("cpu", torch.float64)  # (q, m): [X; P]^T A X
        G = G.clone()
        G[:, :m] = fresh
        G[:m, :] = fresh.T
        quotients = fresh.diagonal() / (XPt[:m] * BXPt[:m]).sum(1).to("cpu", torch.float64)
        return 0.5 * (G + G.T), quotients

    def _rayleigh_ritz_ortho(self, s: BlockState, active: torch.Tensor, XAW: torch.Tensor, WAW: torch.Tensor,
                             C: torch.Tensor, sel: slice | torch.Tensor | None = None
                             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """The small part of the "ortho" step: Ritz values and the coefficients of the new [X, P].

        S = [X, P, W] with [X, P] and W each B-orthonormal and C = [X, P]^T B W, so
        S^T B S = [[I, C], [C^T, I]]; S^T A S from the carried G, XAW = [X, P]^T A W and
        WAW = W^T A W.
        Returns (values, Cf, GA): the new rows are Cf^T [X P; W]. ``sel``: ``selection(active)``
        when the caller has it.
        """
        m = self.m
        q, a = s.XPt.shape[0], WAW.shape[0]
        G_xp = s.G if s.G is not None else gram([s.XPt], [s.AXPt])
        GA = torch.cat([torch.cat([G_xp, XAW], 1), torch.cat([XAW.T, WAW], 1)])
        GA = 0.5 * (GA + GA.T)
        eye = self._eye(q + a)
        GB = eye.clone()
        GB[:q, q:] = C
        GB[q:, :q] = C.T
        L, info = torch.linalg.cholesky_ex(GB)
        if int(info) != 0:
            return None
        Linv = torch.linalg.solve_triangular(L, eye, upper=False)
        values, Z = self._ritz(Linv @ GA @ Linv.T)
        Y = Linv.T @ Z  # S Y is B-orthonormal; Y^T GA Y = diag(values)
        Yx, Yr = Y[:, :m], Y[:, m:]
        # P (Duersch et al. 2018, Sec. 3.2): within the span of the remaining Ritz vectors S Yr,
        # the directions that reproduce the old active X: basis of Yr^T GB e_rows.
        if sel is None:
            sel = selection(active)
        GB_rows = GB[:, sel] if isinstance(sel, slice) else GB.index_select(1, sel.to(GB.device))
        n_p = min(GB_rows.shape[1], Yr.shape[1])
        Cf = torch.cat([Yx, Yr @ orth_basis_of_rows(Yr.T @ GB_rows, n_p)], 1) if n_p > 0 else Yx
        return values, Cf, GA

    def _eye(self, size: int) -> torch.Tensor:
        """A cached float64 identity (read only)."""
        eye = self._eyes.get(size)
        if eye is None:
            eye = self._eyes[size] = torch.eye(size, dtype=torch.float64)
        return eye
