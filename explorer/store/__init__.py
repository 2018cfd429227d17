"""The run store: every solve and its per-iteration records, kept in SQLite and readable from any process.

    >>> from explorer import solve
    >>> from explorer.problems import laplacian_2d
    >>> from explorer.store import RunStore, StoreTracker
    >>> store = RunStore("runs.sqlite")                      # or RunStore(): $EXPLORER_STORE / per-user file
    >>> result = solve("lanczos", laplacian_2d(100).operator, 10, tracker=StoreTracker(store, name="demo"))
    >>> store.runs()                                          # one row per run (pandas)
    >>> store.history(store.runs().id.iloc[-1])               # the tidy frame of HistoryTracker.to_frame()

* ``store``: ``RunStore`` (open, migrate, read, write, delete), ``RunInfo``, ``StoredResult``.
* ``tracker``: ``StoreTracker`` (batched, live writes from any solver of the registry).
* ``adapters``: ``TorchLobpcgTracker`` (``torch.lobpcg(..., tracker=...)``) and
  ``ScipyLobpcgTracker`` (``with ...: scipy.sparse.linalg.lobpcg(...)``) for the user's own calls.
* ``schema``: the SQLite layout, its version and migrations.
* ``writer``: writer identity and liveness (how interrupted runs are found).
* ``paths``: ``default_store_path()`` (``$EXPLORER_STORE`` or the per-user data directory).

Nothing here imports streamlit. The store sits above ``explorer.solvers`` (it reads
records and results) and below ``problems``/``runs``/``ui``, which use it.
"""

from explorer.store.adapters import ScipyLobpcgTracker, TorchLobpcgTracker
from explorer.store.errors import StoreError, StoreUnavailableError, StoreVersionError
from explorer.store.paths import ENV_VAR, default_store_path
from explorer.store.store import RUN_COLUMNS, RunInfo, RunNotFoundError, RunStore, StoredResult
from explorer.store.tracker import StoreTracker

__all__ = [
    "ENV_VAR",
    "RUN_COLUMNS",
    "RunInfo",
    "RunNotFoundError",
    "RunStore",
    "ScipyLobpcgTracker",
    "StoreError",
    "StoreTracker",
    "StoreUnavailableError",
    "StoreVersionError",
    "StoredResult",
    "TorchLobpcgTracker",
    "default_store_path",
]
