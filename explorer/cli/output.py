"""What the command line prints: the live progress line (stderr), the result (stdout), run tables."""

from __future__ import annotations

import json
import math
import sys
import time
from typing import IO, Any

import pandas as pd

from explorer.tracking import IterationRecord, NullTracker, SolveStart, finite_or_null

__all__ = ["ProgressLine", "result_payload", "result_text", "runs_text", "runs_payload"]


class ProgressLine(NullTracker):
    """A tracker that keeps one status line on ``stream`` up to date.

    ``iteration 120 | converged 3/10 | best residual 1.2e-07 | 2,410 matvecs | 1.3 s``: the
    best residual is the smallest ``||A x - theta x||`` among the pairs not yet converged
    (all pairs once they are), i.e. the next one to converge. On a terminal the line is
    rewritten in place (``\\r``) at most every ``interval`` seconds; to a file or pipe a
    new line is written at most every ``pipe_interval`` seconds, so logs stay short.
    """

    def __init__(self, stream: IO[str] | None = None, *, interval: float = 0.1, pipe_interval: float = 2.0) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval if self.tty else pipe_interval
        self.k = 0
        self.solver = ""
        self._last = -math.inf
        self._width = 0
        self._record: IterationRecord | None = None
        self._shown: IterationRecord | None = None

    def on_start(self, start: SolveStart) -> None:
        self.k, self.solver = start.k, start.solver
        self._last = time.monotonic()  # the first line after one interval: short solves print only the last

    def on_iteration(self, record: IterationRecord) -> None:
        self._record = record
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self._show(record)

    def on_finish(self, result: Any) -> None:
        if self._record is not None and self._record is not self._shown:
            self._show(self._record)
        if self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()

    @staticmethod
    def line(record: IterationRecord, k: int) -> str:
        residuals = [float(v) for v in record.residual_norms.tolist()]
        pending = residuals[record.n_converged:] if record.n_converged < len(residuals) else residuals
        finite = [v for v in pending if math.isfinite(v)]
        best = f"{min(finite):.1e}" if finite else "n/a"
        return (f"iteration {record.iteration:,} | converged {record.n_converged}/{k or len(residuals)} | "
                f"best residual {best} | {record.n_matvec:,} matvecs | {record.elapsed_s:.1f} s")

    def _show(self, record: IterationRecord) -> None:
        self._shown = record
        text = f"{self.solver}: {self.line(record, self.k)}"
        if self.tty:
            pad = max(0, self._width - len(text))
            self.stream.write("\r" + text + " " * pad)
            self._width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


def _values(tensor: Any) -> list[float]:
    if tensor is None:
        return []
    return [float(v) for v in tensor.detach().cpu().double().reshape(-1).tolist()]


def stored_run_id(store_tracker: Any) -> int | None:
    """The run's id in the store, or None (with a warning on stderr) when the store failed."""
    if store_tracker is None:
        return None
    if store_tracker.error:
        print(f"warning: {store_tracker.error}", file=sys.stderr)
        return None
    return store_tracker.run_id


def result_payload(run_id: int | None, status: str, result: Any, *, elapsed: float,
                   svd: bool = False) -> dict[str, Any]:
    """``{"run_id", "status", "eigenvalues", "residual_norms", "n_matvec", "elapsed"}`` (NaN / Inf as null);
    for an SVD solver (``svd``, or a result with singular values) ``"singular_values"`` instead of
    ``"eigenvalues"``."""
    eig = getattr(result, "eigenvalues", None)
    if eig is None:
        eig = getattr(result, "S", None)
    svd = svd or hasattr(result, "singular_values") or getattr(result, "eigenvalues", None) is None
    return finite_or_null({
        "run_id": run_id,
        "status": status,
        "singular_values" if svd else "eigenvalues": _values(eig),
        "residual_norms": _values(getattr(result, "residual_norms", None)),
        "n_matvec": int(getattr(result, "n_matvec", 0) or 0),
        "elapsed": float(getattr(result, "elapsed_s", elapsed) or elapsed),
    })


def result_text(label: str, run_id: int | None, result: Any, reference: Any, store_path: Any) -> str:
    """A few lines for people: status, counts, the eigenpair table, where the run is kept."""
    lines = [f"{result.solver} on {label}: {result.status.value}. {result.status_message}",
             f"{result.n_iter:,} iterations, {result.n_matvec:,} matvecs, {result.elapsed_s:.2f} s"]
    frame = result.to_frame(reference)
    lines.append(frame.to_string(index=False, float_format=lambda v: f"{v:.10g}"))
    if run_id is not None:
        lines.append(f"run {run_id} in {store_path} (python -m explorer runs; the app's History page)")
    return "\n".join(lines)


_TABLE = ["id", "name", "source", "solver", "problem", "k", "which", "status", "n_iter", "n_matvec", "elapsed_s",
          "started_at"]


def runs_text(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "no runs yet"
    shown = frame[_TABLE].copy()
    for column in ("k", "n_iter", "n_matvec"):
        shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else f"{int(v):,}")
    shown["started_at"] = shown["started_at"].dt.tz_convert(None).dt.strftime("%Y-%m-%d %H:%M:%S")
    shown["elapsed_s"] = shown["elapsed_s"].map(lambda v: "" if pd.isna(v) else f"{v:.2f}")
    shown["problem"] = shown["problem"].map(lambda v: v if not isinstance(v, str) or len(v) <= 40 else v[:39] + "\u2026")
    shown = shown.rename(columns={"n_iter": "iterations", "n_matvec": "matvecs", "elapsed_s": "time_s",
                                  "started_at": "started (UTC)"})
    return shown.astype(object).fillna("").to_string(index=False)


def runs_payload(frame: pd.DataFrame) -> str:
    rows = []
    for row in frame.to_dict(orient="records"):
        for key in ("started_at", "ended_at"):
            value = row.get(key)
            row[key] = None if value is None or pd.isna(value) else value.timestamp()
        row = {key: (None if not isinstance(value, (dict, list, str)) and pd.isna(value) else value)
               for key, value in row.items()}
        for key in ("n", "k", "max_iter", "n_iter", "n_matvec", "n_converged", "n_records"):
            if row.get(key) is not None:
                row[key] = int(row[key])
        rows.append(row)
    return json.dumps(finite_or_null(rows), indent=1, default=str, allow_nan=False)
