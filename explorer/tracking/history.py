"""HistoryTracker: keeps every record and turns them into tidy pandas tables."""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import pandas as pd

from explorer.tracking.protocol import NullTracker
from explorer.tracking.records import IterationRecord, SolveStart

if TYPE_CHECKING:  # pragma: no cover
    from explorer.tracking.results import EigenResult

__all__ = ["HistoryTracker", "history_frame", "summary_frame", "finite_or_null"]

_TIDY_COLUMNS = [
    "solver", "iteration", "index", "ritz_value", "residual_norm", "residual_estimated",
    "converged_count", "orthogonality_loss", "n_matvec", "elapsed_s", "ghost",
]


def history_frame(records: Iterable[IterationRecord]) -> pd.DataFrame:
    """Tidy (long) table: one row per (iteration, Ritz pair index).

    Columns: solver, iteration, index, ritz_value, residual_norm, residual_estimated,
    converged_count, orthogonality_loss, n_matvec, elapsed_s, ghost.
    """
    rows: list[dict[str, Any]] = []
    for record in records:
        values = record.ritz_values.tolist()
        residuals = record.residual_norms.tolist()
        ghosts = record.ghost_mask.tolist() if record.ghost_mask is not None else [False] * len(values)
        for index, (value, residual) in enumerate(zip(values, residuals)):
            rows.append(
                {
                    "solver": record.solver,
                    "iteration": record.iteration,
                    "index": index,
                    "ritz_value": value,
                    "residual_norm": residual,
                    "residual_estimated": record.residuals_estimated,
                    "converged_count": record.n_converged,
                    "orthogonality_loss": record.orthogonality_loss,
                    "n_matvec": record.n_matvec,
                    "elapsed_s": record.elapsed_s,
                    "ghost": bool(ghosts[index]) if index < len(ghosts) else False,
                }
            )
    return pd.DataFrame(rows, columns=_TIDY_COLUMNS)


def summary_frame(records: Sequence[IterationRecord]) -> pd.DataFrame:
    """Wide table: one row per iteration (max residual, converged count, ...)."""
    return pd.DataFrame([record.as_row() for record in records])


class HistoryTracker(NullTracker):
    """Keeps every record (thread-safe) for tables, CSV and JSON export."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[IterationRecord] = []
        self.start: SolveStart | None = None
        self.result: "EigenResult | None" = None

    def on_start(self, start: SolveStart) -> None:
        self.start = start

    def on_iteration(self, record: IterationRecord) -> None:
        with self._lock:
            self._records.append(record)

    def on_finish(self, result: "EigenResult") -> None:
        self.result = result

    @property
    def records(self) -> list[IterationRecord]:
        """A copy of the records so far (safe to read while the solve runs)."""
        with self._lock:
            return list(self._records)

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    def to_frame(self) -> pd.DataFrame:
        return history_frame(self.records)

    def to_csv(self, path: str | Path | None = None) -> str:
        text = self.to_frame().to_csv(index=False)
        if path is not None:
            Path(path).write_text(text)
        return text

    def to_json(self, path: str | Path | None = None) -> str:
        payload = {
            "start": None if self.start is None else {
                key: value for key, value in self.start.__dict__.items() if key != "extras"
            },
            "records": [
                {
                    **record.as_row(),
                    "ritz_values": record.ritz_values.tolist(),
                    "residual_norms": record.residual_norms.tolist(),
                }
                for record in self.records
            ],
        }
        text = json.dumps(finite_or_null(payload), indent=1, default=str, allow_nan=False)
        if path is not None:
            Path(path).write_text(text)
        return text


def finite_or_null(value: Any) -> Any:
    """A JSON-ready copy of ``value`` (dicts, lists, floats) with NaN / Inf (a residual after a
    breakdown, a loss not measured) as null: Python's default NaN / Infinity tokens are not
    JSON, and browsers' JSON.parse or jq reject them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_or_null(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_null(item) for item in value]
    return value
