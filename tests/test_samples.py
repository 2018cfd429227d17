"""sample_data/ against its manifest: every file loads, its spectrum matches, and the
committed files are what scripts/make_samples.py writes today.

Eigenvalues are checked against dense eigh of the *file's* matrix with the tolerance
``50 n eps ||A||`` (backward-stable eigh plus the rounding of the stored matrix).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import scipy.sparse as sp
import torch

from explorer.problems.files import load_matrix
from explorer.operators import SparseOperator
from explorer.problems.samples import MANIFEST_NAME, SAMPLE_DIR, SAMPLES, get_sample, list_samples, load_sample

pytestmark = [
    pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta:UserWarning"),
    pytest.mark.filterwarnings("ignore:Sparse invariant checks are implicitly disabled:UserWarning"),
]

ROOT = Path(__file__).resolve().parent.parent
INFOS = list_samples()


def _dense(path: Path) -> np.ndarray:
    data = load_matrix(path).data
    return data.toarray().astype(np.float64) if sp.issparse(data) else data.numpy().astype(np.float64)


def _tolerance(n: int, values: np.ndarray) -> float:
    return 50 * n * np.finfo(np.float64).eps * max(float(np.abs(values).max()), 1.0)


def test_manifest_lists_every_sample_and_the_default_first() -> None:
    assert [info.name for info in INFOS] == [spec.name for spec in SAMPLES]
    assert INFOS[0].name == "laplacian2d_30x30" and INFOS[0].format == "mtx"
    assert len({info.name for info in INFOS}) == len(INFOS)
    formats = {info.format for info in INFOS}
    assert formats == {"mtx", "npy", "npz", "npz-sparse", "safetensors", "pt", "csv"}, "one sample per format"
    raw = json.loads((SAMPLE_DIR / MANIFEST_NAME).read_text())
    for entry in raw["samples"]:
        assert {"file", "b_file", "title", "description", "n", "nnz", "symmetric", "format", "top_eigenvalues",
                "bottom_eigenvalues", "source"} <= set(entry)


def test_samples_are_small() -> None:
    files = [info.path for info in INFOS] + [info.b_path for info in INFOS if info.b_path is not None]
    total = sum(path.stat().st_size for path in files)
    assert total < 2_000_000, f"sample_data holds {total / 1e6:.2f} MB"


@pytest.mark.parametrize("info", INFOS, ids=[info.name for info in INFOS])
def test_file_matches_manifest(info) -> None:
    loaded = load_matrix(info.path)
    assert loaded.shape == (info.n, info.n)
    assert loaded.nnz == info.nnz and loaded.format == info.format
    A = _dense(info.path)
    assert info.symmetric and np.array_equal(A, A.T)
    if info.b_path is None:
        values = scipy.linalg.eigvalsh(A)
    else:
        values = scipy.linalg.eigh(A, _dense(info.b_path), eigvals_only=True)
    k = len(info.top_eigenvalues)
    assert k == len(info.bottom_eigenvalues) == min(10, info.n)
    tolerance = _tolerance(info.n, values)
    np.testing.assert_allclose(values[::-1][:k], info.top_eigenvalues, rtol=0, atol=tolerance)
    np.testing.assert_allclose(values[:k], info.bottom_eigenvalues, rtol=0, atol=tolerance)


@pytest.mark.parametrize("info", INFOS, ids=[info.name for info in INFOS])
def test_load_sample(info) -> None:
    problem = load_sample(info.name)
    assert problem.name == info.name and problem.n == info.n
    assert (problem.B is None) == (info.b_file is None)
    assert problem.eigenvalues is not None and problem.eigenvalues.shape == (info.n,)
    k = len(info.top_eigenvalues)
    # the generator's values: exact for closed-form and prescribed spectra, dense eigh otherwise
    tolerance = _tolerance(info.n, problem.eigenvalues.numpy())
    np.testing.assert_allclose(problem.reference(k, "LA").numpy(), info.top_eigenvalues, rtol=0, atol=tolerance)
    np.testing.assert_allclose(problem.reference(k, "SA").numpy(), info.bottom_eigenvalues, rtol=0, atol=tolerance)
    dense = problem.operator.to_dense()
    dense = dense.to_dense() if dense.layout != torch.strided else dense
    np.testing.assert_array_equal(dense.numpy(), _dense(info.path))


def test_default_sample_is_sparse_with_double_eigenvalues() -> None:
    problem = load_sample(INFOS[0].name)
    assert isinstance(problem.operator, SparseOperator)
    top = problem.reference(3, "LA")
    assert top[1] == top[2]


def test_load_sample_in_float32_and_by_file_name() -> None:
    problem = load_sample("mikota_n100_A.mtx", dtype=torch.float32)
    assert problem.operator.dtype == torch.float32 and problem.B.dtype == torch.float32
    assert problem.reference(1, "LA").item() == 100.0**2


def test_unknown_sample() -> None:
    with pytest.raises(ValueError, match="unknown sample 'nope'; choose one of"):
        get_sample("nope")


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="make_samples.py"):
        list_samples(tmp_path)


def test_make_samples_reproduces_the_committed_data(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("make_samples", ROOT / "scripts" / "make_samples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--out", str(tmp_path)]) == 0
    fresh = {info.name: info for info in list_samples(tmp_path)}
    assert list(fresh) == [info.name for info in INFOS]
    for info in INFOS:
        new = fresh[info.name]
        assert (new.file, new.b_file, new.n, new.nnz, new.format, new.title, dict(new.source)) == \
               (info.file, info.b_file, info.n, info.nnz, info.format, info.title, dict(info.source))
        tolerance = _tolerance(info.n, np.array(info.top_eigenvalues + info.bottom_eigenvalues))
        np.testing.assert_allclose(new.top_eigenvalues, info.top_eigenvalues, rtol=0, atol=tolerance)
        np.testing.assert_allclose(new.bottom_eigenvalues, info.bottom_eigenvalues, rtol=0, atol=tolerance)
        # random dense samples may differ in the last bits between LAPACK builds
        committed, written = _dense(info.path), _dense(new.path)
        np.testing.assert_allclose(written, committed, rtol=0, atol=1e-12 * max(np.abs(committed).max(), 1.0))
