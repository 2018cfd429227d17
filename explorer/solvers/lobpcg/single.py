"""LOBPCG with one vector (block size 1, "ortho", no B): the default path for k = 1.

The same method as the block engine (Knyazev 2001, Alg. 4.1 with m = 1: Rayleigh-Ritz on
the orthonormal basis [x, w, p], products A x, A w, A p stored, so one matvec per
iteration), without the block bookkeeping (buffers, Gram blocks, soft locking, SVQB),
which costs about as much per iteration whatever the block size and dominates a k = 1
solve. See ``single_vector``.
"""

from __future__ import annotations

import math

import torch

from explorer.operators import LinearOperator
from explorer.solvers._common import Monitor, Validated, nonfinite_message, residual_threshold, true_residual_norms
from explorer.solvers.lobpcg.state import KEPT, REFRESH
from explorer.tracking.results import EigenResult, SolveStatus


class _Rows:
    """The single-vector basis as rows [w, x, p] of a (3, n) buffer Q, their products
    [A w, A x, A p] in AQ, and the views of them the loop uses (made once: ``head[q]`` are the
    first q rows, ``V[q]`` the rows [x] or [x; p] after w)."""

    def __init__(self, n: int, dtype: torch.dtype, device: torch.device) -> None:
        self.Q = torch.empty(3, n, dtype=dtype, device=device)
        self.AQ = torch.empty_like(self.Q)
        self.w, self.x, self.p = self.Q.unbind(0)
        self.Aw, self.Ax, self.Ap = self.AQ.unbind(0)
        self.head = {q: self.Q[:q] for q in (2, 3)}
        self.Ahead = {q: self.AQ[:q] for q in (2, 3)}
        self.V = {q: self.Q[1:q] for q in (2, 3)}
        self.VT = {q: self.Q[1:q].T for q in (2, 3)}
        self.AV = {q: self.AQ[1:q] for q in (2, 3)}

    def residual(self, q: int, theta: float) -> tuple[float, torch.Tensor, float]:
        """Write r = A x - theta x into the w row; return ||r||, its overlaps g = V r with x (and p)
        and ||g||^2, all from one GEMV [r; x; p] r."""
        torch.add(self.Ax, self.x, alpha=-theta, out=self.w)
        s = torch.mv(self.head[q], self.w)
        rr, *g = s.tolist()
        return math.sqrt(max(rr, 0.0)), s[1:], sum(a * a for a in g)


def single_vector(v: Validated, monitor: Monitor, *, largest: bool, T: LinearOperator | None,
                  x: torch.Tensor) -> EigenResult:
    """k = 1 eigenpair by LOBPCG with one vector, from the start vector x (module docstring).

    ``x`` is kept normalized and ``p`` orthonormal to it; ``w`` is Gram-Schmidt'ed against both
    (DGKS: a second pass when the first cancels). The stored A x drifts by rounding, so
    CONVERGED is only declared after a fresh product confirms the residual, and every
    ``REFRESH`` iterations x is renormalized and p re-orthonormalized against it (as in the
    block engine).

    At large n the cost is passes over n-vectors (and fresh n-vector allocations), not flops,
    so everything lives in two preallocated pairs of (3, n) buffers (``_Rows``): the residual
    is written into the w row, and one GEMV [w; x; p] w gives its norm and its overlaps with
    x and p; Gram-Schmidt is one in-place GEMV (the norm after it from Pythagoras,
    ||w||^2 - ||g||^2, unless the pass cancelled, where it is measured) and the normalization
    an in-place scaling. The projected matrix H = S^T A S keeps its [x, p] block from the last
    step (C H C^T, as in the engine; recomputed by one GEMM after a fresh A x and at each
    audit), so only w's row is new: one GEMV. The new [x; p] and [A x; A p] are one small GEMM
    each into the other pair of buffers, and the pairs swap. About 30 passes over n-vectors
    per iteration and no n-vector allocation besides the operator's result (none at all where
    the operator writes A w into its row itself, ``matvecs_into``).
    """
    A, tol, max_iter = v.operator, v.tol, v.max_iter
    n, dtype, device = A.shape[0], A.dtype, A.device
    eps = torch.finfo(dtype).eps
    f64 = torch.float64
    dot, norm = torch.dot, torch.linalg.vector_norm
    # b: the current basis; the next x, p (and products) are written into rows 1, 2 of nb,
    # then the two swap. q = rows in use (2 while there is no p).
    b, nb = _Rows(n, dtype, device), _Rows(n, dtype, device)
    torch.div(x, norm(x), out=b.x)
    b.Ax.copy_(A.matvec(b.x))
    theta = float(dot(b.x, b.Ax))
    norm_estimate = abs(theta)
    q, G = 2, None  # G: the [x, p] block of H (lists of floats) when carried over
    res, g, gg = b.residual(q, theta)
    status, message = SolveStatus.MAX_ITER, ""
    it, verified, values = 0, False, torch.tensor([theta], dtype=f64)
    while it < max_iter:
        w, V = b.w, b.V[q]  # V = [x; p], orthonormal
        if T is None:
            before = res  # w = r: its norm and overlaps g are known
        else:
            w.copy_(T.matvec(w))
            before, g = float(norm(w)), torch.mv(V, w)
            gg = float(dot(g, g))
        start = before  # ||w|| in w's own units (T r has those of r / ||A||)
        for _ in range(2):  # w against x and p (DGKS: twice when the pass cancels)
            w.addmv_(b.VT[q], g, alpha=-1.0)
            after_sq = before * before - gg
            if after_sq > 0.5625 * before * before:  # kept > 3/4 of its norm: Pythagoras is accurate
                after = math.sqrt(after_sq)
                break
            after = float(norm(w))
            if after > 0.7071 * before:
                break
            before = after
            g = torch.mv(V, w)
            gg = float(dot(g, g))
        if not after > 10 * eps * start:
            status = SolveStatus.BREAKDOWN
            if math.isfinite(start + theta):
                message = ("The new search direction is linearly dependent on the current basis (stagnation at "
                           "the rounding level); `tol` is probably below the attainable accuracy.")
            else:
                message = nonfinite_message(f"at iteration {it + 1}", monitor.n_matvec, KEPT)
            break
        w.mul_(1.0 / after)
        if not A.matvecs_into(w.unsqueeze(0), b.Aw.unsqueeze(0)):  # (a kernel writes A w in place)
            b.Aw.copy_(A.matvec(w))
        # Rayleigh-Ritz on H = S^T A S for the orthonormal basis S = [w, x, p].
        if G is None:  # first step, after a fresh A x, after an audit: all of H from the vectors
            H = torch.mm(b.head[q], b.Ahead[q].T).to(device="cpu", dtype=f64).tril()
            H = H + H.tril(-1).T  # the lower triangle: w's entries use the fresh A w
        else:  # the [x, p] block carried over: only w's row is new
            h = torch.mv(b.head[q], b.Aw).tolist()
            H = torch.tensor([h] + [[h[i + 1]] + G[i] for i in range(q - 1)], dtype=f64)
        try:
            ev, U = torch.linalg.eigh(H)
        except torch.linalg.LinAlgError:  # NaN or Inf in H
            status = SolveStatus.BREAKDOWN
            message = nonfinite_message(f"at iteration {it + 1}", monitor.n_matvec, KEPT)
            break
        values = ev.flip(0) if largest else ev
        evl = ev.tolist()
        j = q - 1 if largest else 0
        u = [row[j] for row in U.tolist()]
        theta = evl[j]
        norm_estimate = max(norm_estimate, abs(evl[0]), abs(evl[-1]))
        # x <- S u; p <- the part of the update outside x: u without its x entry, made orthogonal to u
        c = [u[0], 0.0] + u[2:]
        overlap = sum(ci * ui for ci, ui in zip(c, u))
        c = [ci - overlap * ui for ci, ui in zip(c, u)]
        cn = math.sqrt(sum(a * a for a in c))
        C = [u, [a / cn for a in c]] if cn > 10 * eps else [u]  # else the update lies along x: no p
        Ct = torch.tensor(C, dtype=f64)
        G = (Ct @ H @ Ct.T).tolist()  # the new [x, p] block of H
        Cv = Ct.to(dtype=dtype, device=device)
        q_next = 1 + len(C)
        torch.mm(Cv, b.head[q], out=nb.V[q_next])
        torch.mm(Cv, b.Ahead[q], out=nb.AV[q_next])
        b, nb, q = nb, b, q_next
        it += 1
        res, g, gg = b.residual(q, theta)
        ritz = torch.tensor([theta], dtype=f64)
        threshold = float(residual_threshold(ritz, tol, norm_estimate)[0])
        verified = False
        if res <= threshold:  # confirm with a fresh product (the stored A x drifts by rounding)
            b.x.div_(norm(b.x))
            b.Ax.copy_(A.matvec(b.x))
            theta = float(dot(b.x, b.Ax))
            res, g, gg = b.residual(q, theta)
            verified, G, ritz = True, None, torch.tensor([theta], dtype=f64)
        conv = res <= threshold
        loss = abs(float(dot(b.x, b.p))) if q == 3 else 0.0
        stop = monitor.record(it, ritz, torch.tensor([res], dtype=f64),
                              estimated=False,
                              n_converged=int(conv), orthogonality_loss=loss, all_ritz_values=values)
        if verified and conv:
            status = SolveStatus.CONVERGED
            break
        if stop:
            status = SolveStatus.STOPPED
            break
        if it % REFRESH == 0 and q == 3:
            # audit: keep x normalized and p orthonormal to it (and their products consistent)
            nx = float(norm(b.x))
            b.x.div_(nx)
            b.Ax.div_(nx)
            c0 = float(dot(b.x, b.p))
            b.p.sub_(b.x, alpha=c0)
            b.Ap.sub_(b.Ax, alpha=c0)
            np_ = float(norm(b.p))
            if np_ > 10 * eps:
                b.p.div_(np_)
                b.Ap.div_(np_)
            else:
                q = 2
            G = None
            g = torch.mv(b.V[q], b.w)  # the residual's overlaps with the audited x, p
            gg = float(dot(g, g))
    X = b.x.clone().unsqueeze(1)
    theta_t = torch.tensor([theta], dtype=dtype, device=device)
    if not verified:
        res = float(true_residual_norms(A, X, theta_t)[0])
    residuals = torch.tensor([res], dtype=dtype, device=device)
    converged = residuals <= residual_threshold(theta_t, tol, norm_estimate)
    if status is SolveStatus.MAX_ITER and bool(converged.all()):
        status = SolveStatus.CONVERGED
    return monitor.finish(eigenvalues=theta_t, eigenvectors=X, residual_norms=residuals, converged=converged,
                          n_iter=it, status=status, message=message, norm_estimate=norm_estimate)
