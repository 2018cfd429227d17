"""The Run button of a page: start the configured solve on the active problem and log it when it ends.

``run_button(key, prefix)`` draws the button (``key="run"`` on Explore, else
``f"{key}_run"``) and ``start_solve(key, prefix)`` is its callback. The solve streams
its records into the run store while it runs (``explorer.ui.runstore.tracker``), so the
History page of any session, or ``python -m explorer runs``, can follow it; a finished,
stopped or failed solve becomes an ``explorer.runs.RunRecord`` in the session's run
log (``explorer.ui.state.runs()``) under its store id, and ``last_run(key)`` returns the
latest one of that page. Without a usable store the runs stay in the session only.
"""

from __future__ import annotations

import time
from typing import Any

import streamlit as st

from explorer.runs.jobs import JobView, SolveJob, friendly_error
from explorer.plots.figures import wanted_reference
from explorer.runs.config import make_target
from explorer.runs.record import RunRecord, run_from_view
from explorer.runs.snippet import solve_snippet
from explorer.ui import live, runstore
from explorer.ui.problem import active_problem, cached_reference
from explorer.ui.solver import solver_config
from explorer.ui.state import add_run, get_run, next_run_id

__all__ = ["start_solve", "run_button", "last_run", "error_key"]


def error_key(key: str) -> str:
    return f"{key}_error"


def _last_key(key: str) -> str:
    return f"{key}_last_run"


def last_run(key: str) -> RunRecord | None:
    """The latest logged run started from page ``key`` (None before the first one ends)."""
    run_id = st.session_state.get(_last_key(key))
    return None if run_id is None else get_run(run_id)


def start_solve(key: str = "explore", prefix: str = "") -> None:
    """Callback: start a solve of the active problem with the page's solver settings."""
    st.session_state[error_key(key)] = None
    try:
        source, problem = active_problem()
        config = solver_config(prefix)
        spectrum = cached_reference(source, problem)
        spectrum_np = None if spectrum is None else spectrum.numpy()
        reference = None
        if spectrum_np is not None and 1 <= config.k <= len(spectrum_np):
            reference = wanted_reference(spectrum_np, config.k, config.which)
        snippet = solve_snippet(source, config.solver, config.params(), device=config.device, dtype=config.dtype,
                                generalized=problem.B is not None)
        started = time.time()
        params = config.params()
        store_tracker = runstore.tracker(problem=source.label, params=params, source=key, reference=reference)

        def on_finish(job: SolveJob, view: JobView) -> None:
            stored_id = runstore.finish_job_run(store_tracker, view, solver=config.solver, n=problem.n, params=params)
            run = run_from_view(stored_id if stored_id is not None else next_run_id(), view, solver=config.solver,
                                problem=source.label, n=problem.n, params=params, reference=reference, page=key,
                                started_at=started,
                                extra={"source": source, "snippet": snippet, "error_detail": job.error_detail,
                                       "spectrum": spectrum_np, "stored": stored_id is not None})
            add_run(run)
            st.session_state[_last_key(key)] = run.run_id

        live.start_job(key, make_target(problem, config), label=f"{config.solver} on {source.label}",
                       params=params, on_finish=on_finish, extra_tracker=store_tracker,
                       meta={"reference": reference, "tol": config.tol, "spectrum": spectrum_np,
                             "dtype": config.dtype, "source": source})
    except Exception as error:  # noqa: BLE001 - shown next to the Run button; nothing else changes
        st.session_state[error_key(key)] = friendly_error(error)


def run_button(key: str = "explore", prefix: str = "", container: Any = None) -> bool:
    """The primary Run button (disabled while this page's solve runs) and any start error below it."""
    box = container if container is not None else st.sidebar
    running = live.is_running(key)
    clicked = box.button("Run", key="run" if key == "explore" else f"{key}_run", type="primary",
                         icon=":material/play_arrow:", on_click=start_solve, args=(key, prefix), disabled=running,
                         width="stretch", help="Start the solve in the background; the charts update live.")
    error = st.session_state.get(error_key(key))
    if error:
        box.error(error, icon=":material/error:")
    return clicked
