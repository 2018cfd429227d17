"""When a Lanczos solve may stop: thresholds, ghosts, breakdown segments, stalls.

The residual estimate of a Ritz pair ``(theta_i, V s_i)`` is free, ``||R_m S_i[last b
rows]||`` with the coupling block ``R_m`` of the last step (Golub & Van Loan 10.1); only the
true residuals (``ritz``) decide convergence. This module holds the tests around that check:

* ``_thresholds``: ``residual_threshold`` (``tol * max(|theta|, sqrt(eps) ||A||)``, the
  ARPACK / PRIMME relative criterion) in numpy for every Ritz value.
* ``_ghosts``: Ritz values that duplicate a converged one because orthogonality is lost
  (Paige 1976). A value is a ghost when the loss exceeds sqrt(eps), it lies within
  ``sqrt(eps) ||A||`` of a converged Ritz value with a smaller estimate, and, in "none",
  where the exact Gram matrix is known, their Ritz vectors overlap (which keeps the two
  orthogonal copies of a true double eigenvalue apart). Ghosts never count as converged.
* ``_new_segment`` / ``_segment_settled``: after a breakdown the basis spans an invariant
  subspace, which holds one direction of each eigenspace it touches (b for a block of b);
  the segment grown from the fresh random vector explores the complement, and the solve
  may stop only once that segment's best Ritz value has converged (or nothing better can
  be left).
* ``_stalled_at_rounding``: true residuals that stay at the rounding level after repeated
  checks end the run with a reason instead of running into max_iter.
* ``_unresolved``: the returned values must be *resolved*: a Ritz value theta with residual
  r has an eigenvalue in [theta - r, theta + r] and its vector lies within an angle
  asin(r / g) of the eigenvectors within g of theta (Weyl; Davis-Kahan; Parlett, The
  Symmetric Eigenvalue Problem, 11.5-11.7). When the residuals are as large as the gaps
  between distinct returned values, the vectors may be mixtures of neighbouring eigenvectors
  and one copy of a double eigenvalue may be missing behind them, with every residual inside
  tol: a tolerance as large as the spectrum's gaps returned wrong sets on the 2-D Laplacian
  (N = 200 at tol 3e-5 in 3 of 20 seeds, N = 500 at tol 4e-6 in 1 of 6; docs/benchmarks.md,
  "Resolved sets"). The solve then goes on with a smaller residual target until every such
  pair has ``max(r, r') <= g / 4`` (at most ``RESOLVE_LIMIT`` times tighter than tol), and
  says so in the message, or warns when it could not.

References:
    C. C. Paige, Error analysis of the Lanczos algorithm for tridiagonalizing a symmetric
    matrix, J. Inst. Math. Appl. 18 (1976).
    G. H. Golub and C. F. Van Loan, Matrix Computations, 4th ed., section 10.1.
"""

from __future__ import annotations

import math

import numpy as np

from explorer.solvers._common import ROUNDING_LEVEL, rounding_level, rounding_note
from explorer.solvers.lanczos.ritz import which_order
from explorer.solvers.lanczos.state import LanczosState

__all__ = ["ConvergenceChecks"]

# Failed true-residual checks in a row, with the residuals near the rounding level and not
# halved, after which the solve ends (see _stalled_at_rounding).
_STALL_CHECKS = 3

# _unresolved: two returned values closer than this share of their thresholds' sum (or than
# _COPY_ROUNDING eps ||A||) are copies of one eigenvalue.
SAME_VALUE = 0.1
_COPY_ROUNDING = 1e3
# _unresolved: a returned pair's residual must end at most this share of the gap to a distinct
# returned neighbour (Davis-Kahan: at most 1/16 of the neighbour's eigenvector in it).
RESOLVE_RATIO = 0.25
# The residual target of an unresolved set shrinks at most to this share of tol.
RESOLVE_LIMIT = 0.01


class ConvergenceChecks(LanczosState):
    """Thresholds, ghost flags, breakdown segments and the rounding-stall test."""

    def _thresholds(self, theta: np.ndarray) -> np.ndarray:
        """``residual_threshold`` in numpy (the same formula; the final check calls it itself)."""
        floor = math.sqrt(self.eps) * max(self.anorm, self.tiny)
        return self.tol * np.maximum(np.abs(theta), floor)

    def _ghosts(self, theta: np.ndarray, S: np.ndarray, est: np.ndarray, thresh: np.ndarray, p: int) -> np.ndarray:
        """Flag Ritz values that duplicate a converged one while orthogonality is lost.

        A value is a ghost when (1) the loss exceeds sqrt(eps), (2) it lies within
        ``sqrt(eps) ||A||`` of a converged Ritz value with a smaller residual estimate (the
        original), and (3) in "none" mode, where the exact Gram matrix G = V^T V is known,
        their Ritz vectors overlap: ``|s_i^T G s_j| / (||V s_i|| ||V s_j||) >= 1/2``. Test
        (3) keeps the two orthogonal copies of a true double eigenvalue apart.
        """
        ghost = np.zeros(len(theta), dtype=bool)
        if self.loss <= math.sqrt(self.eps) or len(theta) < 2:
            return ghost
        converged = est <= thresh
        if not converged.any():
            return ghost
        delta = math.sqrt(self.eps) * self.anorm
        G = self.G[:p, :p] if self.G is not None else None
        for i in np.argsort(est, kind="stable"):  # most accurate first: it is the original
            if ghost[i] or not converged[i]:
                continue
            near = np.flatnonzero((np.abs(theta - theta[i]) <= delta) & ~ghost)
            near = near[near != i]
            if near.size == 0:
                continue
            if G is not None:
                Sn = S[:, np.concatenate([[i], near])]
                GS = G @ Sn
                norms = np.sqrt(np.maximum(np.einsum("ij,ij->j", Sn, GS), np.finfo(np.float64).tiny))
                overlap = np.abs(Sn[:, 0] @ GS[:, 1:]) / (norms[0] * norms[1:])
                near = near[overlap >= 0.5]  # orthogonal Ritz vectors: a true multiple eigenvalue
            ghost[near] = True
        return ghost

    def _new_segment(self, p: int) -> None:
        """A breakdown: rows [0, p) span an invariant subspace; rows from p on start a new segment."""
        self.n_breakdowns += 1
        self.previous_segment = self.segment.copy()
        self.previous_segment[p:] = False
        self.segment[:p] = False
        self.segment[p:] = True
        self._segment_started = self._iteration
        self._wait_since = None

    def _segment_settled(self, theta: np.ndarray, S: np.ndarray, est: np.ndarray, thresh: np.ndarray,
                         wanted: np.ndarray, p: int, iteration: int) -> bool:
        """After a breakdown, may the solve stop? (Asked only when the k wanted pairs converged.)

        An invariant subspace holds one direction of each eigenspace it touches (b of them for
        a block of b), so k converged pairs can still miss copies of a multiple eigenvalue that
        live in the orthogonal complement (from one start vector, diag(3, 3, 3, 3, 2, ...)
        shows a single 3). The segment grown from the fresh random vector(s) explores that
        complement (the segment that just broke down stands in while the new one has no Ritz
        vector of its own yet): its best Ritz value (in ``which`` order, among the Ritz vectors with most
        of their weight on its rows) must have converged. If that value is not better than
        the k-th wanted one, nothing better is left (with probability 1). If it is better and
        repeated (another Ritz value equals it), more copies may hide: wait for this segment
        to break down too and the next one to look, but at most as many steps as the segment
        has run (a segment of a large problem may never break down).
        """
        if self.n_breakdowns == 0:
            return True
        # the active segment, or the one that just broke down if the new one has no Ritz vector yet
        for rows in (self.segment[:p], self.previous_segment[:p]):
            mine = np.flatnonzero((S[rows] ** 2).sum(axis=0) >= 0.5)
            if mine.size:
                break
        else:
            return False
        rank = np.empty(len(theta), dtype=np.int64)
        rank[which_order(theta, self.which)] = np.arange(len(theta))
        best = mine[np.argmin(rank[mine])]
        if est[best] > self.tol_factor * thresh[best]:
            return False
        last = wanted[-1]
        margin = thresh[last]
        if self.which == "LA":
            better = theta[best] > theta[last] + margin
        elif self.which == "SA":
            better = theta[best] < theta[last] - margin
        elif self.which == "LM":
            better = abs(theta[best]) > abs(theta[last]) + margin
        else:  # BE: it would take one of the first k places by more than the tolerance
            better = rank[best] < rank[last] and abs(theta[best] - theta[last]) > margin
        if not better:
            return True
        copies = int(np.sum(np.abs(theta - theta[best]) <= 10.0 * thresh[best]))
        if copies < 2:
            return True
        if self._wait_since is None:
            self._wait_since = iteration
        return iteration - self._wait_since > max(10, self._wait_since - self._segment_started)

    def _unresolved(self, values: np.ndarray, res: np.ndarray) -> tuple[float, tuple[float, float]] | None:
        """Whether the returned values are resolved by their residuals (module docstring).

        ``values``, ``res``: the returned Ritz values and their true residual norms. Sorted, two
        neighbours with gap ``g``, residuals ``r, r'`` and thresholds ``t, t'`` are *unresolved*
        when ``max(r, r') > RESOLVE_RATIO g`` and ``g > SAME_VALUE (t + t')`` and above the
        rounding level ``_COPY_ROUNDING eps ||A||`` (closer values are copies of one eigenvalue:
        two Ritz values of a multiple eigenvalue agree to O(r^2 / gap) plus rounding, far inside
        the tolerance). By Davis-Kahan a Ritz vector with residual r lies within an angle
        ``asin(r / g)`` of the eigenvectors of its eigenvalue's neighbourhood of width g, so at
        ``r <= g / 4`` it holds at most 1/16 of a neighbour's eigenvector; with overlapping
        inclusion intervals (``r + r' > g``) it may be a mixture of two eigenvectors, and one
        copy of a double eigenvalue may be missing behind it. Returns None when no pair is
        unresolved, else (the factor by which ``tol_factor`` must shrink so that every such pair
        ends with ``max(r, r') <= RESOLVE_RATIO g``, the closest such pair of values).
        """
        if len(values) < 2:
            return None
        order = np.argsort(values, kind="stable")
        v, r = values[order], res[order]
        gap = np.diff(v)
        worst_r = np.maximum(r[:-1], r[1:])
        thresh = self._thresholds(v)
        same = np.maximum(SAME_VALUE * (thresh[:-1] + thresh[1:]), _COPY_ROUNDING * self.eps * max(self.anorm, self.tiny))
        bad = np.flatnonzero((worst_r > RESOLVE_RATIO * gap) & (gap > same))
        if bad.size == 0:
            return None
        # the residuals are at most tol_factor * thresh; to end with max(r, r') <= RESOLVE_RATIO g
        # they must shrink by RESOLVE_RATIO g / max(r, r') from where they are now
        level = np.maximum(r[bad] / thresh[bad], r[bad + 1] / thresh[bad + 1])
        shrink = RESOLVE_RATIO * gap[bad] / worst_r[bad]
        worst = int(np.argmin(shrink))
        i = int(bad[worst])
        return float(np.min(np.minimum(level, self.tol_factor) * shrink)), (float(v[i]), float(v[i + 1]))

    def _stalled_at_rounding(self) -> str:
        """After a failed true-residual check: a message when the true residuals that miss tol
        sit near the rounding level (``ROUNDING_LEVEL`` eps ||A||) and the last ``_STALL_CHECKS``
        checks did not halve them, else "".

        Why: in float32 the estimates can keep going down while the true residuals sit at the
        rounding of the Krylov relation after many restarts (a few eps ||A||); without this
        test such a run asked for ever smaller estimates until max_iter
        (tests/test_lanczos.py::test_float32_residuals_stalled_at_rounding_end_the_run_with_a_reason).
        """
        _w, _X, _AX, _values, res, ok = self._checked
        missed = ~ok.cpu()
        if not bool(missed.any()):
            return ""
        worst = float(res.detach().cpu()[missed].max())
        previous = self._stall_worst
        self._stall_worst = worst
        if (rounding_level(worst, self.anorm, self.dtype) > ROUNDING_LEVEL or previous is None
                or worst < 0.5 * previous):
            self._stall_checks = 0
            return ""
        self._stall_checks += 1
        if self._stall_checks < _STALL_CHECKS:
            return ""
        scale = self.units.scale
        return (f"The true residuals stopped improving ({self._n_ok} of k = {self.k} pairs meet tol = {self.tol:g}) "
                f"while the estimates met it. " + rounding_note(worst * scale, self.anorm * scale, self.dtype))
