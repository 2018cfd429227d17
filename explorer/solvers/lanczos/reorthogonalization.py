"""Re-orthogonalization of each new Lanczos block: "full", "partial" (Simon 1984) and "none".

In floating point the Lanczos vectors lose orthogonality exactly along converged Ritz
vectors (Paige 1976), which then converge again: *ghost* copies of a simple eigenvalue.
The three modes differ in what they do about it after the local step of ``expansion``:

* ``"full"`` (``cgs``): the new block is measured against the whole basis (``c = V^T w``)
  and corrected with classical Gram-Schmidt, repeated once when the norm drops below
  ``DGKS_ETA = 1/sqrt(2)`` of its value ("twice is enough": Daniel, Gragg, Kaufman & Stewart
  1976). When the measured overlap is already below ``SKIP_FACTOR`` eps the correction
  is skipped: it would move w by its own rounding error. Orthogonality stays at the rounding
  level; cost 1-2 passes over the basis per step (ARPACK's DGKS does 2-4).
* ``"partial"`` (``_partial_step``): Simon's omega recurrence, written for the projected
  matrix of a thick-restarted (block) basis, estimates ``V^T v_(j+1)`` with O(m^2) work on
  small matrices and no pass over the basis; the block is re-orthogonalized only when the
  estimate exceeds sqrt(eps). Semi-orthogonality (overlaps below sqrt(eps)) keeps the Ritz
  values accurate to O(eps ||A||) (H. D. Simon, The Lanczos algorithm with partial
  reorthogonalization, Math. Comp. 42, 1984). The restart side (re-orthonormalizing the
  kept Ritz vectors when the carried bound nears sqrt(eps)) is in ``restart``.
* ``"none"``: plain Lanczos (for teaching). ``_measure_gram`` records the exact overlaps
  ``V^T v_(j+1)`` (one GEMV pass per step, the price of an honest loss curve; they also
  tell ghosts from true multiple eigenvalues, see ``convergence``), and ``_local_reorth``
  keeps *local* orthogonality, the condition of Paige's analysis that every Ritz value
  stays inside the spectrum.

References:
    C. C. Paige, Error analysis of the Lanczos algorithm for tridiagonalizing a symmetric
    matrix, J. Inst. Math. Appl. 18 (1976).
    H. D. Simon, The Lanczos algorithm with partial reorthogonalization, Math. Comp. 42 (1984).
    J. W. Daniel, W. B. Gragg, L. Kaufman and G. W. Stewart, Reorthogonalization and stable
    algorithms for updating the Gram-Schmidt QR factorization, Math. Comp. 30 (1976).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.linalg import lapack as _lapack

from explorer.solvers.lanczos.linalg import combine, sub_combine, to_numpy, to_tensor
from explorer.solvers.lanczos.state import LanczosState

__all__ = ["DGKS_ETA", "Reorthogonalization"]

# DGKS: repeat the Gram-Schmidt pass when it removed more than 1 - 1/sqrt(2) of the norm.
DGKS_ETA = 1.0 / math.sqrt(2.0)


class Reorthogonalization(LanczosState):
    """The per-mode treatment of a new block's overlap with the basis."""

    def cgs(self, W: torch.Tensor, p: int, *, force: bool = True) -> tuple[np.ndarray | None, float]:
        """Classical Gram-Schmidt of the rows of W against ``Vt[:p]``, measured first.

        The pass first measures ``c = V^T w`` (one GEMM). When ``max |c| / ||w||`` is
        below ``SKIP_FACTOR * eps`` (and not ``force``) the correction ``w -= V c`` would
        change w by about its own rounding error, so it is skipped (None is returned) and
        the measured value *is* the orthogonality of the new vector. Otherwise the
        correction is applied, and repeated once when the norm dropped below 1/sqrt(2) of
        its value (DGKS, "twice is enough"); the remaining overlap is then bounded by
        ``p eps ||w_before|| / ||w_after||`` (the rounding of one CGS pass against an
        orthonormal basis), which is what is returned.

        Returns:
            (coefficients added to the projected matrix or None, orthogonality of the result).
        """
        V, space = self.Vt[:p], self.space
        c = space.dots(W, V)  # (bc, p)
        cn = to_numpy(c)
        nb = space.norms(W).tolist()
        measured = float(np.abs(cn).max()) / max(min(nb), 1e-300)
        if not force and measured <= self.skip_level:
            self.n_skipped += 1
            return None, measured
        sub_combine(W, c, V)
        na = space.norms(W).tolist()
        ratio = max(x / max(a, 1e-300) for a, x in zip(na, nb))
        if ratio > 1.0 / DGKS_ETA:
            c2 = space.dots(W, V)
            sub_combine(W, c2, V)
            cn = cn + to_numpy(c2)
            n2 = space.norms(W).tolist()
            ratio = max(x / max(a, 1e-300) for a, x in zip(n2, na))
        return cn, p * self.eps * ratio

    def _local_reorth(self, W: torch.Tensor, lo: int, j: int, p: int) -> list[float]:
        """"none": one more pass of the local step against the rows it coupled to, ``Vt[lo:p]``.

        Plain Lanczos may lose *global* orthogonality (that is what the mode shows), but
        Paige's analysis, which keeps every Ritz value inside the spectrum, needs *local*
        orthogonality: each new vector orthogonal to its neighbours to O(eps). When the local
        step cancels most of ``A q`` (norm drop below 1/sqrt(2): an invariant subspace, or
        the Krylov space running out at small n) the rounding left along the neighbours is
        amplified by the drop; without this pass a block that ran out of space (n = 13,
        b = 2) came back as normalized noise and the projected matrix grew eigenvalues
        outside the spectrum. The coefficients go into the projected matrix (as in "full").
        Returns the new row norms.
        """
        V = self.Vt[lo:p]
        c = self.space.dots(W, V)  # (rows, p - lo)
        sub_combine(W, c, V)
        cn = to_numpy(c)
        H = self.H
        H[lo:p, j:p] += cn.T
        H[j:p, lo:j] = H[lo:j, j:p].T
        H[j:p, j:p] = 0.5 * (H[j:p, j:p] + H[j:p, j:p].T)
        return self.space.norms(W).tolist()

    def _measure_gram(self, p: int, bn: int) -> None:
        """"none": the exact overlaps of the new block with the basis (one GEMV pass)."""
        new = self.Vt[p:p + bn]
        g = to_numpy(self.space.dots(self.Vt[:p + bn], new))  # (p + bn, bn)
        G = self.G
        assert G is not None
        G[:p + bn, p:p + bn] = g
        G[p:p + bn, :p + bn] = g.T
        dev = np.abs(g)
        dev[p + np.arange(bn), np.arange(bn)] = np.abs(g[p + np.arange(bn), np.arange(bn)] - 1.0)
        if dev.size:
            self.loss = max(self.loss, float(dev.max()))

    def _partial_step(self, Qn: torch.Tensor, R: np.ndarray, j: int, p: int, bn: int,
                      replaced: int) -> tuple[torch.Tensor, np.ndarray]:
        """Simon's omega recurrence for the new block; re-orthogonalize when it passes sqrt(eps)."""
        Om = self.Omega
        assert Om is not None
        H = self.H
        eps, sqrt_eps = self.eps, math.sqrt(self.eps)
        bc = p - j
        if bn == bc == 1 and j > 0 and not replaced and R[0, 0] > 0:
            # the single-vector case of the recurrence below, on 1-D slices
            beta = float(R[0, 0])
            col1 = (H[:j, :p] @ Om[:p, j] - Om[:j, :p] @ H[:p, j]) / beta
            noise = eps * (self.anorm / beta + math.sqrt(self.n))
            col1 += np.where(col1 < 0, -noise, noise)
            local = eps * math.sqrt(self.n)
            estimate = max(float(np.abs(col1).max()), local)
            if estimate <= sqrt_eps:
                Om[:j, p] = col1
                Om[j, p] = local
                Om[p, :p] = Om[:p, p]
                Om[p, p] = 0.0
                self.loss = max(self.loss, estimate)
                return Qn, R
        col = np.zeros((p, bn))
        diag_r = np.abs(np.diag(R[:, :bc])) if R.shape[0] else np.zeros(0)
        if j > 0 and not replaced and diag_r.min() > 0:
            # G[i, new] R = (H[:j, :p] G[:p, j:p] - G[:j, :p] H[:p, j:p])[i] with G = I + Omega;
            # the identity's two terms are both H[:j, j:p] and cancel exactly, so they are left
            # out (fewer copies, and no rounding from subtracting two O(||A||) terms).
            rhs = H[:j, :p] @ Om[:p, j:p] - Om[:j, :p] @ H[:p, j:p]
            if bn == bc == 1:
                col[:j] = rhs / R[0, 0]
            elif bn == bc:  # X R = rhs  <=>  R^T X^T = rhs^T (LAPACK dgesv on a b x b system)
                col[:j] = _lapack.dgesv(np.ascontiguousarray(R[:, :bc].T), np.ascontiguousarray(rhs.T))[2].T
            else:
                col[:j] = rhs @ np.linalg.pinv(R)
            noise = eps * (self.anorm / max(float(diag_r.min()), np.finfo(np.float64).tiny) + math.sqrt(self.n))
            col[:j] += np.where(col[:j] < 0, -noise, noise)
        col[j:p] = eps * math.sqrt(self.n)  # the local step orthogonalized against the current block
        estimate = float(np.abs(col).max()) if col.size else 0.0
        if estimate > sqrt_eps:
            # Re-orthogonalize the unnormalized block W = R^T Qn when R is square (its size is
            # that of A's products, which the breakdown floor is relative to); otherwise the
            # unit rows, with a floor relative to 1.
            square = R.shape[0] == R.shape[1] and bool(np.all(np.diag(R) != 0))
            W = combine(to_tensor(np.ascontiguousarray(R.T), Qn), Qn) if square else Qn.clone()
            self.cgs(W, p)
            Q2, R2, _ = self.orthonormalize(W, p, scale=None if square else 1.0)
            # Fewer rows than bn: the basis already spans what is left of the space; keeping
            # the old rows (not orthogonal to it) would corrupt the recurrence.
            Qn, R, bn = Q2, (R2 if square else R2 @ R), Q2.shape[0]
            col = np.full((p, bn), eps * math.sqrt(self.n))
            self.n_reorth += 1
            estimate = float(np.abs(col).max(initial=0.0))
        Om[:p, p:p + bn] = col
        Om[p:p + bn, :p] = col.T
        Om[p:p + bn, p:p + bn] = 0.0
        # Omega changes only in this new column (and at restarts, which set the loss too),
        # so the running maximum is the max over the whole matrix (``estimate``: max |col|).
        self.loss = max(self.loss, estimate)
        return Qn, R
