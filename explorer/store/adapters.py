"""Trackers for the user's own solver calls: a plain ``torch.lobpcg`` and a plain ``scipy.sparse.linalg.lobpcg``.

Both turn what the library computes each iteration (Ritz values, residual norms) into
``IterationRecord`` s and send them to a tracker, by default a ``StoreTracker`` on the
default store, so the app's History page and ``python -m explorer runs`` show the solve
live like any other::

    E, X = torch.lobpcg(A, k=10, tracker=TorchLobpcgTracker(name="my torch solve"))

    with ScipyLobpcgTracker(name="my scipy solve"):
        w, v = scipy.sparse.linalg.lobpcg(A, X, tol=1e-8, maxiter=200)

They live in the store package, not in ``explorer.tracking``, because each builds the
final ``EigenResult`` (``explorer.tracking.results``, a layer above tracking) and their
usual destination is the store.

``torch.lobpcg(..., tracker=t)`` calls ``t(worker)`` after every step with the live
``torch._lobpcg.LOBPCG`` worker (its ``E``, ``X``, ``R``, ``ivars``): the record is
``E[:k]`` and the column norms of ``R[:, :k]`` (``R = A X - B X diag(E)``); the first call
of ``method="ortho"`` (torch's default) comes before any Rayleigh-Ritz value exists (E is
still zero) and is not recorded. The last call is the one after which
``worker.stop_iteration()`` holds, so the run is closed there with ``E[:k]`` and
``X[:, :k]``, exactly what ``torch.lobpcg`` returns. Products with A are counted from
torch's own step structure (3 n block columns for the start, then the width of the
Rayleigh-Ritz basis ``S[:, nc:ns]`` plus n for the residual each step; a test checks the
count against a ``TorchFunctionMode`` that sees every product). ``torch.lobpcg`` switches
its tracker on and off through a *class* attribute, so two concurrent calls in threads of
one process silence each other (../shared/LIVE.md 2.5); the adapter binds itself to the
worker instance at its first call, which shrinks that window to the first step.

``scipy.sparse.linalg.lobpcg`` has no callback (scipy 1.17 included: its only
per-iteration outputs are ``retLambdaHistory`` / ``retResidualNormsHistory``, returned at
the end). ``ScipyLobpcgTracker`` therefore watches the call with the interpreter's trace
hook (``sys.settrace``, for the calling thread only, while the ``with`` block runs): at the
first Python call after each ``residualNorms = ...`` assignment of scipy's iteration loop
it reads ``_lambda``, ``residualNorms`` and ``activeMask`` from scipy's frame, the very
arrays that become ``lambdaHistory`` / ``residualNormsHistory``; line tracing stays off
(``f_trace_lines = False``), so only function calls are seen, and products with A are
counted from the calls of scipy's ``_makeMatMat`` wrapper of A. The places are found in
scipy's source with ``ast`` when the adapter is built; a scipy whose ``lobpcg`` no longer
has them gets a clear error instead of silent gaps. While the block runs, a debugger or
coverage tracer of that thread is paused (and restored afterwards).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import sys
import textwrap
import time
import warnings
from functools import lru_cache
from typing import Any, Mapping

import numpy as np
import torch

from explorer.tracking.results import EigenResult, SolveStatus
from explorer.store.tracker import StoreTracker
from explorer.tracking import IterationRecord, SolveStart, StopSolve, Tracker

__all__ = ["TorchLobpcgTracker", "ScipyLobpcgTracker"]


def _target(tracker: Tracker | None, store: Any, name: str | None, source: str, problem: str | None,
            params: Mapping[str, Any] | None) -> Tracker:
    if tracker is not None:
        return tracker
    return StoreTracker(store, name, problem=problem, params=params, source=source)


def _fail(tracker: Tracker, message: str) -> None:
    fail = getattr(tracker, "fail", None)
    if callable(fail):
        fail(message)


def _stop_requested(tracker: Tracker, record: IterationRecord) -> bool:
    try:
        tracker.on_iteration(record)
    except StopSolve:
        return True
    return False


# ---------------------------------------------------------------------------------
# torch.lobpcg
# ---------------------------------------------------------------------------------
class TorchLobpcgTracker:
    """``torch.lobpcg(..., tracker=TorchLobpcgTracker(...))``: every step goes to the store.

    Args:
        store: a ``RunStore``, a path, or None (the default store).
        name, problem, params: kept with the run (see ``StoreTracker``).
        tracker: send the records to this tracker instead of a new ``StoreTracker``
            (e.g. ``CompositeTracker(StoreTracker(...), HistoryTracker())``). A tracker
            that raises ``StopSolve`` stops torch (``bvars["force_stop"]``).

    After the call, ``result`` is the ``EigenResult`` the records end with and
    ``run_id`` the stored run's id. One instance may serve several calls in turn.
    """

    def __init__(self, store: Any = None, name: str | None = None, *, problem: str | None = None,
                 params: Mapping[str, Any] | None = None, tracker: Tracker | None = None) -> None:
        self.tracker = _target(tracker, store, name, "torch.lobpcg", problem, params)
        self.result: EigenResult | None = None
        self._worker: Any = None
        self._t0 = 0.0
        self._matvecs = 0
        self._prev: tuple[int, int] = (0, 0)  # (converged_end, converged_count) after the last step

    @property
    def run_id(self) -> int | None:
        return getattr(self.tracker, "run_id", None)

    def _begin(self, worker: Any) -> None:
        self._worker = worker
        self._t0 = time.perf_counter()
        self._matvecs = 0
        self.result = None
        # Immune to torch.lobpcg's class-attribute swap from now on (module docstring).
        worker.call_tracker = lambda: self(worker)
        X = worker.X
        self.tracker.on_start(SolveStart(
            solver="torch.lobpcg", n=int(worker.iparams["m"]), k=int(worker.iparams["k"]),
            which="LA" if worker.bparams.get("largest", True) else "SA", tol=float(worker.fparams["tol"]),
            max_iter=int(worker.iparams["niter"]), dtype=str(X.dtype).replace("torch.", ""), device=str(X.device),
            extras={"method": worker.method, "block_size": int(worker.iparams["n"]),
                    "generalized": worker.B is not None, "preconditioned": worker.iK is not None}))

    def __call__(self, worker: Any) -> None:
        if worker is not self._worker:
            self._begin(worker)
        istep, n, k = int(worker.ivars["istep"]), int(worker.iparams["n"]), int(worker.iparams["k"])
        if istep == 1:
            self._matvecs = 3 * n  # ||A X|| estimate, the start's Rayleigh-Ritz, the residual
        else:
            ns, nc = self._prev
            self._matvecs += (ns - nc) + n  # Rayleigh-Ritz on S[:, nc:ns], then R = A X - B X E
        self._prev = (int(worker.ivars["converged_end"]), int(worker.ivars["converged_count"]))
        E = worker.E.detach()[:k]
        R = worker.R.detach()[:, :k]
        residuals = torch.linalg.vector_norm(R, dim=0)
        n_conv = min(int(worker.ivars["converged_count"]), k)
        if not (worker.method == "ortho" and istep == 1):
            X = worker.X.detach()
            loss = None
            if worker.B is None:
                gram = X.T @ X
                gram.diagonal().sub_(1)
                loss = float(gram.abs().max())
            record = IterationRecord(
                solver="torch.lobpcg", iteration=istep - 1, ritz_values=E.cpu().clone(),
                residual_norms=residuals.cpu().clone(), residuals_estimated=False, orthogonality_loss=loss,
                n_converged=n_conv, n_matvec=self._matvecs, elapsed_s=time.perf_counter() - self._t0,
                extras={"torch_converged_count": float(worker.ivars["converged_count"])})
            if _stop_requested(self.tracker, record):
                worker.bvars["force_stop"] = True
        if worker.stop_iteration():
            self._finish(worker, E, residuals, n_conv)

    def _finish(self, worker: Any, E: torch.Tensor, residuals: torch.Tensor, n_conv: int) -> None:
        k = E.numel()
        if worker.ivars["converged_count"] >= worker.iparams["k"]:
            status = SolveStatus.CONVERGED
        elif worker.bvars.get("force_stop", False):
            status = SolveStatus.STOPPED
        else:
            status = SolveStatus.MAX_ITER
        rerr = worker.tvars.get("rerr")
        converged = torch.zeros(k, dtype=torch.bool)
        converged[:n_conv] = True  # torch counts a leading run of converged pairs
        message = (f"torch.lobpcg: {int(worker.ivars['converged_count'])} of {k} pairs met torch's relative "
                   f"criterion ||r|| / ((||A|| + |theta| ||B||) ||x||) < tol = {worker.fparams['tol']:g}"
                   + ("" if rerr is None else f" (worst: {float(rerr[:k].max()):.1e})") + ".")
        self.result = EigenResult(
            eigenvalues=E.clone(), eigenvectors=worker.X.detach()[:, :k].clone(), residual_norms=residuals.clone(),
            converged=converged, n_iter=int(worker.ivars["istep"]) - 1, n_matvec=self._matvecs,
            elapsed_s=time.perf_counter() - self._t0, status=status, solver="torch.lobpcg", message=message,
            which="LA" if worker.bparams.get("largest", True) else "SA", tol=float(worker.fparams["tol"]))
        try:
            self.tracker.on_finish(self.result)
        except StopSolve:
            pass

    def __enter__(self) -> "TorchLobpcgTracker":
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is not None and self._worker is not None and self.result is None:
            _fail(self.tracker, f"torch.lobpcg raised {type(exc).__name__}: {exc}")


# ---------------------------------------------------------------------------------
# scipy.sparse.linalg.lobpcg
# ---------------------------------------------------------------------------------
_SCIPY_MODULE = "scipy.sparse.linalg._eigen.lobpcg.lobpcg"


class _ScipyPlaces:
    """Where in scipy's lobpcg the adapter reads its values (found once with ``ast``)."""

    def __init__(self) -> None:
        import scipy

        module = importlib.import_module(_SCIPY_MODULE)
        self.version = scipy.__version__
        self.function = module.lobpcg
        self.code = module.lobpcg.__code__
        make = getattr(module, "_makeMatMat", None)
        if make is None:
            raise self._unsupported("it has no _makeMatMat")
        self.matmat_codes = frozenset({make(lambda v: v).__code__, make(np.eye(1)).__code__})
        source = textwrap.dedent(inspect.getsource(module.lobpcg))
        offset = self.code.co_firstlineno - 1
        tree = ast.parse(source)
        func = tree.body[0]
        loop = next((node for node in func.body if isinstance(node, ast.While)), None)
        if loop is None:
            raise self._unsupported("its iteration loop was not found")
        self.iteration_lines = self._after_residuals(loop.body, offset)
        after = func.body[func.body.index(loop) + 1:]
        self.final_lines = self._after_residuals(after, offset)
        if not self.iteration_lines or not self.final_lines:
            raise self._unsupported("the residualNorms assignments were not found")

    def _unsupported(self, why: str) -> RuntimeError:
        return RuntimeError(f"ScipyLobpcgTracker does not know this scipy's lobpcg (scipy {getattr(self, 'version', '?')}"
                            f"): {why}. Use retLambdaHistory=True / retResidualNormsHistory=True, or explorer's "
                            "solve('lobpcg', ...) with a StoreTracker")

    @staticmethod
    def _after_residuals(body: list[ast.stmt], offset: int) -> frozenset[int]:
        """Lines of the first statement with a call after the first ``residualNorms = ...`` in ``body``."""
        for index, node in enumerate(body):
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "residualNorms"
                                                    for t in node.targets):
                for later in body[index + 1:]:
                    if any(isinstance(sub, ast.Call) for sub in ast.walk(later)):
                        return frozenset(range(later.lineno + offset, (later.end_lineno or later.lineno) + offset + 1))
                return frozenset()
        return frozenset()


@lru_cache(maxsize=1)
def _scipy_places() -> _ScipyPlaces:
    return _ScipyPlaces()


class ScipyLobpcgTracker:
    """``with ScipyLobpcgTracker(...):`` records every ``scipy.sparse.linalg.lobpcg`` call in the block.

    Args: as ``TorchLobpcgTracker``. Records: iteration i is scipy's ``iterationNumber``
    (0: the start block's Rayleigh-Ritz values), with the values of ``lambdaHistory[i]``
    and ``residualNormsHistory[i]`` (absolute ``||A x - theta B x||``); the last record is
    the final iterate scipy checks after its loop. ``n_converged`` follows scipy's rule
    (residual below ``tol``; a converged column stays locked). The result is what the call
    returns (scipy's best iterate after a final Rayleigh-Ritz) with its residual norms.
    A tracker that raises ``StopSolve`` cannot stop scipy (it has no such hook): the
    request is ignored with a warning. Calls from other threads are not seen.
    """

    def __init__(self, store: Any = None, name: str | None = None, *, problem: str | None = None,
                 params: Mapping[str, Any] | None = None, tracker: Tracker | None = None) -> None:
        self.places = _scipy_places()
        self.tracker = _target(tracker, store, name, "scipy.lobpcg", problem, params)
        self.result: EigenResult | None = None
        self._frame: Any = None
        self._previous: Any = None
        self._warned_stop = False

    @property
    def run_id(self) -> int | None:
        return getattr(self.tracker, "run_id", None)

    # -- the trace hook ------------------------------------------------------------
    def __enter__(self) -> "ScipyLobpcgTracker":
        self._previous = sys.gettrace()
        if self._previous is not None:
            warnings.warn("another trace function (a debugger or coverage) is paused while ScipyLobpcgTracker "
                          "watches scipy's lobpcg", RuntimeWarning, stacklevel=2)
        sys.settrace(self._on_call)
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        sys.settrace(self._previous)
        if self._frame is not None:  # the block left scipy's frame without its return (KeyboardInterrupt, ...)
            _fail(self.tracker, f"scipy lobpcg was interrupted ({type(exc).__name__}: {exc})" if exc is not None
                  else "scipy lobpcg ended without a result")
        self._frame = None

    def _on_call(self, frame: Any, event: str, arg: Any) -> Any:
        if event != "call":
            return None
        code = frame.f_code
        if code is self.places.code and self._frame is None:
            self._begin(frame)
            frame.f_trace_lines = False  # only its return: no per-line events in scipy's loop
            return self._on_frame_event
        if self._frame is None:
            return None
        caller = frame.f_back
        if code in self.places.matmat_codes:
            local = frame.f_locals
            if local.get("m") is self._A:
                block = local.get("v")
                self._matvecs += int(block.shape[1]) if getattr(block, "ndim", 1) == 2 else 1
        elif caller is self._frame:
            line = caller.f_lineno
            if line in self.places.iteration_lines:
                self._record(caller.f_locals, final=False)
            elif line in self.places.final_lines:
                self._record(caller.f_locals, final=True)
        return None

    def _on_frame_event(self, frame: Any, event: str, arg: Any) -> Any:
        if event == "exception" and frame is self._frame:
            self._raised = arg[1]
        elif event == "return" and frame is self._frame:
            if arg is not None:
                self._finish(frame.f_locals, arg)
            else:  # an exception leaves scipy's frame
                error = self._raised
                _fail(self.tracker, f"scipy lobpcg raised {type(error).__name__}: {error}" if error is not None
                      else "scipy lobpcg ended without a result")
            self._frame = None
        return self._on_frame_event

    # -- records -------------------------------------------------------------------
    def _begin(self, frame: Any) -> None:
        local = frame.f_locals
        self._frame = frame
        self._raised: BaseException | None = None
        self._A = local.get("A")
        X = np.asarray(local.get("X"))
        self._t0 = time.perf_counter()
        self._matvecs = 0
        self._last_iteration = -1
        self.result = None
        largest = bool(local.get("largest", True))
        maxiter = local.get("maxiter")
        tol = local.get("tol")
        n, k = (X.shape[0], X.shape[1]) if X.ndim == 2 else (X.shape[0], 1)
        self.tracker.on_start(SolveStart(
            solver="scipy.lobpcg", n=int(n), k=int(k), which="LA" if largest else "SA",
            tol=float(tol) if tol is not None else float(np.sqrt(np.finfo(X.dtype if X.dtype.kind == "f" else float).eps)
                                                         * n),
            max_iter=int(maxiter if maxiter is not None else 20), dtype=str(X.dtype), device="cpu",
            extras={"generalized": local.get("B") is not None, "preconditioned": local.get("M") is not None,
                    "constraints": local.get("Y") is not None}))

    def _record(self, local: Mapping[str, Any], *, final: bool) -> None:
        iteration = int(local["iterationNumber"]) + (1 if final else 0)
        if iteration == self._last_iteration:
            return
        self._last_iteration = iteration
        values = np.array(local["_lambda"], dtype=float, copy=True)
        residuals = np.array(local["residualNorms"], dtype=float, copy=True)
        tol = float(local["residualTolerance"])
        active = np.asarray(local["activeMask"], dtype=bool) & (residuals > tol)
        X, BX = local.get("blockVectorX"), local.get("blockVectorBX")
        loss = None
        if X is not None:
            gram = np.asarray(X).T @ np.asarray(BX if BX is not None and local.get("B") is not None else X)
            loss = float(np.abs(gram - np.eye(gram.shape[0])).max())
        record = IterationRecord(
            solver="scipy.lobpcg", iteration=iteration, ritz_values=torch.from_numpy(values),
            residual_norms=torch.from_numpy(residuals), residuals_estimated=False, orthogonality_loss=loss,
            n_converged=int(values.size - active.sum()), n_matvec=self._matvecs,
            elapsed_s=time.perf_counter() - self._t0)
        if _stop_requested(self.tracker, record) and not self._warned_stop:
            self._warned_stop = True
            warnings.warn("scipy's lobpcg cannot be stopped from outside; the request is ignored", RuntimeWarning,
                          stacklevel=2)

    def _finish(self, local: Mapping[str, Any], returned: Any) -> None:
        values = np.asarray(returned[0], dtype=float)
        vectors = np.asarray(returned[1])
        residuals = np.asarray(local.get("residualNorms", np.full(values.shape, np.nan)), dtype=float).reshape(-1)
        tol = local.get("residualTolerance")
        if "iterationNumber" not in local:  # scipy's dense path (n < 5 k): eigh, no iterations
            residuals = np.full(values.shape, np.nan) if residuals.size != values.size else residuals
            status, message, n_iter = SolveStatus.CONVERGED, "scipy lobpcg solved this small problem densely " \
                "(n < 5 k), without iterations.", 0
            converged = np.ones(values.shape, dtype=bool)
        else:
            converged = residuals <= float(tol)
            status = SolveStatus.CONVERGED if bool(converged.all()) else SolveStatus.MAX_ITER
            n_iter = max(self._last_iteration, 0)
            best = local.get("bestIterationNumber")
            message = (f"scipy lobpcg: {int(converged.sum())} of {values.size} residuals below tol = {float(tol):g}; "
                       f"the returned values are the best iterate (iteration {best}) after a final Rayleigh-Ritz.")
        self.result = EigenResult(
            eigenvalues=torch.from_numpy(values.copy()), eigenvectors=torch.from_numpy(np.array(vectors, copy=True)),
            residual_norms=torch.from_numpy(residuals.copy()), converged=torch.from_numpy(converged.copy()),
            n_iter=int(n_iter), n_matvec=self._matvecs, elapsed_s=time.perf_counter() - self._t0, status=status,
            solver="scipy.lobpcg", message=message, which="LA" if bool(local.get("largest", True)) else "SA",
            tol=float(tol) if tol is not None else 0.0)
        try:
            self.tracker.on_finish(self.result)
        except StopSolve:
            pass
