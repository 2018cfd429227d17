"""The Lanczos step: apply A to the current block and run the (block) three-term recurrence.

One step takes the current block ``Q_j`` (rows ``Vt[j:p]``), forms ``W = A Q_j``, removes
the known couplings (the previous block ``beta_(j-1)``, or right after a thick restart the
"arrow" row that couples to every kept Ritz vector), removes the diagonal block
``alpha_j = Q_j^T W`` and hands W to the mode's re-orthogonalization (``reorthogonalization``)
and to the block orthonormalization (``blocks``), which returns ``Q_(j+1)`` and the coupling
``R_j`` (``W = R_j^T Q_(j+1)``). The projected matrix ``H`` gets ``alpha_j`` on its diagonal
and ``R_j`` next to it, so between restarts it is block tridiagonal (Lanczos 1950; block
version Golub & Underwood 1977; Golub & Van Loan, Matrix Computations, 4th ed., 10.1 and
10.3). With stored products the step also keeps ``A Q_j`` (``AVt``) for the true-residual
checks (``ritz``).

``_step_single`` is the b = 1 case written with a few fused tensor operations (``axpy``,
``dot``, one GEMV pass per re-orthogonalization), ``_step_block`` the general one.
"""

from __future__ import annotations

import numpy as np
import torch

from explorer.solvers.lanczos.linalg import sub_combine, to_numpy, to_tensor
from explorer.solvers.lanczos.reorthogonalization import DGKS_ETA
from explorer.solvers.lanczos.state import LanczosState

__all__ = ["Expansion"]


class Expansion(LanczosState):
    """Operator application and the Lanczos step (single vector and block)."""

    def apply(self, X: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """``(A X^T)^T`` (in ``self.units``) for a block of rows X (c, n), into ``out`` when
        given; counts c matvecs. Operators with a kernel for rows (scipy CSR on the CPU) write
        into ``out`` directly; a single row goes through ``matvec``; the rest through one
        ``matmat`` (one GEMM / HVP batch)."""
        if out is None:
            out = X.new_empty(X.shape)
        # rows_kernel is fixed per operator (read once in LanczosState): skip the wrappers' call
        # chain where there is no kernel
        if self.rows_kernel and self.op.matvecs_into(X, out):
            return out
        if X.shape[0] == 1 or self.columnwise:
            for i in range(X.shape[0]):
                out[i] = self.op.matvec(X[i])
            return out
        out.copy_(self.op.matmat(X.T).T)
        return out

    def _step_single(self, j: int, lo: int, iteration: int) -> tuple[np.ndarray, int]:
        """One single-vector Lanczos step (any mode): few, fused tensor operations."""
        H, Vt, space = self.H, self.Vt, self.space
        p = j + 1
        q = Vt[j]
        w = Vt[p]  # the next basis vector is built in its row
        self.apply(Vt[j:p], out=Vt[p:p + 1])
        if self.AVt is not None:
            self.AVt[j].copy_(w)
        w_norm0 = float(space.norm(w)) if (iteration == 1 or self.mode == "none") else 0.0
        if iteration == 1:  # ||A q|| <= ||A||: a scale for the breakdown test before any Ritz value
            self.anorm = max(self.anorm, w_norm0)
        if lo == j - 1:  # previous vector: beta_(j-1)
            w.sub_(Vt[lo], alpha=float(H[j, lo]))
        elif lo < j:  # right after a restart: the arrow row couples to every kept Ritz vector
            w.addmv_(Vt[lo:j].T, to_tensor(H[j, lo:j], w), alpha=-1.0)
        a = float(space.dot(w, q))
        w.sub_(q, alpha=a)
        H[j, j] = a
        self.alpha_max = abs(a)
        if self.mode == "full":
            V = Vt[:p]
            c = space.mv(V, w)
            cn = to_numpy(c)
            nb = float(space.norm(w))
            overlap = float(np.abs(cn).max()) / max(nb, 1e-300)
            if overlap <= self.skip_level:  # see cgs(): measured, nothing to correct
                self.n_skipped += 1
                beta = nb
            else:
                w.addmv_(V.T, c, alpha=-1.0)
                beta = float(space.norm(w))
                ratio = nb / max(beta, 1e-300)
                if beta < DGKS_ETA * nb:
                    c2 = space.mv(V, w)
                    w.addmv_(V.T, c2, alpha=-1.0)
                    cn = cn + to_numpy(c2)
                    before, beta = beta, float(space.norm(w))
                    ratio = before / max(beta, 1e-300)
                overlap = p * self.eps * ratio
                H[:p, j] += cn
                H[j, :p] = H[:p, j]
        else:
            beta = float(space.norm(w))
            if beta < DGKS_ETA * w_norm0:
                beta = self._local_reorth(w.unsqueeze(0), lo if lo < j else j, j, p)[0]
        floor = self.breakdown_floor()
        replaced = 0
        if beta > floor:
            w.div_(beta)
            bn, R = 1, np.array([[beta]])
            if self.mode == "full" and overlap > self.loss:
                self.loss = overlap
        else:  # invariant subspace: continue with a random vector orthogonal to the basis
            fresh = self._random_orthogonal(1, Vt[:p])
            bn = replaced = fresh.shape[0]
            if bn:
                Vt[p] = fresh[0]
                self._new_segment(p)
            R = np.zeros((bn, 1))
        if self.mode == "partial" and bn:  # Simon's estimate; re-orthogonalizes past sqrt(eps)
            row = Vt[p:p + 1]
            Qn, R = self._partial_step(row, R, j, p, bn, replaced)
            bn = Qn.shape[0]
            if bn and Qn is not row:
                Vt[p:p + bn] = Qn
        if bn:
            H[p, :] = 0.0
            H[:, p] = 0.0
            H[p, j] = H[j, p] = R[0, 0]
            if self.mode == "none":
                self._measure_gram(p, 1)
        return R, bn

    def _step_block(self, j: int, p: int, lo: int, bc: int, iteration: int) -> tuple[np.ndarray, int]:
        """One block Lanczos step (any block size and mode)."""
        H, Vt, space = self.H, self.Vt, self.space
        Q = Vt[j:p]
        W = self.apply(Q, out=self._work(bc))
        if self.AVt is not None:
            self.AVt[j:p] = W
        if iteration == 1:
            self.anorm = max(self.anorm, float(space.norms(W).max()))
        # local step: subtract the known couplings (previous block, or the kept Ritz
        # vectors right after a restart: the "arrow" rows) and the diagonal block alpha.
        if lo < j:
            sub_combine(W, to_tensor(H[j:p, lo:j], W), Vt[lo:j])
        norms0 = space.norms(W).tolist() if self.mode == "none" else None
        alpha_t = space.dots(W, Q)
        sub_combine(W, alpha_t, Q)
        alpha = to_numpy(alpha_t)
        H[j:p, j:p] = 0.5 * (alpha + alpha.T)
        self.alpha_max = float(np.abs(np.diagonal(alpha)).max())
        if norms0 is not None:
            after = space.norms(W).tolist()
            if any(a < DGKS_ETA * b0 for a, b0 in zip(after, norms0)):
                self._local_reorth(W, lo if lo < j else j, j, p)
        if self.mode == "full":
            c, overlap = self.cgs(W, p, force=False)
            if c is not None:
                H[:p, j:p] += c.T
                H[j:p, :j] = H[:j, j:p].T
                H[j:p, j:p] = 0.5 * (H[j:p, j:p] + H[j:p, j:p].T)
        Qn, R, replaced = self.orthonormalize(W, p, local_from=lo if lo < j else j, out=Vt[p:p + bc])
        if replaced:
            self._new_segment(p)
        bn = Qn.shape[0]
        if self.mode == "full" and bn == bc and not replaced and overlap > self.loss:
            self.loss = overlap  # (rows that were replaced by random vectors are orthogonalized twice)
        if self.mode == "partial" and bn:
            Qn, R = self._partial_step(Qn, R, j, p, bn, replaced)
            bn = Qn.shape[0]
        if bn and Qn.data_ptr() != Vt[p].data_ptr():
            Vt[p:p + bn] = Qn
        H[p:p + bn, :] = 0.0
        H[:, p:p + bn] = 0.0
        H[p:p + bn, j:p] = R
        H[j:p, p:p + bn] = R.T
        if self.mode == "none":
            self._measure_gram(p, bn)
        return R, bn
