"""``backend="torch"``: ``torch.lobpcg``'s own worker (``torch._lobpcg.LOBPCG``) with guards.

Runs torch's implementation for comparison ("basic": Knyazev 2001; "ortho": orthogonal
basis selection after Stathopoulos & Wu 2002 and Duersch et al. 2018, as torch's docs cite
them) and adds guards against its silent failures:

* its tracker (the live worker with ``ivars``/``fvars``/``bvars``/``tvars``, ``E``, ``X``,
  ``R``) is translated into our ``IterationRecord`` each iteration; a Stop request sets
  ``bvars["force_stop"] = True``;
* the first tracker call (the initial Rayleigh-Ritz) is not recorded: with
  ``method="ortho"`` torch leaves E = 0 there, so its residuals are meaningless;
* running out of iterations is reported as MAX_ITER (torch returns silently);
* convergence uses *our* criterion (``residual_threshold``): torch is run with ``tol=0``
  (so its own count, relative to a crude ||A|| estimate, never stops it) and the tracker
  stops it when the k wanted pairs meet our tolerance. A side effect: torch then does no
  soft locking;
* the tracker race (``../shared/LIVE.md`` 2.5: ``torch.lobpcg`` assigns the *class*
  attribute ``LOBPCG.call_tracker`` on entry and a no-op on exit, so concurrent calls in
  threads switch off each other's tracker and Stop) cannot happen: we create the worker
  ourselves and bind ``call_tracker`` on the *instance*, which the class attribute never
  shadows. We do not touch the class attribute at all, so we also never break a
  concurrent plain ``torch.lobpcg`` call;
* matrix-free operators: torch multiplies through ``torch._linalg_utils.matmul``, which
  accepts only tensors; we install, once, a dispatching wrapper that sends our
  ``LinearOperator`` objects to ``matmat`` and everything else to the original function
  (the same idea as the benchmark harness in PEERS.md 3, but permanent and thread-safe
  instead of patched and restored around each call). That also counts every product on
  our per-solve counter.

The guards on arguments (checked by ``lobpcg`` before this runs): torch refuses
rows < 3 x block size (we shrink the block or solve densely), truncates k larger than
the block silently (we refuse it), and with ``method="ortho"`` ignores the preconditioner
``iK`` (``_update_ortho`` never applies it: we refuse that combination).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import torch

from explorer.operators import LinearOperator
from explorer.solvers._common import (
    Monitor,
    Validated,
    orthogonality_loss,
    residual_threshold,
    select_order,
    true_residual_norms,
)
from explorer.tracking.results import EigenResult, SolveStatus

_DISPATCH_LOCK = threading.Lock()
_ORIGINAL_MATMUL: Callable[..., torch.Tensor] | None = None


def _operator_matmul(A: Any, X: torch.Tensor) -> torch.Tensor:
    """``torch._linalg_utils.matmul`` that also accepts our LinearOperator objects."""
    if isinstance(A, LinearOperator):
        return A.matmat(X)
    assert _ORIGINAL_MATMUL is not None
    return _ORIGINAL_MATMUL(A, X)


def _ensure_matmul_dispatch() -> None:
    """Install the dispatching matmul once (re-install if someone restored an older function)."""
    global _ORIGINAL_MATMUL
    import torch._linalg_utils as lu

    if lu.matmul is _operator_matmul:
        return
    with _DISPATCH_LOCK:
        if lu.matmul is not _operator_matmul:
            _ORIGINAL_MATMUL = lu.matmul
            lu.matmul = _operator_matmul


def run_torch(v: Validated, monitor: Monitor, *, m: int, method: str, largest: bool,
              T: LinearOperator | None, X_start: torch.Tensor) -> EigenResult:
    """Run ``torch._lobpcg.LOBPCG`` on block X_start (m columns) under the guards of the module
    docstring; the tracker records each iteration and stops torch at our convergence test."""
    import torch._lobpcg as tl

    _ensure_matmul_dispatch()
    k, n = v.k, v.operator.shape[0]
    dtype = v.operator.dtype
    torch_default_tol = torch.finfo(dtype).eps ** 0.5
    iparams = {"m": n, "n": m, "k": k, "niter": v.max_iter + 1,  # +1: torch counts the initial Rayleigh-Ritz
               "ortho_i_max": 3, "ortho_j_max": 3}
    # tol = 0: torch's own convergence count never stops it (see the module docstring); the
    # orthogonalization tolerances keep torch's defaults (they equal its default tol).
    fparams = {"tol": 0.0, "ortho_tol": torch_default_tol, "ortho_tol_drop": torch_default_tol,
               "ortho_tol_replace": torch_default_tol}
    bparams = {"largest": largest, "ortho_use_drop": False}
    norm_estimate = [0.0]
    state: dict[str, Any] = {"it": 0, "status": None, "X": None, "E": None, "res": None}
    B_plain = v.B.base if v.B is not None else None  # un-counted B for the orthogonality diagnostic

    def track(worker: Any) -> None:
        if worker.ivars["istep"] <= 1:
            return  # the initial Rayleigh-Ritz; with method="ortho", E is still 0 here
        E = worker.E.detach()
        X = worker.X.detach()
        BX = X if B_plain is None else B_plain._matmat(X)
        res = torch.linalg.vector_norm(worker.R.detach(), dim=0)
        if B_plain is not None:  # ||r|| / ||B x||, as true_residual_norms
            res = res / torch.linalg.vector_norm(BX, dim=0)
        norm_estimate[0] = max(norm_estimate[0], float(E.abs().max()))
        it = worker.ivars["istep"] - 1
        state.update(it=it, X=X[:, :k].clone(), E=E[:k].clone(), res=res[:k].clone())
        if not bool(torch.isfinite(res).all()):
            state["status"] = SolveStatus.BREAKDOWN
            worker.bvars["force_stop"] = True
            return
        conv = res[:k] <= residual_threshold(E[:k], v.tol, norm_estimate[0])
        loss = orthogonality_loss(X, BX)
        stop = monitor.record(it, E[:k], res[:k], estimated=False, n_converged=int(conv.sum()),
                              orthogonality_loss=loss, all_ritz_values=E[:m],
                              extras={"torch_converged_count": float(worker.ivars.get("converged_count", 0))})
        if stop:
            state["status"] = SolveStatus.STOPPED
            worker.bvars["force_stop"] = True
        elif bool(conv.all()):
            state["status"] = SolveStatus.CONVERGED
            worker.bvars["force_stop"] = True

    worker = tl.LOBPCG(v.operator, v.B, X_start.clone(), T, iparams, fparams, bparams, method, track)
    # Bound on the *instance*: immune to the class-attribute swap that torch.lobpcg does (LIVE.md 2.5).
    worker.call_tracker = lambda: track(worker)
    message = ""
    try:
        worker.run()
        status = state["status"] or SolveStatus.MAX_ITER
    except (torch.linalg.LinAlgError, RuntimeError, ValueError, AssertionError) as err:
        status = SolveStatus.BREAKDOWN
        message = f"torch.lobpcg failed: {type(err).__name__}: {err}"
    if state["X"] is None:  # failed before the first real iteration: Rayleigh quotients of the start
        X = X_start[:, :k]
        AX = v.operator.matmat(X)
        BX = X if v.B is None else v.B.matmat(X)
        E = (X * AX).sum(0) / (X * BX).sum(0)
        order = select_order(E, "LA" if largest else "SA")
        X, E = X[:, order], E[order]
    else:
        X, E = state["X"], state["E"]
    residuals = true_residual_norms(v.operator, X, E, v.B)
    converged = residuals <= residual_threshold(E, v.tol, max(norm_estimate[0], float(E.abs().max())))
    if status is SolveStatus.BREAKDOWN and not message:
        message = "The residuals became NaN or Inf."
    return monitor.finish(eigenvalues=E, eigenvectors=X, residual_norms=residuals, converged=converged,
                          n_iter=state["it"], status=status, message=message)
