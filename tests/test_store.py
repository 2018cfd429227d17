"""The run store: its API, StoreTracker on every registered solver, and how fast readers see records."""

from __future__ import annotations

import sqlite3
import threading
import time
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from explorer import problems
from explorer.solvers import SOLVERS, solve
from explorer.store import RUN_COLUMNS, RunNotFoundError, RunStore, StoreTracker
from explorer.store import schema
from explorer.tracking import CompositeTracker, HistoryTracker, IterationRecord, StopFlagTracker


@pytest.fixture
def store(tmp_path):
    return RunStore(tmp_path / "runs.sqlite")


def _geometric() -> problems.Problem:
    # Dense Q diag(0.8^i) Q^T, n = 80: every registered solver applies (fast decay, clear gaps).
    return problems.prescribed_spectrum(80, "geometric", seed=1)


def test_new_store_is_a_wal_sqlite_file_with_our_header(store):
    conn = sqlite3.connect(store.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA application_id").fetchone()[0] == schema.APPLICATION_ID
    assert conn.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"runs", "records"} <= tables
    assert list(store.runs().columns) == RUN_COLUMNS and store.runs().empty


def test_default_path_is_the_environment_variable(monkeypatch, tmp_path):
    target = tmp_path / "sub" / "mine.sqlite"
    monkeypatch.setenv("EXPLORER_STORE", str(target))
    store = RunStore()
    assert store.path == target and target.is_file()


def test_default_path_without_the_variable_is_per_user(monkeypatch, tmp_path):
    pytest.importorskip("platformdirs")
    from explorer.store import default_store_path

    monkeypatch.delenv("EXPLORER_STORE", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    path = default_store_path()
    assert path.name == "runs.sqlite" and "eigensolver-explorer" in str(path)
    assert str(path).startswith(str(tmp_path / "data"))


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_store_tracker_keeps_what_history_tracker_keeps_for_every_solver(store, name):
    spec = SOLVERS[name]
    problem = _geometric()
    history = HistoryTracker()
    tracker = StoreTracker(store, f"{name} test", problem="geometric n=80", params={"note": "x"})
    result = solve(name, problem.operator, 3, which=spec.which[0], tol=1e-8, seed=0,
                   tracker=CompositeTracker(history, tracker))
    assert tracker.error is None and tracker.run_id is not None
    pd.testing.assert_frame_equal(store.history(tracker.run_id), history.to_frame())
    assert len(history.records) >= 1
    info = store.run(tracker.run_id)
    assert (info.solver, info.name, info.problem, info.status) == (name, f"{name} test", "geometric n=80",
                                                                   result.status.value)
    assert info.params["note"] == "x" and info.params["k"] == 3 and info.params["which"] == spec.which[0]
    assert (info.n, info.k, info.dtype, info.device) == (80, 3, "float64", "cpu")
    assert info.n_records == len(history.records) and info.n_matvec == result.n_matvec
    assert info.ended_at is not None and info.ended_at >= info.started_at
    stored = store.result(tracker.run_id)
    assert torch.equal(stored.eigenvalues, result.eigenvalues.double())
    assert torch.equal(stored.residual_norms, result.residual_norms.double())
    assert torch.equal(stored.converged, result.converged)
    assert (stored.n_iter, stored.n_matvec, stored.status) == (result.n_iter, result.n_matvec, result.status.value)
    assert stored.message == result.status_message


def test_records_round_trip_every_field(store):
    records = [IterationRecord(solver="lanczos", iteration=i, ritz_values=torch.tensor([3.0, 2.0 + i], dtype=torch.float32),
                               residual_norms=torch.tensor([1e-3 / (i + 1), float("inf")]), residuals_estimated=bool(i % 2),
                               orthogonality_loss=None if i == 0 else 1e-15 * i, n_converged=i, n_matvec=10 * i,
                               elapsed_s=0.5 * i, all_ritz_values=torch.tensor([3.0, 2.0, -1.0]) if i else None,
                               ghost_mask=torch.tensor([False, i == 2]), extras={"beta": 0.25 * i})
               for i in range(1, 4)]
    run_id = store.create_run(solver="lanczos", k=2, which="LA")
    store.append_records(run_id, records[:2])
    store.append_records(run_id, records[2:])
    back = store.records(run_id)
    assert len(back) == 3
    for a, b in zip(records, back):
        assert torch.equal(a.ritz_values.double(), b.ritz_values) and torch.equal(a.residual_norms.double(),
                                                                                   b.residual_norms)
        assert (a.iteration, a.residuals_estimated, a.orthogonality_loss, a.n_converged, a.n_matvec, a.elapsed_s,
                dict(a.extras)) == (b.iteration, b.residuals_estimated, b.orthogonality_loss, b.n_converged,
                                    b.n_matvec, b.elapsed_s, dict(b.extras))
        assert (a.all_ritz_values is None) == (b.all_ritz_values is None)
        assert torch.equal(a.ghost_mask, b.ghost_mask)
    assert [r.iteration for r in store.records(run_id, after=1)] == [2, 3]
    assert store.run(run_id).n_records == 3 and store.run(run_id).n_matvec == 30
    assert store.result(run_id) is None  # still running: no final values yet


def test_runs_frame_lists_every_run_oldest_first(store):
    first = store.create_run(solver="lanczos", name="a", k=4, tol=1e-6, problem="p")
    second = store.save_run(solver="eigh", name="b", k=2, status="failed", message="k too large")
    frame = store.runs()
    assert list(frame["id"]) == [first, second]
    assert list(frame["status"]) == ["running", "failed"]
    assert frame.loc[1, "message"] == "k too large"
    assert isinstance(frame.loc[0, "started_at"], pd.Timestamp)
    assert list(store.runs(status="failed")["id"]) == [second]


def test_delete_removes_the_run_and_its_records(store):
    run_id = store.create_run(solver="lanczos")
    store.append_records(run_id, [IterationRecord("lanczos", 1, torch.ones(2), torch.ones(2), False, None, 0, 2, 0.1)])
    store.delete(run_id)
    assert store.runs().empty
    conn = sqlite3.connect(store.path)
    assert conn.execute("SELECT COALESCE(SUM(count), 0) FROM records").fetchone()[0] == 0
    with pytest.raises(RunNotFoundError, match=f"no run {run_id} in the store"):
        store.delete(run_id)
    with pytest.raises(KeyError):
        store.history(12345)


def test_a_stopped_solve_is_stored_as_stopped_with_its_partial_records(store):
    problem = problems.laplacian_2d(40)
    stop = StopFlagTracker()
    tracker = StoreTracker(store, "stop me")

    class StopAfter(HistoryTracker):
        def on_iteration(self, record):
            super().on_iteration(record)
            if len(self) == 5:
                stop.request_stop("enough")

    history = StopAfter()
    result = solve("lanczos", problem.operator, 4, which="SA", tol=1e-12, seed=0,
                   tracker=CompositeTracker(history, tracker, stop))
    assert result.status.value == "stopped"
    info = store.run(tracker.run_id)
    assert info.status == "stopped" and "enough" in info.message
    assert info.n_records == len(history.records) >= 5


def test_fail_records_a_solve_that_never_started(store):
    tracker = StoreTracker(store, "bad", problem="p")
    with pytest.raises(ValueError):
        solve("lanczos", problems.laplacian_1d(10).operator, 50, tracker=tracker)  # k > n
    run_id = tracker.fail("`k` must be at most n", solver="lanczos", k=50)
    info = store.run(run_id)
    assert (info.status, info.message, info.solver, info.k, info.name) == ("failed", "`k` must be at most n",
                                                                           "lanczos", 50, "bad")


def test_context_manager_marks_a_raising_solve_failed(store):
    from explorer.operators import CallableOperator

    calls = {"n": 0}

    def matvec(v):
        calls["n"] += 1
        if calls["n"] > 40:
            raise RuntimeError("the operator broke")
        return torch.arange(1.0, 51.0, dtype=torch.float64) * v

    op = CallableOperator(matvec, n=50, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="broke"):
        with StoreTracker(store, "boom") as tracker:
            solve("lanczos", op, 2, tol=1e-14, seed=0, tracker=tracker)
    info = store.run(tracker.run_id)
    assert info.status == "failed" and "the operator broke" in info.message and info.n_records > 0


def test_records_reach_a_reader_within_half_a_second(store):
    """A reader on its own connection sees each record < 0.5 s after the solver handed it in."""
    reader = RunStore(store.path)
    tracker = StoreTracker(store, "latency")
    from explorer.tracking import SolveStart

    tracker.on_start(SolveStart("lanczos", n=10, k=2, which="LA", tol=1e-6, max_iter=100, dtype="float64",
                                device="cpu"))
    delays = []
    for i in range(1, 6):
        handed = time.monotonic()
        tracker.on_iteration(IterationRecord("lanczos", i, torch.ones(2), torch.ones(2), False, None, 0, i, 0.0))
        while reader.run(tracker.run_id).n_records < i:
            assert time.monotonic() - handed < 2.0
            time.sleep(0.01)
        delays.append(time.monotonic() - handed)
        time.sleep(0.3)  # a slow solver: nothing else comes to push the record out
    tracker.close()
    assert max(delays) < 0.5, delays


def test_concurrent_threads_each_get_their_own_run(store):
    problem = problems.laplacian_2d(20)
    ids: list[int] = []

    def work(seed: int) -> None:
        tracker = StoreTracker(store, f"thread {seed}")
        solve("lanczos", problem.operator, 3, tol=1e-8, seed=seed, tracker=tracker)
        ids.append(tracker.run_id)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    frame = store.runs()
    assert sorted(ids) == sorted(frame["id"]) and (frame["status"] == "converged").all()
    for run_id in ids:
        assert store.run(run_id).n_records == len(store.records(run_id)) > 0


def test_an_unwritable_store_never_stops_the_solve(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tracker = StoreTracker(blocker / "runs.sqlite")  # its folder cannot be created
    assert tracker.error and "cannot be opened" in tracker.error and "EXPLORER_STORE" in tracker.error
    assert any("not written to the run store" in str(w.message) for w in caught)
    result = solve("lanczos", problems.laplacian_1d(50).operator, 2, tol=1e-8, tracker=tracker)
    assert result.status.value == "converged" and tracker.run_id is None


def test_a_dropped_tracker_closes_its_run_as_interrupted(store):
    from explorer.tracking import SolveStart

    tracker = StoreTracker(store, "dropped")
    tracker.on_start(SolveStart("power_iteration", n=10, k=1, which="LM", tol=1e-6, max_iter=10, dtype="float64",
                                device="cpu"))
    tracker.on_iteration(IterationRecord("power_iteration", 1, torch.ones(1), torch.ones(1), False, None, 0, 1, 0.0))
    run_id = tracker.run_id
    del tracker  # the solver raised and nobody finished the run
    import gc

    gc.collect()
    info = store.run(run_id)
    assert info.status == "interrupted" and info.n_records == 1 and "records up to then are kept" in info.message


def test_infos_expose_reference_and_final_values(store):
    run_id = store.save_run(solver="eigh", k=2, reference=np.array([2.0, 1.0]), status="converged",
                            message="ok", n_iter=1)
    info = store.run(run_id)
    assert np.array_equal(info.reference, [2.0, 1.0]) and info.n_iter == 1
