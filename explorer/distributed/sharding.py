"""How the work is split: rows of a matrix, samples of a data set, and reading one rank's rows.

* Rows: contiguous blocks of near-equal size (``row_ranges``: the first ``n % p`` ranks get
  one row more), so the all-gather pads at most one row per rank.
* Samples: rank r takes samples r, r + p, r + 2p, ... (``shard_indices``): the strided split
  of ``torch.utils.data.DistributedSampler`` with ``shuffle=False``, but without the padding
  that sampler adds to make the shards equal (it repeats samples, which would change the
  Hessian); the shards' Hessians are weighted by their sizes instead (``hessian.py``).
* Reading a row block (``read_row_block``) from one file shared by all ranks, with memory
  per rank of the block, not of the matrix:

  - ``.npz`` from ``scipy.sparse.save_npz`` in CSR layout: the ``indptr`` array is read
    whole (n + 1 integers); of ``indices`` and ``data`` only the block's byte range is kept,
    streamed through ``zipfile`` (compressed members are inflated in 1 MiB pieces and the
    bytes before the block dropped), so memory is the block plus one piece.
  - ``.mtx`` coordinate files: the body is parsed in chunks of 2^20 entries with
    ``pandas.read_csv`` (C parser) and only entries whose row is in the block are kept
    (for ``symmetric`` storage, also the mirrored entries whose column is). Each rank
    parses the whole text, so reading time does not fall with the number of ranks;
    memory does.
  - anything else (dense files, other layouts, generated problems, samples) is loaded
    whole with the single-process readers and sliced: memory at load time is the whole
    matrix, after it the block (the rest is freed).
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import scipy.sparse as sp
import torch

__all__ = ["row_ranges", "shard_indices", "RowBlock", "read_row_block", "slice_rows"]

_PIECE = 1 << 20  # bytes read at a time from an .npz member
_MTX_CHUNK = 1 << 20  # entries parsed at a time from a Matrix Market body


def row_ranges(n: int, world_size: int) -> list[tuple[int, int]]:
    """Contiguous (start, stop) row ranges, one per rank, sizes differing by at most one."""
    if world_size < 1:
        raise ValueError(f"`world_size` must be >= 1, got {world_size}")
    base, extra = divmod(int(n), int(world_size))
    ranges, start = [], 0
    for rank in range(world_size):
        stop = start + base + (1 if rank < extra else 0)
        ranges.append((start, stop))
        start = stop
    return ranges


def shard_indices(n_samples: int, rank: int, world_size: int) -> torch.Tensor:
    """Samples rank ``rank`` holds: ``rank, rank + world_size, ...`` (no padding)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"`rank` must be in 0..{world_size - 1}, got {rank}")
    return torch.arange(rank, int(n_samples), int(world_size))


@dataclass
class RowBlock:
    """Rows ``start:stop`` of an (n, n) matrix as a scipy CSR block (stop - start, n).

    ``how`` says how it was read ("npz-stream", "mtx-stream", "whole"), and ``fingerprint``
    is what every rank must agree on (shape, stored entries, the file's digest).
    """

    matrix: sp.csr_matrix
    start: int
    stop: int
    n: int
    nnz_total: int
    how: str
    fingerprint: dict[str, Any]

    @property
    def nbytes(self) -> int:
        """Bytes of the block's CSR arrays (values, column indices, row pointers)."""
        m = self.matrix
        return int(m.data.nbytes + m.indices.nbytes + m.indptr.nbytes)


def slice_rows(matrix: Any, start: int, stop: int) -> sp.csr_matrix:
    """Rows ``start:stop`` of a scipy / numpy / torch matrix as a sorted, deduplicated CSR copy."""
    if isinstance(matrix, torch.Tensor):
        matrix = matrix.to_sparse_coo().coalesce() if matrix.is_sparse or matrix.layout != torch.strided else matrix
        if matrix.layout == torch.strided:
            block = sp.csr_matrix(matrix[start:stop].cpu().numpy())
        else:
            idx = matrix.indices().cpu().numpy()
            coo = sp.coo_matrix((matrix.values().cpu().numpy(), (idx[0], idx[1])), shape=tuple(matrix.shape))
            block = coo.tocsr()[start:stop]
    elif sp.issparse(matrix):
        block = sp.csr_matrix(matrix)[start:stop]
    else:
        block = sp.csr_matrix(np.asarray(matrix)[start:stop])
    block = sp.csr_matrix(block, copy=True)
    block.sum_duplicates()
    block.sort_indices()
    return block


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for piece in iter(lambda: handle.read(1 << 22), b""):
            digest.update(piece)
    return digest.hexdigest()


# -- .npz (scipy.sparse.save_npz) -----------------------------------------------------
def _npy_header(handle: BinaryIO) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(handle)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
    if dtype.hasobject:
        raise ValueError("holds object arrays (pickles), which are refused")
    return shape, fortran, dtype


def _skip(handle: BinaryIO, count: int) -> None:
    while count > 0:
        got = handle.read(min(count, _PIECE))
        if not got:
            raise ValueError("is truncated")
        count -= len(got)


def _read_range(archive: zipfile.ZipFile, member: str, first: int, count: int) -> np.ndarray:
    """Elements ``first : first + count`` of a 1-D array stored in an .npz member, streamed."""
    with archive.open(member) as handle:
        shape, _fortran, dtype = _npy_header(handle)
        if len(shape) != 1 or not 0 <= first <= first + count <= shape[0]:
            raise ValueError(f"has a member {member!r} of shape {shape} where a vector of at least "
                             f"{first + count} entries is needed")
        _skip(handle, first * dtype.itemsize)
        raw = handle.read(count * dtype.itemsize)
        if len(raw) != count * dtype.itemsize:
            raise ValueError("is truncated")
    return np.frombuffer(raw, dtype=dtype).copy()


def _read_npz_block(path: Path, start: int, stop: int) -> RowBlock | None:
    """The block from a save_npz CSR archive, or None when the archive is not one (then it is read whole)."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as error:
        raise ValueError(f"`{path.name}` is not a valid .npz archive ({error})") from None
    with archive:
        names = set(archive.namelist())
        if not {"format.npy", "shape.npy", "indptr.npy", "indices.npy", "data.npy"} <= names:
            return None
        with archive.open("format.npy") as handle:
            fmt = np.load(io.BytesIO(handle.read()), allow_pickle=False).item()
        fmt = fmt.decode() if isinstance(fmt, bytes) else str(fmt)
        if fmt != "csr":
            return None  # csc / bsr ... : read whole and converted
        with archive.open("shape.npy") as handle:
            shape = tuple(int(s) for s in np.load(io.BytesIO(handle.read()), allow_pickle=False))
        if len(shape) != 2 or shape[0] != shape[1]:
            raise ValueError(f"`{path.name}` holds a {shape} matrix; a square matrix is needed")
        n = shape[0]
        if not 0 <= start <= stop <= n:
            raise ValueError(f"rows {start}:{stop} are outside the {n} rows of `{path.name}`")
        with archive.open("indptr.npy") as handle:
            indptr = np.load(io.BytesIO(handle.read()), allow_pickle=False)
        if indptr.shape != (n + 1,) or indptr[0] != 0 or np.any(np.diff(indptr) < 0):
            raise ValueError(f"`{path.name}` has malformed row pointers; re-save it with scipy.sparse.save_npz")
        lo, hi = int(indptr[start]), int(indptr[stop])
        indices = _read_range(archive, "indices.npy", lo, hi - lo)
        data = _read_range(archive, "data.npy", lo, hi - lo)
        nnz_total = int(indptr[-1])
    if data.dtype.kind not in "fiu":
        raise ValueError(f"`{path.name}` holds {data.dtype} values; real values are needed")
    if indices.size and (indices.min() < 0 or indices.max() >= n):
        raise ValueError(f"`{path.name}` has column indices outside 0..{n - 1}; re-save it with scipy.sparse.save_npz")
    block = sp.csr_matrix((data.astype(np.float64, copy=False), indices.astype(np.int64, copy=False),
                           (indptr[start:stop + 1] - lo).astype(np.int64)), shape=(stop - start, n))
    block.sum_duplicates()
    block.sort_indices()
    return RowBlock(block, start, stop, n, nnz_total, "npz-stream",
                    {"n": n, "nnz": nnz_total, "file_sha256": _sha256(path)})


# -- .mtx (Matrix Market coordinate) ------------------------------------------------------
def _read_mtx_block(path: Path, start: int, stop: int) -> RowBlock | None:
    """The block from a coordinate .mtx file (streamed), or None for array (dense) files."""
    import pandas as pd
    import scipy.io

    try:
        rows, cols, entries, layout, field, symmetry = scipy.io.mminfo(str(path))
    except Exception as error:  # noqa: BLE001 - the header parser raises several types
        raise ValueError(f"`{path.name}` could not be parsed as Matrix Market (.mtx): {error}") from None
    if layout != "coordinate":
        return None
    if field == "complex":
        raise ValueError(f"`{path.name}` holds complex numbers; only real matrices are supported")
    if rows != cols:
        raise ValueError(f"`{path.name}` is {rows} x {cols}; a square matrix is needed")
    n = int(rows)
    header_lines = 0
    with open(path, "rb") as handle:  # banner, comments and the size line
        for line in handle:
            header_lines += 1
            stripped = line.strip()
            if stripped and not stripped.startswith(b"%"):
                break
    pattern = field == "pattern"
    usecols = [0, 1] if pattern else [0, 1, 2]
    kept_r, kept_c, kept_v = [], [], []
    seen = 0
    try:
        reader = pd.read_csv(path, sep=r"\s+", header=None, skiprows=header_lines, usecols=usecols,
                             names=usecols, comment="%", chunksize=_MTX_CHUNK, dtype=np.float64, engine="c")
        for chunk in reader:
            values = chunk.to_numpy()
            seen += values.shape[0]
            r = values[:, 0].astype(np.int64) - 1
            c = values[:, 1].astype(np.int64) - 1
            v = np.ones(len(r)) if pattern else values[:, 2]
            if np.any(values[:, :2] != np.floor(values[:, :2])) or r.min(initial=0) < 0 or c.min(initial=0) < 0 \
                    or r.max(initial=0) >= n or c.max(initial=0) >= n:
                raise ValueError(f"has indices that are not integers in 1..{n}")
            mine = (r >= start) & (r < stop)
            kept_r.append(r[mine]), kept_c.append(c[mine]), kept_v.append(v[mine])
            if symmetry != "general":
                sign = -1.0 if symmetry == "skew-symmetric" else 1.0
                mirror = (c >= start) & (c < stop) & (r != c)
                kept_r.append(c[mirror]), kept_c.append(r[mirror]), kept_v.append(sign * v[mirror])
    except (ValueError, pd.errors.ParserError) as error:
        raise ValueError(f"`{path.name}` could not be parsed as Matrix Market (.mtx): {str(error)[:200]}; each "
                         "entry must be 'row column value' with 1-based indices") from None
    if seen != entries:
        raise ValueError(f"`{path.name}` says {entries} entries but holds {seen}")
    r = np.concatenate(kept_r) if kept_r else np.zeros(0, np.int64)
    block = sp.csr_matrix((np.concatenate(kept_v) if kept_v else np.zeros(0),
                           (r - start, np.concatenate(kept_c) if kept_c else np.zeros(0, np.int64))),
                          shape=(stop - start, n))
    block.sum_duplicates()
    block.sort_indices()
    return RowBlock(block, start, stop, n, int(entries), "mtx-stream",
                    {"n": n, "nnz": int(entries), "symmetry": symmetry, "file_sha256": _sha256(path)})


def read_row_block(path: str | Path, start: int, stop: int) -> RowBlock:
    """Rows ``start:stop`` of the square matrix in ``path`` (see the module docstring for how).

    Raises:
        ValueError: unreadable file, not square, malformed indices (the message says which).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no file `{path}`; give an existing .mtx or .npz file, or a generator such as "
                         "laplacian_2d:300")
    name = path.name.lower()
    block: RowBlock | None = None
    if name.endswith(".npz"):
        block = _read_npz_block(path, start, stop)
    elif name.endswith(".mtx"):
        block = _read_mtx_block(path, start, stop)
    if block is not None:
        return block
    from explorer.problems.files import load_matrix

    loaded = load_matrix(str(path))  # the single-process reader, with its checks
    n = loaded.shape[0]
    if loaded.shape[0] != loaded.shape[1]:
        raise ValueError(f"`{path.name}` is {loaded.shape[0]} x {loaded.shape[1]}; a square matrix is needed")
    matrix = slice_rows(loaded.data, start, stop).astype(np.float64)
    return RowBlock(matrix, start, stop, n, int(loaded.nnz), "whole",
                    {"n": n, "nnz": int(loaded.nnz), "file_sha256": _sha256(path)})
