"""The hidden-copy check: after convergence, look for a copy of a returned eigenvalue that the block missed.

A block Krylov space grown from b vectors holds at most b directions of each eigenspace
(Golub & Underwood 1977), so a value of multiplicity above b returns only b copies and the
next value takes the missing copy's place: every returned pair meets the tolerance, yet the
set is not the k wanted eigenvalues (the 2-D Laplacian's doubles for single-vector methods,
../shared/PEERS.md "Multiplicity"; the 3-D Laplacian's triples for a block of 2). A missing
copy can hide only behind a value that was returned b times (with fewer, the block saw all
of its eigenspace) and before position k.

``_copy_check`` runs a few steps of plain block Lanczos from b random vectors on the
deflated operator ``P A P`` (``P`` the projector onto the complement of the returned
vectors), keeping only local orthogonality (Paige 1976: its Ritz values then stay inside
the spectrum up to rounding). If a Ritz value of that projection passes the k-th returned
value by more than ``margin`` (ten thresholds: the returned vectors' residuals perturb the
deflated spectrum by about one), an eigenvalue is missing: a Rayleigh quotient of a vector
orthogonal to the returned ones cannot exceed lambda_(k+1) otherwise. The test is one banded
Cholesky factorization of ``sigma I - T`` per step (it fails exactly when T has an
eigenvalue above sigma), O(s b^2).

How many steps: a random start needs about ``c / sqrt(delta)`` steps to lift its Ritz value
to within ``delta (lambda_max - lambda_min)`` of the top of the deflated spectrum
(Kuczynski & Wozniakowski 1992; Chebyshev: T_s(1 + 2 delta) grows like exp(2 s sqrt(delta))),
with ``delta`` the smallest gap between a candidate value and the k-th, relative to the
spread. On the 3-D Laplacian (n = 216 .. 27000, k = 6, b = 2) the copies surfaced after
s sqrt(delta) = 0.8-1.0 (docs/benchmarks-lanczos.md); ``_STEPS_C = 2.5`` leaves a factor 2.5,
capped at a third of the main run's steps and at least ``_MIN_STEPS``.

A missing eigenvalue found is not just reported: ``_complete`` solves for the missing pairs
with a Lanczos run on the Hotelling-deflated operator (``operators.DeflatedOperator``: the
returned directions moved to the unwanted end of the spectrum), merges them with the
returned ones and checks again (a value of
multiplicity above 2b needs more than one round). The result's message says what the check
cost (matvecs) and what it found.

References:
    G. H. Golub and R. Underwood, The block Lanczos method for computing eigenvalues (1977).
    C. C. Paige, Error analysis of the Lanczos algorithm for tridiagonalizing a symmetric
    matrix, J. Inst. Math. Appl. 18 (1976).
    J. Kuczynski and H. Wozniakowski, Estimating the largest eigenvalue by the power and
    Lanczos algorithms with a random start, SIAM J. Matrix Anal. Appl. 13 (1992).
"""

from __future__ import annotations

import math
import numpy as np
import torch
from scipy.linalg import LinAlgError, cholesky_banded

from explorer.operators import CountedOperator
from explorer.solvers.lanczos.linalg import sub_combine, to_numpy, to_tensor
from explorer.solvers.lanczos.ritz import which_order
from explorer.solvers.lanczos.state import LanczosState

__all__ = ["HiddenCopyCheck", "COPY_CHECK"]

COPY_CHECK = ("auto", "on", "off")
_STEPS_C = 2.5
_MIN_STEPS = 5
_ROUNDS = 3  # check / complete rounds at most (each sees b more copies of a value)


class HiddenCopyCheck(LanczosState):
    """The check after convergence, and the completion of a set that misses a copy."""

    copy_check: str = "auto"
    block_size_given: bool = False

    def _copy_check_wanted(self) -> bool:
        """"auto": with the default block size and b < k. A block size the caller chose states
        the largest multiplicity expected (block_size=1: simple eigenvalues), so no check."""
        if self.copy_check == "off" or self.which == "BE":
            return False
        return self.copy_check == "on" or (self.b < self.k and not self.block_size_given)

    def _candidates(self, values: np.ndarray, thresholds: np.ndarray) -> list[int]:
        """Positions (``which`` order) of values returned at least b times whose copies all lie
        before position k: only behind those can a copy hide and change the set."""
        gap = np.minimum(10.0 * thresholds, math.sqrt(self.eps) * max(self.anorm, self.tiny))
        out, i, k = [], 0, len(values)
        while i < k:
            same = np.flatnonzero(np.abs(values - values[i]) <= gap[i])
            last = int(same.max())
            if len(same) >= self.b and last < k - 1:
                out.append(i)
            i = max(i + 1, last + 1)
        return out

    def _copy_check(self, X: torch.Tensor, values: np.ndarray, thresholds: np.ndarray, spread: float,
                    candidates: list[int]) -> tuple[bool, int, int]:
        """Plain block Lanczos on P A P for a few steps; returns (found, steps, matvecs)."""
        b, n, space = self.b, self.n, self.space
        theta_k = values[-1]
        margin = 10.0 * float(thresholds.max())
        deltas = [abs(values[c] - theta_k) / max(spread, self.tiny) for c in candidates]
        steps = int(math.ceil(_STEPS_C / math.sqrt(max(min(deltas), self.eps))))
        steps = max(_MIN_STEPS, min(steps, self._iteration // 3, (n - X.shape[0]) // b))
        if steps <= 0:
            return False, 0, 0
        sign = -1.0 if self.which == "SA" else 1.0  # LM: both ends, tested in _beyond
        level = abs(theta_k) + margin if self.which == "LM" else sign * theta_k + margin
        start = self.monitor.n_matvec
        kx = X.shape[0]
        # One buffer [slot B | X | slot A]: the current block Q sits next to X in either slot, so
        # that [X; Q] (or [Q; X]) is one contiguous row range and each step projects the new block
        # against both in one GEMM pair (two passes: "twice is enough").
        Z = X.new_empty(kx + 2 * b, X.shape[1])
        Z[b:b + kx] = X
        slots = (slice(kx + b, kx + 2 * b), slice(0, b))  # A (after X), B (before X)
        span = (slice(b, kx + 2 * b), slice(0, kx + b))  # [X; A], [B; X]
        qpart = (slice(kx, kx + b), slice(0, b))  # Q's columns within each span

        def project(W: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            c = space.dots(W, rows)
            sub_combine(W, c, rows)
            return c

        Q0 = space.random(n, b, self.generator, dtype=self.dtype, device=self.device).T.contiguous()
        for _ in range(2):
            project(Q0, X)
        Z[slots[0]] = space.qr(Q0.T)[0].T
        cur = 0  # the slot holding Q
        B_prev: np.ndarray | None = None
        T = np.zeros(((steps + 1) * b, (steps + 1) * b))
        for s in range(steps):
            Q = Z[slots[cur]]
            W = self.apply(Q)
            if B_prev is not None:
                sub_combine(W, to_tensor(B_prev, W), Z[slots[1 - cur]])  # W -= B_prev Q_prev
            rows = Z[span[cur]]
            # twice ("twice is enough"): a trace of X left in W is what the iteration amplifies most
            # (X holds the wanted end of the spectrum), so the deflation must be exact to rounding
            c = project(W, rows)
            c = c + project(W, rows)
            a = to_numpy(c[:, qpart[cur]])
            block = slice(s * b, (s + 1) * b)
            T[block, block] = 0.5 * (a + a.T)
            Qn, Rn = space.qr(W.T)
            R = to_numpy(Rn)  # W = R^T Qn^T rows: W^T = Qn Rn
            size = (s + 1) * b
            if self._beyond(T[:size, :size], level, sign):
                return True, s + 1, self.monitor.n_matvec - start
            nxt = slice((s + 1) * b, (s + 2) * b)
            T[nxt, block] = R
            T[block, nxt] = R.T
            cur = 1 - cur
            Z[slots[cur]] = Qn.T
            B_prev = R.copy()
        return False, steps, self.monitor.n_matvec - start

    def _beyond(self, T: np.ndarray, level: float, sign: float) -> bool:
        """Whether ``sign T`` has an eigenvalue above ``level`` (LA: T above theta_k + margin; SA:
        below theta_k - margin; LM: either sign, magnitude above |theta_k| + margin), by a
        banded Cholesky factorization of ``level I - sign T``."""
        tests = (sign,) if self.which != "LM" else (1.0, -1.0)
        b, size = self.b, T.shape[0]
        for sgn in tests:
            # the band of M = level I - sgn T, positive definite iff no eigenvalue of sgn T is above
            # level, read off T's diagonals (O(size b) per step: M itself would be O(size^2))
            band = np.zeros((b + 1, size))
            for d in range(b + 1):
                band[d, :size - d] = -sgn * np.diagonal(T, -d)
            band[0] += level
            try:
                cholesky_banded(band, lower=True, check_finite=False)
            except LinAlgError:
                return True
        return False

    def _complete(self, X: torch.Tensor, values: torch.Tensor, res: torch.Tensor,
                  ok: torch.Tensor, theta_all: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                                torch.Tensor, str]:
        """Check; when a copy hides, solve for it on the deflated operator and merge. Returns
        (X, values, res, ok, note)."""
        from explorer.solvers._common import Monitor, Validated, residual_threshold
        from explorer.solvers.lanczos.iteration import _Lanczos  # (the inner solve: a run of its own)

        start = self.monitor.n_matvec
        steps_total, found_rounds, added = 0, 0, 0
        for _round in range(_ROUNDS):
            vals = to_numpy(values).copy()
            thr = self._thresholds(vals)
            candidates = self._candidates(vals, thr)
            if not candidates:
                break
            spread = float(theta_all.max() - theta_all.min()) if theta_all.size else self.anorm
            found, steps, _mv = self._copy_check(X, vals, thr, spread, candidates)
            steps_total += steps
            if not found:
                break
            found_rounds += 1
            k_sub = min(len(candidates), self.n - X.shape[0])
            shift = float(theta_all.min() if self.which == "LA" else theta_all.max() if self.which == "SA" else 0.0)
            # Hotelling deflation A - X^T diag(values - shift) X: the returned directions move to
            # `shift`; its products go through self.op, so they are counted with the solve's
            sub_op = self.space.deflated(self.op, X.T, values - shift)
            v = Validated(operator=CountedOperator(sub_op), k=k_sub, which=self.which, tol=self.tol,
                          max_iter=self.v.max_iter, B=None, X0=None)
            inner = _Lanczos(v, Monitor("lanczos", v, None), mode=self.mode if self.mode != "none" else "full",
                             m=min(self.n, max(self.m, k_sub + 2 * self.b)), b=self.b, generator=self.generator,
                             store_products=False, ritz_every=0, copy_check="off")
            sub = inner.run()
            Y = sub.eigenvectors.T.contiguous().to(self.dtype)
            Y = Y - self.space.dots(Y, X) @ X  # exactly on the complement, then orthonormal
            Y = self.space.qr(Y.T)[0].T.contiguous()
            cand_X = torch.cat([X, Y])
            AXc = self.apply(cand_X)  # true residuals of the merged set (k + k_sub products)
            rq = self.space.rowdots(cand_X, AXc)
            order = which_order(np.sort(to_numpy(rq)), self.which)
            ascending = np.argsort(to_numpy(rq), kind="stable")
            pick = torch.as_tensor(ascending[order[: self.k]], dtype=torch.long, device=X.device)
            X, values = cand_X[pick].contiguous(), rq[pick]
            res = self.space.norms(AXc[pick] - values.unsqueeze(1) * X)
            ok = (res <= residual_threshold(values, self.tol, self.anorm)).cpu()
            added += int((pick >= self.k).sum())
        cost = self.monitor.n_matvec - start
        if steps_total == 0:
            return X, values, res, ok, ""
        if found_rounds == 0:
            return X, values, res, ok, (f"Hidden-copy check: {steps_total} deflated block step(s), {cost} matvecs; "
                                        "no copy of a returned value hides behind the block.")
        return X, values, res, ok, (
            f"Warning: a block of {self.b} vectors missed {added} eigenvalue(s) (copies of a value of multiplicity "
            f"above {self.b}); the hidden-copy check found them and they were added ({found_rounds} round(s), "
            f"{cost} matvecs). Raise `block_size` to the largest multiplicity you expect to find them directly.")
