"""The store under faults: SIGKILL mid-run, 8 concurrent writer processes, corrupt / foreign / newer files,
the schema migration from version 1, a read-only store and a full disk."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from explorer import problems, solve
from explorer.store import RunStore, StoreError, StoreTracker, StoreUnavailableError, StoreVersionError, codec, schema
from explorer.tracking import IterationRecord, SolveStart

ROOT = Path(__file__).resolve().parents[1]


def _child(code: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=str(ROOT), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(predicate, timeout: float = 120.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


_LONG_SOLVE = """
import sys, torch
torch.set_num_threads(1)
from explorer import solve
from explorer.problems import laplacian_2d
from explorer.store import RunStore, StoreTracker
solve("lobpcg", laplacian_2d(120).operator, 8, which="SA", tol=1e-14, max_iter=100000, seed=0,
      tracker=StoreTracker(RunStore(sys.argv[1]), "long"))
"""


def _records_of(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        conn = sqlite3.connect(path, timeout=5)
        try:
            row = conn.execute("SELECT n_records FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return 0
    return int(row[0]) if row else 0


@pytest.mark.slow
def test_sigkill_mid_run_keeps_every_committed_record_and_marks_the_run_interrupted(tmp_path):
    path = tmp_path / "killed.sqlite"
    proc = _child(_LONG_SOLVE, str(path))
    try:
        _wait_for(lambda: _records_of(path) >= 20 or proc.poll() is not None, what="records from the child")
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        # a live run in another process is not taken for an interrupted one
        live = RunStore(path)
        (info,) = live.run_infos()
        assert info.status == "running"
        time.sleep(1.2)
        assert live.run(info.id).status == "running" and live.sweep() == []
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        proc.stdout.close()
        proc.stderr.close()
    committed = sqlite3.connect(path).execute("SELECT COALESCE(SUM(count), 0) FROM records").fetchone()[0]
    store = RunStore(path)  # the next open finds the dead writer
    info = store.run(info.id)
    assert info.status == "interrupted"
    assert f"pid {proc.pid} on {socket.gethostname()}" in info.message and "record it committed is kept" in info.message
    records = store.records(info.id)
    assert len(records) == committed == info.n_records >= 20
    assert [r.iteration for r in records] == list(range(1, len(records) + 1))
    assert all(r.ritz_values.numel() == 8 and torch.isfinite(r.ritz_values).all() for r in records)
    assert len(store.history(info.id)) == 8 * len(records)
    assert info.ended_at is not None and info.ended_at >= info.started_at


_WRITER = """
import sys, time, pathlib, torch
from explorer.tracking.results import EigenResult, SolveStatus
from explorer.store import RunStore, StoreTracker
from explorer.tracking import IterationRecord, SolveStart
path, wid, folder = sys.argv[1], int(sys.argv[2]), pathlib.Path(sys.argv[3])
(folder / f"ready{wid}").touch()
while not (folder / "go").exists():
    time.sleep(0.005)
store = RunStore(path)  # all 8 open the new file at once, then write at once
for run in range(2):
    t = StoreTracker(store, f"w{wid}-{run}", flush_interval=0.01)
    t.on_start(SolveStart("lanczos", n=100, k=3, which="LA", tol=1e-6, max_iter=1000, dtype="float64", device="cpu"))
    for i in range(1, 401):
        t.on_iteration(IterationRecord("lanczos", i, torch.tensor([wid, run, i], dtype=torch.float64),
                                       torch.full((3,), 1.0 / i), False, None, 0, i, i * 1e-3))
        if i % 40 == 0:
            time.sleep(0.002)
    values = torch.tensor([wid, run, 400.0], dtype=torch.float64)
    t.on_finish(EigenResult(values, torch.zeros(100, 3), torch.zeros(3), torch.ones(3, dtype=torch.bool), 400, 400,
                            0.4, SolveStatus.CONVERGED, "lanczos"))
    assert t.error is None, t.error
print("done")
"""


@pytest.mark.slow
def test_eight_processes_writing_at_once_lose_no_record(tmp_path):
    path = tmp_path / "shared.sqlite"
    procs = [_child(_WRITER, str(path), str(w), str(tmp_path)) for w in range(8)]
    try:
        _wait_for(lambda: all((tmp_path / f"ready{w}").exists() for w in range(8))
                  or any(p.poll() is not None for p in procs), what="8 writers ready")
        (tmp_path / "go").touch()
        outputs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0 and out.strip() == "done", err[-2000:]
    store = RunStore(path)
    frame = store.runs()
    assert len(frame) == 16 and (frame["status"] == "converged").all() and (frame["n_records"] == 400).all()
    for info in store.run_infos():
        wid, run = (int(x) for x in info.name[1:].split("-"))
        records = store.records(info.id)
        assert [r.iteration for r in records] == list(range(1, 401))
        assert all(r.ritz_values.tolist() == [wid, run, r.iteration] for r in records)
        assert store.result(info.id).eigenvalues.tolist() == [wid, run, 400.0]
    assert sqlite3.connect(path).execute("SELECT COALESCE(SUM(count), 0) FROM records").fetchone()[0] == 16 * 400


def test_a_store_locked_by_another_program_is_reported_not_moved_aside(tmp_path):
    """A lock is not damage: the file stays where it is, with its runs, and opens once the lock is gone."""
    path = tmp_path / "runs.sqlite"
    store = RunStore(path)
    for _ in range(2):
        store.finish_run(store.create_run(solver="lanczos"), status="converged")
    store.close()  # no connection of ours is left, so the other program can take the file out of WAL
    other = sqlite3.connect(path, isolation_level=None)  # e.g. the sqlite3 shell, holding the whole file
    other.execute("PRAGMA journal_mode = DELETE")
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreUnavailableError, match="locked by another process"):
            RunStore(path, busy_timeout=0.2)
        assert path.exists() and not list(tmp_path.glob("runs.sqlite.*-*"))
    finally:
        other.execute("ROLLBACK")
        other.close()
    store = RunStore(path)
    assert store.notice is None and len(store.runs()) == 2


def test_openers_take_turns_and_one_held_too_long_gets_a_clear_message(tmp_path):
    from filelock import FileLock

    path = tmp_path / "runs.sqlite"
    held = FileLock(str(tmp_path / "runs.sqlite.lock"))  # another process in the middle of opening the store
    held.acquire()
    try:
        with pytest.raises(StoreUnavailableError, match="opening it"):
            RunStore(path, busy_timeout=0.2)
        assert not path.exists()
    finally:
        held.release()
    _fill(RunStore(path, busy_timeout=0.2), 1)
    assert len(RunStore(path).runs()) == 1


def _fill(store: RunStore, runs: int = 3) -> None:
    for _ in range(runs):
        tracker = StoreTracker(store)
        solve("lanczos", problems.laplacian_1d(200).operator, 3, tol=1e-10, tracker=tracker)


@pytest.mark.parametrize("content,state", [
    (b"this is not a database at all\n" * 40, "corrupt"),
    (b"SQLite format 3\x00" + b"\xff" * 4000, "corrupt"),
])
def test_a_corrupt_file_is_moved_aside_with_a_clear_message(tmp_path, content, state):
    path = tmp_path / "runs.sqlite"
    path.write_bytes(content)
    with pytest.warns(RuntimeWarning, match="not a usable run store"):
        store = RunStore(path)
    moved = list(tmp_path.glob(f"runs.sqlite.{state}-*"))
    assert len(moved) == 1 and moved[0].read_bytes() == content
    assert store.notice and str(path) in store.notice and moved[0].name in store.notice
    assert store.runs().empty
    _fill(store, 1)
    assert len(RunStore(path).runs()) == 1


def test_a_damaged_store_is_caught_by_the_integrity_check(tmp_path):
    path = tmp_path / "runs.sqlite"
    store = RunStore(path)
    _fill(store, 3)
    store.close()
    del store
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) >= 4 * page
    data[2 * page:3 * page] = b"\x00\x13" * (page // 2)  # scribble over a b-tree page
    path.write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match="integrity check failed|cannot read it"):
        fresh = RunStore(path)
    assert fresh.runs().empty and list(tmp_path.glob("runs.sqlite.corrupt-*"))


def test_a_foreign_database_is_moved_aside(tmp_path):
    path = tmp_path / "runs.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (id INTEGER, name TEXT)")
    conn.execute("INSERT INTO customers VALUES (1, 'Ada')")
    conn.commit()
    conn.close()
    with pytest.warns(RuntimeWarning, match="another program"):
        store = RunStore(path)
    (moved,) = tmp_path.glob("runs.sqlite.foreign-*")
    assert sqlite3.connect(moved).execute("SELECT name FROM customers").fetchone() == ("Ada",)
    assert "customers" in store.notice and store.runs().empty


def test_a_directory_at_the_store_path_is_refused_not_moved(tmp_path):
    folder = tmp_path / "runs.sqlite"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    with pytest.raises(StoreUnavailableError, match="is a directory"):
        RunStore(folder)
    assert (folder / "keep.txt").read_text() == "mine"


def test_a_path_with_uri_characters_works(tmp_path):
    odd = tmp_path / "a dir?with #odd chars" / "runs.sqlite"
    _fill(RunStore(odd), 1)
    assert len(RunStore(odd).runs()) == 1 and not list(odd.parent.glob("runs.sqlite.*-*"))


def test_without_recover_a_bad_file_raises_and_stays(tmp_path):
    path = tmp_path / "runs.sqlite"
    path.write_text("hello")
    with pytest.raises(StoreError, match="is not a run store: it is not an SQLite database"):
        RunStore(path, recover=False)
    assert path.read_text() == "hello"


def test_a_store_from_a_newer_version_is_refused_and_kept(tmp_path):
    path = tmp_path / "runs.sqlite"
    RunStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 5}")
    conn.commit()
    conn.close()
    with pytest.raises(StoreVersionError, match="newer Eigensolver Explorer"):
        RunStore(path)
    assert path.exists() and not list(tmp_path.glob("runs.sqlite.*-*"))


def test_migration_from_version_1_keeps_runs_and_records(tmp_path):
    path = tmp_path / "v1.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("BEGIN")
    schema.MIGRATIONS[0](conn)  # exactly what version 1 wrote
    conn.execute("PRAGMA user_version = 1")
    conn.execute(f"PRAGMA application_id = {schema.APPLICATION_ID}")
    conn.execute("COMMIT")
    history = problems.laplacian_1d(50)
    from explorer.tracking import HistoryTracker

    tracker = HistoryTracker()
    result = solve("lanczos", history.operator, 2, tol=1e-10, tracker=tracker)
    for status in ("converged", "running"):
        cursor = conn.execute("INSERT INTO runs (name, source, solver, k, which, params, status, message, started_at, "
                              "eigenvalues, n_records) VALUES (?, 'python', 'lanczos', 2, 'LA', '{}', ?, 'v1 run', ?, "
                              "?, ?)", (f"old {status}", status, time.time(), codec.vector_json(result.eigenvalues),
                                        len(tracker.records)))
        run_id = cursor.lastrowid
        for first in range(0, len(tracker.records), 7):  # chunks of 7 records, as commits make them
            conn.execute(f"INSERT INTO records (run_id, {', '.join(codec.CHUNK_COLUMNS)}) VALUES "
                         f"(?{', ?' * len(codec.CHUNK_COLUMNS)})",
                         (run_id, *codec.chunk_row(first + 1, tracker.records[first:first + 7])))
    conn.close()
    store = RunStore(path)
    assert store.migrated_from == 1
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION == 2
    columns = {row[1] for row in check.execute("PRAGMA table_info(runs)")}
    assert {"writer_host", "writer_pid", "writer_start", "writer_boot", "heartbeat"} <= columns
    import pandas as pd

    done, old = store.run_infos()
    assert done.status == "converged" and done.name == "old converged"
    pd.testing.assert_frame_equal(store.history(done.id), tracker.to_frame())
    assert torch.equal(store.result(done.id).eigenvalues, result.eigenvalues)
    assert old.status == "interrupted"  # a version-1 "running" run has no writer to follow
    _fill(store, 1)  # and the migrated store takes new runs
    assert len(store.runs()) == 3


def test_heartbeat_decides_for_runs_of_another_host(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite", stale_after=30)
    fresh = store.create_run(solver="lanczos", name="fresh")
    stale = store.create_run(solver="lanczos", name="stale")
    conn = sqlite3.connect(store.path)
    conn.execute("UPDATE runs SET writer_host = 'another-host', heartbeat = ? WHERE id = ?", (time.time(), fresh))
    conn.execute("UPDATE runs SET writer_host = 'another-host', heartbeat = ? WHERE id = ?", (time.time() - 31, stale))
    conn.commit()
    assert store.sweep() == [stale]
    assert store.run(fresh).status == "running" and store.run(stale).status == "interrupted"


def test_a_reused_pid_does_not_keep_a_dead_run_alive(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    run_id = store.create_run(solver="lanczos")
    conn = sqlite3.connect(store.path)
    # pid 1 exists, but it is not the process (its start time differs) that began the run
    conn.execute("UPDATE runs SET writer_pid = 1, writer_start = writer_start + 12345 WHERE id = ?", (run_id,))
    conn.commit()
    assert store.sweep() == [run_id] and store.run(run_id).status == "interrupted"
    own = store.create_run(solver="lanczos")
    assert store.sweep() == [] and store.run(own).status == "running"  # this process's run is alive


def _make_read_only(path: Path) -> object:
    """Make ``path`` (a file) unwritable even for root; return an undo callable, or skip."""
    if os.geteuid() != 0:
        os.chmod(path, 0o444)
        os.chmod(path.parent, 0o555)
        return lambda: (os.chmod(path.parent, 0o755), os.chmod(path, 0o644))
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot make a file read-only here as root (chattr: {done.stderr.decode().strip()})")
    return lambda: subprocess.run(["chattr", "-i", str(path)], check=True)


def test_a_read_only_store_degrades_with_a_clear_message(tmp_path):
    path = tmp_path / "ro.sqlite"
    _fill(RunStore(path), 1)
    undo = _make_read_only(path)
    try:
        store = RunStore(path)  # still readable: the old run is listed
        assert not store.writable and "read-only" in store.read_only_reason
        assert list(store.runs()["status"]) == ["converged"]
        with pytest.raises(StoreUnavailableError, match="read-only"):
            store.create_run(solver="lanczos")
        with pytest.warns(RuntimeWarning, match="not written to the run store"):
            tracker = StoreTracker(path)
        result = solve("lanczos", problems.laplacian_1d(100).operator, 2, tol=1e-10, tracker=tracker)
        assert result.status.value == "converged" and tracker.run_id is None and "read-only" in tracker.error
    finally:
        undo()


class _SmallDisk(RunStore):
    """A store whose connections may not grow the file past ``limit_pages`` (SQLite's own SQLITE_FULL)."""

    limit_pages = 0

    def _conn(self):
        fresh = getattr(self._local, "conn", None) is None
        conn = super()._conn()
        if fresh and self.limit_pages:
            conn.execute(f"PRAGMA max_page_count = {self.limit_pages}")
        return conn


def test_a_full_disk_stops_the_writes_not_the_solve(tmp_path):
    store = _SmallDisk(tmp_path / "full.sqlite")
    pages = sqlite3.connect(store.path).execute("PRAGMA page_count").fetchone()[0]
    store.close()
    store.limit_pages = pages + 4
    tracker = StoreTracker(store, "fills the disk", flush_interval=0.05)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = solve("lobpcg", problems.laplacian_2d(60).operator, 6, which="SA", tol=1e-12, seed=0,
                       max_iter=400, tracker=tracker)
    assert result.n_iter > 50 and "full" in tracker.error
    assert any("no longer written to the store" in str(w.message) for w in caught)
    kept = RunStore(tmp_path / "full.sqlite").run(tracker.run_id)
    assert 0 < kept.n_records < result.n_iter and kept.status in ("running", "interrupted")


_FSIZE_LIMITED = """
import resource, signal, sys, warnings, torch
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # a write past the limit fails with EFBIG instead of killing us
from explorer import solve
from explorer.problems import laplacian_2d
from explorer.store import RunStore, StoreTracker
store = RunStore(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
tracker = StoreTracker(store, "too big", flush_interval=0.05)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    result = solve("lobpcg", laplacian_2d(60).operator, 10, which="SA", tol=1e-13, seed=0, max_iter=600,
                   tracker=tracker)
import json
print(json.dumps({"status": result.status.value, "n_iter": result.n_iter, "error": tracker.error,
                  "warnings": [str(w.message) for w in caught]}))
"""


@pytest.mark.slow
def test_a_file_size_limit_stops_the_writes_not_the_solve(tmp_path):
    path = tmp_path / "limited.sqlite"
    proc = _child(_FSIZE_LIMITED, str(path))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    import json

    report = json.loads(out.strip().splitlines()[-1])
    assert report["status"] in ("converged", "max_iter reached") and report["n_iter"] > 100
    assert "could not be written" in report["error"] or "full" in report["error"]
    assert any("no longer written to the store" in w for w in report["warnings"])
    info = RunStore(path).run_infos()[0]
    # the process has ended: its run is interrupted, with what it committed before the limit
    assert info.status == "interrupted" and 0 < info.n_records < report["n_iter"]
