"""Matrix files: lossless round trips of every format, hand-written Matrix Market, bad files.

Bad files include pickles that *would* run code: each test first proves its payload is
live (an unsafe loader creates a marker directory), then checks that ``load_matrix``
refuses it with a ``LoadError`` and that no marker appears.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from explorer.problems.files import SUPPORTED_SUFFIXES, LoadedMatrix, LoadError, load_matrix, load_operator, save_matrix
from explorer.operators import DenseOperator, NotSymmetricError, SparseOperator, SymmetrizedOperator

pytestmark = [
    pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta:UserWarning"),
    pytest.mark.filterwarnings("ignore:Sparse invariant checks are implicitly disabled:UserWarning"),
]


def _dense_matrix(n: int = 12, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n))
    return (X + X.T) / 3.0  # full float64 mantissas: a lossy writer would show


def _sparse_matrix(n: int = 15, seed: int = 0) -> sp.csr_matrix:
    M = sp.random(n, n, density=0.2, random_state=np.random.default_rng(seed), format="csr")
    return sp.csr_matrix(M + M.T + sp.identity(n) / 7.0)


def _as_array(loaded: LoadedMatrix) -> np.ndarray:
    return loaded.data.toarray() if sp.issparse(loaded.data) else loaded.data.numpy()


DENSE_FORMATS = {".npy": "npy", ".npz": "npz", ".mtx": "mtx", ".mtx.gz": "mtx", ".csv": "csv", ".pt": "pt",
                 ".safetensors": "safetensors"}
SPARSE_FORMATS = {".npz": "npz-sparse", ".mtx": "mtx", ".mtx.gz": "mtx", ".pt": "pt"}


def test_suffix_table_is_complete() -> None:
    assert set(DENSE_FORMATS) == set(SUPPORTED_SUFFIXES)


@pytest.mark.parametrize("suffix", list(DENSE_FORMATS))
def test_dense_round_trip(tmp_path: Path, suffix: str) -> None:
    A = _dense_matrix()
    path = tmp_path / f"matrix{suffix}"
    save_matrix(path, A)
    for loaded in (load_matrix(path), load_matrix(path.read_bytes(), filename=path.name)):
        assert isinstance(loaded.data, torch.Tensor), "dense files load as dense tensors"
        assert loaded.format == DENSE_FORMATS[suffix]
        assert loaded.name == path.name and loaded.shape == A.shape
        assert loaded.nnz == np.count_nonzero(A) and loaded.dtype == "float64"
        np.testing.assert_array_equal(_as_array(loaded), A)  # lossless


@pytest.mark.parametrize("suffix", list(SPARSE_FORMATS))
def test_sparse_round_trip(tmp_path: Path, suffix: str) -> None:
    M = _sparse_matrix()
    path = tmp_path / f"matrix{suffix}"
    save_matrix(path, M)
    loaded = load_matrix(path)
    assert isinstance(loaded.data, sp.csr_matrix) and loaded.is_sparse
    assert loaded.format == SPARSE_FORMATS[suffix]
    assert loaded.nnz == M.nnz and loaded.shape == M.shape
    np.testing.assert_array_equal(_as_array(loaded), M.toarray())


@pytest.mark.parametrize("make", [lambda A: torch.from_numpy(A), lambda A: DenseOperator(torch.from_numpy(A))],
                         ids=["tensor", "operator"])
def test_save_accepts_tensors_and_operators(tmp_path: Path, make) -> None:
    A = _dense_matrix()
    save_matrix(tmp_path / "a.npy", make(A))
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), A)
    save_matrix(tmp_path / "s.npz", SparseOperator(_sparse_matrix()))
    assert load_matrix(tmp_path / "s.npz").format == "npz-sparse"
    save_matrix(tmp_path / "t.pt", torch.from_numpy(_sparse_matrix().toarray()).to_sparse_csr())
    np.testing.assert_array_equal(_as_array(load_matrix(tmp_path / "t.pt")), _sparse_matrix().toarray())


def test_save_is_deterministic(tmp_path: Path) -> None:
    (tmp_path / "1").mkdir()
    (tmp_path / "2").mkdir()
    for suffix in SUPPORTED_SUFFIXES:  # same name: torch.save records the file's stem inside the archive
        first, second = tmp_path / "1" / f"m{suffix}", tmp_path / "2" / f"m{suffix}"
        save_matrix(first, _dense_matrix())
        save_matrix(second, _dense_matrix())
        assert first.read_bytes() == second.read_bytes(), suffix


# --------------------------------------------------------------------------------------
# Matrix Market written by hand
# --------------------------------------------------------------------------------------
SYMMETRIC_COORDINATE = b"""%%MatrixMarket matrix coordinate real symmetric
% lower triangle only: mmread must mirror it
3 3 5
1 1 2.0
2 1 -1.0
2 2 2.0
3 2 -1.0
3 3 2.0
"""
TRIDIAGONAL = np.array([[2.0, -1.0, 0.0], [-1.0, 2.0, -1.0], [0.0, -1.0, 2.0]])


def test_mtx_symmetric_storage_is_expanded() -> None:
    loaded = load_matrix(SYMMETRIC_COORDINATE, filename="tri.mtx")
    assert loaded.format == "mtx" and loaded.is_sparse
    np.testing.assert_array_equal(_as_array(loaded), TRIDIAGONAL)
    assert loaded.nnz == 7, "both triangles are stored after loading"


def test_mtx_gz_written_by_hand(tmp_path: Path) -> None:
    path = tmp_path / "tri.mtx.gz"
    path.write_bytes(gzip.compress(SYMMETRIC_COORDINATE))
    np.testing.assert_array_equal(_as_array(load_matrix(path)), TRIDIAGONAL)
    operator = load_operator(path)
    assert isinstance(operator, SparseOperator)
    np.testing.assert_array_equal(operator.to_dense().to_dense().numpy(), TRIDIAGONAL)


def test_mtx_array_symmetric_and_integer_fields() -> None:
    # array format is column-major; symmetric storage lists the lower triangle by columns
    array = b"%%MatrixMarket matrix array real symmetric\n3 3\n2\n-1\n0\n2\n-1\n2\n"
    loaded = load_matrix(array, filename="tri.mtx")
    assert isinstance(loaded.data, torch.Tensor)
    np.testing.assert_array_equal(_as_array(loaded), TRIDIAGONAL)
    integer = b"%%MatrixMarket matrix coordinate integer general\n2 2 2\n1 1 3\n2 2 4\n"
    loaded = load_matrix(integer, filename="int.mtx")
    assert loaded.dtype.startswith("int")
    assert load_operator(integer, filename="int.mtx").dtype == torch.float64
    pattern = b"%%MatrixMarket matrix coordinate pattern symmetric\n2 2 2\n1 1\n2 1\n"
    np.testing.assert_array_equal(_as_array(load_matrix(pattern, filename="p.mtx")), [[1, 1], [1, 0]])


# --------------------------------------------------------------------------------------
# CSV, archives with several arrays
# --------------------------------------------------------------------------------------
def test_csv_comma_and_whitespace() -> None:
    comma = b"# a comment\n2, -1\n-1, 2\n"
    spaces = b"2 -1\n-1\t2\n"
    for data in (comma, spaces):
        np.testing.assert_array_equal(_as_array(load_matrix(data, filename="m.csv")), [[2, -1], [-1, 2]])


def test_npz_archive_key_selection(tmp_path: Path) -> None:
    path = tmp_path / "many.npz"
    np.savez(path, first=np.eye(2), second=2 * np.eye(3))
    with pytest.raises(LoadError, match=r"several arrays \['first', 'second'\].*pass `key=`"):
        load_matrix(path)
    loaded = load_matrix(path, key="second")
    assert loaded.shape == (3, 3) and loaded.name == "many.npz[second]"
    with pytest.raises(LoadError, match=r"no array named 'third'; it has \['first', 'second'\]"):
        load_matrix(path, key="third")
    np.savez(path, A=np.eye(4), other=np.ones(3))
    assert load_matrix(path).shape == (4, 4), "'A' is taken by default"
    np.savez(path, only=np.eye(5))
    assert load_matrix(path).shape == (5, 5), "the only array is taken"


def test_pt_and_safetensors_dicts(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    torch.save({"A": torch.eye(3), "B": 2 * torch.eye(3)}, tmp_path / "pair.pt")
    assert torch.equal(load_matrix(tmp_path / "pair.pt").data, torch.eye(3))
    assert torch.equal(load_matrix(tmp_path / "pair.pt", key="B").data, 2 * torch.eye(3))
    save_file({"x": torch.eye(2), "y": torch.ones(2, 2)}, str(tmp_path / "two.safetensors"))
    with pytest.raises(LoadError, match=r"several tensors \['x', 'y'\]"):
        load_matrix(tmp_path / "two.safetensors")
    assert load_matrix(tmp_path / "two.safetensors", key="y").name == "two.safetensors[y]"
    torch.save(torch.eye(3).to_sparse_coo(), tmp_path / "coo.pt")
    coo = load_matrix(tmp_path / "coo.pt")
    assert coo.is_sparse and coo.nnz == 3


def test_unusual_numeric_dtypes(tmp_path: Path) -> None:
    np.save(tmp_path / "half.npy", np.eye(3, dtype=np.float16))
    half = load_matrix(tmp_path / "half.npy")
    assert half.dtype == "float16" and half.data.dtype == torch.float64
    big_endian = _dense_matrix().astype(">f8")
    np.save(tmp_path / "be.npy", big_endian)
    np.testing.assert_array_equal(_as_array(load_matrix(tmp_path / "be.npy")), _dense_matrix())
    assert load_operator(tmp_path / "be.npy", dtype=torch.float32).dtype == torch.float32


# --------------------------------------------------------------------------------------
# Pickles that would run code
# --------------------------------------------------------------------------------------
class _Payload:
    """Unpickling this creates a directory: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):  # noqa: D105
        return (os.mkdir, (self.marker,))


def test_malicious_pt_is_refused_and_never_runs(tmp_path: Path) -> None:
    proof, marker = tmp_path / "proof", tmp_path / "marker"
    buffer = io.BytesIO()
    torch.save({"A": torch.eye(2), "payload": _Payload(proof)}, buffer)
    torch.load(io.BytesIO(buffer.getvalue()), weights_only=False)  # the unsafe way, on purpose
    assert proof.exists(), "the payload is live"

    buffer = io.BytesIO()
    torch.save({"A": torch.eye(2), "payload": _Payload(marker)}, buffer)
    with pytest.raises(LoadError, match="pickles that could run code are refused.*torch.save\\(tensor"):
        load_matrix(buffer.getvalue(), filename="evil.pt")
    assert not marker.exists()
    raw = pickle.dumps(_Payload(marker), protocol=2)  # a bare pickle, not a torch.save archive
    with pytest.raises(LoadError):
        load_matrix(raw, filename="evil.pt")
    assert not marker.exists()


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_malicious_numpy_is_refused_and_never_runs(tmp_path: Path, suffix: str) -> None:
    proof, marker = tmp_path / "proof", tmp_path / "marker"
    path = tmp_path / f"evil{suffix}"
    array = np.array([[_Payload(marker), 1], [1, 1]], dtype=object)
    if suffix == ".npy":
        np.save(path, array, allow_pickle=True)
    else:
        np.savez(path, A=array)
    proof_array = np.array([_Payload(proof)], dtype=object)
    buffer = io.BytesIO()
    np.save(buffer, proof_array, allow_pickle=True)
    np.load(io.BytesIO(buffer.getvalue()), allow_pickle=True)  # the unsafe way, on purpose
    assert proof.exists(), "the payload is live"
    with pytest.raises(LoadError, match="pickles could run code when loaded, so they are refused"):
        load_matrix(path)
    assert not marker.exists()


# --------------------------------------------------------------------------------------
# Bad files
# --------------------------------------------------------------------------------------
CORRUPT = {
    "m.npy": (b"\x93NUMPY\x01\x00garbage", "could not be parsed as .npy"),
    "m.npz": (b"PK\x03\x04 not really a zip", "could not be parsed as a .npz archive"),
    "m.mtx": (b"this is not matrix market\n1 2 3\n", "could not be parsed as Matrix Market"),
    "m.mtx.gz": (b"\x1f\x8b\x08\x00 broken gzip", "could not be decompressed as gzip"),
    "m.csv": (b"a,b\n1,2\n", "could not be parsed as comma-separated numbers"),
    "m.pt": (b"definitely not torch", "could not be parsed as a .pt file"),
    "m.safetensors": (b"\x00\x01garbage", "could not be parsed as .safetensors"),
}


@pytest.mark.parametrize("filename", list(CORRUPT))
def test_corrupt_files(filename: str) -> None:
    data, message = CORRUPT[filename]
    with pytest.raises(LoadError, match=message):
        load_matrix(data, filename=filename)


def test_truncated_files(tmp_path: Path) -> None:
    for suffix in (".npy", ".npz", ".pt", ".safetensors", ".mtx.gz"):
        path = tmp_path / f"m{suffix}"
        save_matrix(path, _dense_matrix(30))
        data = path.read_bytes()
        with pytest.raises(LoadError, match="could not be"):
            load_matrix(data[: len(data) // 2], filename=path.name)


@pytest.mark.parametrize("array, message", [
    (np.arange(5.0), r"1-D data of shape \(5,\).*np.diag"),
    (np.ones((2, 2, 2)), "3-D data"),
    (np.float64(3.0), "0-D data"),
    (np.zeros((0, 3)), r"empty \(shape \(0, 3\)\)"),
    (np.eye(2) * 1j, "complex numbers"),
    (np.array([["a", "b"], ["c", "d"]]), "not numbers"),
])
def test_refused_content(tmp_path: Path, array: np.ndarray, message: str) -> None:
    path = tmp_path / "bad.npy"
    np.save(path, array)
    with pytest.raises(LoadError, match=message):
        load_matrix(path)


@pytest.mark.parametrize("call, message", [
    (lambda tmp: load_matrix(tmp / "missing.npy"), "does not exist"),
    (lambda tmp: load_matrix(tmp), "unsupported suffix"),
    (lambda tmp: load_matrix(b"123", filename="matrix.xlsx"), r"unsupported suffix \.xlsx; supported: \.npy, "),
    (lambda tmp: load_matrix(b"123"), "raw bytes need a `filename`"),
    (lambda tmp: load_matrix(b"", filename="a.csv"), r"is empty \(0 bytes\)"),
    (lambda tmp: load_matrix(b"\n\n", filename="a.csv"), "is empty"),
    (lambda tmp: load_matrix(b"# only a comment\n", filename="a.csv"), "could not be parsed"),
    (lambda tmp: load_matrix(b"%%MatrixMarket matrix coordinate complex general\n1 1 1\n1 1 1 2\n",
                             filename="c.mtx"), "complex numbers"),
    (lambda tmp: load_matrix(b"1,2\n3\n", filename="ragged.csv"), "same number of numeric columns"),
])
def test_refused_sources(tmp_path: Path, call, message: str) -> None:
    with pytest.raises(LoadError, match=message):
        call(tmp_path)


def test_pt_holding_a_list_is_refused(tmp_path: Path) -> None:
    torch.save([torch.eye(2)], tmp_path / "list.pt")
    with pytest.raises(LoadError, match="holds a list, not a tensor"):
        load_matrix(tmp_path / "list.pt")


@pytest.mark.parametrize("layout", ["csr", "csc", "bsr"])
def test_malformed_sparse_npz_is_refused(layout: str) -> None:
    # an index far out of range: converting csc/bsr to csr before checking crashed the process
    buffer = io.BytesIO()
    data = np.ones((2, 1, 1)) if layout == "bsr" else np.array([1.0, 2.0])
    np.savez(buffer, format=np.array(layout.encode()), shape=np.array([3, 3]), data=data,
             indices=np.array([0, 900_000]), indptr=np.array([0, 1, 2, 2]))
    with pytest.raises(LoadError, match="malformed sparse matrix"):
        load_matrix(buffer.getvalue(), filename="bad.npz")


@pytest.mark.parametrize("constructor", [torch.sparse_csr_tensor, torch.sparse_csc_tensor])
def test_malformed_sparse_pt_is_refused(constructor) -> None:
    bad = constructor(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 9]), torch.tensor([1.0, 2.0]), (3, 3),
                      check_invariants=False)
    buffer = io.BytesIO()
    torch.save(bad, buffer)
    with pytest.raises(LoadError, match="malformed sparse"):
        load_matrix(buffer.getvalue(), filename="bad.pt")
    coo = torch.sparse_coo_tensor(torch.tensor([[0, 7], [0, 1]]), torch.tensor([1.0, 2.0]), (3, 3),
                                  check_invariants=False)
    buffer = io.BytesIO()
    torch.save(coo, buffer)
    with pytest.raises(LoadError, match="malformed sparse"):
        load_matrix(buffer.getvalue(), filename="bad.pt")


# --------------------------------------------------------------------------------------
# Damaged files never escape as anything but LoadError (and never crash the process)
# --------------------------------------------------------------------------------------
_BANNER = b"%%MatrixMarket matrix array real symmetric\n3 3\n1.0\n"


@pytest.mark.parametrize("data", [
    _BANNER + b"1.5E",  # dangling exponent at the very end: SIGSEGV in scipy 1.17's mmread
    _BANNER + b"1.5E-",
    _BANNER + b"-4.01\x004319\n2\n3\n4\n5\n",  # NUL inside a value: SIGSEGV too
    b"%%MatrixMarket matrix coordinate real general\n3 3 2\n1 1 1.0\n2 2 1.5E-",
], ids=["exponent-at-eof", "signed-exponent-at-eof", "nul-byte", "coordinate-exponent-at-eof"])
def test_mtx_inputs_that_crash_scipy_are_handled(data: bytes) -> None:
    # Passing these bytes straight to scipy.io.mmread kills the interpreter; load_matrix
    # checks the text first. Either outcome below is fine, a crash is not.
    try:
        loaded = load_matrix(data, filename="crash.mtx")
    except LoadError as err:
        assert "could not be parsed as Matrix Market" in str(err)
    else:
        assert loaded.shape == (3, 3)


_TOKENS = [b"E", b"e-", b"E+", b"-", b".", b"\n", b" ", b"%", b"1e999", b"nan", b"99999999999999999999", b"\x00",
           b"\t", b"\r", b"1.5E", b"PK\x03\x04", b"\x93NUMPY"]


@pytest.mark.parametrize("suffix, trials", [(".mtx", 300), (".npy", 40), (".npz", 40), (".csv", 40), (".pt", 40),
                                            (".safetensors", 40), (".mtx.gz", 40)])
def test_fuzzed_files_raise_load_error_only(tmp_path: Path, suffix: str, trials: int) -> None:
    rng = np.random.default_rng(sum(suffix.encode()))
    sources = [_dense_matrix(6)] + ([_sparse_matrix(8)] if suffix in (".mtx", ".npz", ".pt") else [])
    for matrix in sources:
        path = tmp_path / f"m{suffix}"
        save_matrix(path, matrix)
        original = path.read_bytes()
        for _ in range(trials):
            data = bytearray(original)
            for _ in range(int(rng.integers(1, 4))):
                i = int(rng.integers(len(data) + 1))
                mode = int(rng.integers(4))
                if mode == 0 and data:
                    data[min(i, len(data) - 1)] = int(rng.integers(256))
                elif mode == 1:
                    del data[i:]
                elif mode == 2:
                    data[i:i] = _TOKENS[int(rng.integers(len(_TOKENS)))]
                else:
                    del data[i:i + int(rng.integers(1, 6))]
            try:
                load_matrix(bytes(data), filename=path.name, max_bytes=10_000_000)
            except LoadError:
                pass


# --------------------------------------------------------------------------------------
# Size limits
# --------------------------------------------------------------------------------------
def test_max_bytes_on_the_file(tmp_path: Path) -> None:
    path = tmp_path / "a.npy"
    save_matrix(path, _dense_matrix(50))
    with pytest.raises(LoadError, match="above the limit of 0.0 MB"):
        load_matrix(path, max_bytes=1000)
    with pytest.raises(LoadError, match="above the limit"):
        load_matrix(path.read_bytes(), filename="a.npy", max_bytes=1000)
    assert load_matrix(path, max_bytes=path.stat().st_size).shape == (50, 50)


def test_compressed_bombs_are_refused_before_inflating(tmp_path: Path) -> None:
    zeros = np.zeros((1000, 1000))  # 8 MB of zeros compress to a few kB
    save_matrix(tmp_path / "z.npz", zeros)
    save_matrix(tmp_path / "z.mtx.gz", zeros)
    for name in ("z.npz", "z.mtx.gz"):
        data = (tmp_path / name).read_bytes()
        assert len(data) < 100_000
        with pytest.raises(LoadError, match="expands to"):
            load_matrix(data, filename=name, max_bytes=1_000_000)


def test_mtx_header_claiming_a_huge_matrix(tmp_path: Path) -> None:
    header = b"%%MatrixMarket matrix coordinate real general\n1000000000 1000000000 1\n1 1 1.0\n"
    with pytest.raises(LoadError, match="needs about"):
        load_matrix(header, filename="huge.mtx", max_bytes=10_000_000)


def test_npz_member_sizes_are_checked(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("A.npy", b"\x00" * 5_000_000)
    with pytest.raises(LoadError, match="expands to 5.0 MB"):
        load_matrix(buffer.getvalue(), filename="a.npz", max_bytes=1_000_000)


# --------------------------------------------------------------------------------------
# load_operator: validation comes from as_operator
# --------------------------------------------------------------------------------------
def test_load_operator_kinds_and_dtype(tmp_path: Path) -> None:
    save_matrix(tmp_path / "d.npy", _dense_matrix())
    save_matrix(tmp_path / "s.mtx", _sparse_matrix())
    assert isinstance(load_operator(tmp_path / "d.npy"), DenseOperator)
    sparse = load_operator(tmp_path / "s.mtx", dtype=torch.float32)
    assert isinstance(sparse, SparseOperator) and sparse.dtype == torch.float32


def test_load_operator_refuses_non_square_nan_and_nonsymmetric(tmp_path: Path) -> None:
    save_matrix(tmp_path / "rect.csv", np.ones((3, 4)))
    assert load_matrix(tmp_path / "rect.csv").shape == (3, 4), "load_matrix does not judge the shape"
    with pytest.raises(ValueError, match=r"must be square, got shape \(3, 4\)"):
        load_operator(tmp_path / "rect.csv")
    nan = np.eye(3)
    nan[1, 1] = np.nan
    save_matrix(tmp_path / "nan.npy", nan)
    with pytest.raises(ValueError, match="NaN or Inf"):
        load_operator(tmp_path / "nan.npy")
    rng = np.random.default_rng(0)
    save_matrix(tmp_path / "ns.safetensors", rng.standard_normal((6, 6)))
    with pytest.raises(NotSymmetricError, match="symmetrize=True"):
        load_operator(tmp_path / "ns.safetensors")
    assert isinstance(load_operator(tmp_path / "ns.safetensors", symmetrize=True), SymmetrizedOperator)


@pytest.mark.parametrize("path, matrix, error, message", [
    ("a.xlsx", np.eye(2), ValueError, "unsupported suffix"),
    ("a.npy", sp.identity(3, format="csr"), ValueError, r"\.npy stores dense arrays only"),
    ("a.csv", sp.identity(3, format="csr"), ValueError, "dense arrays only"),
    ("a.npy", np.ones(3), ValueError, "must be 2-D"),
    ("a.npy", [[1.0]], TypeError, "must be a numpy array, torch tensor"),
])
def test_save_refuses(tmp_path: Path, path: str, matrix, error, message: str) -> None:
    with pytest.raises(error, match=message):
        save_matrix(tmp_path / path, matrix)
