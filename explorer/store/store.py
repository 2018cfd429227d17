"""RunStore: every solve and its per-iteration records in one SQLite file, readable from any process.

SQLite (the standard library's ``sqlite3``) in WAL mode: readers never block the writer
and see each committed batch at once; several processes append at the same time, each
write transaction waiting up to ``busy_timeout`` for the file lock (``BEGIN IMMEDIATE``,
so a writer never fails half-way with a lock upgrade). ``synchronous = NORMAL``: a
committed transaction survives the writer's crash or SIGKILL (it is in the WAL file);
only a power cut can lose the last ones. Each thread has its own connection.

Opening a store (``RunStore(path)``) checks what is at the path first
(``schema.inspect_file``): a missing or empty file becomes a new store, an older store is
migrated (``schema.migrate``), and a file that is not a store (not SQLite, damaged, or
another program's database) is moved aside, next to it, as ``NAME.corrupt-STAMP`` or
``NAME.foreign-STAMP`` (with ``recover=True``, the default) and a fresh store is started;
``notice`` then says so. Processes opening one file at once take turns for these steps
(the lock file ``NAME.lock``, ``_opening_lock``). A store that can be read but not written
(a read-only file) opens with ``writable = False`` and ``read_only_reason``: its runs can be
listed, writes raise.
Any failure to open or write raises a ``StoreError`` whose message names the file and the
cause (read-only, full disk, locked, ...).

WAL needs a local file system (not NFS/SMB: SQLite's shared-memory locking does not work
there).
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from filelock import FileLock, Timeout

from explorer.store import codec, schema
from explorer.store.errors import StoreError, StoreUnavailableError, describe
from explorer.store.paths import default_store_path
from explorer.store.writer import STALE_AFTER_S, this_writer, writer_alive
from explorer.tracking import IterationRecord, history_frame
from explorer.tracking.results import PairCounts

__all__ = ["RunStore", "RunInfo", "StoredResult", "RunNotFoundError", "RUNNING", "INTERRUPTED", "FAILED",
           "RUN_COLUMNS"]

SWEEP_EVERY_S = 1.0  # listing or reading a run looks for dead writers at most this often
RUNNING = "running"
INTERRUPTED = "interrupted"
FAILED = "failed"

#: Columns of ``RunStore.runs()``.
RUN_COLUMNS = ["id", "name", "source", "solver", "problem", "n", "k", "which", "tol", "max_iter", "device", "dtype",
               "status", "message", "started_at", "ended_at", "elapsed_s", "n_iter", "n_matvec", "n_converged",
               "max_residual", "n_records", "params"]

_RUN_FIELDS = ("id", "name", "source", "solver", "problem", "n", "k", "which", "tol", "max_iter", "params", "device",
               "dtype", "status", "message", "started_at", "ended_at", "n_records", "n_iter", "n_matvec", "n_converged",
               "elapsed_s", "eigenvalues", "residual_norms", "converged", "reference")


class RunNotFoundError(KeyError, StoreError):
    """No run with that id in the store."""

    def __str__(self) -> str:  # KeyError would show the repr of the message
        return str(self.args[0]) if self.args else "run not found"


@dataclass(frozen=True)
class RunInfo:
    """One stored run, without its records (``RunStore.run(id)``)."""

    id: int
    name: str | None
    source: str
    solver: str
    problem: str | None
    n: int | None
    k: int | None
    which: str | None
    tol: float | None
    max_iter: int | None
    params: dict[str, Any]
    device: str | None
    dtype: str | None
    status: str
    message: str
    started_at: float
    ended_at: float | None
    n_records: int
    n_iter: int | None
    n_matvec: int | None
    n_converged: int | None
    elapsed_s: float | None
    reference: np.ndarray | None = field(default=None, repr=False)
    eigenvalues: list[float] | None = field(default=None, repr=False)
    residual_norms: list[float] | None = field(default=None, repr=False)
    converged: list[bool] | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self.status == RUNNING

    @property
    def label(self) -> str:
        tol = f" tol={self.tol:.0e}" if isinstance(self.tol, (int, float)) else ""
        name = f" \u201c{self.name}\u201d" if self.name else ""
        return f"#{self.id}{name} {self.solver} k={self.k if self.k is not None else '?'} {self.which or ''}{tol}" \
               f" on {self.problem or 'a problem'}"

    @property
    def max_residual(self) -> float | None:
        if not self.residual_norms:
            return None
        values = [v for v in self.residual_norms if v is not None and math.isfinite(v)]
        return max(values) if values else float("nan")


@dataclass(frozen=True)
class StoredResult(PairCounts):
    """The final values of a stored run (``RunStore.result(id)``): what ``EigenResult`` holds
    except the eigenvectors and the history (those are n x k and per-iteration data; the
    history is ``RunStore.history`` / ``records``)."""

    eigenvalues: torch.Tensor
    residual_norms: torch.Tensor
    converged: torch.Tensor
    n_iter: int
    n_matvec: int
    elapsed_s: float
    status: str
    message: str
    solver: str
    which: str | None
    tol: float | None

    @classmethod
    def from_info(cls, info: RunInfo) -> "StoredResult | None":
        """The final values kept in a ``RunInfo`` (None when the run has none)."""
        if info.eigenvalues is None:
            return None
        values = torch.tensor([math.nan if v is None else v for v in info.eigenvalues], dtype=torch.float64)
        k = values.numel()
        residuals = torch.tensor([math.nan if v is None else v for v in (info.residual_norms or [math.nan] * k)],
                                 dtype=torch.float64)
        converged = torch.tensor(info.converged if info.converged is not None else [False] * k, dtype=torch.bool)
        return cls(eigenvalues=values, residual_norms=residuals, converged=converged, n_iter=int(info.n_iter or 0),
                   n_matvec=int(info.n_matvec or 0), elapsed_s=float(info.elapsed_s or 0.0), status=info.status,
                   message=info.message, solver=info.solver, which=info.which, tol=info.tol)

    @property
    def status_message(self) -> str:
        return self.message

    def to_frame(self, reference: torch.Tensor | None = None) -> pd.DataFrame:
        """One row per eigenpair, as ``EigenResult.to_frame``."""
        frame = pd.DataFrame({"index": range(self.k), "eigenvalue": self.eigenvalues.double().numpy(),
                              "residual_norm": self.residual_norms.double().numpy(),
                              "converged": self.converged.numpy().astype(bool)})
        if reference is not None:
            ref = reference.detach().cpu().double().numpy()[: self.k]
            frame["reference"] = list(ref) + [float("nan")] * (self.k - len(ref))
            frame["abs_error"] = (frame["eigenvalue"] - frame["reference"]).abs()
            frame["rel_error"] = frame["abs_error"] / frame["reference"].abs().clip(lower=1e-300)
        return frame


def _move_aside(path: Path, state: str) -> Path:
    """Rename ``path`` (and its -wal / -shm files) to ``NAME.<state>-STAMP``; return the new path."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.{state}-{stamp}")
    number = 1
    while target.exists():
        number += 1
        target = path.with_name(f"{path.name}.{state}-{stamp}-{number}")
    os.replace(path, target)
    for suffix in ("-wal", "-shm", "-journal"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            try:
                os.replace(side, target.with_name(target.name + suffix))
            except OSError:
                pass
    return target


@contextmanager
def _opening_lock(path: Path, timeout: float) -> Iterator[None]:
    """Hold ``NAME.lock`` (``filelock``: an OS file lock, released if the process dies) while
    a process inspects, moves aside, creates, switches to WAL and migrates the store.

    Without it, processes opening one new store at once race: SQLite answers the switch to
    WAL with SQLITE_BUSY at once, without waiting (measured: 5 of 440 opens by 8 processes at
    once; 0 of 960 with the lock), and a file read while another process creates it can look
    damaged and be moved aside under that process, whose threads then write to two different
    files. A folder where the lock file cannot be made (read-only) opens without it: a store
    there cannot be created or migrated anyway.
    """
    lock_file = path.with_name(path.name + ".lock")
    lock = FileLock(str(lock_file), timeout=timeout)
    try:
        lock.acquire()
    except Timeout as err:
        raise StoreUnavailableError(f"the run store {path} stayed locked by another process opening it (the lock "
                                    f"file {lock_file.name} was held for {timeout:g} s); runs are kept in memory "
                                    "only. Retry, or set EXPLORER_STORE to another file") from err
    except OSError:
        yield
        return
    try:
        yield
    finally:
        lock.release()


class RunStore:
    """Runs and their per-iteration records in an SQLite file (see the module docstring).

    Args:
        path: the file; default ``$EXPLORER_STORE`` or the per-user data directory
            (``explorer.store.paths.default_store_path``). Its folder is created.
        recover: move a file that is not a usable store aside and start a fresh one
            (else raise ``StoreError``).
        busy_timeout: seconds a write waits for another process's transaction.
        stale_after: a run of another host whose heartbeat is older than this is interrupted.

    Reading: ``runs()`` (a DataFrame), ``run(id)`` (``RunInfo``), ``history(id)`` (the
    tidy frame of ``HistoryTracker.to_frame()``), ``records(id, after=seq)``,
    ``result(id)`` (``StoredResult`` or None). Writing: ``StoreTracker`` (live, batched),
    or ``create_run`` / ``append_records`` / ``finish_run`` / ``save_run``; ``delete(id)``.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, recover: bool = True,
                 busy_timeout: float = 30.0, stale_after: float = STALE_AFTER_S) -> None:
        self.path = Path(path).expanduser() if path is not None else default_store_path()
        self.path = self.path.absolute()
        self.busy_timeout = float(busy_timeout)
        self.stale_after = float(stale_after)
        self._swept = -math.inf
        self._pid = os.getpid()
        self.notice: str | None = None  # set when a bad file was moved aside
        self.writable = True  # False: the file can be read but not written (read_only_reason says why)
        self.read_only_reason: str | None = None
        self.migrated_from: int | None = None
        self._local = threading.local()
        self._open(recover)

    # -- opening -------------------------------------------------------------------
    def _open(self, recover: bool) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise describe(err, self.path) from err
        with _opening_lock(self.path, self.busy_timeout):
            self._open_locked(recover)
        self.sweep()

    def _open_locked(self, recover: bool) -> None:
        try:
            state, detail = schema.inspect_file(self.path, timeout=self.busy_timeout)
        except sqlite3.Error as err:  # locked or unreadable, not damaged: never moved aside for it
            raise describe(err, self.path) from err
        if state == schema.FileState.DIRECTORY:
            raise StoreUnavailableError(f"the run store path {self.path} is a directory; runs are kept in memory "
                                        f"only. Set EXPLORER_STORE to a file, e.g. {self.path / 'runs.sqlite'}")
        if state in (schema.FileState.CORRUPT, schema.FileState.FOREIGN):
            if not recover:
                raise StoreError(f"{self.path} is not a run store: {detail}. Move it away, or set EXPLORER_STORE to "
                                 "another file")
            try:
                moved = _move_aside(self.path, state)
            except FileNotFoundError:  # another process moved it first
                moved = None
            except OSError as err:
                raise describe(err, self.path) from err
            self.notice = (f"The file at {self.path} was not a usable run store ({detail}); "
                           + (f"it was moved to {moved.name} next to it" if moved else "another process moved it aside")
                           + " and a new, empty store was started.")
            warnings.warn(self.notice, RuntimeWarning, stacklevel=3)
        try:
            conn = self._conn()
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            before, _ = schema.migrate(conn)
            if 0 < before < schema.SCHEMA_VERSION:
                self.migrated_from = before
        except sqlite3.DatabaseError as err:
            self.close()
            raise describe(err, self.path) from err
        self._probe_writable(conn)

    def _probe_writable(self, conn: sqlite3.Connection) -> None:
        """Find out now whether writes will work (a read-only file opens, and reads, without error)."""
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION}")  # dirties page 1; rolled back
            finally:
                conn.execute("ROLLBACK")
        except sqlite3.Error as err:
            self.writable = False
            self.read_only_reason = str(describe(err, self.path))

    def _conn(self) -> sqlite3.Connection:
        if os.getpid() != self._pid:  # a forked child must not use its parent's connections
            self._local, self._pid = threading.local(), os.getpid()
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(str(self.path), timeout=self.busy_timeout, isolation_level=None)
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute("PRAGMA foreign_keys = ON")
            except sqlite3.Error as err:
                raise describe(err, self.path) from err
            self._local.conn = conn
        return conn

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def __repr__(self) -> str:
        return f"RunStore({str(self.path)!r})"

    def __getstate__(self) -> dict[str, Any]:  # picklable (e.g. to a worker process): the path, not connections
        return {"path": self.path, "busy_timeout": self.busy_timeout, "stale_after": self.stale_after,
                "notice": self.notice, "migrated_from": self.migrated_from}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local, self._pid, self._swept = threading.local(), os.getpid(), -math.inf

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        if not self.writable:
            raise StoreUnavailableError(self.read_only_reason or f"the run store {self.path} is read-only")
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as err:
            raise describe(err, self.path) from err
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as err:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            if isinstance(err, (sqlite3.Error, OSError)):
                raise describe(err, self.path) from err
            raise

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._conn().execute(sql, args).fetchall()
        except sqlite3.Error as err:
            raise describe(err, self.path) from err

    # -- writing -------------------------------------------------------------------
    def create_run(self, *, solver: str, name: str | None = None, source: str = "python", problem: str | None = None,
                   n: int | None = None, k: int | None = None, which: str | None = None, tol: float | None = None,
                   max_iter: int | None = None, params: Mapping[str, Any] | None = None, device: str | None = None,
                   dtype: str | None = None, reference: Any = None, status: str = RUNNING, message: str = "",
                   started_at: float | None = None) -> int:
        """Insert a run (status "running" by default, owned by this process); return its id."""
        with self._write() as conn:
            return self._insert_run(conn, solver=solver, name=name, source=source, problem=problem, n=n, k=k,
                                    which=which, tol=tol, max_iter=max_iter, params=params, device=device, dtype=dtype,
                                    reference=reference, status=status, message=message, started_at=started_at)

    def _insert_run(self, conn: sqlite3.Connection, *, solver: str, name: str | None, source: str,
                    problem: str | None, n: int | None, k: int | None, which: str | None, tol: float | None,
                    max_iter: int | None, params: Mapping[str, Any] | None, device: str | None, dtype: str | None,
                    reference: Any, status: str, message: str, started_at: float | None) -> int:
        me = this_writer()
        now = time.time()
        cursor = conn.execute(
            "INSERT INTO runs (name, source, solver, problem, n, k, which, tol, max_iter, params, device, dtype, "
            "status, message, started_at, reference, writer_host, writer_pid, writer_start, writer_boot, heartbeat) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (name, source, solver, problem, _int(n), _int(k), which, _float(tol), _int(max_iter),
             codec.to_json(dict(params or {})), device, dtype, status, message,
             now if started_at is None else float(started_at), codec.vector_json(reference),
             me.host, me.pid, me.start, me.boot, now))
        return int(cursor.lastrowid)

    def append_records(self, run_id: int, records: Iterable[IterationRecord], *, first_seq: int | None = None) -> int:
        """Append records to a run (sequence numbers continue from the last one); return how many."""
        records = list(records)
        with self._write() as conn:
            if first_seq is None:
                first_seq = self._next_seq(conn, run_id)
            self._insert_chunk(conn, run_id, first_seq, records)
        return len(records)

    @staticmethod
    def _next_seq(conn: sqlite3.Connection, run_id: int) -> int:
        return int(conn.execute("SELECT COALESCE(MAX(first_seq + count), 1) FROM records WHERE run_id = ?",
                                (run_id,)).fetchone()[0])

    def _insert_chunk(self, conn: sqlite3.Connection, run_id: int, first_seq: int,
                      records: Sequence[IterationRecord]) -> None:
        """One ``records`` row for ``records`` (numbered from ``first_seq``) and the run's progress counters."""
        if not records:
            return
        row = codec.chunk_row(first_seq, list(records))
        conn.execute(f"INSERT INTO records (run_id, {', '.join(codec.CHUNK_COLUMNS)}) "
                     f"VALUES (?{', ?' * len(codec.CHUNK_COLUMNS)})", (run_id, *row))
        last = records[-1]
        conn.execute("UPDATE runs SET n_records = n_records + ?, n_iter = ?, n_converged = ?, n_matvec = ?, "
                     "elapsed_s = ? WHERE id = ?", (len(records), int(last.iteration), int(last.n_converged),
                                                    int(last.n_matvec), float(last.elapsed_s), run_id))

    def finish_run(self, run_id: int, *, status: str, message: str = "", result: Any = None,
                   n_iter: int | None = None, n_matvec: int | None = None, elapsed_s: float | None = None) -> None:
        """Close a run: its status and message, and the final values of ``result`` (an
        ``EigenResult``, ``StoredResult`` or ``SVDResult``; None keeps the progress counters)."""
        with self._write() as conn:
            self._finish(conn, run_id, status=status, message=message, result=result, n_iter=n_iter,
                         n_matvec=n_matvec, elapsed_s=elapsed_s)

    def _finish(self, conn: sqlite3.Connection, run_id: int, *, status: str, message: str, result: Any,
                n_iter: int | None, n_matvec: int | None, elapsed_s: float | None) -> None:
        values = residuals = converged = None
        if result is not None:
            n_iter = getattr(result, "n_iter", n_iter)
            n_matvec = getattr(result, "n_matvec", n_matvec)
            elapsed_s = getattr(result, "elapsed_s", elapsed_s)
            eig = getattr(result, "eigenvalues", None)
            if eig is None:
                eig = getattr(result, "S", None)  # an SVDResult: the singular values
            if eig is not None:
                values = codec.vector_json(eig)
                res = getattr(result, "residual_norms", None)
                residuals = codec.vector_json(res) if res is not None else None
                conv = getattr(result, "converged", None)
                if conv is not None:
                    converged = codec.to_json([bool(c) for c in codec._numpy(conv).reshape(-1).tolist()])
        n_conv = None if converged is None else sum(codec.from_json(converged))
        conn.execute(
            "UPDATE runs SET status = ?, message = ?, ended_at = ?, n_iter = COALESCE(?, n_iter), "
            "n_matvec = COALESCE(?, n_matvec), elapsed_s = COALESCE(?, elapsed_s), "
            "n_converged = COALESCE(?, n_converged), eigenvalues = COALESCE(?, eigenvalues), "
            "residual_norms = COALESCE(?, residual_norms), converged = COALESCE(?, converged) WHERE id = ?",
            (status, message, time.time(), _int(n_iter), _int(n_matvec), _float(elapsed_s), n_conv, values,
             residuals, converged, run_id))

    def save_run(self, *, solver: str, records: Sequence[IterationRecord] = (), result: Any = None,
                 status: str | None = None, message: str = "", **fields: Any) -> int:
        """Store a finished run at once (its records and result): one transaction; return its id.

        ``fields``: the keywords of :meth:`create_run`; ``status`` defaults to the result's.
        """
        if status is None:
            status = getattr(getattr(result, "status", None), "value", None) or FAILED
        with self._write() as conn:
            run_id = self._insert_run(conn, solver=solver, status=status, message=message,
                                      **{key: fields.get(key) for key in ("name", "problem", "n", "k", "which", "tol",
                                                                          "max_iter", "params", "device", "dtype",
                                                                          "reference", "started_at")},
                                      source=fields.get("source") or "python")
            self._insert_chunk(conn, run_id, 1, list(records))
            self._finish(conn, run_id, status=status, message=message, result=result,
                         n_iter=fields.get("n_iter"), n_matvec=fields.get("n_matvec"),
                         elapsed_s=fields.get("elapsed_s"))
        return run_id

    def _heartbeat(self, conn: sqlite3.Connection, run_id: int) -> None:
        """Refresh the heartbeat of an open run; a run another host's store had given up for lost
        (a heartbeat late by more than ``STALE_AFTER_S``, e.g. a suspended machine) runs again."""
        conn.execute("UPDATE runs SET heartbeat = ?, status = CASE WHEN status = ? THEN ? ELSE status END, "
                     "ended_at = CASE WHEN status = ? THEN NULL ELSE ended_at END WHERE id = ?",
                     (time.time(), INTERRUPTED, RUNNING, INTERRUPTED, run_id))

    def delete(self, run_id: int) -> None:
        """Delete a run and its records (RunNotFoundError if there is none)."""
        with self._write() as conn:
            conn.execute("DELETE FROM records WHERE run_id = ?", (int(run_id),))
            if conn.execute("DELETE FROM runs WHERE id = ?", (int(run_id),)).rowcount == 0:
                raise self._missing(run_id)

    def sweep(self) -> list[int]:
        """Mark the runs still "running" whose writer is gone as interrupted; return their ids.

        See ``explorer.store.writer``: on the writer's host its pid (and start time) must
        still exist; from another host its heartbeat must be younger than ``stale_after``.
        A run of this very process is never marked.
        """
        self._swept = time.monotonic()
        rows = self._query("SELECT id, writer_host, writer_pid, writer_start, writer_boot, heartbeat, started_at "
                           "FROM runs WHERE status = ?", (RUNNING,))
        now = time.time()
        dead = [row for row in rows
                if not writer_alive(row[1], row[2], row[3], row[4], row[5], now, stale_after=self.stale_after)]
        if not dead or not self.writable:
            return []
        with self._write() as conn:
            for run_id, host, pid, _, _, heartbeat, started in dead:
                who = f"pid {pid} on {host}" if pid is not None else "an older version of the store"
                conn.execute("UPDATE runs SET status = ?, message = ?, ended_at = ? WHERE id = ? AND status = ?",
                             (INTERRUPTED, f"Interrupted: the process that ran it ({who}) ended before the solve "
                              "finished; every record it committed is kept.", heartbeat or started, run_id, RUNNING))
        return [row[0] for row in dead]

    def _maybe_sweep(self) -> None:
        if time.monotonic() - self._swept >= SWEEP_EVERY_S:
            self.sweep()

    # -- reading -------------------------------------------------------------------
    def _missing(self, run_id: Any) -> RunNotFoundError:
        return RunNotFoundError(f"no run {run_id!r} in the store {self.path}; `python -m explorer runs` lists them")

    def _infos(self, where: str = "", args: Sequence[Any] = ()) -> list[RunInfo]:
        rows = self._query(f"SELECT {', '.join(_RUN_FIELDS)} FROM runs {where} ORDER BY id", args)
        return [_info(dict(zip(_RUN_FIELDS, row))) for row in rows]

    def run(self, run_id: int) -> RunInfo:
        """The run ``run_id`` (RunNotFoundError if there is none)."""
        self._maybe_sweep()
        infos = self._infos("WHERE id = ?", (int(run_id),))
        if not infos:
            raise self._missing(run_id)
        return infos[0]

    def run_infos(self, *, status: str | None = None) -> list[RunInfo]:
        """Every run (oldest first), or those with ``status``."""
        self._maybe_sweep()
        return self._infos("WHERE status = ?", (status,)) if status else self._infos()

    def runs(self, *, status: str | None = None) -> pd.DataFrame:
        """One row per run, oldest first (columns ``RUN_COLUMNS``; times as UTC timestamps)."""
        infos = self.run_infos(status=status)
        frame = pd.DataFrame([{column: getattr(info, column) for column in RUN_COLUMNS} for info in infos],
                             columns=RUN_COLUMNS)
        for column in ("started_at", "ended_at"):
            frame[column] = pd.to_datetime(frame[column], unit="s", utc=True)
        return frame

    def records(self, run_id: int, *, after: int = 0) -> list[IterationRecord]:
        """The records of a run with sequence number above ``after`` (all by default), in order."""
        info = self.run(run_id)
        return self._records(info, after)

    def _records(self, info: RunInfo, after: int = 0) -> list[IterationRecord]:
        rows = self._query(f"SELECT {', '.join(codec.CHUNK_COLUMNS)} FROM records WHERE run_id = ? "
                           "AND first_seq + count - 1 > ? ORDER BY first_seq", (info.id, int(after)))
        records: list[IterationRecord] = []
        for row in rows:
            chunk = codec.chunk_records(info.solver, row)
            skip = max(0, int(after) - int(row[0]) + 1)  # records of the first chunk at or below ``after``
            records.extend(chunk[skip:])
        return records

    def history(self, run_id: int) -> pd.DataFrame:
        """The tidy table of ``HistoryTracker.to_frame()`` for a stored run (one row per iteration and pair)."""
        return history_frame(self.records(run_id))

    def result(self, run_id: int) -> StoredResult | None:
        """The final values of a run, or None while it runs or when it ended without any."""
        return StoredResult.from_info(self.run(run_id))


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _info(row: dict[str, Any]) -> RunInfo:
    reference = codec.from_json(row.pop("reference"))
    return RunInfo(
        id=int(row["id"]), name=row["name"], source=row["source"], solver=row["solver"], problem=row["problem"],
        n=row["n"], k=row["k"], which=row["which"], tol=row["tol"], max_iter=row["max_iter"],
        params=codec.from_json(row["params"], {}), device=row["device"], dtype=row["dtype"], status=row["status"],
        message=row["message"] or "", started_at=float(row["started_at"]), ended_at=row["ended_at"],
        n_records=int(row["n_records"] or 0), n_iter=row["n_iter"], n_matvec=row["n_matvec"],
        n_converged=row["n_converged"], elapsed_s=row["elapsed_s"],
        reference=None if reference is None else np.asarray(reference, dtype=float),
        eigenvalues=codec.from_json(row["eigenvalues"]), residual_norms=codec.from_json(row["residual_norms"]),
        converged=codec.from_json(row["converged"]),
    )

