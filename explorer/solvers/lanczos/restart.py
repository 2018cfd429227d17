"""Thick restart (Wu & Simon 2000) with dynamic choice of the kept Ritz vectors.

The basis holds at most ``max_basis`` vectors, so memory is O(n * max_basis). When it is
full, ``_restart`` keeps ``L`` Ritz vectors ``Y = V S_L`` (the wanted ones first) and the
last block ``Q_(m+1)``; ``A Y = Y Theta + Q_(m+1) R_m S_L[last rows]`` still holds, so the
projected matrix restarts as ``diag(Theta)`` plus an "arrow" coupling to the next block and
Lanczos continues from ``Q_(m+1)``: no extra matvec, nothing about the kept directions lost
(mathematically the same as implicit restarts with exact shifts, Wu & Simon 2000, sec. 2).

``choose_keep`` picks ``L`` by maximizing ``(m - L) * sqrt(gamma_L)``, ``gamma_L =
|theta_t - theta_(L+1)| / |theta_(L+1) - theta_far|``, the Chebyshev rate of the first
unconverged wanted value ``theta_t`` over the next cycle (dynamic thick restart: Stathopoulos,
Saad & Wu 1998; Yamazaki et al. 2010). Converged wanted pairs stay among the kept vectors
(soft locking: they keep improving and cannot be lost) and stop being targets.

Per mode: "partial" carries Simon's orthogonality bound across the restart; when the bound
nears sqrt(eps) it measures the kept block's Gram matrix (Simon's estimates are pessimistic by
orders of magnitude: on the 2-D Laplacian they passed 1e-9 where the true overlaps were 1e-13)
and re-orthonormalizes the kept block (Cholesky QR with the exact Rayleigh quotient rebuilt from
the Krylov relation, ``_reorthonormalize_kept``) only when the measurement says so; otherwise
the measured overlaps are where the recurrence continues from. "none"
restarts from an orthonormal basis of the kept vectors built from the exact Gram matrix
(``_restart_plain``), so local orthogonality holds again. ``_start_over`` is the "partial"
to "full" switch: a fresh basis from the current Ritz vectors.

References:
    K. Wu and H. Simon, Thick-restart Lanczos method for large symmetric eigenvalue
    problems, SIAM J. Matrix Anal. Appl. 22 (2000).
    A. Stathopoulos, Y. Saad and K. Wu, Dynamic thick restarting of the Davidson and the
    implicitly restarted Arnoldi methods, SIAM J. Sci. Comput. 19 (1998).
    I. Yamazaki, Z. Bai, H. Simon, L.-W. Wang and K. Wu, Adaptive projection subspace
    dimension for the thick-restart Lanczos method, ACM TOMS 37 (2010).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.linalg import lapack as _lapack

from explorer.solvers.lanczos.linalg import combine, combine_rows_, sub_combine, to_numpy, to_tensor
from explorer.solvers.lanczos.state import LanczosState

__all__ = ["choose_keep", "ThickRestart"]

# "partial": a restart re-orthonormalizes the kept Ritz vectors (Cholesky QR) only when the
# estimated loss of the basis exceeds this share of sqrt(eps). Below it the basis is still
# semi-orthogonal, which is all Simon's theorem needs (the projected matrix is then the
# Rayleigh quotient of an orthonormal basis of the same space up to O(eps ||A||)).
_CLEAN_LEVEL = 0.1

# Largest share of the free basis (m - k) a restart may keep: keeping almost everything
# leaves short cycles whose restart combinations cost more than they save
# (docs/benchmarks-lanczos.md, "Restart cap").
_KEEP_CAP = 0.5


def choose_keep(theta_ord: np.ndarray, first_target: int, k: int, m: int, b: int, which: str,
                restart_weight: float = 0.0) -> int:
    """How many Ritz vectors to keep at a restart (``theta_ord`` in ``which`` order, best first).

    LA / SA: maximize ``(m - L) * sqrt(gamma_L) / (1 + restart_weight * L / (m - L))``,
    ``gamma_L = |theta_t - theta_(L+1)| / |theta_(L+1) - theta_far|`` over
    ``k <= L <= k + _KEEP_CAP (m - k)`` (see the module docstring): the convergence of the next
    cycle over its cost, ``m - L`` new vectors plus a restart that combines L vectors, each
    ``restart_weight`` new vectors' worth (``restart_weight``; 0: the restart costs nothing next
    to the products, the objective of Stathopoulos, Saad & Wu). LM / BE (the wanted values sit at
    both ends, the one-sided Chebyshev model does not apply): keep ``k + (m - k) / 2``.
    """
    q = len(theta_ord)
    low = min(k, q - 1)
    high = min(q - 1, m - 2 * b, int(k + _KEEP_CAP * (m - k)))
    if high <= low:
        return max(1, min(low, m - b))
    if which not in ("LA", "SA"):
        return int(min(high, max(low, k + (m - k) // 2)))
    t = theta_ord[min(first_target, q - 1)]
    far = theta_ord[-1]
    cand = np.arange(low, high + 1)
    nxt = theta_ord[cand]  # theta_(L+1): the first value not kept
    spread = np.abs(nxt - far)
    # floor the spread at rounding level (a tiny floor overflowed the division when the far
    # end coincided with theta_(L+1), e.g. a spectrum of few distinct values)
    scale = max(float(np.abs(theta_ord).max()), np.finfo(np.float64).tiny)
    gamma = np.abs(t - nxt) / np.maximum(spread, np.finfo(np.float64).eps * scale)
    score = (m - cand) * np.sqrt(gamma) / (1.0 + restart_weight * cand / (m - cand))
    return int(cand[int(np.argmax(score))])


class ThickRestart(LanczosState):
    """The restart of a full basis and the "partial" to "full" switch."""

    def _restart(self, theta: np.ndarray, S: np.ndarray, order: np.ndarray, ghost: np.ndarray,
                 est: np.ndarray, thresh: np.ndarray, R: np.ndarray, j: int, p: int, bn: int) -> None:
        """Thick restart: keep L Ritz vectors (wanted first) and continue from the last block."""
        self.n_restarts += 1
        candidates = order[~ghost[order]]
        conv = est[candidates] <= self.tol_factor * thresh[candidates]
        unconverged = np.flatnonzero(~conv[: self.k])
        first_target = int(unconverged[0]) if unconverged.size else self.k - 1
        L = choose_keep(theta[candidates], first_target, self.k, self.m, bn, self.which, self.restart_weight)
        keep = candidates[:L]
        Sk = S[:, keep]  # (p, L)
        new = self.Vt  # rewritten in place: Y = V S_L into the first L rows, then the next block
        Sk_t = to_tensor(Sk.T, self.Vt)
        combine_rows_(Sk_t, new)
        new[L:L + bn] = new[p:p + bn]  # (L + bn <= p: choose_keep leaves room for two blocks)
        if self.AVt is not None:  # A Y = (A V) S_L, combined like Y (no matvec)
            combine_rows_(Sk_t, self.AVt)
            self.av_drift += p * self.eps * self.anorm
        if self.n_breakdowns:  # a kept Ritz vector belongs to the segment holding most of its weight
            for flags in (self.segment, self.previous_segment):
                seg = (Sk[flags[:p]] ** 2).sum(axis=0) >= 0.5
                tail = flags is self.segment  # the next block continues the current segment
                flags[:L] = seg
                flags[L:] = tail
        C = R @ S[j:p, keep]  # (bn, L): A Y = Y Theta + Q_next C
        H = np.zeros_like(self.H)
        H[np.arange(L), np.arange(L)] = theta[keep]
        if self.mode == "partial":
            q = L + bn
            level = self._carried_level(p + bn)
            Om = self.Omega
            assert Om is not None
            Om[:] = 0.0
            if level > _CLEAN_LEVEL * math.sqrt(self.eps):
                # The bound says the kept block may have lost semi-orthogonality: measure it (one Gram
                # matrix of the L + bn kept rows), and clean only if the measurement says so.
                G = to_numpy(self.space.gram(new[:q]))
                G[np.arange(q), np.arange(q)] -= 1.0
                self.n_measured += 1
                measured = float(np.abs(G).sum(axis=1).max())
                if measured > _CLEAN_LEVEL * math.sqrt(self.eps):
                    H[:L, :L], C = self._reorthonormalize_kept(new, L, bn, theta[keep], C, G)
                    self.n_cleanups += 1
                    self._kept_level = self.loss = 0.0
                else:  # semi-orthogonal after all: Simon's recurrence starts from the measured overlaps
                    Om[:q, :q] = G
                    self._kept_level = self.loss = measured
            else:  # semi-orthogonal: keep the block as it is and carry the bound
                Om[:q, :q] = level
                self._kept_level = self.loss = level
            Om[np.arange(q), np.arange(q)] = 0.0
            self._cycle_start = L
        elif self.mode == "none":
            L, Hk, C = self._restart_plain(new, Sk, p, bn, theta[keep], C)
            H[:] = 0.0
            H[:L, :L] = Hk
        H[L:L + bn, :L] = C
        H[:L, L:L + bn] = C.T
        self.H = H
        self._j = L

    def _restart_plain(self, Vt: torch.Tensor, Sk: np.ndarray, p: int, bn: int, theta: np.ndarray,
                       C: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
        """"none": restart from an orthonormal basis of the kept Ritz vectors and the next block.

        In plain Lanczos the kept Ritz vectors ``Y = V S`` of a basis that lost orthogonality
        are neither orthonormal nor orthogonal to the next block F, which the arrow of the
        restarted recurrence couples to all of them: local orthogonality, the condition for
        Ritz values to stay inside the spectrum (Paige 1976), would be lost at every restart
        (Ritz values then left the spectrum after the first restart on small problems).
        So "none" means no re-orthogonalization *within a cycle*: a restart orthonormalizes
        the kept block once from its exact Gram matrix ``S^T G S`` (known in this mode, no pass
        over V), drops directions the Gram matrix says are dependent (an undetected ghost
        pair), and rebuilds the exact Rayleigh quotient from ``A Y = Y Theta + F C``:
        ``Yh = Y P`` with ``P = U s^-1/2`` (Gram ``= U s U^T``, kept ``s > sqrt(eps) s_max``),
        ``Yh^T A Yh = K Theta P + D C P`` with ``K = s^1/2 U^T`` and ``D = Yh^T F``; the part of
        F outside span(Yh) is re-normalized (``F_perp = F_hat Rf``) and couples as ``Rf C P``.
        Returns (rows kept L', the L' x L' projected block, the coupling (bn, L')).
        """
        G = self.G
        assert G is not None
        gram = Sk.T @ G[:p, :p] @ Sk  # Y^T Y (exact up to rounding: G is measured)
        cross = Sk.T @ G[:p, p:p + bn]  # Y^T F
        s, U = np.linalg.eigh(0.5 * (gram + gram.T))
        keep = s > math.sqrt(self.eps) * max(float(s[-1]), self.tiny)
        U, s = U[:, keep], s[keep]
        P = U / np.sqrt(s)  # (L, L')
        K = (U * np.sqrt(s)).T  # (L', L)
        L, L2 = Sk.shape[1], P.shape[1]
        Y = Vt[:L]
        Pt = to_tensor(P.T, Y)
        Yh = combine(Pt, Y)
        D = P.T @ cross  # Yh^T F  (L', bn)
        F = Vt[L:L + bn].clone()
        sub_combine(F, to_tensor(D.T, Y), Yh)
        if self.AVt is not None:
            AY = self.AVt[:L]
            self.AVt[:L2] = combine(Pt, AY)
            self.av_drift += L * self.eps * self.anorm * float(np.abs(P).sum(axis=0).max())
        Vt[:L2] = Yh
        Q2, Rf, _ = self.orthonormalize(F, L2, scale=1.0)
        if Q2.shape[0] != bn:  # the kept vectors already span F: keep it as it was
            Q2, Rf = Vt[L:L + bn].clone(), np.eye(bn)
        Vt[L2:L2 + bn] = Q2
        M = K @ np.diag(theta) @ P + D @ C @ P
        self.G = np.eye(G.shape[0])
        self.G[:L2 + bn, :L2 + bn] = to_numpy(self.space.gram(Vt[:L2 + bn]))
        self.loss = float(np.abs(self.G[:L2 + bn, :L2 + bn] - np.eye(L2 + bn)).max())
        return L2, 0.5 * (M + M.T), Rf @ C @ P

    def _carried_level(self, q: int) -> float:
        """"partial": a bound on ``||V^T V - I||_2`` of the rows ``[0, q)`` at a restart (and with it
        on ``||Y^T Y - I||_2`` of the kept Ritz vectors ``Y = S^T V``, S orthonormal): the bound
        carried for the block kept at the last restart (rows before ``_cycle_start``) plus the
        2-norm of this cycle's rows and columns E of Simon's estimates, at most E's largest
        absolute row sum (E symmetric, and the estimates bound the overlaps entrywise)."""
        Om = self.Omega
        assert Om is not None
        E = np.abs(Om[:q, :q])
        c0 = self._cycle_start
        E[:c0, :c0] = 0.0
        return self._kept_level + float(E.sum(axis=1).max(initial=0.0))

    def _reorthonormalize_kept(self, Vt: torch.Tensor, L: int, bn: int, theta: np.ndarray,
                               C: np.ndarray, G: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """"partial": Cholesky-QR the kept block and rebuild its exact Rayleigh quotient.

        ``G``: the measured ``[Y; F] [Y; F]^T - I`` of the kept rows Y and the next block F.
        With Y = Yh Rc (Yh orthonormal), ``A Y = Y Theta + F C`` gives
        ``Yh^T A Yh = Rc Theta Rc^-1 + D C Rc^-1`` with ``D = Yh^T F = Rc^-T Y^T F``; the part of
        F outside span(Yh) is re-normalized (F_perp = F_hat Rf) and couples as ``Rf C Rc^-1``.
        """
        Y = Vt[:L]
        F = Vt[L:L + bn]
        gram = G[:L, :L] + np.eye(L)
        D = G[:L, L:L + bn].copy()  # Y^T F
        Lc, info = _lapack.dpotrf(gram, lower=1, clean=1)
        if info != 0:  # not numerically positive definite: keep the block as it is
            Rc, Rc_inv = np.eye(L), np.eye(L)
        else:
            Rc = Lc.T
            Lc_inv = _lapack.dtrtri(Lc, lower=1)[0]
            Rc_inv = Lc_inv.T
            Linv = to_tensor(Lc_inv, Y)
            combine_rows_(Linv, Vt)
            if self.AVt is not None:
                combine_rows_(Linv, self.AVt)
                self.av_drift += L * self.eps * self.anorm * float(np.abs(Lc_inv).sum(axis=1).max())
            D = Lc_inv @ D  # Yh^T F
        sub_combine(F, to_tensor(D.T, Y), Y)
        Q2, Rf, _ = self.orthonormalize(F.clone(), L, scale=1.0)
        if Q2.shape[0] == bn:
            F.copy_(Q2)
        else:
            Rf = np.eye(bn)
        M = Rc @ np.diag(theta) @ Rc_inv + D @ C @ Rc_inv
        return 0.5 * (M + M.T), Rf @ C @ Rc_inv

    def _start_over(self, X: torch.Tensor) -> int:
        """"partial" -> "full": a fresh basis from the rows X (the current Ritz vectors, mixed
        into b random combinations or padded, as for X0); returns the first block's size."""
        self.mode, self.Omega = "full", None
        self.H[:] = 0.0
        self.loss, self.tol_factor, self.av_drift = 0.0, 1.0, 0.0
        self.segment[:] = True
        self.previous_segment[:] = False
        self._segment_started, self._wait_since = self._iteration, None
        Q0 = self.start_block(X.T.contiguous())
        self.Vt[:Q0.shape[0]] = Q0
        return Q0.shape[0]
