"""Where the run store lives: ``$EXPLORER_STORE``, else a file in the per-user data directory."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ENV_VAR", "APP_NAME", "FILE_NAME", "default_store_path"]

ENV_VAR = "EXPLORER_STORE"
APP_NAME = "eigensolver-explorer"
FILE_NAME = "runs.sqlite"


def default_store_path() -> Path:
    """``$EXPLORER_STORE`` when set (a file path; ``~`` is expanded), else
    ``platformdirs.user_data_path("eigensolver-explorer") / "runs.sqlite"``: on Linux
    ``~/.local/share/eigensolver-explorer/runs.sqlite`` (or under ``$XDG_DATA_HOME``), on
    macOS ``~/Library/Application Support/...``, on Windows ``%LOCALAPPDATA%\\...``.

    The folder is not created here (``RunStore`` creates it when it opens the file).
    """
    value = os.environ.get(ENV_VAR, "").strip()
    if value:
        return Path(value).expanduser()
    try:
        import platformdirs
    except ImportError:  # a requirement (requirements.txt); say how to go on without it
        from explorer.store.errors import StoreUnavailableError

        raise StoreUnavailableError("the per-user location of the run store needs the platformdirs package "
                                    "(pip install platformdirs); or set EXPLORER_STORE to a file path") from None
    return platformdirs.user_data_path(APP_NAME, appauthor=False) / FILE_NAME
