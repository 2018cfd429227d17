"""New basis blocks: orthonormalization, the start block, breakdowns.

``orthonormalize`` factors a block W (the rows left by the Lanczos step) as ``W = R^T Qn``
with orthonormal rows Qn. The usual path is Cholesky QR (``G = W W^T = L L^T``,
``Qn = L^-1 W``: one small Gram matrix instead of a Householder QR of an n x b matrix),
repeated once (CholQR2) unless the block is already well conditioned, since the error of one
pass grows like eps cond(W)^2 (Yamamoto, Nakatsukasa, Yanagisawa & Fukaya, Roundoff error
analysis of the CholeskyQR2 algorithm, ETNA 44, 2015). A block that is not clearly full rank
goes the rank-revealing way (eigenvectors of its Gram matrix, directions kept by the norm of
the combined vector) and is projected against the basis once more.

A direction below ``breakdown_floor`` is an invariant subspace (``beta ~ 0``): it is
replaced by a fresh random vector orthogonal to the basis (``_random_orthogonal``) with
coupling 0, so the recurrence continues and the other eigenvalues are still found; the
bookkeeping of the new Krylov "segment" is in ``convergence``. ``start_block`` builds the
first block from ``X0`` or at random.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from explorer.solvers.lanczos.linalg import (
    combine,
    small_cholesky,
    small_eigh,
    small_lower_inverse,
    sub_combine,
    to_numpy,
    to_tensor,
)
from explorer.solvers.lanczos.state import LanczosState

__all__ = ["BlockOrthonormalization"]


class BlockOrthonormalization(LanczosState):
    """Orthonormal new blocks (CholQR2 or rank-revealing), breakdown vectors, the start block."""

    def breakdown_floor(self, scale: float | None = None) -> float:
        """Norm below which a new direction counts as zero (an invariant subspace).

        ``scale``: the size of the vectors being tested, ``||A||`` (the default) for a block
        that came out of a product with A; 1 for rows that were already normalized (a
        relative floor: an absolute one made every unit vector "zero" once ||A|| passed
        1 / (100 eps) ~ 4.5e13).

        ``100 eps ||A||`` with re-orthogonalization. In "none" ``sqrt(eps) ||A||``: there the
        next vector is normalized from what the local step left, and a direction that small
        is mostly rounding from the whole (non-orthogonal) basis; normalized, its overlaps
        with vectors two or more steps back are O(1) (Paige's omega grows like
        ``eps ||A|| / beta``) and the projected matrix no longer bounds the spectrum (with the
        smaller floor, Ritz values landed far outside it at n = 19, b = 3 once the Krylov
        space ran out).
        """
        scale = max(self.anorm if scale is None else scale, self.tiny)
        return math.sqrt(self.eps) * scale if self.mode == "none" else 100.0 * self.eps * scale

    def _random_orthogonal(self, count: int, against: torch.Tensor) -> torch.Tensor:
        """``count`` random rows orthonormal to the rows of ``against`` (CGS2); may return fewer."""
        space = self.space
        Z = space.random(self.n, count, self.generator, dtype=self.dtype, device=self.device).T.contiguous()
        if self.mode == "none" and against.shape[0]:
            # The basis of plain Lanczos is not orthonormal (and may hold more than n rows), so
            # Gram-Schmidt against it is no projection: use an orthonormal basis of its span
            # (SVD, O(n p^2), only at a breakdown). Otherwise, once the Krylov space has run
            # out, the "fresh" vector overlaps the block it follows and the next step's local
            # coupling (assumed 0) is wrong by that overlap.
            if space.sharded:  # the SVD of the rows' QR factor R (TSQR), U = Q U_R
                Qa, Ra = space.qr(against.T)
                Ur, sv, _ = torch.linalg.svd(Ra, full_matrices=False)
                U = Qa @ Ur
            else:
                U, sv, _ = torch.linalg.svd(against.T, full_matrices=False)
            against = U[:, sv > math.sqrt(self.eps) * sv[0]].T.contiguous()
        out = []
        for i in range(count):
            z = Z[i]
            basis = torch.cat([against] + [r.unsqueeze(0) for r in out]) if (against.shape[0] or out) else against
            for _ in range(2):
                if basis.shape[0]:
                    z = z - basis.T.mv(space.mv(basis, z))
            nz = float(space.norm(z))
            if nz <= 1e3 * self.eps * math.sqrt(self.n):  # the basis spans (numerically) everything
                break
            out.append(z / nz)
        if not out:
            return torch.empty(0, self.n_local, dtype=self.dtype, device=self.device)
        return torch.stack(out)

    def orthonormalize(self, W: torch.Tensor, p: int, local_from: int = 0,
                       scale: float | None = None, out: torch.Tensor | None = None) -> tuple[torch.Tensor, np.ndarray, int]:
        """``W = R^T Qn`` with orthonormal rows Qn (bn, n), R (bn, bc). Returns (Qn, R, replaced).

        ``out`` (bc, n), not overlapping W: where the usual (Cholesky QR) path gives Qn, it is
        written there (the basis rows it goes to), saving a copy.

        Directions of W with norm below ``100 eps ||A||`` are an invariant subspace
        (breakdown): they get fresh random vectors orthogonal to the basis and a zero
        coupling, so the recurrence continues. ``local_from``: in "none" mode, the first
        basis row the local step coupled to (rows ``[local_from, p)``, see below). ``scale``:
        see ``breakdown_floor`` (rows that are not products with A pass their own size).
        """
        bc = W.shape[0]
        floor = self.breakdown_floor(scale)
        if bc == 1:
            beta = float(self.space.norm(W[0]))
            if beta > floor:
                return W / beta, np.array([[beta]]), 0
            Qn = self._random_orthogonal(1, self.Vt[:p])
            return Qn, np.zeros((Qn.shape[0], 1)), Qn.shape[0]
        space = self.space
        gram = to_numpy(space.dots(W, W))
        d = np.sqrt(np.maximum(gram.diagonal(), 0.0))
        if d.min() > max(floor, 1e-4 * d.max()):
            # Cholesky QR: W = L Qn with G = W W^T = L L^T (one small GEMM instead of a
            # Householder QR of an n x b matrix). Its orthogonality error is ~eps cond(W)^2,
            # so a second pass (CholQR2) follows unless the block is already well conditioned.
            L1 = small_cholesky(gram)
            dl = np.abs(L1.diagonal()) if L1 is not None else None
            # Equal row norms do not make a block full rank: parallel rows (the last block
            # when the Krylov space runs out, e.g. n odd with b = 2) pass the test above and
            # Cholesky "succeeds" on the Gram's rounding noise (pivot ~ eps ||W||^2, so
            # dl.min ~ sqrt(eps) dl.max); the new row is then that noise scaled up, far from
            # orthogonal to the basis. Only a clearly full-rank block (cond(W) < 1e4, well
            # inside CholQR2's ~1/sqrt(eps)) takes this path; the rest the rank-revealing one.
            if dl is not None and dl.min() > max(floor, 1e-4 * dl.max()):
                R = L1.T.copy()
                if dl.min() < 1e-2 * dl.max():
                    Qn = combine(to_tensor(small_lower_inverse(L1), W), W)
                    L2 = small_cholesky(to_numpy(space.dots(Qn, Qn)))
                    if L2 is not None:
                        Qn = combine(to_tensor(small_lower_inverse(L2), W), Qn, out=out)
                        R = L2.T @ R
                else:
                    Qn = combine(to_tensor(small_lower_inverse(L1), W), W, out=out)
                return Qn, R, 0

        def reveal(X: torch.Tensor, G: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
            # Directions U of X's Gram, kept by the norm of the combined vector U^T X (exact
            # to eps ||X||), not by the Gram eigenvalue (only exact to eps ||X||^2).
            _s2, Ux = small_eigh(np.ascontiguousarray(G))
            Ux = Ux[:, ::-1].copy()  # descending; copies: torch refuses negative strides
            Zx = to_tensor(Ux.T, X) @ X
            ok = np.flatnonzero(np.asarray(space.norms(Zx).tolist()) > floor)
            return np.ascontiguousarray(Ux[:, ok]), Zx[torch.as_tensor(ok, dtype=torch.long, device=Zx.device)]

        U, Z = reveal(W, gram)  # W ~ U Z, rows of Z ~orthogonal
        r = U.shape[1]
        if r and p:
            # A direction of norm sigma << ||W|| comes from cancellation inside W: its overlap
            # with the basis (eps ||W|| after Gram-Schmidt, omega ||W|| in "partial") is
            # amplified by ||W|| / sigma, so project it out again (twice; the part dropped is
            # that remnant) and drop what is left below the floor (W = U_r Z = U_r U2 Z2).
            # "none" keeps its lost global orthogonality (that is the point of the mode) but
            # not a lost *local* one: against the rows the three-term step coupled to only.
            # Without that, the block that runs out of Krylov space (n = 13, b = 3) was
            # normalized rounding noise with O(1) overlap with the current block, and the
            # projected matrix grew eigenvalues 30-100x outside the spectrum.
            V = self.Vt[local_from:p] if self.mode == "none" else self.Vt[:p]
            for _ in range(2):
                sub_combine(Z, space.dots(Z, V), V)
            U2, Z = reveal(Z, to_numpy(space.dots(Z, Z)))
            U = np.ascontiguousarray(U @ U2)
            r = U.shape[1]
        rows: list[torch.Tensor] = []
        Rk = np.zeros((0, r))
        if r:
            Qc, Rkt = space.qr(Z.T)
            rows.append(Qc.T)
            Rk = to_numpy(Rkt)
        fresh = self._random_orthogonal(bc - r, torch.cat([self.Vt[:p]] + rows))
        if fresh.shape[0]:
            rows.append(fresh)
        Qn = torch.cat(rows) if rows else torch.empty(0, self.n_local, dtype=self.dtype, device=self.device)
        R = np.zeros((Qn.shape[0], bc))
        R[:r] = Rk @ U[:, :r].T  # W^T = [Q_k R_k, ~0] U^T
        return Qn.contiguous(), R, fresh.shape[0]

    def start_block(self, X0: torch.Tensor | None) -> torch.Tensor:
        """b orthonormal start rows from X0 (n, c) columns (see ``lanczos``'s X0) or at random."""
        b, space = self.b, self.space
        if X0 is not None and X0.shape[0] != self.n_local:
            X0 = space.local(X0)  # a start given whole: this rank's rows of it
        if X0 is None:
            X = space.random(self.n, b, self.generator, dtype=self.dtype, device=self.device)
        elif X0.shape[1] > b:  # a random combination keeps every column's directions
            mix = torch.randn(X0.shape[1], b, generator=self.generator, dtype=torch.float64).to(self.dtype)
            X = X0 @ mix.to(self.device)
        elif X0.shape[1] < b:
            X = torch.cat([X0, space.random(self.n, b - X0.shape[1], self.generator, dtype=self.dtype,
                                            device=self.device)], dim=1)
        else:
            X = X0.clone()
        Xt = X.T.contiguous()
        size = float(space.norms(Xt).max()) if Xt.numel() else 0.0
        Qn, _R, _ = self.orthonormalize(Xt, 0, scale=size)
        if Qn.shape[0] < b:  # a zero / dependent start: fill with random directions
            Qn = torch.cat([Qn, self._random_orthogonal(b - Qn.shape[0], Qn)])
        return Qn
