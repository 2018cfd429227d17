"""Loading matrices from files (a path, or the bytes of an upload) and saving them.

Formats, chosen by the file name's suffix:

====================  ===========================================================
``.npy``              ``np.load(allow_pickle=False)``
``.npz``              ``scipy.sparse.load_npz`` when the archive is ``save_npz``
                      output; else a dense archive: ``key``, or ``"A"``, or the
                      only array
``.mtx``/``.mtx.gz``  ``scipy.io.mmread`` (symmetric storage is expanded);
                      coordinate -> CSR, array -> dense
``.csv``              ``np.loadtxt``, comma- or whitespace-separated numbers
``.pt``               ``torch.load(weights_only=True, map_location="cpu")``: a
                      tensor (dense or sparse) or a dict of them
``.safetensors``      ``safetensors.torch.load``: ``key``, or ``"A"``, or the only
                      tensor
====================  ===========================================================

Nothing here can run code from a file: pickles are refused (``allow_pickle=False``,
``weights_only=True``) and only real parsers are used. Every failure is a
:class:`LoadError` whose message says what was wrong and how to fix it. Files are
read into memory once; ``max_bytes`` bounds both the file and what a compressed file
expands to (a zip or gzip bomb is refused before it is inflated).
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import re
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import scipy.io
import scipy.sparse as sp
import torch

from explorer.operators import DenseOperator, LinearOperator, SparseOperator, as_operator, as_rectangular_operator

__all__ = [
    "LoadError",
    "LoadedMatrix",
    "SUPPORTED_SUFFIXES",
    "load_matrix",
    "load_operator",
    "save_matrix",
]

SUPPORTED_SUFFIXES = (".npy", ".npz", ".mtx", ".mtx.gz", ".csv", ".pt", ".safetensors")

_FORMAT_OF_SUFFIX = {".npy": "npy", ".npz": "npz", ".mtx": "mtx", ".mtx.gz": "mtx", ".csv": "csv", ".pt": "pt",
                     ".safetensors": "safetensors"}
# Keys scipy.sparse.save_npz writes (every layout has `format` and `shape`).
_SPARSE_NPZ_KEYS = {"format", "shape"}
_SPARSE_NPZ_LAYOUTS = ({"data", "indices", "indptr"}, {"row", "col", "data"}, {"data", "offsets"})
# numpy element types (without byte order) that torch.from_numpy takes and count_nonzero handles.
_TORCH_NATIVE = {"b1", "i1", "i2", "i4", "i8", "u1", "f4", "f8"}
_SAVE_HINT = ("save one matrix with np.save / scipy.sparse.save_npz / torch.save(tensor) / "
              "safetensors.torch.save_file({'A': tensor})")


class LoadError(ValueError):
    """A file could not be turned into a matrix; the message says why and how to fix it."""


# eq=False: tensors and scipy matrices have elementwise ==, so identity equality is the sane one.
@dataclass(frozen=True, eq=False)
class LoadedMatrix:
    """A matrix read from a file, before any validation as an operator.

    Attributes:
        data: a dense ``torch.Tensor`` (CPU) or a ``scipy.sparse.csr_matrix``.
        format: "npy", "npz", "npz-sparse", "mtx", "csv", "pt" or "safetensors".
        name: the file name, with ``[key]`` appended when picked from an archive.
        shape: (rows, columns).
        nnz: stored nonzeros (sparse) or nonzero entries (dense).
        dtype: the element type as stored, e.g. "float64", "int64".
    """

    data: torch.Tensor | sp.csr_matrix
    format: str
    name: str
    shape: tuple[int, int]
    nnz: int | None
    dtype: str

    @property
    def is_sparse(self) -> bool:
        """True for scipy CSR data."""
        return sp.issparse(self.data)


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------
def _suffix(filename: str) -> str:
    lower = filename.lower()
    for suffix in sorted(SUPPORTED_SUFFIXES, key=len, reverse=True):  # ".mtx.gz" before ".mtx"
        if lower.endswith(suffix):
            return suffix
    shown = Path(filename).suffix or "(none)"
    raise LoadError(f"`{filename}` has an unsupported suffix {shown}; supported: {', '.join(SUPPORTED_SUFFIXES)}. "
                    "Rename the file if its content is one of these formats, or convert it.")


def _megabytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _check_bytes(size: int, max_bytes: int | None, filename: str, what: str = "is") -> None:
    if max_bytes is not None and size > max_bytes:
        raise LoadError(f"`{filename}` {what} {_megabytes(size)}, above the limit of {_megabytes(max_bytes)}; "
                        "use a smaller matrix (or a sparse format such as .mtx or a sparse .npz)")


def _check_zip(data: bytes, max_bytes: int | None, filename: str, kind: str) -> zipfile.ZipFile:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        total = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise LoadError(f"`{filename}` could not be parsed as {kind} (not a valid zip archive: {err}); "
                        f"the file may be truncated or not {kind} at all. {_SAVE_HINT}") from err
    _check_bytes(total, max_bytes, filename, "expands to")
    return archive


def _pick(items: Mapping[str, Any], key: str | None, filename: str, what: str) -> tuple[str, Any]:
    """Choose one entry of an archive: ``key``, else "A", else the only one."""
    names = sorted(items)
    if key is not None:
        if key not in items:
            raise LoadError(f"`{filename}` has no {what} named {key!r}; it has {names}. Pass one of them as `key`.")
        return key, items[key]
    if "A" in items:
        return "A", items["A"]
    if len(names) == 1:
        return names[0], items[names[0]]
    if not names:
        raise LoadError(f"`{filename}` holds no {what}s; {_SAVE_HINT}")
    raise LoadError(f"`{filename}` holds several {what}s {names} and none is named 'A'; "
                    "pass `key=` to pick one.")


def _dtype_name(dtype: Any) -> str:
    return str(dtype).replace("torch.", "")


def _refuse_bad_dtype(dtype: Any, filename: str) -> None:
    """Complex, text and object data are refused here (a file problem, not an operator one)."""
    if isinstance(dtype, torch.dtype):
        if dtype.is_complex:
            raise LoadError(f"`{filename}` holds complex numbers ({_dtype_name(dtype)}); only real matrices are "
                            "supported. Save the real part (or a real symmetric embedding).")
        return
    np_dtype = np.dtype(dtype)
    if np.issubdtype(np_dtype, np.complexfloating):
        raise LoadError(f"`{filename}` holds complex numbers ({np_dtype}); only real matrices are supported. "
                        "Save the real part (or a real symmetric embedding).")
    if not (np.issubdtype(np_dtype, np.number) or np_dtype == np.bool_):
        raise LoadError(f"`{filename}` holds {np_dtype} data, not numbers; save a numeric (float) matrix.")


def _check_ndim(shape: tuple[int, ...], filename: str) -> tuple[int, int]:
    if len(shape) != 2:
        if len(shape) == 1:
            hint = (f"a 1-D array of length {shape[0]} is a vector; if these are the diagonal entries, "
                    "save np.diag(values) (or use explorer.problems.diagonal)")
        elif len(shape) == 0:
            hint = "it is a single number; save an n x n matrix"
        else:
            hint = "save one n x n matrix (e.g. array[0] of a stack)"
        raise LoadError(f"`{filename}` holds {len(shape)}-D data of shape {tuple(shape)}, but a matrix must be "
                        f"2-D; {hint}.")
    if shape[0] == 0 or shape[1] == 0:
        raise LoadError(f"`{filename}` is empty (shape {tuple(shape)}); it must hold at least one row and column.")
    return int(shape[0]), int(shape[1])


def _from_numpy(array: np.ndarray, fmt: str, name: str) -> LoadedMatrix:
    _refuse_bad_dtype(array.dtype, name)
    shape = _check_ndim(array.shape, name)
    dtype = _dtype_name(array.dtype)
    if array.dtype.str[1:] not in _TORCH_NATIVE:
        # float16, long double, wide unsigned ints: float64 is what as_operator would use anyway
        array = array.astype(np.float64)
    native = array.dtype.newbyteorder("=")
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=native))
    return LoadedMatrix(tensor, fmt, name, shape, int(torch.count_nonzero(tensor)), dtype)


def _from_tensor(tensor: torch.Tensor, fmt: str, name: str) -> LoadedMatrix:
    _refuse_bad_dtype(tensor.dtype, name)
    shape = _check_ndim(tuple(tensor.shape), name)
    if tensor.layout == torch.strided:
        tensor = tensor.detach().cpu().contiguous()
        return LoadedMatrix(tensor, fmt, name, shape, int(torch.count_nonzero(tensor)), _dtype_name(tensor.dtype))
    # Sparse: build scipy from the raw index arrays (no torch op on possibly malformed
    # indices); scipy's constructors and check_format reject out-of-range indices.
    dtype = _dtype_name(tensor.dtype)
    values_dtype = torch.float64 if tensor.dtype in (torch.float16, torch.bfloat16) else tensor.dtype
    try:
        if tensor.layout == torch.sparse_coo:
            indices = tensor._indices().numpy()
            values = tensor._values().to(values_dtype).numpy()
            matrix = sp.coo_matrix((values, (indices[0], indices[1])), shape=shape)
        elif tensor.layout in (torch.sparse_csr, torch.sparse_csc):
            compressed = tensor.crow_indices() if tensor.layout == torch.sparse_csr else tensor.ccol_indices()
            plain = tensor.col_indices() if tensor.layout == torch.sparse_csr else tensor.row_indices()
            cls = sp.csr_matrix if tensor.layout == torch.sparse_csr else sp.csc_matrix
            matrix = cls((tensor.values().to(values_dtype).numpy(), plain.numpy(), compressed.numpy()), shape=shape)
        else:
            raise LoadError(f"`{name}` is a {tensor.layout} tensor; save it as a dense, COO or CSR tensor "
                            "(tensor.to_sparse_coo()).")
    except (ValueError, IndexError, RuntimeError) as err:
        if isinstance(err, LoadError):
            raise
        raise LoadError(f"`{name}` holds a malformed sparse tensor ({err}); re-save it from a valid tensor.") from err
    return _from_scipy(matrix, fmt, name, dtype=dtype)


def _from_scipy(matrix: Any, fmt: str, name: str, *, dtype: str | None = None) -> LoadedMatrix:
    _refuse_bad_dtype(matrix.dtype, name)
    shape = _check_ndim(tuple(matrix.shape), name)
    try:
        # Validate the *stored* layout before converting: scipy's C++ conversions (csc ->
        # csr, bsr -> csr) index with the stored indices unchecked, so a malformed file
        # could read or write out of bounds (a crafted .npz crashed the process this way).
        if hasattr(matrix, "check_format"):
            matrix.check_format(full_check=True)
        csr = sp.csr_matrix(matrix)
        csr.check_format(full_check=True)
    except (ValueError, IndexError) as err:
        raise LoadError(f"`{name}` holds a malformed sparse matrix ({err}); re-save it from a valid matrix.") from err
    csr.sum_duplicates()
    return LoadedMatrix(csr, fmt, name, shape, int(csr.nnz), dtype or _dtype_name(matrix.dtype))


# --------------------------------------------------------------------------------------
# One reader per format: (bytes, file name, key, max_bytes) -> LoadedMatrix
# --------------------------------------------------------------------------------------
def _read_npy(data: bytes, filename: str, key: str | None, max_bytes: int | None) -> LoadedMatrix:
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as err:
        if "allow_pickle" in str(err) or "pickled" in str(err) or "Object arrays" in str(err):
            raise LoadError(f"`{filename}` holds Python objects (a pickle); pickles could run code when loaded, so "
                            "they are refused. Save a numeric array: np.save(path, array.astype(float)).") from err
        raise LoadError(f"`{filename}` could not be parsed as .npy ({err}); save it with np.save.") from err
    except (OSError, EOFError) as err:
        raise LoadError(f"`{filename}` could not be parsed as .npy ({err}); the file may be truncated. "
                        "Save it with np.save.") from err
    if not isinstance(array, np.ndarray):  # pragma: no cover - np.load of .npy returns arrays
        raise LoadError(f"`{filename}` is not a .npy array; save it with np.save.")
    return _from_numpy(array, "npy", filename)


def _read_npz(data: bytes, filename: str, key: str | None, max_bytes: int | None) -> LoadedMatrix:
    archive = _check_zip(data, max_bytes, filename, "a .npz archive")
    names = {Path(info.filename).name.removesuffix(".npy") for info in archive.infolist()}
    if _SPARSE_NPZ_KEYS <= names and any(layout <= names for layout in _SPARSE_NPZ_LAYOUTS):
        if key is not None:
            raise LoadError(f"`{filename}` is a scipy.sparse archive holding one matrix; drop `key={key!r}`.")
        try:
            matrix = sp.load_npz(io.BytesIO(data))  # uses allow_pickle=False
        except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
            raise LoadError(f"`{filename}` looks like scipy.sparse.save_npz output but could not be parsed ({err}); "
                            "re-save it with scipy.sparse.save_npz(path, matrix.tocsr()).") from err
        return _from_scipy(matrix, "npz-sparse", filename)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            chosen, _ = _pick({name: None for name in npz.files}, key, filename, "array")
            array = npz[chosen]
    except LoadError:
        raise
    except ValueError as err:
        if "allow_pickle" in str(err) or "pickled" in str(err) or "Object arrays" in str(err):
            raise LoadError(f"`{filename}` holds Python objects (a pickle); pickles could run code when loaded, so "
                            "they are refused. Save numeric arrays: np.savez(path, A=array).") from err
        raise LoadError(f"`{filename}` could not be parsed as .npz ({err}); save it with np.savez(path, A=array).") \
            from err
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as err:
        raise LoadError(f"`{filename}` could not be parsed as .npz ({err}); the archive may be truncated. "
                        "Save it with np.savez(path, A=array).") from err
    name = filename if len(names) == 1 and key is None else f"{filename}[{chosen}]"
    return _from_numpy(array, "npz", name)


def _gunzip(data: bytes, filename: str, max_bytes: int | None) -> bytes:
    out = io.BytesIO()
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
            while chunk := stream.read(1 << 20):
                out.write(chunk)
                _check_bytes(out.tell(), max_bytes, filename, "expands to more than")
    except (OSError, EOFError, zlib.error) as err:
        raise LoadError(f"`{filename}` could not be decompressed as gzip ({err}); the file may be truncated or "
                        "not gzip-compressed (rename it to .mtx if it is plain text).") from err
    return out.getvalue()


# Matrix Market, checked before the C++ reader sees it. scipy 1.17's mmread
# (fast_matrix_market) crashes the whole process (SIGSEGV, not an exception) on some
# malformed files: a NUL byte inside a value, or a dangling exponent ("1.5E-") as the last
# bytes of the file (found by fuzzing truncated and corrupted files; scipy issue #19949
# reports an earlier crash of the same reader). An upload must not be able to kill the app,
# so the text is first checked against the format: the banner line, comment lines and the
# size line, then a body made only of the bytes numbers and whitespace use (a byte-class
# check at C speed: a token-by-token regex is far slower than the reader itself). Fuzzing with
# this check in place (tests/test_io.py::test_mtx_fuzz) finds no crash.
_MM_BANNER = re.compile(
    rb"%%MatrixMarket[ \t]+matrix[ \t]+(?:coordinate|array)[ \t]+(?:real|double|integer|pattern|complex)"
    rb"[ \t]+(?:general|symmetric|skew-symmetric|hermitian)[ \t]*\r?",
    re.IGNORECASE,
)
_MM_SIZE = re.compile(rb"[ \t]*\d+[ \t]+\d+(?:[ \t]+\d+)?[ \t]*\r?")
_MM_BODY_ALLOWED = b"0123456789+-.eE \t\r\n" + b"infatyINFATY"  # digits, signs, exponents, inf, nan
_MM_BODY_BYTES = np.zeros(256, dtype=bool)
_MM_BODY_BYTES[np.frombuffer(_MM_BODY_ALLOWED, dtype=np.uint8)] = True


def _check_mtx_text(data: bytes, filename: str, hint: str) -> None:
    def fail(what: str) -> LoadError:
        return LoadError(f"`{filename}` could not be parsed as Matrix Market (.mtx): {what}; {hint}.")

    end = data.find(b"\n")
    end = len(data) if end < 0 else end
    if not _MM_BANNER.fullmatch(data[:end]):
        raise fail(f"the first line {data[:80].decode('utf-8', 'replace')!r} is not a Matrix Market banner")
    line_number = 1
    while True:  # comment and blank lines, then the size line
        start = end + 1
        if start >= len(data):
            raise fail("the size line (rows, columns[, entries]) is missing")
        end = data.find(b"\n", start)
        end = len(data) if end < 0 else end
        line = data[start:end]
        line_number += 1
        if line.startswith(b"%") or not line.strip():
            continue
        if not _MM_SIZE.fullmatch(line):
            raise fail(f"line {line_number} should give the size (rows, columns[, entries]) but holds "
                       f"{line[:60].decode('utf-8', 'replace')!r}")
        break
    if data[end:].translate(None, _MM_BODY_ALLOWED):  # some byte is not allowed (C speed, ~GB/s)
        bad = np.flatnonzero(~_MM_BODY_BYTES[np.frombuffer(data, dtype=np.uint8, offset=end)])
        position = end + int(bad[0])
        line_start = data.rfind(b"\n", 0, position) + 1
        line_end = data.find(b"\n", position)
        shown = data[line_start:line_end if line_end >= 0 else len(data)][:60].decode("utf-8", "replace")
        bad_line = data.count(b"\n", 0, position) + 1
        raise fail(f"line {bad_line} holds {shown!r}, which is not made of numbers "
                   "(comments are allowed only before the size line)")


def _read_mtx(data: bytes, filename: str, key: str | None, max_bytes: int | None) -> LoadedMatrix:
    if filename.lower().endswith(".gz"):
        data = _gunzip(data, filename, max_bytes)
    hint = ("a Matrix Market file starts with a line such as '%%MatrixMarket matrix coordinate real symmetric'; "
            "write one with scipy.io.mmwrite")
    _check_mtx_text(data, filename, hint)
    if not data.endswith(b"\n"):
        data = data + b"\n"  # the reader's last-token handling is where one crash was; keep it off that path
    try:
        rows, cols, entries, layout, field, symmetry = scipy.io.mminfo(io.BytesIO(data))
    except Exception as err:  # the parser raises ValueError, RuntimeError, ... for a bad header
        raise LoadError(f"`{filename}` could not be parsed as Matrix Market (.mtx): {err}; {hint}.") from err
    if field == "complex":
        raise LoadError(f"`{filename}` holds complex numbers (Matrix Market field 'complex'); only real matrices "
                        "are supported. Save the real part.")
    # Memory the parsed matrix will take, from the header alone (a header can claim
    # billions of rows in a few bytes): dense 8 bytes per entry; coordinate 8-byte
    # value + two indices per stored entry (twice for symmetric storage) + row pointers.
    if layout == "array":
        estimate = 8 * rows * cols
    else:
        estimate = (2 if symmetry != "general" else 1) * 24 * entries + 8 * (rows + 1)
    _check_bytes(estimate, max_bytes, filename, "needs about")
    try:
        matrix = scipy.io.mmread(io.BytesIO(data))
    except Exception as err:  # the fast_matrix_market reader raises several types
        raise LoadError(f"`{filename}` could not be parsed as Matrix Market (.mtx): {err}; each entry must be "
                        "'row column value' with 1-based indices within the size line ('value' alone for array "
                        "files), as many as the size line says. Write the file with scipy.io.mmwrite.") from err
    if sp.issparse(matrix):
        return _from_scipy(matrix, "mtx", filename)
    return _from_numpy(np.asarray(matrix), "mtx", filename)


def _read_csv(data: bytes, filename: str, key: str | None, max_bytes: int | None) -> LoadedMatrix:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise LoadError(f"`{filename}` is not UTF-8 text ({err}); a .csv must hold numbers as text, "
                        "e.g. written by np.savetxt(path, A, delimiter=',').") from err
    delimiter = "," if "," in text else None  # None: any whitespace
    if not text.strip():
        raise LoadError(f"`{filename}` is empty; it must hold at least one row of numbers.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # loadtxt only warns on an input with no data
            array = np.loadtxt(io.StringIO(text), delimiter=delimiter, comments="#", ndmin=2, dtype=np.float64)
    except (ValueError, UserWarning) as err:
        separated = "comma" if delimiter else "whitespace"
        raise LoadError(f"`{filename}` could not be parsed as {separated}-separated numbers ({err}); every row needs "
                        "the same number of numeric columns, with no header line (or start it with '#').") from err
    return _from_numpy(array, "csv", filename)


def _read_pt(data: bytes, filename: str, key: str | None, max_bytes: int | None) -> LoadedMatrix:
    if data[:4] == b"PK\x03\x04":  # torch.save's zip container: bound what it expands to
        _check_zip(data, max_bytes, filename, "a torch .pt file")
    try:
        obj = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as err:
        if "GLOBAL" in str(err) or "global" in str(err):
            raise LoadError(
                f"`{filename}` contains pickled Python objects other than tensors; pickles that could run code "
                "are refused (torch.load with weights_only=True). Save the matrix alone: torch.save(tensor, path), "
                "or safetensors.torch.save_file({'A': tensor}, path)."
            ) from err
        raise LoadError(f"`{filename}` could not be parsed as a .pt file (torch.load, weights_only=True, refused "
                        "it as not a torch.save archive of tensors); save it with torch.save(tensor, path).") from err
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError, TypeError, KeyError) as err:
        raise LoadError(f"`{filename}` could not be parsed as a .pt file ({str(err).splitlines()[0][:200]}); the "
                        "file may be truncated or corrupt. Save it with torch.save(tensor, path).") from err
    if isinstance(obj, torch.Tensor):
        return _from_tensor(obj, "pt", filename)
    if isinstance(obj, Mapping):
        tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        chosen, tensor = _pick(tensors, key, filename, "tensor")
        return _from_tensor(tensor, "pt", f"{filename}[{chosen}]" if len(tensors) > 1 or key else filename)
    raise LoadError(f"`{filename}` holds a {type(obj).__name__}, not a tensor or a dict of tensors; "
                    "save it with torch.save(tensor, path).")


def _read_safetensors(data: bytes, filename: str, key: str | None, max_bytes: int | None) -> LoadedMatrix:
    from safetensors.torch import load as safetensors_load

    try:
        tensors = safetensors_load(data)
    except Exception as err:  # SafetensorError is not exported under a stable name
        raise LoadError(f"`{filename}` could not be parsed as .safetensors ({err}); save it with "
                        "safetensors.torch.save_file({'A': tensor}, path).") from err
    chosen, tensor = _pick(tensors, key, filename, "tensor")
    return _from_tensor(tensor, "safetensors", f"{filename}[{chosen}]" if len(tensors) > 1 or key else filename)


_READERS = {"npy": _read_npy, "npz": _read_npz, "mtx": _read_mtx, "csv": _read_csv, "pt": _read_pt,
            "safetensors": _read_safetensors}
# For the safety net in load_matrix: what each format is and how to write one.
_FORMAT_HELP = {
    "npy": (".npy", "save it with np.save(path, A)"),
    "npz": (".npz", "save it with np.savez(path, A=A) or scipy.sparse.save_npz(path, A)"),
    "mtx": ("Matrix Market (.mtx)", "write it with scipy.io.mmwrite(path, A)"),
    "csv": ("comma-separated numbers", "write it with np.savetxt(path, A, delimiter=',')"),
    "pt": ("a .pt file", "save it with torch.save(tensor, path)"),
    "safetensors": (".safetensors", "save it with safetensors.torch.save_file({'A': tensor}, path)"),
}


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------
def load_matrix(source: str | os.PathLike[str] | bytes, filename: str | None = None, *, key: str | None = None,
                max_bytes: int | None = None) -> LoadedMatrix:
    """Read one matrix from a file or from the bytes of an upload.

    Args:
        source: a path, or the file's bytes (then ``filename`` is required).
        filename: the name whose suffix selects the format (default: the path's name).
        key: which array to take from an archive (.npz, .pt dict, .safetensors);
            default "A", or the only one.
        max_bytes: refuse files larger than this, and compressed files (.npz, .mtx.gz,
            .pt) that expand to more than this. None: no limit.

    Returns:
        The matrix (dense tensor or scipy CSR), unvalidated as an operator: it may
        still be non-square, non-symmetric or contain NaN (see :func:`load_operator`).

    Raises:
        LoadError: unknown suffix, missing file, too large, corrupt, pickled objects,
            complex or non-numeric data, not 2-D, or empty.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        if not filename:
            raise LoadError("raw bytes need a `filename` whose suffix names the format, e.g. filename='A.mtx'; "
                            f"supported: {', '.join(SUPPORTED_SUFFIXES)}")
        name = Path(str(filename)).name
        fmt = _FORMAT_OF_SUFFIX[_suffix(name)]
        data = bytes(source)
        _check_bytes(len(data), max_bytes, name)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        name = Path(str(filename)).name if filename else path.name
        fmt = _FORMAT_OF_SUFFIX[_suffix(name)]
        if not path.is_file():
            problem = "is a directory" if path.is_dir() else "does not exist"
            raise LoadError(f"`{path}` {problem}; pass the path of a matrix file ({', '.join(SUPPORTED_SUFFIXES)}).")
        _check_bytes(path.stat().st_size, max_bytes, name)
        data = path.read_bytes()
    else:
        raise TypeError(f"`source` must be a path or bytes, got {type(source).__name__}")
    if not data:
        raise LoadError(f"`{name}` is empty (0 bytes); the upload or the file may have failed.")
    if key is not None and not isinstance(key, str):
        raise TypeError(f"`key` must be a string (an array name), got {key!r}")
    try:
        return _READERS[fmt](data, name, key, max_bytes)
    except (LoadError, MemoryError):
        raise
    except Exception as err:  # noqa: BLE001 - a parser of untrusted bytes may raise anything
        # Each reader names the failures it expects; fuzzing found others (tokenize errors
        # from a damaged .npy header, NotImplementedError from odd zip headers), so every
        # remaining exception of a parser is reported the same way.
        label, how = _FORMAT_HELP[fmt]
        raise LoadError(f"`{name}` could not be parsed as {label} ({type(err).__name__}: {str(err)[:200]}); the file "
                        f"may be truncated or corrupt. {how[0].upper() + how[1:]}.") from err


def load_operator(source: str | os.PathLike[str] | bytes, filename: str | None = None, *, key: str | None = None,
                  symmetrize: bool = False, dtype: torch.dtype | None = None,
                  device: torch.device | str | None = None, max_bytes: int | None = None,
                  rectangular: bool = False) -> LinearOperator:
    """Read a matrix file and validate it as a symmetric operator (or, ``rectangular``, as any m x n one).

    Args:
        source, filename, key, max_bytes: as in :func:`load_matrix`.
        symmetrize: use (A + A^T) / 2 instead of refusing a non-symmetric matrix.
        dtype: float32 or float64 (default: the file's; integers become float64).
        device: where the operator lives (default cpu).
        rectangular: for the SVD solvers: accept any m x n matrix, square or not, symmetric
            or not (``explorer.operators.as_rectangular_operator``); ``symmetrize`` must then be False.

    Returns:
        A ``DenseOperator`` or ``SparseOperator`` (wrapped in ``SymmetrizedOperator``
        when ``symmetrize``).

    Raises:
        LoadError: the file could not be read (see :func:`load_matrix`).
        ValueError: non-square (unless ``rectangular``: the message points to the SVD solvers),
            NaN/Inf or (``NotSymmetricError``) non-symmetric data, from ``explorer.operators.as_operator``.
        TypeError: an unsupported dtype.
    """
    loaded = load_matrix(source, filename, key=key, max_bytes=max_bytes)
    if rectangular:
        if symmetrize:
            raise ValueError("`symmetrize` and `rectangular` exclude each other: (A + A^T)/2 is for eigenvalues of "
                             "a square matrix, `rectangular` for singular values of any matrix")
        return as_rectangular_operator(loaded.data, dtype=dtype, device=device, name=loaded.name)
    return as_operator(loaded.data, dtype=dtype, device=device, symmetrize=symmetrize, name=loaded.name)


def _as_savable(matrix: Any) -> np.ndarray | sp.csr_matrix:
    """Dense numpy array or scipy CSR, from any matrix-like object."""
    if isinstance(matrix, SparseOperator):
        return sp.csr_matrix(matrix.to_scipy())
    if isinstance(matrix, DenseOperator):
        matrix = matrix.matrix
    elif isinstance(matrix, LinearOperator):
        matrix = matrix.to_dense()
    if sp.issparse(matrix):
        return sp.csr_matrix(matrix)
    if isinstance(matrix, torch.Tensor):
        if matrix.layout != torch.strided:
            return _from_tensor(matrix.detach().cpu(), "pt", "matrix").data  # type: ignore[return-value]
        return matrix.detach().cpu().numpy()
    if isinstance(matrix, np.ndarray):
        return matrix
    raise TypeError(f"`matrix` must be a numpy array, torch tensor, scipy sparse matrix or LinearOperator, "
                    f"got {type(matrix).__name__}")


def save_matrix(path: str | os.PathLike[str], matrix: Any) -> None:
    """Write a matrix in the format named by ``path``'s suffix (lossless for float64).

    Dense: .npy (np.save), .npz (np.savez_compressed, key "A"), .mtx/.mtx.gz (Matrix
    Market array), .csv (17 significant digits), .pt (torch.save), .safetensors (key
    "A"). Sparse: .npz (scipy.sparse.save_npz), .mtx/.mtx.gz (coordinate), .pt (a
    torch sparse COO tensor). Matrix Market files use symmetric storage when the
    matrix is exactly symmetric. Output is deterministic (gzip without timestamps).

    Args:
        path: destination; its suffix is one of ``SUPPORTED_SUFFIXES``.
        matrix: a numpy array, torch tensor (dense or sparse), scipy sparse matrix or
            Dense/Sparse operator; 2-D.

    Raises:
        ValueError: unsupported suffix, not 2-D, or a sparse matrix for a dense-only
            format (.npy, .csv, .safetensors).
        TypeError: an unsupported matrix type.
    """
    path = Path(path)
    try:
        suffix = _suffix(path.name)
    except LoadError as err:
        raise ValueError(str(err).replace("has an unsupported suffix", "cannot be written: unsupported suffix")) \
            from None
    value = _as_savable(matrix)
    if value.ndim != 2:
        raise ValueError(f"`matrix` must be 2-D, got shape {value.shape}")
    sparse = sp.issparse(value)
    if sparse and suffix in (".npy", ".csv", ".safetensors"):
        raise ValueError(f"{suffix} stores dense arrays only; write sparse matrices as .npz, .mtx or .pt "
                         "(or pass matrix.toarray() to densify)")
    if suffix == ".npy":
        np.save(path, value, allow_pickle=False)
    elif suffix == ".npz":
        if sparse:
            sp.save_npz(path, value, compressed=True)
        else:
            np.savez_compressed(path, A=value)
    elif suffix in (".mtx", ".mtx.gz"):
        buffer = io.BytesIO()
        scipy.io.mmwrite(buffer, value)
        if suffix == ".mtx":
            path.write_bytes(buffer.getvalue())
        else:
            with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as stream:
                stream.write(buffer.getvalue())
    elif suffix == ".csv":
        np.savetxt(path, value, delimiter=",", fmt="%.17g")
    elif suffix == ".pt":
        if sparse:
            coo = value.tocoo()
            indices = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
            tensor = torch.sparse_coo_tensor(indices, torch.from_numpy(coo.data), coo.shape).coalesce()
        else:
            tensor = torch.from_numpy(np.ascontiguousarray(value))
        torch.save(tensor, path)
    elif suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({"A": torch.from_numpy(np.ascontiguousarray(value))}, str(path))
