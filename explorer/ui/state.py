"""Session-state keys, their defaults, and the session's run log.

``init_session()`` runs in the entrypoint (app.py) on every page. It owns the
values of the settings widgets of every page: Streamlit deletes a widget's state
when its page is not rendered, so the entrypoint re-assigns them each run and they
survive a visit to another page (../shared/LIVE.md 5). A key is such a setting when
it is in ``PERSIST_KEYS``, has a ``PERSIST_PREFIXES`` prefix, or was given its
default through :func:`ensure`, :func:`ensure_choice`, :func:`keep` or
``explorer.ui.widgets.param_widget`` (so a page's form needs nothing more). Widgets
are then created with ``key=`` only, never ``value=``. Never give a button, upload
or download key a default: those widgets refuse values set through session state.
"""

from __future__ import annotations

from typing import Any, Sequence

import streamlit as st

from explorer.runs.record import RunRecord

__all__ = [
    "RUNS", "ACTIVE_SOURCE", "PERSIST_KEYS", "PERSIST_PREFIXES", "init_session", "persist", "keep", "ensure",
    "ensure_choice",
    "runs", "add_run", "next_run_id", "get_run",
]

RUNS = "runs"  # list[RunRecord], oldest first
ACTIVE_SOURCE = "problem_source"  # ProblemSource of the problem in use
_RUN_COUNTER = "_run_counter"
_KEPT = "_kept_keys"  # set of the keys registered by keep() (ensure, ensure_choice, param_widget)

# Widget keys whose values belong to the session, not to one page.
PERSIST_KEYS = ("problem_mode", "sample", "gen_name", "symmetrize", "solver", "k", "which", "tol", "max_iter",
                "seed", "device", "dtype", "live_x", "history_pick", "history_metric", "history_x")
# Generated keys: "g_<generator>_<param>" (generator form), "p_<solver>_<param>" (solver form).
PERSIST_PREFIXES = ("g_", "p_")


def keep(*keys: str) -> None:
    """Make ``keys`` session settings: their widgets' values survive visits to other pages."""
    kept = st.session_state.get(_KEPT)
    if kept is None:
        kept = st.session_state[_KEPT] = set()
    kept.update(keys)


def ensure(key: str, default: Any) -> Any:
    """Set ``st.session_state[key]`` to ``default`` unless it is set; return the value.

    The key becomes a session setting (:func:`keep`): its widget keeps its value across pages.
    """
    keep(key)
    if key not in st.session_state:
        st.session_state[key] = default
    return st.session_state[key]


def ensure_choice(key: str, options: Sequence[Any], default: Any = None) -> Any:
    """``ensure`` for a choice widget: a value not among ``options`` (gone, renamed) goes back to the default.

    ``default`` (when among ``options``) else ``options[0]`` is both the first value and
    the fallback. Returns the value.
    """
    keep(key)
    fallback = default if default is not None and default in options else options[0]
    if st.session_state.get(key) not in options:
        st.session_state[key] = fallback
    return st.session_state[key]


def persist() -> None:
    """Re-assign every session-owned widget value so it outlives its page."""
    kept = st.session_state.get(_KEPT) or set()
    for key in list(st.session_state.keys()):
        if key in PERSIST_KEYS or key in kept or key.startswith(PERSIST_PREFIXES):
            try:
                st.session_state[key] = st.session_state[key]
            except Exception:  # noqa: BLE001 - a key some widget type refuses: leave it alone
                pass


def init_session() -> None:
    """Called once per script run by the entrypoint, before the page runs."""
    ensure(RUNS, [])
    ensure(_RUN_COUNTER, 0)
    persist()


def runs() -> list[RunRecord]:
    """The session's runs, oldest first (failed and stopped runs included). The History page lists the
    run store's as well (``explorer.ui.runstore.all_runs``)."""
    return ensure(RUNS, [])


def next_run_id() -> int:
    """An id for a run kept in memory only (the store gives stored runs theirs): above every id this
    session has seen, in the session's runs and in the store, so the History page never shows two runs
    under one number."""
    from explorer.ui.runstore import app_store

    seen = max([run.run_id for run in runs()] + [app_store().max_seen_id, 0])
    st.session_state[_RUN_COUNTER] = max(int(st.session_state.get(_RUN_COUNTER, 0)), seen) + 1
    return st.session_state[_RUN_COUNTER]


def add_run(run: RunRecord) -> RunRecord:
    """Log a finished run in the session, and in the run store unless it is there already (``run.stored``);
    a stored run's ``run_id`` is its id in the store."""
    from explorer.ui.runstore import save_run

    save_run(run)
    runs().append(run)
    return run


def get_run(run_id: int) -> RunRecord | None:
    for run in runs():
        if run.run_id == run_id:
            return run
    return None
