"""AppTest: the app keeps its runs in the run store, lists every stored run, follows a running one live,
and keeps working (runs in memory, with a warning) when the store is unusable."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
import torch

from explorer import problems, solve
from explorer.store import RunStore, StoreTracker, StoreUnavailableError
from explorer.tracking import IterationRecord, SolveStart

pytestmark = pytest.mark.slow


def _store() -> RunStore:
    return RunStore(os.environ["EXPLORER_STORE"])


def _no_trouble(at) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _texts(elements) -> list[str]:
    return [str(e.value) for e in elements]


def _points(at, key: str) -> int:
    """Points of the first Ritz trace of the chart with ``key`` (binary plotly arrays decoded)."""
    import base64

    import numpy as np

    for chart in at.get("plotly_chart"):
        if key not in str(chart.proto.id):
            continue
        spec = json.loads(chart.proto.spec)
        for trace in spec["data"]:
            x = trace.get("x")
            if isinstance(x, dict) and "bdata" in x:
                return len(np.frombuffer(base64.b64decode(x["bdata"]), dtype=np.dtype(x["dtype"])))
            if x:
                return len(x)
    return 0


def test_explore_runs_are_stored_with_their_records(apptest, wait_job):
    at = apptest()
    at.button(key="run").click().run()
    wait_job(at, timeout=90)
    _no_trouble(at)
    run = at.session_state["runs"][-1]
    store = _store()
    info = store.run(run.run_id)
    assert run.stored and info.source == "explore" and info.status == run.status
    assert info.problem == run.problem and info.solver == run.solver and info.n == run.n
    assert info.n_records == len(run.records) > 0
    assert [r.iteration for r in store.records(run.run_id)] == [r.iteration for r in run.records]
    assert torch.equal(store.result(run.run_id).eigenvalues, run.result.eigenvalues.double())


def test_history_lists_external_runs_and_other_sessions(apptest, wait_job):
    store = _store()
    tracker = StoreTracker(store, "from a notebook", problem="laplacian_1d(n=80)", source="python")
    solve("lanczos", problems.laplacian_1d(80).operator, 3, tol=1e-10, tracker=tracker)
    first = apptest()
    first.button(key="run").click().run()
    wait_job(first, timeout=90)
    second = apptest(page="pages/history.py")  # another browser session (or the same one after a reload)
    _no_trouble(second)
    frame = second.dataframe[0].value
    assert list(frame["run"]) == [1, 2] and list(frame["source"]) == ["python", "explore"]
    assert any(str(os.environ["EXPLORER_STORE"]) in c.value for c in second.caption)
    second.selectbox(key="history_detail").set_value(1).run()
    _no_trouble(second)
    assert any("Run #1" in s.value and "from python" in s.value for s in second.success)
    tables = [d.value for d in second.dataframe]
    assert any("eigenvalue \u03b8" in t.columns for t in tables)  # the stored final values
    downloads = {b.label: b for b in second.get("download_button")}
    assert downloads["Eigenvectors (.npy)"].proto.disabled  # the store keeps no eigenvectors
    assert not downloads["History (CSV)"].proto.disabled


def test_history_follows_a_run_of_another_process_live(apptest):
    store = _store()
    tracker = StoreTracker(store, "slow external", problem="a slow solve", flush_interval=0.05)
    tracker.on_start(SolveStart("lanczos", n=100, k=2, which="LA", tol=1e-8, max_iter=1000, dtype="float64",
                                device="cpu"))
    stop = threading.Event()

    def produce() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            tracker.on_iteration(IterationRecord("lanczos", i, torch.tensor([2.0 - 1 / i, 1.0 - 1 / i]),
                                                 torch.tensor([1.0 / i, 2.0 / i]), False, None, 0, 2 * i, 0.01 * i))
            time.sleep(0.02)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        time.sleep(0.5)
        at = apptest(page="pages/history.py")
        _no_trouble(at)
        assert any("Following run #1" in c.value for c in at.caption)
        seen = [_points(at, "history_follow_chart")]
        for _ in range(3):
            time.sleep(0.6)
            at.run()  # run_every never fires in AppTest: each run is one refresh
            _no_trouble(at)
            seen.append(_points(at, "history_follow_chart"))
        assert seen == sorted(seen) and seen[-1] > seen[0] > 0, seen
    finally:
        stop.set()
        thread.join(5)
    tracker.fail("the test ended it", status="stopped")
    at.run()
    at.run()
    _no_trouble(at)
    assert any("Run #1" in w.value and "stopped" in w.value for w in at.warning)


def test_without_a_usable_store_runs_stay_in_memory_with_a_warning(apptest, wait_job, tmp_path, monkeypatch):
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("EXPLORER_STORE", str(blocker / "runs.sqlite"))
    at = apptest()
    _no_trouble(at)
    assert any("kept in this browser session only" in w.value for w in at.sidebar.warning)
    at.button(key="run").click().run()
    wait_job(at, timeout=90)
    _no_trouble(at)
    run = at.session_state["runs"][-1]
    assert not run.stored and run.run_id == 1 and run.status in ("converged", "max_iter reached")
    at.switch_page("pages/history.py").run()
    _no_trouble(at)
    assert list(at.dataframe[0].value["run"]) == [1]
    assert any("kept in this browser session only" in w.value and "cannot be opened" in w.value for w in at.warning)


def test_a_store_that_fails_mid_session_degrades_to_memory(apptest, wait_job, monkeypatch):
    at = apptest()
    at.button(key="run").click().run()
    wait_job(at, timeout=90)
    assert at.session_state["runs"][-1].stored

    def full(self):
        raise StoreUnavailableError(f"the disk holding the run store {self.path} is full (test)")

    monkeypatch.setattr(RunStore, "_write", full)
    at.button(key="run").click().run()
    wait_job(at, timeout=90)
    _no_trouble(at)
    first, second = at.session_state["runs"]
    assert first.stored and not second.stored and second.run_id == first.run_id + 1
    assert any("is full" in w.value for w in at.sidebar.warning)
    monkeypatch.undo()
    at.switch_page("pages/history.py").run()
    _no_trouble(at)
    assert list(at.dataframe[0].value["run"]) == [first.run_id, second.run_id]


def test_a_corrupt_store_file_is_moved_aside_and_the_app_starts(apptest, wait_job, tmp_path, monkeypatch):
    path = tmp_path / "broken.sqlite"
    path.write_bytes(b"garbage " * 500)
    monkeypatch.setenv("EXPLORER_STORE", str(path))
    at = apptest()
    _no_trouble(at)
    assert any("not a usable run store" in w.value for w in at.sidebar.warning)
    assert list(tmp_path.glob("broken.sqlite.corrupt-*"))
    at.button(key="run").click().run()
    wait_job(at, timeout=90)
    assert at.session_state["runs"][-1].stored
    assert len(RunStore(path).runs()) == 1


def test_stopped_and_failed_explore_runs_are_stored(apptest, wait_job, get_job):
    at = apptest()
    at.selectbox(key="sample").set_value("mikota_n100").run()  # a generalized pair ...
    at.selectbox(key="solver").set_value("lanczos").run()  # ... that Lanczos refuses, in the worker
    at.button(key="run").click().run()
    wait_job(at, timeout=90)
    failed = at.session_state["runs"][-1]
    assert failed.status == "failed" and failed.stored
    info = _store().run(failed.run_id)
    assert info.status == "failed" and "generalized" in info.message and info.source == "explore"
    assert info.solver == "lanczos" and info.n == 100 and info.k == failed.params["k"]
    at.radio(key="problem_mode").set_value("Generate").run()
    at.selectbox(key="gen_name").set_value("laplacian_2d").run()
    at.number_input(key="g_laplacian_2d_nx").set_value(100).run()
    at.number_input(key="g_laplacian_2d_ny").set_value(100).run()
    at.button(key="generate").click().run()
    at.number_input(key="tol").set_value(1e-14).run()
    at.number_input(key="max_iter").set_value(5000).run()
    at.button(key="run").click().run()
    job = get_job(at)
    deadline = time.monotonic() + 60
    while len(job.view().records) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
        at.run()
    at.button(key="stop").click().run()
    assert job.wait(15)
    wait_job(at)
    stopped = at.session_state["runs"][-1]
    info = _store().run(stopped.run_id)
    assert info.status == "stopped" == stopped.status and info.n_records == len(stopped.records) >= 3
