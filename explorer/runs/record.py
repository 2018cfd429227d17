"""The run log: one ``RunRecord`` per solve (finished, stopped, failed or still running), and its table.

Pure (pandas/numpy). The app keeps this session's runs in ``st.session_state`` (see
``explorer.ui.state.runs()``) and writes them to the run store (``explorer.store``); the
History page lists the store's runs (``run_from_store``: any session's or process's) with
this session's, and the Compare and Model pages read them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from explorer.store import RunInfo, StoredResult
from explorer.tracking.results import EigenResult
from explorer.tracking import IterationRecord, finite_or_null, history_frame

__all__ = ["RunRecord", "run_from_view", "run_from_store", "runs_frame", "final_errors", "history_csv", "history_json"]


@dataclass
class RunRecord:
    """One solve as the History page shows it.

    Attributes:
        run_id: the run's id in the store (1, 2, ... within the session when there is none).
        page: where it comes from: the app page that started it ("explore", "model",
            "compare", ...) or, for a run of another process, its store source ("cli",
            "python", "torch.lobpcg", ...).
        solver: registry name.
        problem: a label for the problem (e.g. "sample: laplacian_2d_30").
        n: problem size.
        params: k, which, tol, max_iter, seed, device, dtype and the solver's extras.
        status: "converged", "max_iter reached", "stopped", "breakdown", "failed", and for
            stored runs "running" or "interrupted".
        message: the status sentence (``EigenResult.status_message``) or the error text.
        records: every iteration record (the live history, kept for stopped runs too).
        result: the EigenResult, or for a run read back from the store its ``StoredResult``
            (no eigenvectors); None when the solve failed before producing one.
        reference: the k wanted exact eigenvalues in ``which`` order, or None.
        max_error: max |theta_i - lambda_i| of the final values (None without reference).
    """

    run_id: int
    solver: str
    problem: str
    n: int
    params: dict[str, Any]
    status: str
    message: str
    n_iter: int
    n_matvec: int
    elapsed_s: float
    records: list[IterationRecord] = field(default_factory=list, repr=False)
    result: EigenResult | StoredResult | None = field(default=None, repr=False)
    reference: np.ndarray | None = field(default=None, repr=False)
    max_error: float | None = None
    page: str = "explore"
    started_at: float = field(default_factory=time.time)
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def label(self) -> str:
        p = self.params
        tol = p.get("tol")
        tol_text = f" tol={tol:.0e}" if isinstance(tol, (int, float)) else ""
        name = self.extra.get("name")
        named = f" \u201c{name}\u201d" if name else ""
        return (f"#{self.run_id}{named} {self.solver} k={p.get('k', '?')} {p.get('which', '')}{tol_text} on "
                f"{self.problem}")

    @property
    def stored(self) -> bool:
        """True when the run is in the run store under ``run_id``."""
        return bool(self.extra.get("stored"))

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def dtype(self) -> str:
        return str(self.params.get("dtype", "float64"))

    @property
    def max_residual(self) -> float | None:
        if self.result is None or self.result.residual_norms.numel() == 0:
            return None
        return float(self.result.residual_norms.max())

    def history_frame(self) -> pd.DataFrame:
        return history_frame(self.records)

    def as_row(self) -> dict[str, Any]:
        shown = {key: value for key, value in self.params.items() if key not in ("device", "dtype")}
        return {
            "run": self.run_id,
            "source": self.page,
            "solver": self.solver,
            "problem": self.problem,
            "n": self.n,
            "params": ", ".join(f"{key}={_short(value)}" for key, value in shown.items()),
            "device": self.params.get("device", "cpu"),
            "dtype": self.dtype,
            "status": self.status,
            "iterations": self.n_iter,
            "matvecs": self.n_matvec,
            "time_s": round(self.elapsed_s, 3),
            "converged": None if self.result is None else f"{self.result.n_converged}/{self.result.k}",
            "max_error": self.max_error,
            "max_residual": self.max_residual,
            "started": time.strftime("%H:%M:%S", time.localtime(self.started_at)),
        }


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def final_errors(result: EigenResult | None, reference: Any) -> np.ndarray | None:
    """|theta_i - lambda_i| of the final values against the wanted reference (which order)."""
    if result is None or reference is None:
        return None
    values = result.eigenvalues.detach().cpu().double().numpy()
    ref = np.asarray(reference, dtype=float).ravel()
    m = min(values.size, ref.size)
    if m == 0:
        return None
    return np.abs(values[:m] - ref[:m])


def run_from_store(info: RunInfo, result: StoredResult | None = None,
                   records: list[IterationRecord] | None = None) -> RunRecord:
    """A RunRecord of a stored run (``RunStore.run(id)``, optionally its ``result(id)`` and records)."""
    ref = info.reference
    errors = final_errors(result, ref)
    max_error = None if errors is None or not np.isfinite(errors).any() else float(np.nanmax(errors))
    params = {**info.params, "device": info.device or "cpu", "dtype": info.dtype or "float64"}
    if info.k is not None:
        params.setdefault("k", info.k)
    if info.which is not None:
        params.setdefault("which", info.which)
    if info.tol is not None:
        params.setdefault("tol", info.tol)
    return RunRecord(run_id=info.id, solver=info.solver, problem=info.problem or "", n=int(info.n or 0),
                     params=params, status=info.status, message=info.message, n_iter=int(info.n_iter or 0),
                     n_matvec=int(info.n_matvec or 0), elapsed_s=float(info.elapsed_s or 0.0),
                     records=list(records or []), result=result, reference=ref, max_error=max_error, page=info.source,
                     started_at=info.started_at, extra={"stored": True, "name": info.name, "n_records": info.n_records})


def run_from_view(run_id: int, view: Any, *, solver: str, problem: str, n: int, params: Mapping[str, Any],
                  reference: Any = None, page: str = "explore", started_at: float | None = None,
                  extra: Mapping[str, Any] | None = None) -> RunRecord:
    """A RunRecord from a finished ``explorer.runs.jobs.JobView`` (done or failed)."""
    result = view.result if isinstance(view.result, EigenResult) else None
    records = list(view.records)
    if result is not None:
        status, message = result.status.value, result.status_message
        n_iter, n_matvec, elapsed = result.n_iter, result.n_matvec, result.elapsed_s
    else:
        status = "failed" if view.error else "stopped"
        message = view.error or (f"Stopped before the solver produced a result ({view.stop_reason})."
                                 if view.stop_reason else "No result.")
        last = records[-1] if records else None
        n_iter = last.iteration if last else 0
        n_matvec = last.n_matvec if last else 0
        elapsed = view.elapsed_s
    ref = None if reference is None else np.asarray(reference, dtype=float).ravel()
    errors = final_errors(result, ref)
    max_error = None if errors is None or not np.isfinite(errors).any() else float(np.nanmax(errors))
    return RunRecord(run_id=run_id, solver=solver, problem=problem, n=int(n), params=dict(params), status=status,
                     message=message, n_iter=int(n_iter), n_matvec=int(n_matvec), elapsed_s=float(elapsed),
                     records=records, result=result, reference=ref, max_error=max_error, page=page,
                     started_at=started_at or time.time(), extra=dict(extra or {}))


_RUN_COLUMNS = ["run", "source", "solver", "problem", "n", "params", "device", "dtype", "status", "iterations",
                "matvecs", "time_s", "converged", "max_error", "max_residual", "started"]


def runs_frame(runs: Iterable[RunRecord]) -> pd.DataFrame:
    """One row per run (the History table and its CSV export)."""
    return pd.DataFrame([run.as_row() for run in runs], columns=_RUN_COLUMNS)


def history_csv(records: Iterable[IterationRecord]) -> str:
    """Tidy per-(iteration, pair) CSV of a run (``explorer.tracking.history_frame``)."""
    return history_frame(records).to_csv(index=False)


def history_json(records: Iterable[IterationRecord], *, meta: Mapping[str, Any] | None = None) -> str:
    """JSON: ``{"meta": {...}, "records": [{iteration, n_matvec, ..., ritz_values, residual_norms}]}``."""
    import json

    payload = {
        "meta": dict(meta or {}),
        "records": [
            {**record.as_row(),
             "ritz_values": record.ritz_values.double().tolist(),
             "residual_norms": record.residual_norms.double().tolist()}
            for record in records
        ],
    }
    return json.dumps(finite_or_null(payload), indent=1, default=str, allow_nan=False)
