"""How records and results are written into SQLite rows and read back.

Vectors (Ritz values, residual norms, every Ritz value, ghost flags) are little-endian
float64 (uint8 for flags) blobs: exact for float32 and float64 values and about 8x
smaller and faster than JSON text. Small dicts (parameters, extras) and the final
values of a run are JSON (NaN and Inf written as JSON's NaN / Infinity tokens, which
Python's json reads back, so nothing is lost).
"""

from __future__ import annotations

import json
from typing import Any, Mapping

import numpy as np
import torch

from explorer.tracking import IterationRecord

__all__ = ["f64", "from_f64", "mask", "from_mask", "to_json", "from_json", "record_row", "row_record", "RECORD_COLUMNS",
           "vector_json", "json_vector"]

RECORD_COLUMNS = ("seq", "iteration", "ritz_values", "residual_norms", "residuals_estimated", "orthogonality_loss",
                  "n_converged", "n_matvec", "elapsed_s", "all_ritz_values", "ghost_mask", "extras")


def _numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach()
        if value.device.type != "cpu":
            value = value.cpu()
        return value.numpy()
    return np.asarray(value)


def f64(value: Any) -> bytes:
    """Little-endian float64 bytes of a vector (torch tensor, numpy array or sequence)."""
    return np.ascontiguousarray(_numpy(value), dtype="<f8").reshape(-1).tobytes()


def from_f64(blob: bytes | None) -> torch.Tensor | None:
    if blob is None:
        return None
    return torch.from_numpy(np.frombuffer(blob, dtype="<f8").astype(np.float64))


def mask(value: Any) -> bytes:
    return np.ascontiguousarray(_numpy(value), dtype=np.uint8).reshape(-1).tobytes()


def from_mask(blob: bytes | None) -> torch.Tensor | None:
    if blob is None:
        return None
    return torch.from_numpy(np.frombuffer(blob, dtype=np.uint8).astype(np.bool_))


def _plain(value: Any) -> Any:
    """JSON-able: numpy/torch scalars and arrays to Python numbers and lists; other objects to str."""
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return _numpy(value).tolist()
    if isinstance(value, (torch.dtype, torch.device)):
        return str(value).replace("torch.", "")
    return str(value)


def to_json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=_plain)


def from_json(text: str | None, default: Any = None) -> Any:
    return default if text is None else json.loads(text)


def vector_json(value: Any) -> str | None:
    """A vector as a JSON list of floats (None stays None)."""
    if value is None:
        return None
    return json.dumps([float(v) for v in _numpy(value).reshape(-1).tolist()])


def json_vector(text: str | None, dtype: torch.dtype = torch.float64) -> torch.Tensor | None:
    if text is None:
        return None
    return torch.tensor(json.loads(text), dtype=dtype)


def record_row(seq: int, record: IterationRecord) -> tuple[Any, ...]:
    """The ``records`` columns after ``run_id`` (in ``RECORD_COLUMNS`` order)."""
    return (
        seq, int(record.iteration), f64(record.ritz_values), f64(record.residual_norms),
        int(bool(record.residuals_estimated)),
        None if record.orthogonality_loss is None else float(record.orthogonality_loss),
        int(record.n_converged), int(record.n_matvec), float(record.elapsed_s),
        None if record.all_ritz_values is None else f64(record.all_ritz_values),
        None if record.ghost_mask is None else mask(record.ghost_mask),
        to_json(dict(record.extras)) if record.extras else None,
    )


def row_record(solver: str, row: Mapping[str, Any] | tuple[Any, ...]) -> IterationRecord:
    """An IterationRecord from a ``records`` row (``RECORD_COLUMNS`` order, or a mapping)."""
    if not isinstance(row, Mapping):
        row = dict(zip(RECORD_COLUMNS, row))
    values = from_f64(row["ritz_values"])
    residuals = from_f64(row["residual_norms"])
    assert values is not None and residuals is not None
    return IterationRecord(
        solver=solver, iteration=int(row["iteration"]), ritz_values=values, residual_norms=residuals,
        residuals_estimated=bool(row["residuals_estimated"]), orthogonality_loss=row["orthogonality_loss"],
        n_converged=int(row["n_converged"]), n_matvec=int(row["n_matvec"]), elapsed_s=float(row["elapsed_s"]),
        all_ritz_values=from_f64(row["all_ritz_values"]), ghost_mask=from_mask(row["ghost_mask"]),
        extras=from_json(row["extras"], {}),
    )
