"""Rayleigh-Ritz extraction: Ritz vectors, their true residuals, and the closing polish.

The eigenpairs ``(theta_i, s_i)`` of the projected matrix ``H = V^T A V`` give Ritz pairs
``(theta_i, V s_i)`` (Golub & Van Loan, Matrix Computations, 4th ed., 10.1). Their residual
estimates are free (``convergence``); the *true* residuals ``||A x - theta x||``, which alone
decide ``converged`` and the CONVERGED status, are computed here:

* with ``products="stored"`` from the kept products ``A V`` combined with the Ritz
  coefficients, no matvec; a pair whose residual lies within the rounding of those
  combinations of its threshold is re-checked with a fresh product, so rounding can never
  turn a failure into a pass;
* otherwise by applying A to the k Ritz vectors (k matvecs).

``_polish`` ends "partial" and "none" solves with a Rayleigh-Ritz step on the span of the
k returned vectors (no matvec), so that they are orthonormal to rounding although their
basis was only semi-orthogonal.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.linalg import lapack as _lapack

from explorer.solvers._common import residual_threshold
from explorer.solvers.lanczos.linalg import combine, small_eigh, to_numpy, to_tensor
from explorer.solvers.lanczos.state import LanczosState

__all__ = ["which_order", "RitzExtraction"]


def which_order(theta: np.ndarray, which: str) -> np.ndarray:
    """Indices putting ``theta`` (ascending, as eigh returns it) in ``which`` order, best first.

    The numpy counterpart of ``_common.select_order`` for eigh's ascending output: ties keep
    eigh's order, and the per-step projected work stays in numpy."""
    if which == "LA":
        return np.arange(len(theta) - 1, -1, -1)
    if which == "SA":
        return np.arange(len(theta))
    if which == "LM":
        return np.argsort(-np.abs(theta), kind="stable")
    ascending = np.argsort(theta, kind="stable")  # BE: alternate largest / smallest
    out = np.empty_like(ascending)
    lo, hi = 0, len(ascending) - 1
    for pos in range(len(ascending)):
        if pos % 2 == 0:
            out[pos] = ascending[hi]
            hi -= 1
        else:
            out[pos] = ascending[lo]
            lo += 1
    return out


class RitzExtraction(LanczosState):
    """Ritz vectors and true residuals of the wanted pairs; the final Rayleigh-Ritz polish."""

    def _ritz_vectors(self, S: np.ndarray, idx: np.ndarray, p: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Rows x_i = S[:, i]^T V (normalized: for "none" V is not orthonormal) and, with stored
        products, the rows A x_i = S[:, i]^T (A V) combined the same way (else None)."""
        coef = to_tensor(S[:, idx].T, self.Vt)
        X = combine(coef, self.Vt[:p])
        AX = combine(coef, self.AVt[:p]) if self.AVt is not None else None
        if self.mode != "full":  # a semi- or non-orthogonal basis: normalize the Ritz vectors
            norms = self.space.norms(X).unsqueeze(1)
            X = X / norms
            if AX is not None:
                AX = AX / norms
        return X, AX

    def _true_residuals(self, theta: np.ndarray, S: np.ndarray, wanted: np.ndarray,
                        p: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(X, A X, values, ||A x - theta x||, ok) for the ``wanted`` Ritz pairs (rows).

        With stored products A x comes from ``A V`` (each row an actual application of A,
        combined with the Ritz coefficients): no matvec. That is the true residual up to the
        rounding of the combinations, bounded by ``av_drift + p eps ||A||``; a pair whose
        residual is within that margin of its threshold, and only then, is checked again
        with a fresh application of A (so the rounding can never turn a failure into a pass).
        """
        X, AX = self._ritz_vectors(S, wanted, p)
        values = to_tensor(theta[wanted], self.Vt)
        thr = residual_threshold(values, self.tol, self.anorm)
        if AX is not None:
            res = self.space.norms(AX - values.unsqueeze(1) * X)
            margin = self.av_drift + p * self.eps * self.anorm
            unsure = torch.nonzero((res - thr).abs() < margin).flatten()
            if unsure.numel():
                AXu = self.apply(X[unsure])
                AX[unsure] = AXu
                res[unsure] = self.space.norms(AXu - values[unsure].unsqueeze(1) * X[unsure])
        else:
            AX = self.apply(X)
            res = self.space.norms(AX - values.unsqueeze(1) * X)
        return X, AX, values, res, res <= thr

    def _verify(self, theta: np.ndarray, S: np.ndarray, wanted: np.ndarray, p: int) -> bool:
        X, AX, values, res, ok = self._true_residuals(theta, S, wanted, p)
        self._n_ok = int(ok.sum())
        self._checked = (wanted.copy(), X, AX, values, res, ok)
        return bool(ok.all())

    def _polish(self, X: torch.Tensor, AX: torch.Tensor, values: torch.Tensor, res: torch.Tensor,
                ok: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """"partial" / "none": Rayleigh-Ritz on the span of the k returned vectors.

        Their basis was only semi-orthogonal (Simon: ~sqrt(eps) at worst, 1e-13..1e-8 in
        practice), so the Ritz vectors are too. With ``G = X X^T = L L^T`` the rows
        ``Xh = L^-1 X`` are orthonormal, ``A Xh = L^-1 (A X)`` needs no matvec, and the
        eigenpairs (theta', U) of ``Xh A Xh^T`` give ``U^T Xh``: orthonormal to rounding,
        Rayleigh quotients of their own span, residuals recomputed from the combined products.
        Kept only when at least as many pairs meet the tolerance as before.
        """
        k = X.shape[0]
        space = self.space
        Lc, info = _lapack.dpotrf(to_numpy(space.gram(X)), lower=1, clean=1)
        if info != 0:
            return X, values, res, ok
        Linv = to_tensor(_lapack.dtrtri(Lc, lower=1)[0], X)
        Xh, AXh = combine(Linv, X), combine(Linv, AX)
        Hs = to_numpy(space.dots(Xh, AXh))
        th, U = small_eigh(0.5 * (Hs + Hs.T))
        pick = which_order(th, self.which)[:k]
        Ut = to_tensor(np.ascontiguousarray(U[:, pick].T), X)
        Xn, AXn = combine(Ut, Xh), combine(Ut, AXh)
        vals = to_tensor(th[pick], X)
        resn = space.norms(AXn - vals.unsqueeze(1) * Xn)
        okn = resn <= residual_threshold(vals, self.tol, self.anorm)
        if int(okn.sum()) < int(ok.sum()):
            return X, values, res, ok
        return Xn, vals, resn, okn
