"""The store's errors: each message says what went wrong with which file and what to do."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

__all__ = ["StoreError", "StoreVersionError", "StoreUnavailableError", "describe"]


class StoreError(RuntimeError):
    """Something about the run store failed; the message is written for people."""


class StoreVersionError(StoreError):
    """The file was written by a newer version of the store."""


class StoreUnavailableError(StoreError):
    """The store cannot be written (read-only file or folder, full disk, path unusable)."""


def describe(err: BaseException, path: Path | str) -> StoreError:
    """A StoreError for an sqlite3 / OS error on the store at ``path``."""
    text = str(err)
    lower = text.lower()
    if isinstance(err, StoreError):
        return err
    if "readonly" in lower or "read-only" in lower or isinstance(err, PermissionError):
        return StoreUnavailableError(f"the run store {path} is read-only ({text}); runs are kept in memory only. "
                                     "Make the file and its folder writable, or set EXPLORER_STORE to a writable path")
    if "full" in lower or "no space" in lower or "too large" in lower:
        return StoreUnavailableError(f"the disk holding the run store {path} is full ({text}); runs are kept in "
                                     "memory only. Free some space, or set EXPLORER_STORE to another disk")
    if "disk i/o error" in lower:
        return StoreUnavailableError(f"the run store {path} could not be written ({text}: a full disk, a file size "
                                     "limit or quota, or a failing drive); runs are kept in memory only. Free some "
                                     "space, or set EXPLORER_STORE to another disk")
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return StoreUnavailableError(f"the disk holding the run store {path} is full ({text}); runs are kept in "
                                     "memory only. Free some space, or set EXPLORER_STORE to another disk")
    if "unable to open" in lower or isinstance(err, OSError):
        return StoreUnavailableError(f"the run store {path} cannot be opened ({text}); runs are kept in memory "
                                     "only. Set EXPLORER_STORE to a file in a writable folder")
    if "locked" in lower or "busy" in lower:
        return StoreUnavailableError(f"the run store {path} stayed locked by another process ({text}); runs are "
                                     "kept in memory only. Retry, or set EXPLORER_STORE to another file")
    if isinstance(err, sqlite3.DatabaseError) and ("malformed" in lower or "not a database" in lower):
        return StoreError(f"the run store {path} is damaged ({text}); it is moved aside the next time it is opened")
    if isinstance(err, sqlite3.Error):
        return StoreUnavailableError(f"the run store {path} failed ({type(err).__name__}: {text}); runs are kept "
                                     "in memory only")
    return StoreUnavailableError(f"the run store {path} failed ({type(err).__name__}: {text})")
