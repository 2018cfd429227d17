"""How records and results are written into SQLite rows and read back.

Records are stored in chunks: one ``records`` row per commit (a flush of the tracker,
typically 0.2 s of iterations), each field a column of packed values (little-endian int64 /
float64 / uint8 arrays, vectors concatenated with a length array, -1 for None), so that one
commit of N records binds 18 values instead of 12 N and is encoded with one ``torch.cat``
per field: about 3 us per record instead of 45 us for a row per record (measured,
docs/benchmarks.md). ``RunStore.records`` / ``history`` unpack them into
``IterationRecord`` s, so the layout is invisible through the API. Small dicts
(parameters) and the final values of a run are JSON (NaN and Inf written as JSON's NaN /
Infinity tokens, which Python's json reads back).
"""

from __future__ import annotations

import json
from typing import Any, Mapping

import numpy as np
import torch

from explorer.tracking import IterationRecord

__all__ = ["to_json", "from_json", "vector_json", "chunk_row", "chunk_records", "CHUNK_COLUMNS"]

#: The columns of a ``records`` row after ``run_id``.
CHUNK_COLUMNS = ("first_seq", "count", "iteration", "n_converged", "n_matvec", "elapsed_s", "orthogonality_loss",
                 "loss_known", "residuals_estimated", "ritz_len", "ritz_values", "residual_len", "residual_norms",
                 "all_len", "all_ritz_values", "ghost_len", "ghost_mask", "extras")


def _numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach()
        if value.device.type != "cpu":
            value = value.cpu()
        return value.numpy()
    return np.asarray(value)


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


def _tensor(value: Any) -> torch.Tensor | None:
    if value is None or isinstance(value, torch.Tensor):
        return value
    return torch.as_tensor(np.asarray(value))


def _packed(tensors: list[Any], dtype: torch.dtype) -> tuple[bytes, bytes]:
    """(lengths as int32 bytes with -1 for None, the concatenated values as ``dtype`` bytes)."""
    lengths = np.fromiter((-1 if t is None else t.numel() for t in tensors), dtype="<i4", count=len(tensors))
    present = [t if t.dim() == 1 else t.reshape(-1) for t in tensors if t is not None]  # records hold 1-D ones
    if not present:
        return lengths.tobytes(), b""
    values = torch.cat(present) if len(present) > 1 else present[0]
    values = values.detach().to(device="cpu", dtype=dtype)
    return lengths.tobytes(), values.numpy().astype("<f8" if dtype == torch.float64 else np.uint8, copy=False).tobytes()


def _unpacked(lengths: bytes, values: bytes, dtype: Any) -> list[torch.Tensor | None]:
    sizes = np.frombuffer(lengths, dtype="<i4")
    flat = torch.from_numpy(np.frombuffer(values, dtype=dtype).copy())
    if dtype == np.uint8:
        flat = flat.to(torch.bool)
    parts = list(flat.split([int(s) for s in sizes if s >= 0])) if values else []
    it = iter(parts)
    return [None if size < 0 else (next(it) if size else flat[:0]) for size in sizes]


def chunk_row(first_seq: int, records: list[IterationRecord]) -> tuple[Any, ...]:
    """One ``records`` row (``CHUNK_COLUMNS`` after ``run_id``) for consecutive records starting at ``first_seq``."""
    count = len(records)

    def ints(values: Any) -> bytes:
        return np.fromiter(values, dtype="<i8", count=count).tobytes()

    def floats(values: Any) -> bytes:
        return np.fromiter(values, dtype="<f8", count=count).tobytes()

    losses = [r.orthogonality_loss for r in records]
    ritz_len, ritz = _packed([_tensor(r.ritz_values) for r in records], torch.float64)
    res_len, res = _packed([_tensor(r.residual_norms) for r in records], torch.float64)
    all_len, every = _packed([_tensor(r.all_ritz_values) for r in records], torch.float64)
    ghost_len, ghosts = _packed([_tensor(r.ghost_mask) for r in records], torch.uint8)
    extras = [dict(r.extras) for r in records]
    return (
        int(first_seq), count, ints(r.iteration for r in records), ints(r.n_converged for r in records),
        ints(r.n_matvec for r in records), floats(r.elapsed_s for r in records),
        floats(0.0 if v is None else v for v in losses), bytes(v is not None for v in losses),
        bytes(bool(r.residuals_estimated) for r in records), ritz_len, ritz, res_len, res, all_len, every,
        ghost_len, ghosts, to_json(extras) if any(extras) else None,
    )


def chunk_records(solver: str, row: Mapping[str, Any] | tuple[Any, ...]) -> list[IterationRecord]:
    """The IterationRecords of one ``records`` row (``CHUNK_COLUMNS`` order, or a mapping), in order."""
    if not isinstance(row, Mapping):
        row = dict(zip(CHUNK_COLUMNS, row))
    iterations = np.frombuffer(row["iteration"], dtype="<i8").tolist()
    converged = np.frombuffer(row["n_converged"], dtype="<i8").tolist()
    matvecs = np.frombuffer(row["n_matvec"], dtype="<i8").tolist()
    elapsed = np.frombuffer(row["elapsed_s"], dtype="<f8").tolist()
    losses = np.frombuffer(row["orthogonality_loss"], dtype="<f8").tolist()
    known = list(row["loss_known"])
    estimated = list(row["residuals_estimated"])
    ritz = _unpacked(row["ritz_len"], row["ritz_values"], "<f8")
    residuals = _unpacked(row["residual_len"], row["residual_norms"], "<f8")
    every = _unpacked(row["all_len"], row["all_ritz_values"], "<f8")
    ghosts = _unpacked(row["ghost_len"], row["ghost_mask"], np.uint8)
    extras = from_json(row["extras"]) or [{}] * len(iterations)
    return [
        IterationRecord(solver=solver, iteration=iterations[i], ritz_values=ritz[i], residual_norms=residuals[i],
                        residuals_estimated=bool(estimated[i]), orthogonality_loss=losses[i] if known[i] else None,
                        n_converged=converged[i], n_matvec=matvecs[i], elapsed_s=elapsed[i],
                        all_ritz_values=every[i], ghost_mask=ghosts[i], extras=extras[i])
        for i in range(len(iterations))
    ]
