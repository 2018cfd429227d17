"""The block LOBPCG engine (``backend="explorer"``): the iteration with stored products.

Knyazev (2001), Alg. 4.1 "block LOBPCG": keep a block X of m >= k approximate
eigenvectors; each iteration forms the residuals R = A X - B X Theta, preconditions them
(W = T R) and runs a Rayleigh-Ritz procedure on span[X, W, P], where P holds the previous
step's update directions; the m best Ritz vectors become the new X. The step itself is
``ortho.OrthoStep`` (Duersch et al. 2018) or ``basic.BasicStep`` (Knyazev 2001); the
audits that bound rounding drift are ``drift.DriftAudit``.

Stored products: ``torch.lobpcg`` recomputes A [X, W, P] in every Rayleigh-Ritz step and
A X again for the residual, about 4 m operator applications per iteration (PEERS.md). We
keep the products and update them with the same small coefficient matrices as the vectors
(``products="stored"``): one application of A per *active* column of W, at most m. The
Gram block [X, P]^T A [X, P] is carried over as well. For cheap sparse operators updating
A X, A P costs more than applying A to X again, so ``products="auto"`` recomputes A X there
(2 m matvecs per iteration; the residuals are then exactly the true ones). With stored
products the residual A X - B X Theta equals the true residual only up to rounding drift,
so before reporting CONVERGED the k wanted residuals are recomputed with fresh products.

Soft locking: a column whose residual meets the tolerance gets no new W or P direction (it
stays in the Rayleigh-Ritz basis, so it can only improve); it is unlocked again if its
residual rises. Only the first k columns must converge; the m - k extra "guard" columns
speed up the convergence of the k-th pair (rate ~ theta_k / theta_{m+1}) and let a block
method see every copy of a multiple eigenvalue (the 2-D Laplacian).
"""

from __future__ import annotations

import math

import torch

from explorer.solvers._common import nonfinite_message, orthogonality_loss, true_residual_norms
from explorer.solvers.lobpcg.basic import BasicStep
from explorer.solvers.lobpcg.drift import DriftAudit
from explorer.solvers.lobpcg.linalg import apply_rows, gram, svqb_from_gram, transform_rows
from explorer.solvers.lobpcg.ortho import OrthoStep
from explorer.solvers.lobpcg.state import KEPT, REFRESH, BlockState
from explorer.tracking.results import EigenResult, SolveStatus


class Engine(OrthoStep, BasicStep, DriftAudit):
    """One LOBPCG solve with stored products (see the module docstring); ``run()`` returns
    the result."""

    def _initial(self) -> BlockState:
        """The start block: X_start B-orthonormalized (QR, or SVQB with B), then rotated to its
        Ritz vectors (Rayleigh-Ritz on span X); no P yet."""
        X = self.X_start
        if self.B is None:
            Xt = torch.linalg.qr(X).Q.T.contiguous()
            BXt = Xt
        else:
            Xt = X.T.contiguous()
            BXt = self._B(Xt)
            quad = (Xt * BXt).sum(1)
            if not bool((quad > 0).all()):
                j = int(torch.argmin(quad))
                worst = float(quad[j] / (Xt[j] * Xt[j]).sum())
                raise ValueError(f"`B` must be symmetric positive definite, but x^T B x / x^T x = {worst:.3g} <= 0 "
                                 "for a start vector; pass an SPD B (e.g. a mass matrix) or omit it")
            keep, Tm, _ = svqb_from_gram(Xt @ BXt.T, self.drop_tol)
            Xt, BXt = transform_rows(Xt, keep, Tm), transform_rows(BXt, keep, Tm)
        if Xt.shape[0] < self.m:
            raise ValueError(f"`X0` has linearly dependent columns (rank {Xt.shape[0]} < block size {self.m}); "
                             "pass independent starting vectors or fewer columns")
        AXt = apply_rows(self.A, Xt)
        values, Z = self._ritz(gram([Xt], [AXt]))
        Zt = Z.T.to(Xt.device, Xt.dtype)
        XZ = Zt @ Xt
        return BlockState(XZ, Zt @ AXt, Zt @ BXt if self.B is not None else XZ, values.to(Xt.device, Xt.dtype), self.m)

    def _residuals(self, s: BlockState) -> tuple[torch.Tensor, torch.Tensor]:
        """R = A X - B X Theta, as rows (written into the buffer above [X, P] when it lives in
        one), and the residual norms ||r_i|| (/ ||B x_i|| with a B: ``true_residual_norms``)."""
        home = self._home("x", s.XPt) if self._fast_ortho() else None
        if home is None:
            Rt = s.AXt - s.BXt * s.theta.unsqueeze(1)
        else:
            z = 2 * self.m
            Rt = torch.addcmul(s.AXt, s.Xt, s.theta.unsqueeze(1), value=-1,
                               out=self._buffers["x"][home][z - self.m: z])
        res = torch.linalg.vector_norm(Rt, dim=1)
        return Rt, res if self.B is None else res / torch.linalg.vector_norm(s.BXt, dim=1)

    # -- the loop ------------------------------------------------------------------
    def _step(self, s: BlockState, res: torch.Tensor, Rt: torch.Tensor, it: int,
              threshold: torch.Tensor | None = None) -> tuple[BlockState | None, torch.Tensor]:
        """One LOBPCG iteration from state s: (the new state or None at a breakdown, the active mask).
        ``threshold``: ``self._threshold(s.theta)`` when the caller has it."""
        if threshold is None:
            threshold = self._threshold(s.theta)
        active = ~(res <= threshold)  # soft locking: converged columns get no W, P
        if not bool(active.any()):  # every column (guards included) converged, but not verified
            active[self.k - 1] = True
        self.smallest_active_residual = float(res[active].min())  # what this step's products must resolve
        if self.method == "ortho":
            return self._step_ortho(s, active, Rt, res), active
        step = self._step_basic(s, active, Rt)
        if step is None:
            self.notes.append(f"switched from basic to ortho at iteration {it + 1} (ill-conditioned Gram)")
            self.method = "ortho"
            Xt = s.Xt.contiguous()  # basic's P is not B-orthogonal to X: drop it
            s = BlockState(Xt, s.AXt.contiguous(), s.BXt.contiguous() if self.B is not None else Xt, s.theta, self.m)
            step = self._step_ortho(s, active, Rt, res)
        return step, active

    def run(self) -> EigenResult:
        """Iterate until the k wanted pairs converge (verified with fresh products), the tracker
        stops, a breakdown or ``max_iter``; one record per iteration, audits every ``REFRESH``."""
        k, monitor = self.k, self.monitor
        try:
            s = self._initial()
        except torch.linalg.LinAlgError:  # NaN / Inf in the first products: nothing to report
            nan = torch.full((k,), math.nan, dtype=self.X_start.dtype, device=self.X_start.device)
            X = torch.linalg.qr(self.X_start).Q[:, :k]
            return monitor.finish(eigenvalues=nan, eigenvectors=X, residual_norms=nan.clone(),
                                  converged=torch.zeros(k, dtype=torch.bool), n_iter=0, status=SolveStatus.BREAKDOWN,
                                  message=nonfinite_message("in the first products", monitor.n_matvec, KEPT))
        Rt, res = self._residuals(s)
        threshold = self._threshold(s.theta)
        status = SolveStatus.MAX_ITER
        message = ""
        it = 0
        verified = False
        while it < self.max_iter:
            try:
                step = self._step(s, res, Rt, it, threshold)
            except torch.linalg.LinAlgError:  # eigh of a projected matrix with NaN / Inf from the operator
                status = SolveStatus.BREAKDOWN
                message = nonfinite_message(f"at iteration {it + 1}", monitor.n_matvec, KEPT)
                break
            step, active = step
            if step is None:
                status = SolveStatus.BREAKDOWN
                message = ("Every new search direction is linearly dependent on the current basis (stagnation "
                           "at the rounding level); `tol` is probably below the attainable accuracy.")
                break
            it += 1
            s = step
            Rt, res = self._residuals(s)
            if not math.isfinite(float(res.sum())):
                status = SolveStatus.BREAKDOWN
                message = "The residuals became NaN or Inf (is the operator finite and B positive definite?)."
                break
            threshold = self._threshold(s.theta)  # per column; no Ritz step changes it until the next _step
            n_converged = int((res[:k] <= threshold[:k]).sum())
            verified = self.recompute_AX  # then A X is fresh: the residuals are the true ones
            if n_converged == k and not verified:
                # Confirm with fresh products before declaring convergence (removes update drift).
                s.AXPt[:k] = apply_rows(self.A, s.Xt[:k])
                Rt, res = self._residuals(s)
                n_converged = int((res[:k] <= threshold[:k]).sum())
                verified = True
            loss = orthogonality_loss(s.Xt.T, s.BXt.T)
            stop = monitor.record(it, s.theta[:k], res[:k], estimated=False, n_converged=n_converged,
                                  orthogonality_loss=loss, all_ritz_values=s.theta,
                                  extras={"n_active": float(active.sum()),
                                          "n_matvec_B": float(self.B.n_matvec) if self.B is not None else 0.0})
            if verified and n_converged == k:
                status = SolveStatus.CONVERGED
                break
            if stop:
                status = SolveStatus.STOPPED
                break
            full_products = s.AXPt.shape[0] == s.XPt.shape[0]
            if verified and full_products and not self.recompute_AX:
                s.G = None  # A X was refreshed: the carried Gram block is stale
            if it % REFRESH == 0:
                # Periodic audit of the implicit quantities: the whole [X, P] block and its A-Gram.
                if full_products:
                    s.G = None
                loss = max(loss, orthogonality_loss(s.XPt.T, s.BXPt.T))
                if self._refresh_products(s, threshold, it):
                    Rt, res = self._residuals(s)
            s = self._maybe_reorthonormalize(s, loss)
        Xt, theta = s.Xt[:k], s.theta[:k]
        X = Xt.T.contiguous()
        residuals = res[:k] if verified else true_residual_norms(self.A, X, theta, self.B)
        converged = residuals <= self._threshold(theta)
        if status is SolveStatus.MAX_ITER and bool(converged.all()):
            status = SolveStatus.CONVERGED  # the fresh residuals met tol at the last iteration
        if self.n_refreshed:
            self.notes.append(f"rebuilt the projected matrix from fresh products {self.n_refreshed} time(s) "
                              "(rounding drift of the carried one)")
        notes = sorted(set(self.notes), key=self.notes.index)
        if notes:
            message = (message + " " if message else "") + "Notes: " + "; ".join(notes) + "."
        return monitor.finish(eigenvalues=theta, eigenvectors=X, residual_norms=residuals,
                              converged=converged, n_iter=it, status=status, message=message,
                              norm_estimate=self.norm_estimate)
