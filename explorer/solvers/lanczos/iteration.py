"""The thick-restart (block) Lanczos iteration: the loop that ties the parts together.

Each iteration (one Lanczos step, b matvecs):

1. ``expansion``: apply A to the current block and run the three-term (block) recurrence,
   with the mode's re-orthogonalization (``reorthogonalization``) and the orthonormalization
   of the new block (``blocks``);
2. at a *look* (below): Rayleigh-Ritz on the projected matrix ``H[:p, :p]``
   (``small_eigh``): Ritz values, their free residual estimates ``||R_j S[last rows]||``,
   thresholds and ghost flags (``convergence``), and one record to the tracker;
3. when the estimates say the k wanted pairs converged, the true residuals (``ritz``); a
   failed check tightens the estimates' target and waits a growing number of steps; in
   "partial" it switches to "full" once (``restart._start_over``);
4. when the basis is full, a thick restart (``restart``).

``ritz_every`` decides the looks. The recurrence does not need the Ritz pairs, only the
restart and the convergence test do, and on a cheap operator the Rayleigh-Ritz step costs
more than the matvec (an m x m eigh against O(n b) work). With ``ritz_every=1`` every step
is a look (one record per step: the lessons). With an integer s, every s-th step, every
restart and the last step. With "auto" (default), every restart and the steps at which the
estimates, extrapolated geometrically from the last two looks (``_next_look``), say the
wanted set may have converged; in between, when ``RECORD_INTERVAL_S`` has passed since the last
record, a *glance* computes the Ritz values for a record only and changes nothing, so the
steps, matvecs and answer do not depend on the machine's speed. A record's iteration is
always the Lanczos step.

``_finish`` returns the k wanted pairs (never ghosts) with true residuals and a message that
names breakdowns, ghosts, possible hidden multiplicities, the mode switch and the restarts.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from explorer.solvers._common import RECORD_INTERVAL_S, nonfinite_message
from explorer.solvers.lanczos.blocks import BlockOrthonormalization
from explorer.solvers.lanczos.convergence import RESOLVE_LIMIT, ConvergenceChecks
from explorer.solvers.lanczos.copies import HiddenCopyCheck
from explorer.solvers.lanczos.expansion import Expansion
from explorer.solvers.lanczos.linalg import small_eigh, to_numpy, to_tensor
from explorer.solvers.lanczos.reorthogonalization import Reorthogonalization
from explorer.solvers.lanczos.restart import ThickRestart
from explorer.solvers.lanczos.ritz import RitzExtraction, which_order
from explorer.solvers.lanczos.state import SKIP_FACTOR
from explorer.tracking.results import EigenResult, SolveStatus

__all__ = ["_Lanczos", "RECORD_INTERVAL_S"]



class _Lanczos(Expansion, BlockOrthonormalization, Reorthogonalization, ThickRestart, RitzExtraction,
               ConvergenceChecks, HiddenCopyCheck):
    """One thick-restart (block) Lanczos solve: ``_Lanczos(v, monitor, ...).run()``."""

    def run(self) -> EigenResult:
        """The Lanczos loop: step, Rayleigh-Ritz, record, check, restart; then ``_finish``."""
        k, which, m = self.k, self.which, self.m
        monitor = self.monitor
        eps = self.eps
        Q0 = self.start_block(self.v.X0)
        bc = Q0.shape[0]
        self.Vt[:bc] = Q0
        j, lo = 0, 0  # current block rows [j, j + bc); known couplings in columns [lo, j)
        theta = np.zeros(0)
        S = np.zeros((0, 0))
        est_all = np.zeros(0)
        order = np.zeros(0, dtype=np.int64)
        ghost = np.zeros(0, dtype=bool)
        R = np.zeros((0, 0))
        p = bc
        bn = 0
        iteration = 0
        status = SolveStatus.MAX_ITER
        message = ""
        next_check, check_gap = 0, 4
        every = self.ritz_every  # 0: "auto"
        recorded = 0  # iteration of the last record
        next_look = 1  # "auto": the step at which the estimates may show the wanted set converged
        last_t = time.perf_counter()
        R_skipped = R
        while iteration < self.v.max_iter:
            iteration += 1
            self._iteration = iteration
            p = j + bc
            with np.errstate(invalid="ignore", over="ignore"):  # NaN / Inf products: tested just below
                if bc == 1:
                    R, bn = self._step_single(j, lo, iteration)
                else:
                    R, bn = self._step_block(j, p, lo, bc, iteration)
            if not math.isfinite(float(self.H[:p + bn, j:p].sum())):
                # NaN or Inf from the operator (an HVP that blew up, a bad callable): the rows
                # before this block and their projected matrix are still exact; report those.
                status = SolveStatus.BREAKDOWN
                message = nonfinite_message(f"Lanczos step {iteration}", self.monitor.n_matvec,
                                            "the Rayleigh-Ritz approximation from the basis built before it, "
                                            "with true residuals")
                iteration -= 1  # this step was not completed (and not recorded)
                p = j
                theta, S = small_eigh(self.H[:p, :p]) if p else (np.zeros(0), np.zeros((0, 0)))
                est_all, ghost = np.full(p, np.nan), np.zeros(p, dtype=bool)
                order = which_order(theta, which)
                if iteration > recorded and p:
                    # The last completed step was not recorded ("auto" / ritz_every > 1). Its Ritz
                    # pairs are those of H[:p, :p], their estimates from that step's coupling
                    # R_skipped to the current block (it coupled to the rows [lo, j)).
                    est_rec = np.sqrt(((R_skipped @ S[lo:j, :]) ** 2).sum(axis=0))
                    shown = order[:k]
                    monitor.record(iteration, theta[shown], est_rec[shown], estimated=True,
                                   n_converged=int((est_rec[shown] <= self._thresholds(theta)[shown]).sum()),
                                   orthogonality_loss=self.loss, all_ritz_values=theta, ghost_mask=ghost[shown])
                break
            # A "look" (Rayleigh-Ritz, record, convergence test) where the method needs one or
            # ritz_every asks for it; in "auto" a "glance" (Rayleigh-Ritz and record only, no
            # state change) when RECORD_INTERVAL_S has passed, so the run itself, its matvecs and
            # its answer never depend on the machine's speed.
            look = (every == 1 or bn == 0 or p + bn > m or iteration >= self.v.max_iter
                    or (every > 1 and iteration % every == 0) or (every == 0 and iteration >= next_look))
            if not look:
                # ||A|| is still bounded below by the new diagonal block (Rayleigh quotients).
                self.anorm = max(self.anorm, self.alpha_max)
                if not (every == 0 and time.perf_counter() - last_t >= RECORD_INTERVAL_S):
                    R_skipped = R
                    lo, j, bc = j, p, bn
                    continue
            # Ritz pairs of the projected matrix and their residual estimates ||R S[last rows]||.
            theta, S = small_eigh(self.H[:p, :p])
            if look:
                top = max(-theta[0], theta[-1])
                if top > self.anorm:
                    self.anorm = top
            if bn == 0:
                est_all = np.zeros(p)
            elif bn == 1 and bc == 1:
                est_all = abs(R[0, 0]) * np.abs(S[j])
            else:
                est_all = np.sqrt(((R @ S[j:p, :]) ** 2).sum(axis=0))
            order = which_order(theta, which)
            thresh_all = self._thresholds(theta)
            ghost = self._ghosts(theta, S, est_all, thresh_all, p)
            wanted = order[~ghost[order]][:k] if ghost.any() else order[:k]
            conv_w = est_all[wanted] <= self.tol_factor * thresh_all[wanted]
            if len(wanted) and look:
                # An overlap delta left in each of p vectors moves the Rayleigh quotient by up to
                # ~p delta ||A||; keep that 10x below the smallest wanted threshold (matters in
                # float32, where 64 eps ||A|| can exceed tol |theta|).
                self.skip_level = min(SKIP_FACTOR * eps, 0.1 * float(thresh_all[wanted].min())
                                      / (max(self.anorm, self.tiny) * p))
            shown = order[:k]
            stop = monitor.record(
                iteration, theta[shown], est_all[shown], estimated=True,
                n_converged=int(conv_w.sum()), orthogonality_loss=self.loss,
                all_ritz_values=theta, ghost_mask=ghost[shown],
            )
            recorded, last_t = iteration, time.perf_counter()
            if stop:
                status, message = SolveStatus.STOPPED, ""
                break
            if not look:
                lo, j, bc = j, p, bn
                continue
            if every == 0:
                next_look = self._next_look(iteration, est_all[wanted] / np.maximum(
                    self.tol_factor * thresh_all[wanted], self.tiny))
            exhausted = bn == 0
            if exhausted or (len(wanted) == k and bool(conv_w.all()) and iteration >= next_check
                             and self._segment_settled(theta, S, est_all, thresh_all, wanted, p, iteration)):
                ok = self._verify(theta, S, wanted, p)
                # the smallest factor the estimates can reach: eps ||A|| over the smallest threshold
                reachable = min(1.0, self.eps * self.anorm / max(float(thresh_all[wanted].min()), self.tiny))
                unresolved = self._unresolved(to_numpy(self._checked[3]), to_numpy(self._checked[4])) if ok else None
                target = self.tol_factor if unresolved is None else max(RESOLVE_LIMIT, unresolved[0], reachable)
                if ok and (target >= self.tol_factor or exhausted):
                    # resolved, or no smaller target left (RESOLVE_LIMIT, the rounding level, the
                    # whole space): _finish warns when the set is still unresolved
                    status, message = SolveStatus.CONVERGED, ""
                    break
                if ok:
                    # Every pair meets tol, but two distinct returned values are not resolved by
                    # their residuals (convergence._unresolved): the set is not certain. Go on with
                    # a smaller residual target; the estimates lead to the next check as after a
                    # failed one.
                    self.n_resolve += 1
                    self.tol_factor = target
                    next_check = iteration + 1
                elif self.mode == "partial" and self.switched_at is None:
                    # Estimates below tol but true residuals above it. In "partial" that is the
                    # semi-orthogonal basis: its Krylov relation holds only to ~omega ||A||, so
                    # H no longer knows the error and no restart or cleanup can fix it
                    # (tests/test_lanczos.py::test_block_size_three_finds_a_triple_eigenvalue).
                    # Start again from the current Ritz vectors (accurate to that level) with
                    # full re-orthogonalization.
                    self.switched_at = iteration
                    j, lo, bc = 0, 0, self._start_over(self._checked[1])
                    next_check, check_gap = iteration + 1, 4
                    continue
                elif exhausted:
                    status = SolveStatus.BREAKDOWN
                    message = (f"The Krylov basis spans the whole space (n = {self.n}) but only "
                               f"{self._n_ok} of k = {k} pairs meet the tolerance; rounding limits the "
                               "accuracy: loosen `tol`.")
                    break
                else:
                    stalled = self._stalled_at_rounding()
                    if stalled:
                        status, message = SolveStatus.BREAKDOWN, stalled
                        break
                    # The estimates were optimistic (or below the attainable accuracy): ask for
                    # 10x smaller ones (but not below eps ||A||, which estimates cannot reach: the
                    # checks would stop, and with them _stalled_at_rounding) and check again only
                    # after a growing number of steps, so an unattainable `tol` costs
                    # O(log(max_iter)) checks of k matvecs each.
                    self.tol_factor = max(0.1 * self.tol_factor, reachable)
                    check_gap *= 2
                    next_check = iteration + check_gap
            if iteration >= self.v.max_iter:
                break
            if p + bn > m:
                self._restart(theta, S, order, ghost, est_all, thresh_all, R, j, p, bn)
                j, lo, bc = self._j, 0, bn
            else:
                lo, j, bc = j, p, bn
        return self._finish(theta, S, est_all, order, ghost, p, iteration, status, message)

    def _next_look(self, iteration: int, ratios: np.ndarray) -> int:
        """"auto": the step at which the next Rayleigh-Ritz step may find the wanted set converged.

        ``ratios``: estimate / threshold of the wanted pairs (converged at <= 1). Between two
        Rayleigh-Ritz steps each ratio is assumed to fall geometrically (the Chebyshev rate of
        Kaniel-Paige theory); the next look is at half the predicted number of steps of the
        pair expected last (the stop test needs all k), so a set that converges faster than the
        model (Lanczos converges superlinearly) is found soon after, and the looks get denser as
        it nears its thresholds. While an open ratio is not falling (a new Ritz value taking a
        place in the set) the model says nothing about it, so the pair expected first sets the
        look. The gap between looks at most doubles; when no open ratio fell, the next look
        comes after as many steps as the last. Aiming at the first pair instead looked at nearly
        every step once pairs converged one after another (dense small gap n = 1000: 40 looks in
        68 steps) for the same matvecs, 4-16 % more time on the quick bench problems
        (docs/benchmarks-lanczos.md, "ritz_every"); the live view still gets a record every
        ``RECORD_INTERVAL_S``.
        """
        previous, since = self._look_ratios, self._look_at
        self._look_ratios, self._look_at = ratios, iteration
        if previous is None or len(previous) != len(ratios) or iteration <= since:
            return iteration + 1
        gap = iteration - since
        open_ = ratios > 1.0
        falling = open_ & (ratios < previous)
        if not falling.any():
            # converged (the test follows), or the estimates went up (they do, near convergence
            # and as new Ritz values appear): look again after the same number of steps
            return iteration + (1 if not open_.any() else gap)
        rate = (np.log(previous[falling]) - np.log(ratios[falling])) / gap
        steps = np.log(ratios[falling]) / rate
        expected = float(steps.max()) if bool(falling.sum() == open_.sum()) else float(steps.min())
        # at most twice the last gap: a barely falling ratio says little about the next steps
        return iteration + max(1, min(2 * gap, int(0.5 * expected)))

    def _finish(self, theta: np.ndarray, S: np.ndarray, est: np.ndarray, order: np.ndarray, ghost: np.ndarray,
                p: int, iteration: int, status: SolveStatus, message: str) -> EigenResult:
        """The k wanted pairs with true residuals (polished unless "full"), the status and the notes."""
        wanted = order[~ghost[order]][: self.k] if len(order) else np.zeros(0, dtype=np.int64)
        checked = self._checked
        values = to_tensor(theta[wanted], self.Vt)
        if checked is not None and np.array_equal(checked[0], wanted) and status in (
                SolveStatus.CONVERGED, SolveStatus.BREAKDOWN):
            _w, X, AX, values, res, ok = checked
        elif len(wanted):
            X, AX, values, res, ok = self._true_residuals(theta, S, wanted, p)
        else:
            X = AX = torch.zeros(0, self.n_local, dtype=self.dtype, device=self.device)
            res = torch.zeros(0, dtype=self.dtype, device=self.device)
            ok = torch.zeros(0, dtype=torch.bool)
        if self.mode != "full" and X.shape[0] >= 2 and bool(torch.isfinite(AX).all()):
            X, values, res, ok = self._polish(X, AX, values, res, ok)
        if status is SolveStatus.MAX_ITER and bool(ok.all()) and len(wanted) == self.k:
            status = SolveStatus.CONVERGED
        notes = []
        checked_copies = False
        if status is SolveStatus.CONVERGED and len(wanted) == self.k and self._copy_check_wanted():
            X, values, res, ok, note = self._complete(X, values, res, ok, theta)
            checked_copies = bool(note)
            if note:
                notes.append(note)
            if not bool(ok.all()):
                status = SolveStatus.MAX_ITER
        if len(wanted) < self.k:
            notes.append(f"Only {len(wanted)} distinct Ritz pairs were available for k = {self.k}.")
        if self.n_breakdowns:
            notes.append(f"{self.n_breakdowns} breakdown(s) (invariant subspace found; continued with random "
                         "vectors orthogonal to the basis).")
        if self.mode == "none" and bool(ghost.any()):
            notes.append(f"{int(ghost.sum())} ghost Ritz value(s) (copies of converged ones, from lost "
                         "orthogonality) were skipped.")
        if len(wanted) >= self.b + 1 and self.n_breakdowns == 0 and not checked_copies:
            # b equal values: the block sees at most b copies, so there may be more
            vals = theta[wanted]
            # equal to within 10 thresholds, but never looser than sqrt(eps) ||A||: at a loose tol
            # distinct values (the 3 smallest of a Laplacian at tol 0.5) would all look equal
            gap = np.minimum(10.0 * self._thresholds(vals), math.sqrt(self.eps) * max(self.anorm, self.tiny))
            multiplicity = max(int(np.sum(np.abs(vals - v) <= g)) for v, g in zip(vals, gap))
            if multiplicity >= max(self.b, 2):
                notes.append(f"A value appears {multiplicity} times with block_size = {self.b}; a block of b "
                             "vectors is only sure to show b copies: if it may have more, raise `block_size`.")
        if status is SolveStatus.CONVERGED and len(wanted) == self.k:
            unresolved = self._unresolved(to_numpy(values), to_numpy(res))
            if unresolved is not None:
                a, b = unresolved[1]
                notes.append(f"Warning: the returned values {a:.10g} and {b:.10g} have residuals above a quarter of "
                             "their gap, so the residual test cannot promise that their vectors are not mixtures of "
                             "two eigenvectors or that no copy is missing between them (the set may be wrong); lower "
                             "`tol` below their relative gap.")
            elif self.n_resolve:
                notes.append(f"The residual target was tightened to {self.tol_factor:.2g} x tol so that close returned "
                             "values are told apart (at tol their residuals exceeded a quarter of their gap).")
        if self.switched_at is not None:
            notes.append(f"Partial re-orthogonalization could not certify tol (the estimated residuals met it, the "
                         f"true ones did not); switched to full re-orthogonalization at iteration {self.switched_at}.")
        if self.n_restarts:
            notes.append(f"{self.n_restarts} thick restart(s).")
        message = " ".join([message] + notes).strip()
        return self.monitor.finish(eigenvalues=values, eigenvectors=X.T.contiguous(), residual_norms=res,
                                   converged=ok.cpu(), n_iter=iteration, status=status, message=message,
                                   norm_estimate=self.anorm)
