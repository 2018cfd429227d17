"""Trackers for plain torch.lobpcg and scipy.sparse.linalg.lobpcg calls: their records match the libraries' own output."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as sla
import torch
from torch.overrides import TorchFunctionMode

from explorer import problems
from explorer.store import RunStore, StoreTracker
from explorer.store.adapters import ScipyLobpcgTracker, TorchLobpcgTracker
from explorer.tracking import CompositeTracker, HistoryTracker, StopSolve


@pytest.fixture
def store(tmp_path):
    return RunStore(tmp_path / "runs.sqlite")


def _laplacian(m: int = 20) -> sp.csr_matrix:
    return problems.laplacian_2d(m).operator.to_scipy().tocsr()


class _CountProducts(TorchFunctionMode):
    """Counts the columns of every product with the tensor ``A`` (all of torch.lobpcg's go through matmul)."""

    def __init__(self, A: torch.Tensor) -> None:
        super().__init__()
        self.A, self.columns = A, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in (torch.matmul, torch.Tensor.matmul, torch.mm, torch.sparse.mm) and args and args[0] is self.A:
            other = args[1]
            self.columns += other.shape[-1] if other.dim() == 2 else 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("method", ["ortho", "basic"])
@pytest.mark.parametrize("largest", [True, False])
def test_torch_lobpcg_records_end_with_what_it_returns(store, method, largest):
    A = torch.tensor(_laplacian(20).toarray())
    X0 = torch.randn(400, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    history = HistoryTracker()
    adapter = TorchLobpcgTracker(tracker=CompositeTracker(history, StoreTracker(store, "torch")))
    counter = _CountProducts(A)
    with counter:
        E, X = torch.lobpcg(A, k=3, X=X0, n=5, largest=largest, method=method, tol=1e-9, niter=300,
                            tracker=adapter)
    records = history.records
    assert len(records) >= 3
    last = records[-1]
    assert torch.equal(last.ritz_values, E) and torch.equal(adapter.result.eigenvalues, E)
    assert torch.equal(adapter.result.eigenvectors, X)
    true = torch.linalg.vector_norm(A @ X - X * E, dim=0)  # recomputed: they are true residuals
    assert torch.allclose(last.residual_norms, true, rtol=0, atol=100 * 400 * torch.finfo(torch.float64).eps * 8)
    assert adapter.result.n_matvec == counter.columns == last.n_matvec
    assert [r.n_matvec for r in records] == sorted(r.n_matvec for r in records)
    assert adapter.result.status.value == "converged" and last.n_converged == 3
    # the eigenvalues are the wanted end of the exact spectrum
    exact = torch.linalg.eigvalsh(A)
    want = exact.flip(0)[:3] if largest else exact[:3]
    assert torch.allclose(E, want, atol=1e-6)
    stored = store.runs()
    assert list(stored["solver"]) == ["torch.lobpcg"]
    info = store.run(stored["id"].iloc[0])
    assert info.status == "converged" and info.n_records == len(records) and info.n_matvec == counter.columns
    assert info.params["method"] == method and info.which == ("LA" if largest else "SA")


def test_torch_adapter_writes_to_the_default_store_and_names_its_source(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_STORE", str(tmp_path / "default.sqlite"))
    A = torch.tensor(_laplacian(12).toarray())
    X0 = torch.randn(144, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    adapter = TorchLobpcgTracker(name="plain call")
    E, _ = torch.lobpcg(A, k=3, X=X0, tol=1e-8, niter=200, tracker=adapter)
    frame = RunStore(tmp_path / "default.sqlite").runs()
    assert list(frame["source"]) == ["torch.lobpcg"] and list(frame["name"]) == ["plain call"]
    assert adapter.run_id == int(frame["id"].iloc[0])
    assert np.allclose(RunStore(tmp_path / "default.sqlite").result(adapter.run_id).eigenvalues.numpy(), E.numpy(),
                       rtol=0, atol=0)


def test_a_stop_from_the_tracker_stops_torch_lobpcg(store):
    A = torch.tensor(_laplacian(20).toarray())

    class StopAtThree(HistoryTracker):
        def on_iteration(self, record):
            super().on_iteration(record)
            if len(self) == 3:
                raise StopSolve("seen enough")

    history = StopAtThree()
    adapter = TorchLobpcgTracker(tracker=CompositeTracker(history, StoreTracker(store)))
    X0 = torch.randn(400, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.lobpcg(A, k=4, X=X0, tol=1e-14, niter=500, tracker=adapter)
    assert len(history.records) == 3 and adapter.result.status.value == "stopped"


def test_scipy_lobpcg_records_equal_its_own_histories(store):
    A = _laplacian(20)
    counted = {"columns": 0}

    def matmat(V):
        counted["columns"] += V.shape[1]
        return A @ V

    op = sla.LinearOperator(A.shape, matmat=matmat, matvec=lambda v: matmat(v.reshape(-1, 1)).ravel(),
                            dtype=A.dtype)
    X = np.random.default_rng(0).standard_normal((400, 4))
    history = HistoryTracker()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # scipy warns when maxiter ends the run
        with ScipyLobpcgTracker(tracker=CompositeTracker(history, StoreTracker(store, "scipy"))) as adapter:
            w, v, lam_hist, res_hist = sla.lobpcg(op, X, largest=False, tol=1e-9, maxiter=80,
                                                  retLambdaHistory=True, retResidualNormsHistory=True)
    records = history.records
    # scipy's histories: one entry per iteration (0: the start's Rayleigh-Ritz), then the last iterate,
    # and the final post-processed values in place of the entry after the best iterate.
    assert len(records) == len(lam_hist) - 1
    for record, values, residuals in zip(records, lam_hist, res_hist):
        assert np.array_equal(record.ritz_values.numpy(), values)
        assert np.array_equal(record.residual_norms.numpy(), residuals)
    assert [r.iteration for r in records] == list(range(len(records)))
    assert np.array_equal(adapter.result.eigenvalues.numpy(), w)
    assert np.array_equal(adapter.result.residual_norms.numpy(), res_hist[-1])
    assert np.array_equal(adapter.result.eigenvectors.numpy(), v)
    assert adapter.result.n_matvec == counted["columns"]
    assert records[-1].n_matvec <= counted["columns"]
    exact = np.linalg.eigvalsh(A.toarray())[:4]
    assert np.allclose(w, exact, atol=1e-7)
    info = store.run(store.runs()["id"].iloc[0])
    assert info.solver == "scipy.lobpcg" and info.n_records == len(records) and info.which == "SA"
    assert info.status == ("converged" if (res_hist[-1] <= 1e-9).all() else "max_iter reached")


def test_scipy_adapter_counts_converged_pairs_as_scipy_locks_them(store):
    A = _laplacian(15)
    X = np.random.default_rng(3).standard_normal((225, 3))
    history = HistoryTracker()
    with ScipyLobpcgTracker(tracker=history):
        w, _ = sla.lobpcg(A, X, largest=True, tol=1e-6, maxiter=300)
    counts = [r.n_converged for r in history.records]
    assert counts == sorted(counts) and counts[-1] == 3  # locked pairs never come back
    assert history.result.status.value == "converged"
    assert np.allclose(history.result.eigenvalues.numpy(), w)


def test_scipy_lobpcg_that_raises_is_stored_as_failed(store):
    A = _laplacian(12)
    calls = {"n": 0}

    def matmat(V):
        calls["n"] += 1
        if calls["n"] > 5:
            raise FloatingPointError("the operator broke")
        return A @ V

    op = sla.LinearOperator(A.shape, matmat=matmat, matvec=lambda v: matmat(v.reshape(-1, 1)).ravel(),
                            dtype=A.dtype)
    with pytest.raises(FloatingPointError):
        with ScipyLobpcgTracker(store=store, name="breaks"):
            sla.lobpcg(op, np.random.default_rng(0).standard_normal((144, 2)), maxiter=50)
    info = store.run(store.runs()["id"].iloc[0])
    assert info.status == "failed" and "the operator broke" in info.message and info.n_records >= 1


def test_scipy_adapter_restores_the_previous_trace_function():
    import sys

    seen = []

    def tracer(frame, event, arg):
        seen.append(event)
        return None

    sys.settrace(tracer)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with ScipyLobpcgTracker(tracker=HistoryTracker()):
                assert sys.gettrace() is not tracer
        assert sys.gettrace() is tracer
        assert any("paused" in str(w.message) for w in caught)
    finally:
        sys.settrace(None)


def test_the_readme_example_runs_and_stores_three_runs(tmp_path, monkeypatch):
    """The README's Python block (StoreTracker and both adapters) as written, on small problems."""
    import os
    import re
    from pathlib import Path

    import scipy

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "TorchLobpcgTracker" in b)
    problem = problems.laplacian_2d(20)
    A_scipy = problem.operator.to_scipy().tocsr()
    namespace = {"solve": __import__("explorer").solve, "problem": problem, "torch": torch, "scipy": scipy,
                 "A": torch.tensor(A_scipy.toarray()), "A_scipy": A_scipy,
                 "X0": np.random.default_rng(0).standard_normal((400, 10))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # scipy: maxiter reached
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    frame = namespace["store"].runs()
    assert namespace["store"].path == Path(os.environ["EXPLORER_STORE"])
    assert list(frame["source"]) == ["python", "torch.lobpcg", "scipy.lobpcg"]
    assert list(frame["name"]) == ["my run", "my torch solve", "my scipy solve"]
    assert (frame["n_records"] > 0).all()
