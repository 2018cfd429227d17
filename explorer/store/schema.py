"""The store's SQLite layout, its version, and the migrations from the first version on.

A store file is an SQLite database whose header says it is ours: ``PRAGMA application_id``
is :data:`APPLICATION_ID` and ``PRAGMA user_version`` is the schema version. Opening a
store brings an older file up to :data:`SCHEMA_VERSION` by running, in one transaction,
every step of :data:`MIGRATIONS` from its version on (step ``v`` turns version ``v`` into
``v + 1``; step 0 creates version 1 in an empty file). A change of layout is a new step
appended here, never an edit of an old one, so every file ever written can be opened.

Versions:

1. ``runs`` (one row per solve: name, origin, solver, problem, parameters, device, dtype,
   status and message, start/end times, progress counters, final eigenvalues, residuals
   and converged flags and the wanted exact eigenvalues when known, as JSON)
   and ``records`` (the fields of ``IterationRecord``, in chunks: one row per commit of
   ``count`` consecutive records from sequence number ``first_seq``, each field a packed
   array; ``explorer.store.codec``), keyed by (run, first sequence number).
2. The writer of each run (host, pid, process start, boot id) and its heartbeat, for
   telling interrupted runs from live ones (``explorer.store.writer``).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Callable

__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "MIGRATIONS", "SQLITE_MAGIC", "FileState", "inspect_file", "migrate",
           "TABLES"]

APPLICATION_ID = 0x45584C52  # "EXLR": marks the file as an Eigensolver Explorer run store
SQLITE_MAGIC = b"SQLite format 3\x00"
TABLES = ("runs", "records")

_V1 = (
    """CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT,
        source TEXT NOT NULL DEFAULT 'python',
        solver TEXT NOT NULL,
        problem TEXT,
        n INTEGER,
        k INTEGER,
        which TEXT,
        tol REAL,
        max_iter INTEGER,
        params TEXT NOT NULL DEFAULT '{}',
        device TEXT,
        dtype TEXT,
        status TEXT NOT NULL,
        message TEXT NOT NULL DEFAULT '',
        started_at REAL NOT NULL,
        ended_at REAL,
        n_records INTEGER NOT NULL DEFAULT 0,
        n_iter INTEGER,
        n_matvec INTEGER,
        n_converged INTEGER,
        elapsed_s REAL,
        eigenvalues TEXT,
        residual_norms TEXT,
        converged TEXT,
        reference TEXT
    )""",
    """CREATE TABLE records (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        first_seq INTEGER NOT NULL,
        count INTEGER NOT NULL,
        iteration BLOB NOT NULL,
        n_converged BLOB NOT NULL,
        n_matvec BLOB NOT NULL,
        elapsed_s BLOB NOT NULL,
        orthogonality_loss BLOB NOT NULL,
        loss_known BLOB NOT NULL,
        residuals_estimated BLOB NOT NULL,
        ritz_len BLOB NOT NULL,
        ritz_values BLOB NOT NULL,
        residual_len BLOB NOT NULL,
        residual_norms BLOB NOT NULL,
        all_len BLOB NOT NULL,
        all_ritz_values BLOB NOT NULL,
        ghost_len BLOB NOT NULL,
        ghost_mask BLOB NOT NULL,
        extras TEXT,
        PRIMARY KEY (run_id, first_seq)
    ) WITHOUT ROWID""",
    "CREATE INDEX runs_by_status ON runs(status)",
)

# 2: who writes a run (host, pid, process start time, boot id) and its heartbeat, so that a
# store can tell a run whose process died (SIGKILL, power loss) from one still going
# (explorer.store.writer). Runs of a version-1 file have no writer: one still "running" is
# marked interrupted by the first sweep.
_V2 = (
    "ALTER TABLE runs ADD COLUMN writer_host TEXT",
    "ALTER TABLE runs ADD COLUMN writer_pid INTEGER",
    "ALTER TABLE runs ADD COLUMN writer_start INTEGER",
    "ALTER TABLE runs ADD COLUMN writer_boot TEXT",
    "ALTER TABLE runs ADD COLUMN heartbeat REAL",
)


def _statements(*sql: str) -> Callable[[sqlite3.Connection], None]:
    def step(conn: sqlite3.Connection) -> None:
        for statement in sql:
            conn.execute(statement)

    return step


#: MIGRATIONS[v] turns schema version v into v + 1 (0: an empty file).
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    _statements(*_V1),
    _statements(*_V2),
)
SCHEMA_VERSION = len(MIGRATIONS)


class FileState:
    """What :func:`inspect_file` found at a store path."""

    MISSING = "missing"  # no file, or an empty one: a new store
    STORE = "store"  # one of ours (any version)
    CORRUPT = "corrupt"  # not an SQLite database, or a damaged one
    FOREIGN = "foreign"  # an SQLite database of some other program
    DIRECTORY = "directory"  # a folder: never moved, the path must name a file


def _damaged(err: sqlite3.DatabaseError) -> bool:
    """Whether an error of reading the file says the file itself is bad (SQLITE_CORRUPT,
    SQLITE_NOTADB and their extended codes), not that it is busy or cannot be opened now."""
    name = getattr(err, "sqlite_errorname", None)
    return not name or name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))


def inspect_file(path: Path, *, quick_check_bytes: int = 64 << 20, timeout: float = 30.0) -> tuple[str, str]:
    """(state, detail) of the file at ``path`` (a :class:`FileState` value and a sentence).

    Reads the 16-byte header, then the application id and the table names; files up to
    ``quick_check_bytes`` also get ``PRAGMA quick_check`` (a full pass over the pages:
    milliseconds for a small store, so bigger ones skip it and a damaged page surfaces
    later, as an error of the query that reads it). ``timeout``: seconds to wait for another
    connection's lock. Only an error that says the file is damaged makes it CORRUPT; any
    other SQLite error (busy, locked, cannot open) is raised.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return FileState.MISSING, "no file yet"
    if path.is_dir():
        return FileState.DIRECTORY, "it is a directory"
    if size == 0:
        return FileState.MISSING, "an empty file"
    with open(path, "rb") as handle:
        head = handle.read(16)
    if head != SQLITE_MAGIC:
        return FileState.CORRUPT, "it is not an SQLite database (its first bytes are not the SQLite header)"
    try:
        conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=timeout)
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if size <= quick_check_bytes:
                verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
                if verdict != "ok":
                    return FileState.CORRUPT, f"SQLite's integrity check failed ({verdict})"
        finally:
            conn.close()
    except sqlite3.DatabaseError as err:
        if not _damaged(err):
            raise  # busy, locked, cannot open: the file may be fine, so it is not moved aside
        return FileState.CORRUPT, f"SQLite cannot read it ({err})"
    if app_id == APPLICATION_ID:
        return FileState.STORE, "a run store"
    tables.discard("sqlite_sequence")
    if app_id == 0 and not tables:
        return FileState.MISSING, "an SQLite database without tables"
    shown = ", ".join(sorted(tables)[:5]) or "none"
    return FileState.FOREIGN, (f"it is an SQLite database of another program (application id {app_id:#x}, "
                               f"tables: {shown})")


def migrate(conn: sqlite3.Connection) -> tuple[int, int]:
    """Bring the database of ``conn`` to :data:`SCHEMA_VERSION`; return (version before, after).

    Runs in one ``BEGIN IMMEDIATE`` transaction (so concurrent openers wait and then see
    the migrated file; a failure leaves the file as it was). Raises ``StoreVersionError``
    for a file written by a newer version.
    """
    from explorer.store.errors import StoreVersionError

    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreVersionError(
                f"the run store was written by a newer Eigensolver Explorer (schema version {version}; this one "
                f"reads up to {SCHEMA_VERSION}); upgrade explorer, or point EXPLORER_STORE at another file")
        for step in range(version, SCHEMA_VERSION):
            MIGRATIONS[step](conn)
        if version != SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return version, SCHEMA_VERSION
