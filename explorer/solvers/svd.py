"""Golub-Kahan-Lanczos bidiagonalization with thick restart: a few singular triplets of any m x n operator.

The method
----------
Golub & Kahan (1965) reduce A (m x n) to bidiagonal form with two interleaved recurrences:
from a unit p_1, ``alpha_j q_j = A p_j - beta_(j-1) q_(j-1)`` and ``beta_j p_(j+1) = A^T q_j -
alpha_j p_j`` (Lanczos bidiagonalization, Golub & Van Loan, Matrix Computations, 4th ed., 10.4).
After j steps ``A P_j = Q_j B_j`` and ``A^T Q_j = P_j B_j^T + beta_j p_(j+1) e_j^T`` with B_j upper
bidiagonal; P_j spans the Krylov space of A^T A from p_1, Q_j that of A A^T from A p_1. The SVD
``B_j = X Sigma Y^T`` gives Ritz triplets ``(sigma_i, Q_j x_i, P_j y_i)``: ``A v = sigma u`` holds
exactly, and ``||A^T u - sigma v|| = beta_j |e_j^T x_i|``, free, so every step records it as
the residual estimate (``estimated=True``) with the singular values of B_j (numpy, at most
``max_basis`` rows). Each step costs one product with A and one with A^T (two matvecs).

* **Orientation.** The recurrence runs on whichever of A, A^T has fewer columns, so that P
  (the side the Ritz values are built from) lives in the smaller space R^min(m, n): the
  Krylov space then never holds spurious zero singular values, ``max_basis`` is capped at
  min(m, n), and one-sided re-orthogonalization (below) works on the short vectors. The
  result is returned in A's orientation.
* **Thick restart** (Baglama & Reichel 2005, augmentation by Ritz vectors; the bidiagonal
  analogue of Wu & Simon 2000). When the basis holds ``max_basis`` vectors, the L best Ritz
  triplets are kept: ``P_L = P_m Y_L``, ``Q_L = Q_m X_L``, and p_(m+1). Then ``A P_L = Q_L
  Sigma_L`` and ``A^T Q_L = P_L Sigma_L + p_(m+1) rho^T`` with ``rho = beta_m X[m, :L]``, so the
  next step is ``alpha q = A p_(m+1) - Q_L rho`` and B restarts as ``[[Sigma_L, rho], [0,
  alpha]]`` followed by the bidiagonal recurrence: no matvec is spent, nothing learnt about the
  kept directions is lost (mathematically the implicitly restarted method of Baglama &
  Reichel with exact shifts). ``L = k + (max_basis - k) / 2``: half the room beyond the k wanted
  triplets keeps the next Ritz vectors, which speed up the wanted ones.
* **Re-orthogonalization.** In floating point the Lanczos vectors lose orthogonality along
  converged directions (as in symmetric Lanczos, Paige 1976), and spurious copies of singular
  values appear.

  - ``"full"`` (default): each new vector of both sides is Gram-Schmidt orthogonalized against
    its whole basis, a second pass when the first removed more than half of it (DGKS "twice
    is enough", Daniel, Gragg, Kaufman & Stewart 1976). Both bases stay orthonormal to
    rounding; ``orthogonality_loss`` records the CGS rounding bound ``j eps ||w_before|| /
    ||w_after||`` of the worse side.
  - ``"one-sided"`` (Simon & Zha 2000): only the short side P is re-orthogonalized; the long
    side Q keeps the local recurrence (and the explicit coupling to the kept vectors at a
    restart), which halves the Gram-Schmidt work on m x n problems with m >> n (it is all on
    the long vectors). Simon & Zha show that the singular values and the right vectors stay
    accurate; the long-side vectors are recomputed from the short ones at the end
    (``u = A v / ||A v||``), which needs sigma well above eps ||A||, so it is meant for the
    largest singular values. The long side's true loss ``max |Q^T q|`` is measured each step
    (one GEMV, no correction) and recorded.
* **Convergence** is decided by true residuals: when every wanted estimate meets
  ``tol * max(sigma, sqrt(eps) ||A||)`` (``residual_threshold``; ||A|| estimated by the largest
  Ritz value), A and A^T are applied to the k Ritz vectors (2k matvecs) and
  ``sqrt(||A v - sigma u||^2 + ||A^T u - sigma v||^2)`` is compared with the same threshold. That
  is the residual of ``([u; v] / sqrt(2), sigma)`` for the symmetric matrix ``[[0, A], [A^T, 0]]``
  (times sqrt(2)), so the usual eigenvalue bound applies: a singular value lies within it of
  sigma. A check that fails makes the next one wait for estimates half as large (not below the
  rounding level); three failed checks in a row with residuals within 100 eps ||A|| end the run
  in BREAKDOWN with the reason (the tolerance is below what rounding allows).
* **Breakdown.** ``alpha`` or ``beta`` at the rounding level (10 eps ||A||: the new vector is
  noise) means an invariant subspace; the recurrence continues with a random unit vector
  orthogonal to the basis and a zero coupling (an exact decomposition with a zero in B), so
  further singular values are still found. When P spans the whole short space the projection
  is exact and the run ends.

``which``: "LA" the largest singular values (descending), "SA" the smallest (ascending);
"LM" / "SM" (scipy's ``svds`` names) are accepted for them. The smallest converge much more
slowly from a Krylov space of A^T A (its eigenvalues are the squares, so small singular values
have tiny relative gaps); Baglama & Reichel's harmonic-Ritz augmentation is the known remedy
and is not implemented here: raise ``max_basis`` for them (up to min(m, n), where the run is
an exact dense reduction).

Defaults and why
----------------
* ``max_basis = max(30, 3 k + 20)``, capped at min(m, n): the memory is (m + n) max_basis
  numbers; like ARPACK's ``ncv = max(2k + 1, 20)`` in scipy's ``svds``, somewhat larger because
  the Ritz values of a bidiagonal reduction converge like those of Lanczos on A^T A.
* ``reorthogonalization="full"``: correct for both ends; "one-sided" is the cheaper option for
  the largest values of a tall or wide matrix.
* ``tol=1e-6`` (relative residual, as for the eigensolvers), ``max_iter=10000`` steps.

References:
    G. Golub, W. Kahan (1965), SIAM J. Numer. Anal. 2(2), 205-224. J. Baglama, L. Reichel
    (2005), Augmented implicitly restarted Lanczos bidiagonalization methods, SIAM J. Sci.
    Comput. 27(1), 19-42 (irlba). H. D. Simon, H. Zha (2000), Low-rank matrix approximation
    using the Lanczos bidiagonalization process, SIAM J. Sci. Comput. 21(6), 2257-2274.
    R. M. Larsen (1998), PROPACK (scipy's ``svds(solver="propack")``). K. Wu, H. Simon (2000),
    Thick-restart Lanczos, SIAM J. Matrix Anal. Appl. 22(2), 602-616.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from explorer.solvers._common import (
    ROUNDING_LEVEL,
    Monitor,
    ProductUnits,
    UnitsOperator,
    Validated,
    check_int,
    make_generator,
    nonfinite_message,
    random_block,
    rounding_level,
    rounding_note,
    validate_common,
)
from explorer.solvers.registry import ParamSpec, SolverSpec, register_solver
from explorer.tracking.results import SingularResult, SolveStatus
from explorer.tracking import StopSolve, Tracker

__all__ = ["golub_kahan", "default_max_basis", "REORTHOGONALIZATION", "DEFAULT_MAX_ITER"]

DEFAULT_MAX_ITER = 10_000
REORTHOGONALIZATION = ("full", "one-sided")
_ALIASES = {"LM": "LA", "SM": "SA"}
# alpha or beta at or below this many eps ||A|| is rounding noise: a breakdown.
_BREAKDOWN = 10.0
# Failed true-residual checks in a row near the rounding level before the run gives up.
_STALLS = 3


def default_max_basis(k: int, size: int) -> int:
    """``max(30, 3 k + 20)`` basis vectors per side, capped at ``size = min(m, n)``."""
    return min(size, max(30, 3 * k + 20))


class _Bidiagonalization:
    """The state of one run: the two bases (stored as rows), B, and the restart / check logic."""

    def __init__(self, v: Validated, monitor: Monitor, *, mode: str, basis: int, generator: torch.Generator) -> None:
        self.v, self.monitor, self.mode, self.generator = v, monitor, mode, generator
        m, n = v.operator.shape
        self.transposed = m < n  # run on A^T so that P lives in the smaller space
        self.op = UnitsOperator(v.operator, monitor.units)  # type: ignore[arg-type]
        self.short, self.long = min(m, n), max(m, n)
        self.basis = basis
        self.dtype, self.device = v.operator.dtype, v.operator.device
        self.eps = torch.finfo(self.dtype).eps
        self.P = torch.zeros(basis + 1, self.short, dtype=self.dtype, device=self.device)  # rows p_1 .. p_(m+1)
        self.Q = torch.zeros(basis, self.long, dtype=self.dtype, device=self.device)  # rows q_1 .. q_m
        self.B = np.zeros((basis, basis))  # float64; upper triangular (bidiagonal + the restart arrow)
        self.beta = 0.0  # the coupling beta_j of the last completed step
        self.norm = 0.0  # ||A|| estimate: the largest Ritz value seen
        self.factor = 1.0  # next check once every estimate <= factor * threshold
        self.failed = 0  # failed true-residual checks in a row
        self.loss = 0.0
        self.restarts = 0
        self.breakdowns = 0
        self._checked: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    # -- products in the run's orientation (A-hat = A or A^T), in ProductUnits -------------
    def _A(self, x: torch.Tensor) -> torch.Tensor:
        return self.op.rmatmat(x.unsqueeze(1)).squeeze(1) if self.transposed else self.op.matvec(x)

    def _At(self, x: torch.Tensor) -> torch.Tensor:
        return self.op.matvec(x) if self.transposed else self.op.rmatmat(x.unsqueeze(1)).squeeze(1)

    def _A_block(self, X: torch.Tensor) -> torch.Tensor:  # X: (short, b) columns
        return self.op.rmatmat(X) if self.transposed else self.op.matmat(X)

    def _At_block(self, X: torch.Tensor) -> torch.Tensor:  # X: (long, b) columns
        return self.op.matmat(X) if self.transposed else self.op.rmatmat(X)

    # -- helpers ------------------------------------------------------------------------
    def _rounding(self) -> float:
        return _BREAKDOWN * self.eps * max(self.norm, torch.finfo(self.dtype).tiny)

    def _orthogonalize(self, w: torch.Tensor, basis: torch.Tensor) -> tuple[torch.Tensor, float, float]:
        """CGS against the rows of ``basis``: skipped when the measured overlap ``basis @ w`` is already
        below 64 eps ||w|| (the correction would move w by its own rounding), else one pass and a
        second when the first removed more than half of w (DGKS). Returns (w, ||w||, the measured
        overlap when no pass was needed, else the rounding bound ``j eps ||w_before|| / ||w_after||``).
        A non-finite w comes back with a non-finite norm (the caller's NaN / Inf check)."""
        before = float(torch.linalg.vector_norm(w))
        if basis.shape[0] == 0 or not math.isfinite(before) or before == 0.0:
            return w, before, 0.0
        c = basis @ w
        overlap = float(c.abs().max()) / before
        if overlap <= 64 * self.eps:
            return w, before, overlap
        w = torch.sub(w, basis.T @ c)  # (a new tensor: w may be the operator's own output)
        after = float(torch.linalg.vector_norm(w))
        if after < before / math.sqrt(2.0):
            before = after
            w.sub_(basis.T @ (basis @ w))
            after = float(torch.linalg.vector_norm(w))
        bound = basis.shape[0] * self.eps * before / after if after > 0 else math.inf
        return w, after, bound

    def _random_orthogonal(self, basis: torch.Tensor, size: int) -> torch.Tensor:
        """A unit vector orthogonal to the rows of ``basis`` (a breakdown's replacement)."""
        for _ in range(5):
            w = random_block(size, 1, self.generator, dtype=self.dtype, device=self.device).squeeze(1)
            w = w / torch.linalg.vector_norm(w)
            for _ in range(2):
                if basis.shape[0]:
                    w = w - basis.T @ (basis @ w)
            norm = float(torch.linalg.vector_norm(w))
            if norm > 0.5:
                return w / norm
        raise RuntimeError("no direction orthogonal to the basis was found")  # pragma: no cover - basis spans

    def _finite(self, w: torch.Tensor, where: str) -> bool:
        """True for a finite w; else False, with the BREAKDOWN message kept for the result."""
        if bool(torch.isfinite(w).all()):
            return True
        self.nonfinite = nonfinite_message(where, self.monitor.n_matvec, "the one of the last complete step")
        return False

    # -- the run --------------------------------------------------------------------------
    def run(self) -> SingularResult:
        v, monitor = self.v, self.monitor
        self.nonfinite: str | None = None
        status, message = SolveStatus.MAX_ITER, ""
        p = self._start()
        if p is None:
            return self._empty_breakdown()
        self.P[0] = p
        j = 0  # completed columns of B
        kept = 0  # L after a restart (the arrow column), 0 otherwise
        rho: np.ndarray | None = None
        steps = 0
        ritz: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        while True:
            # --- one step: q_j, alpha_j, then p_(j+1), beta_j --------------------------
            w = self._A(self.P[j])
            if rho is not None:  # first step after a restart: couple to the kept left vectors
                w = w - self.Q[:kept].T @ torch.as_tensor(rho, dtype=self.dtype, device=self.device)
            elif j > 0:
                w = torch.sub(w, self.Q[j - 1], alpha=self.beta)
            loss_q = 0.0
            if self.mode == "full":
                w, alpha, loss_q = self._orthogonalize(w, self.Q[:j])
            else:
                alpha = float(torch.linalg.vector_norm(w))
            if not math.isfinite(alpha):  # NaN / Inf from the operator reach the norm
                self._finite(w, f"step {steps + 1}")
                status = SolveStatus.BREAKDOWN
                break
            if alpha <= self._rounding():
                self.breakdowns += 1
                q = self._random_orthogonal(self.Q[:j], self.long)
                alpha = 0.0
            else:
                q = w / alpha
            if self.mode == "one-sided" and j > 0:
                loss_q = float((self.Q[:j] @ q).abs().max())
            self.Q[j] = q
            self.B[j, j] = alpha
            if rho is not None:
                self.B[:kept, j] = rho
                rho = None
            elif j > 0:
                self.B[j - 1, j] = self.beta
            r = torch.sub(self._At(q), self.P[j], alpha=alpha)
            r, beta, loss_p = self._orthogonalize(r, self.P[: j + 1])
            if not math.isfinite(beta):
                self._finite(r, f"step {steps + 1}")
                status = SolveStatus.BREAKDOWN
                break
            self.norm = max(self.norm, alpha, beta)
            j += 1
            steps += 1
            full_space = j >= self.short
            if beta <= self._rounding() or full_space:
                self.beta = 0.0
                if not full_space:
                    self.breakdowns += 1
                    self.P[j] = self._random_orthogonal(self.P[:j], self.short)
            else:
                self.beta = beta
                self.P[j] = r / beta
            self.loss = max(loss_q, loss_p)
            # --- Ritz triplets of B_j, record, checks ------------------------------------
            ritz = self._ritz(j)
            sigma, X, Y = ritz
            wanted = min(v.k, j)
            estimates = self.beta * np.abs(X[j - 1, :wanted])
            threshold = self._thresholds(sigma[:wanted])
            n_met = int(np.sum(estimates <= threshold))
            stop = monitor.record(steps, sigma[:wanted].copy(), estimates, estimated=True, n_converged=n_met,
                                  orthogonality_loss=self.loss, all_ritz_values=sigma.copy(),
                                  extras={"basis": float(j), "restarts": float(self.restarts)})
            if stop:
                status = SolveStatus.STOPPED
                break
            if wanted == v.k and bool(np.all(estimates <= self.factor * threshold)):
                verdict = self._check(j, ritz)
                if verdict is not None:
                    status, message = verdict
                    break
            if full_space:
                status = SolveStatus.BREAKDOWN
                message = ("The basis spans the whole space, so the reduction is exact, but the true residuals "
                           "still miss tol: it is below what rounding allows. Loosen `tol`"
                           + (" or solve in float64." if self.dtype == torch.float32 else "."))
                break
            if steps >= v.max_iter:
                status = SolveStatus.MAX_ITER
                break
            if j == self.basis:
                kept, rho = self._restart(ritz)
                j = kept
        return self._finish(status, message, ritz, j, steps)

    def _start(self) -> torch.Tensor | None:
        """p_1 (unit, in the run's orientation) from X0 or the seed; None if A X0 is not finite."""
        v = self.v
        if v.X0 is not None:
            x = v.X0[:, 0].clone()
            if self.transposed:  # a right start x of A is the left start A x of A^T
                x = self.op.matvec(x)
                if not self._finite(x, "the start"):
                    return None
            norm = float(torch.linalg.vector_norm(x))
            if norm > 0 and math.isfinite(norm):
                return x / norm
        x = random_block(self.short, 1, self.generator, dtype=self.dtype, device=self.device).squeeze(1)
        return x / torch.linalg.vector_norm(x)

    def _ritz(self, j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(sigma, X, Y) of B_j in ``which`` order (LA: descending, SA: ascending)."""
        X, sigma, Yt = np.linalg.svd(self.B[:j, :j])
        if self.v.which == "SA":
            X, sigma, Yt = X[:, ::-1], sigma[::-1], Yt[::-1]
        self.norm = max(self.norm, float(sigma.max()) if sigma.size else 0.0)
        return np.ascontiguousarray(sigma), np.ascontiguousarray(X), np.ascontiguousarray(Yt.T)

    def _thresholds(self, sigma: np.ndarray) -> np.ndarray:
        floor = math.sqrt(self.eps) * max(self.norm, torch.finfo(self.dtype).tiny)
        return self.v.tol * np.maximum(np.abs(sigma), floor)

    def _restart(self, ritz: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[int, np.ndarray]:
        """Keep L Ritz triplets and p_(m+1); B restarts as diag(sigma_L) with the arrow rho."""
        sigma, X, Y = ritz
        m = self.basis
        L = min(self.v.k + (m - self.v.k) // 2, m - 1)
        Xl = torch.as_tensor(np.ascontiguousarray(X[:, :L].T), dtype=self.dtype, device=self.device)
        Yl = torch.as_tensor(np.ascontiguousarray(Y[:, :L].T), dtype=self.dtype, device=self.device)
        P_kept = Yl @ self.P[:m]
        Q_kept = Xl @ self.Q[:m]
        self.P[:L] = P_kept
        self.P[L] = self.P[m]
        self.Q[:L] = Q_kept
        rho = self.beta * X[m - 1, :L]
        self.B[:] = 0.0
        self.B[np.arange(L), np.arange(L)] = sigma[:L]
        self.restarts += 1
        return L, np.ascontiguousarray(rho)

    def _triplets(self, j: int, ritz: tuple[np.ndarray, np.ndarray, np.ndarray], count: int
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(sigma, U, V, residuals) of the first ``count`` Ritz triplets, with true residuals (2 count matvecs),
        all in the run's orientation and units."""
        sigma_np, X, Y = ritz
        sigma = torch.as_tensor(sigma_np[:count].copy(), dtype=self.dtype, device=self.device)
        Xc = torch.as_tensor(np.ascontiguousarray(X[:, :count]), dtype=self.dtype, device=self.device)
        Yc = torch.as_tensor(np.ascontiguousarray(Y[:, :count]), dtype=self.dtype, device=self.device)
        V = self.P[:j].T @ Yc  # (short, count)
        AV = self._A_block(V)
        if self.mode == "one-sided":  # the long side from the short one (Simon & Zha)
            norms = torch.linalg.vector_norm(AV, dim=0)
            U = AV / torch.where(norms > 0, norms, torch.ones_like(norms))
        else:
            U = self.Q[:j].T @ Xc
        AtU = self._At_block(U)
        residuals = torch.sqrt(torch.linalg.vector_norm(AV - U * sigma, dim=0) ** 2
                               + torch.linalg.vector_norm(AtU - V * sigma, dim=0) ** 2)
        return sigma, U, V, residuals

    def _check(self, j: int, ritz: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[SolveStatus, str] | None:
        """True residuals of the k wanted triplets: (CONVERGED, "") when all meet tol, a BREAKDOWN verdict
        after repeated failures at the rounding level, else None (go on, next check at smaller estimates)."""
        sigma, U, V, residuals = self._triplets(j, ritz, self.v.k)
        if not bool(torch.isfinite(residuals).all()):
            self.nonfinite = nonfinite_message("the residual check", self.monitor.n_matvec, "the last Ritz triplets")
            return SolveStatus.BREAKDOWN, self.nonfinite
        threshold = self._thresholds(sigma.double().cpu().numpy())
        res = residuals.double().cpu().numpy()
        if bool(np.all(res <= threshold)):
            self._checked = (sigma, U, V, residuals)  # the final triplets: _finish reuses them
            return SolveStatus.CONVERGED, ""
        self.failed += 1
        worst = float(res[res > threshold].max())
        if self.failed >= _STALLS and rounding_level(worst, self.norm, self.dtype) <= ROUNDING_LEVEL:
            note = rounding_note(worst * self._scale(), self.norm * self._scale(), self.dtype)
            return SolveStatus.BREAKDOWN, (f"The residual estimates met tol but the true residuals did not, "
                                           f"{self.failed} checks in a row. " + note)
        floor = self.eps * max(self.norm, torch.finfo(self.dtype).tiny) / max(float(threshold.min()), 1e-300)
        self.factor = max(self.factor * 0.5, floor)
        return None

    def _scale(self) -> float:
        units = self.monitor.units
        return 1.0 if units is None else units.scale

    def _empty_breakdown(self) -> SingularResult:
        v = self.v
        m, n = v.operator.shape
        nan = torch.full((v.k,), math.nan, dtype=self.dtype, device=self.device)
        return self._result(nan, torch.zeros(m, v.k, dtype=self.dtype, device=self.device),
                            torch.zeros(n, v.k, dtype=self.dtype, device=self.device), nan.clone(),
                            torch.zeros(v.k, dtype=torch.bool), 0, SolveStatus.BREAKDOWN, self.nonfinite or "")

    def _finish(self, status: SolveStatus, message: str, ritz: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
                j: int, steps: int) -> SingularResult:
        v, monitor = self.v, self.monitor
        if ritz is None:  # no complete step
            return self._empty_breakdown()
        if self.nonfinite is not None:
            message = self.nonfinite
        count = min(v.k, j, ritz[0].size)
        if status is SolveStatus.BREAKDOWN and self.nonfinite is not None:
            # the operator can no longer be trusted: report the last Ritz values without products
            sigma = torch.as_tensor(ritz[0][:count].copy(), dtype=self.dtype, device=self.device)
            Xc = torch.as_tensor(np.ascontiguousarray(ritz[1][:, :count]), dtype=self.dtype, device=self.device)
            Yc = torch.as_tensor(np.ascontiguousarray(ritz[2][:, :count]), dtype=self.dtype, device=self.device)
            V, U = self.P[:j].T @ Yc, self.Q[:j].T @ Xc
            residuals = torch.full_like(sigma, math.nan)
            converged = torch.zeros(count, dtype=torch.bool)
        elif status is SolveStatus.CONVERGED and self._checked is not None:
            sigma, U, V, residuals = self._checked
            converged = torch.ones(count, dtype=torch.bool)
        else:
            sigma, U, V, residuals = self._triplets(j, ritz, count)
            if not bool(torch.isfinite(residuals).all()) and self.nonfinite is None:
                status = SolveStatus.BREAKDOWN
                message = nonfinite_message("the final residuals", monitor.n_matvec, "the last Ritz triplets")
                residuals = torch.where(torch.isfinite(residuals), residuals, torch.full_like(residuals, math.nan))
            threshold = torch.as_tensor(self._thresholds(sigma.double().cpu().numpy()))
            converged = residuals.double().cpu() <= threshold
            if status is SolveStatus.CONVERGED and not bool(converged.all()):  # pragma: no cover - checked above
                status = SolveStatus.MAX_ITER
        if self.transposed:
            U, V = V, U  # back to A's orientation: the run's right vectors are A's left ones
        notes = []
        if self.breakdowns:
            notes.append(f"{self.breakdowns} invariant subspace(s) met and continued with random vectors.")
        if status is SolveStatus.MAX_ITER:
            notes.append(f"{self.restarts} restarts of a {self.basis}-vector basis; raise `max_basis` or "
                         "`max_iter`" + (" (the smallest singular values converge slowly: a larger basis helps most)"
                                        if v.which == "SA" else "") + ".")
        message = " ".join([message] + notes if message else notes).strip()
        return self._result(sigma, U, V, residuals, converged, steps, status, message)

    def _result(self, sigma: torch.Tensor, U: torch.Tensor, V: torch.Tensor, residuals: torch.Tensor,
                converged: torch.Tensor, n_iter: int, status: SolveStatus, message: str) -> SingularResult:
        result = self.monitor.finish(eigenvalues=sigma, eigenvectors=V, residual_norms=residuals, converged=converged,
                                     n_iter=n_iter, status=status, message=message, norm_estimate=self.norm,
                                     left_vectors=U)
        assert isinstance(result, SingularResult)
        return result


def golub_kahan(
    operator: Any,
    k: int,
    *,
    which: str = "LA",
    tol: float = 1e-6,
    max_iter: int | None = None,
    X0: torch.Tensor | None = None,
    seed: int | None = None,
    tracker: Tracker | None = None,
    B: Any = None,
    max_basis: int | None = None,
    reorthogonalization: str = "full",
) -> SingularResult:
    """k singular triplets of an m x n operator by thick-restart Golub-Kahan-Lanczos bidiagonalization.

    Args:
        operator: m x n operator providing ``A^T`` (``rmatmat``): a dense or sparse tensor, numpy
            array, scipy sparse matrix or LinearOperator (square or rectangular).
        k: number of triplets, 1 <= k <= min(m, n).
        which: "LA" (largest singular values) or "SA" (smallest); "LM" / "SM" are aliases.
        tol: relative residual tolerance: ``sqrt(||A v - sigma u||^2 + ||A^T u - sigma v||^2) <= tol
            max(sigma, sqrt(eps) ||A||)``, checked with true residuals.
        max_iter: bidiagonalization steps (each applies A and A^T once); default 10000.
        X0: (n,) or (n, c) start on the right side of A (its first column is used).
        seed: seed of the local generator (random start, breakdown vectors).
        tracker: one record per step (singular-value estimates and residual estimates).
        B: not supported (there is no generalized SVD here): a ValueError.
        max_basis: basis vectors per side before a thick restart; default
            ``max(30, 3 k + 20)`` capped at min(m, n). Must be at least k + 1 (or min(m, n)).
        reorthogonalization: "full" (both sides) or "one-sided" (the short side only).

    Returns:
        SingularResult: ``singular_values`` (= ``eigenvalues``) in ``which`` order, ``V`` (=
        ``eigenvectors``, n x k), ``U`` (= ``left_vectors``, m x k), true residual norms,
        status CONVERGED, MAX_ITER, STOPPED or BREAKDOWN with its reason.

    Raises:
        ValueError / TypeError: bad operator, ``k``, ``which``, ``tol``, ``max_iter``, ``max_basis``,
            ``reorthogonalization``, or a ``B``.
    """
    if isinstance(which, str) and which.upper() in _ALIASES:
        which = _ALIASES[which.upper()]
    v = validate_common("golub_kahan", operator, k, which=which, tol=tol, max_iter=max_iter,
                        default_max_iter=DEFAULT_MAX_ITER, supported_which=("LA", "SA"), X0=X0, B=B,
                        rectangular=True)
    if not isinstance(reorthogonalization, str) or reorthogonalization not in REORTHOGONALIZATION:
        raise ValueError(f"`reorthogonalization` must be 'full' or 'one-sided', got {reorthogonalization!r}; 'full' "
                         "keeps both bases orthonormal, 'one-sided' only the shorter one (cheaper for the largest "
                         "singular values of a tall or wide matrix)")
    m, n = v.operator.shape
    size = min(m, n)
    if max_basis is None:
        basis = default_max_basis(v.k, size)
    else:
        basis = min(check_int("max_basis", max_basis, hint="basis vectors per side before a restart"), size)
        if basis < min(size, v.k + 1):
            raise ValueError(f"`max_basis` must be at least k + 1 = {v.k + 1} (room for the k wanted triplets and "
                             f"one new vector), got max_basis={max_basis}; raise it (e.g. "
                             f"{default_max_basis(v.k, size)}) or lower `k`")
    generator = make_generator(seed)
    monitor = Monitor("golub_kahan", v, tracker, extras={"max_basis": basis,
                                                          "reorthogonalization": reorthogonalization,
                                                          "orientation": "A^T" if m < n else "A"})
    monitor.units = ProductUnits(v.operator.dtype)
    return _Bidiagonalization(v, monitor, mode=reorthogonalization, basis=basis, generator=generator).run()


register_solver(SolverSpec(
    name="golub_kahan",
    label="Golub-Kahan-Lanczos SVD (thick restart)",
    fn=golub_kahan,
    summary=("Singular values of any (rectangular) matrix: Lanczos bidiagonalization builds orthonormal bases "
             "of both sides with products by A and A^T, restarts keeping the best Ritz triplets. Its Ritz "
             "values are singular-value estimates."),
    which=("LA", "SA"),
    params=(
        ParamSpec("max_basis", "int", None,
                  "Basis vectors per side before a thick restart (memory = (m + n) x max_basis numbers). "
                  "Larger means fewer matvecs, most of all for the smallest singular values. Empty = "
                  "max(30, 3k + 20), at most min(m, n).", minimum=2, optional=True),
        ParamSpec("reorthogonalization", "choice", "full",
                  "'full' keeps both bases orthonormal (every new vector against its whole basis); 'one-sided' "
                  "only the shorter side (Simon & Zha): half the work on a tall or wide matrix, accurate for "
                  "the largest singular values.", choices=REORTHOGONALIZATION),
    ),
    supports_B=False,
    matrix_free=True,
    default_tol=1e-6,
    default_max_iter=DEFAULT_MAX_ITER,
    references=("Golub & Kahan 1965", "Baglama & Reichel 2005", "Simon & Zha 2000", "Larsen 1998 (PROPACK)"),
    kind="svd",
))
