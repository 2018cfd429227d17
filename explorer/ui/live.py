"""Run a solve in the background and watch it live: the reusable run / stop / fragment machinery.

Pattern (b) of ../shared/LIVE.md: the solver runs in an ``explorer.runs.jobs.SolveJob``
thread and never touches Streamlit; one top-level ``@st.fragment(run_every=...)``
redraws the progress line, the Stop button and the live chart while it runs, and
sends a heartbeat (``job.touch()``); when the job ends the fragment records it and
reruns the whole app once (which also turns the timer off). Closing the browser tab
detaches the session's jobs (session-scoped ``st.cache_resource`` ``on_release``), and a
detached job stops itself about 10 s later unless the session reconnects.

Every page uses the same four calls, each under its own ``key`` (one job per key per
session; several sessions never share jobs)::

    from explorer.ui import live

    live.collect_finished("model", on_finish=record)     # top of the page: log finished jobs

    def on_run():                                         # Run button callback
        live.start_job("model", target, label="lanczos on my Hessian",
                       params={"k": 4, "tol": 1e-8, ...},
                       meta={"reference": ref_k, "tol": 1e-8, "dtype": "float64"},
                       on_finish=record)
    st.button("Run", key="model_run", on_click=on_run, disabled=live.is_running("model"))

    live.live_panel("model")                              # progress, Stop, live chart

``target(tracker) -> result`` must call the solver with ``tracker=tracker`` (and do any
heavy preparation such as moving the operator to a device itself: it runs in the
worker thread). ``on_finish(job, view)`` runs exactly once per job, in the script
thread, so it may write ``st.session_state`` (e.g. append an ``explorer.runs.RunRecord``
with ``state.add_run``). ``meta`` holds what the chart needs: ``reference`` (the k wanted
exact eigenvalues in ``which`` order, see ``explorer.plots.wanted_reference``), ``tol``,
``spectrum`` (all exact eigenvalues, for faint neighbour lines) and ``dtype``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Mapping

import streamlit as st

from explorer.runs.jobs import JobState, JobView, SolveJob, max_concurrent_jobs, running_jobs
from explorer.plots.figures import live_figure
from explorer.tracking import Tracker

__all__ = [
    "REFRESH_S",
    "session_jobs",
    "current_job",
    "is_running",
    "job_meta",
    "start_job",
    "stop_job",
    "collect_finished",
    "live_panel",
    "progress_text",
    "pause_key",
    "server_caption",
    "extras_text",
]

REFRESH_S = 0.5  # fragment redraw period while a job runs (LIVE.md: 0.25-0.5 s)

_META = "_live_meta"  # session_state: {key: {"job_id", "job", "meta", "on_finish", "started_at"}}
_DONE = "_live_collected"  # session_state: set of collected job ids
_FROZEN = "_live_frozen"  # session_state: {key: (job id, data)} drawn while the live view is paused


def _detach_all(holder: list[SolveJob]) -> None:
    for job in list(holder):
        job.detach()


@st.cache_resource(scope="session", on_release=_detach_all, show_spinner=False)
def session_jobs() -> list[SolveJob]:
    """This browser session's live jobs; released (so detached) when the tab closes.

    Only the release hook uses it: the job of each key lives in ``st.session_state``.
    """
    return []


def current_job(key: str) -> SolveJob | None:
    """The latest job started under ``key`` in this session (running or finished), or None."""
    entry = st.session_state.get(_META, {}).get(key)
    return entry.get("job") if entry else None


def is_running(key: str) -> bool:
    job = current_job(key)
    return bool(job is not None and job.alive)


def job_meta(key: str) -> dict[str, Any]:
    """The ``meta`` dict given to ``start_job`` for the current job under ``key`` ({} if none)."""
    entry = st.session_state.get(_META, {}).get(key)
    return dict(entry["meta"]) if entry else {}


def start_job(key: str, target: Callable[[Tracker], Any], *, label: str = "solve",
              params: Mapping[str, Any] | None = None, meta: Mapping[str, Any] | None = None,
              on_finish: Callable[[SolveJob, JobView], None] | None = None,
              extra_tracker: Tracker | None = None) -> SolveJob:
    """Start ``target(tracker)`` in a background SolveJob under ``key``; return the job.

    Raises ValueError when a job under ``key`` is still running (stop it first). The
    previous finished job under ``key`` is collected (``on_finish``) before it is
    replaced. Call from a button callback (``on_click``) so that one click starts one job.
    """
    previous = current_job(key)
    if previous is not None and previous.alive:
        raise ValueError("a solve is already running here; press Stop first or wait for it to end")
    if previous is not None:
        collect_finished(key)
    st.session_state.pop(pause_key(key), None)  # every solve starts with a live chart
    job = SolveJob(target, label=label, params=dict(params or {}), extra_tracker=extra_tracker)
    holder = session_jobs()
    holder[:] = [j for j in holder if j.alive] + [job]
    st.session_state.setdefault(_META, {})[key] = {"job_id": job.id, "job": job, "meta": dict(meta or {}),
                                                   "on_finish": on_finish, "started_at": time.time()}
    job.start()
    return job


def pause_key(key: str) -> str:
    """Session-state key of the "Pause live view" toggle of the panel under ``key``."""
    return f"{key}_pause"


def stop_job(key: str, reason: str = "stopped by the user") -> None:
    """Ask the job under ``key`` to stop (it ends within one iteration and keeps its partial result)."""
    job = current_job(key)
    if job is not None and job.alive:
        job.request_stop(reason)


def collect_finished(key: str, on_finish: Callable[[SolveJob, JobView], None] | None = None) -> JobView | None:
    """Run ``on_finish(job, view)`` once for a finished job under ``key``; return its view if it ran now.

    ``on_finish`` defaults to the one given to ``start_job``. Safe to call on every
    script run (top of the page) and from the live fragment.
    """
    job = current_job(key)
    if job is None or job.alive:
        return None
    done: set[int] = st.session_state.setdefault(_DONE, set())
    if job.id in done:
        return None
    done.add(job.id)
    entry = st.session_state.get(_META, {}).get(key) or {}
    callback = on_finish or entry.get("on_finish")
    view = job.view()
    if callback is not None:
        callback(job, view)
    return view


def progress_text(view: JobView, max_iter: int | None = None) -> tuple[float, str]:
    """(fraction in [0, 1], one-line text) for a progress bar: iteration, converged, matvecs, time."""
    records = view.records
    last = records[-1] if records else None
    if max_iter is None and view.start is not None:
        max_iter = view.start.max_iter
    it = last.iteration if last else 0
    k = view.start.k if view.start is not None else (len(last.ritz_values) if last else 0)
    conv = last.n_converged if last else 0
    matvecs = last.n_matvec if last else 0
    fraction = min(1.0, it / max_iter) if max_iter else 0.0
    if view.state == "queued":
        return 0.0, f"Waiting for a free solver slot ({running_jobs()} solves on this server) ..."
    if view.state == "done" and view.result is not None and getattr(view.result, "status", None) is not None \
            and view.result.status.value == "converged":
        fraction = 1.0
    text = (f"Iteration {it:,}" + (f" / {max_iter:,}" if max_iter else "") + f" \u00b7 converged {conv}/{k}"
            f" \u00b7 {matvecs:,} matvecs \u00b7 {view.elapsed_s:.1f} s")
    return fraction, text


Render = Callable[[Any, bool], None]  # render(data, alive): draws the chart area of the panel


def live_panel(key: str, *, reference: Any = None, tol: float | None = None, spectrum: Any = None,
               dtype: str | None = None, x: str = "iteration", refresh: float = REFRESH_S, height: int = 600,
               show_stop: bool = True, stop_key: str | None = None, stop_help: str | None = None,
               on_finish: Callable[[SolveJob, JobView], None] | None = None,
               render: Render | None = None, snapshot: Callable[[JobView], Any] | None = None,
               progress: Callable[[Any], tuple[float, str]] | None = None, caption: bool = True,
               empty_message: str = "Press **Run** to start a solve; its convergence appears here live.") -> Any:
    """Progress line, Stop button and live chart of the job under ``key``.

    Call it once per page run, at the top level (not inside another fragment). While
    the job runs it is a fragment that reruns every ``refresh`` seconds (heartbeat,
    progress, chart); when the job ends it is collected (``on_finish``) and the whole
    app reruns once, then the panel shows the final (zoomable) chart.

    By default the chart is the single solve's ``explorer.plots.live_figure``;
    ``reference``, ``tol``, ``spectrum``, ``dtype`` default to the ``meta`` given to
    ``start_job``. A page that draws something else passes hooks, each called in every
    fragment run: ``snapshot(view) -> data`` (what to draw, read after the job's state,
    default the ``JobView`` itself), ``progress(data) -> (fraction, text)`` (default
    :func:`progress_text`) and ``render(data, alive)`` (draws the chart area).
    ``caption``: the "Job #id: label, settings" line. While the job runs, a "Pause
    live view" toggle holds the chart (``render`` gets the data of the moment it was
    switched on) so that the user can zoom; heartbeat, progress and Stop go on.
    Widget keys: the Stop button is ``stop_key`` (default ``f"{key}_stop"``), the
    toggle :func:`pause_key`, the default chart ``f"{key}_live_chart"``.
    Returns the latest ``data`` (None without a job).
    """
    job = current_job(key)
    if job is None:
        st.info(empty_message)
        return None
    if render is None:
        meta = job_meta(key)
        opts = dict(reference=meta.get("reference") if reference is None else reference,
                    tol=meta.get("tol") if tol is None else tol,
                    spectrum=meta.get("spectrum") if spectrum is None else spectrum,
                    dtype=meta.get("dtype", "float64") if dtype is None else dtype)
        render = partial(_draw_live_figure, key, opts, x, height)
    panel = _Panel(render=render, snapshot=snapshot, progress=progress or progress_text, caption=caption,
                   show_stop=show_stop, stop_key=stop_key or f"{key}_stop", on_finish=on_finish,
                   stop_help=stop_help or "End the solve after the current iteration; the partial history and "
                   "result are kept.")
    running = job.alive
    body = st.fragment(_live_body, run_every=refresh if running else None)
    return body(key, running, panel)


@dataclass(frozen=True)
class _Panel:
    """What one ``live_panel`` call draws (the fragment keeps it for its reruns)."""

    render: Render
    snapshot: Callable[[JobView], Any] | None
    progress: Callable[[Any], tuple[float, str]]
    caption: bool
    show_stop: bool
    stop_key: str
    stop_help: str
    on_finish: Callable[[SolveJob, JobView], None] | None


def _draw_live_figure(key: str, opts: dict[str, Any], x: str, height: int, view: JobView, alive: bool) -> None:
    """The default chart: one solve's Ritz values, residuals, errors and orthogonality (``live_figure``)."""
    if view.records:
        figure = live_figure(view.records, reference=opts["reference"], tol=opts["tol"], spectrum=opts["spectrum"],
                             dtype=opts["dtype"], x=x, height=height)
        st.plotly_chart(figure, key=f"{key}_live_chart", config={"displaylogo": False})
        extras = extras_text(view.records[-1])
        if extras:
            st.caption(f"Iteration {view.records[-1].iteration:,}: {extras}")
    elif alive:
        st.caption("Starting the solver ...")


def extras_text(record: Any) -> str:
    """The solver's own per-iteration numbers (``record.extras``: a filter's degree and interval, an
    error estimate, the basis size, ...) as one line, e.g. "degree 20 \u00b7 filter low 0.0104"."""
    parts = []
    for name, value in dict(getattr(record, "extras", {}) or {}).items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        shown = f"{int(value):,}" if float(value).is_integer() and abs(value) < 1e15 else f"{value:.4g}"
        parts.append(f"{name.replace('_', ' ')} {shown}")
    return " \u00b7 ".join(parts)


def _live_body(key: str, started_running: bool, panel: _Panel) -> Any:
    job = current_job(key)
    if job is None:
        return None
    job.touch()
    alive = job.alive  # read before view(): a "done" view never shows a stale running state
    view = job.view()
    data = view if panel.snapshot is None else panel.snapshot(view)
    fraction, text = progress_text(view) if view.state == JobState.QUEUED else panel.progress(data)
    if panel.caption:
        settings = ", ".join(f"{k}={v:.0e}" if isinstance(v, float) and k == "tol" else f"{k}={v}"
                             for k, v in job.params.items())
        st.caption(f"Job #{job.id}: {job.label}" + (f" \u00b7 {settings}" if settings else ""))
    with st.container(horizontal=True, vertical_alignment="center", gap="medium"):  # wraps in narrow columns
        st.progress(fraction, text=("Running: " if alive else "") + text)
        st.toggle("Pause live view", key=pause_key(key), disabled=not alive,
                  help="Hold the chart still so you can zoom and pan it (every live update redraws it and resets "
                  "the zoom). The solve, the progress line and Stop go on; switch off to catch up.")
        if panel.show_stop:
            st.button("Stop", key=panel.stop_key, icon=":material/stop_circle:", on_click=stop_job, args=(key,),
                      disabled=not alive, help=panel.stop_help)
    panel.render(_held(key, job.id, data, alive), alive)
    _rerun_when_finished(key, alive, started_running, panel.on_finish)
    return data


def _held(key: str, job_id: int, data: Any, alive: bool) -> Any:
    """What the chart draws: ``data``, or while the live view is paused the data of the moment it was paused.

    Redrawing the very same figure keeps the element (its id hashes the figure), so
    the browser keeps the user's zoom; any change would replace it (LIVE.md pitfall 6).
    """
    frozen: dict[str, tuple[int, Any]] = st.session_state.setdefault(_FROZEN, {})
    if not (alive and st.session_state.get(pause_key(key))):
        frozen.pop(key, None)
        return data
    held = frozen.get(key)
    if held is None or held[0] != job_id:
        held = frozen[key] = (job_id, data)
    st.caption(":material/pause_circle: Live view paused: the chart holds still for zooming while the solve goes on.")
    return held[1]


def _rerun_when_finished(key: str, alive: bool, started_running: bool,
                         on_finish: Callable[[SolveJob, JobView], None] | None) -> None:
    """Collect a job that has ended and rerun the whole app once, so the page shows its result.

    Two cases: the fragment was defined while the job ran (its timer must be switched
    off), or the job ended during this very script run, after the page had decided it
    still runs but before the panel was drawn (a fast solve; then there is no timer to
    notice it, so without this the page stayed stale until the next interaction).
    ``collect_finished`` records each job once, so this reruns once per job.
    """
    if alive:
        return
    if collect_finished(key, on_finish) is not None or started_running:
        st.rerun()  # app scope: redraw the page once (this also switches the timer off)


def server_caption(container: Any = None) -> None:
    """A caption with the solves running on this server (all sessions) and how many may run at once."""
    box = container if container is not None else st
    count = running_jobs()
    box.caption(f"{count} solve{'' if count == 1 else 's'} running on this server "
                f"(at most {max_concurrent_jobs()} at once; more wait in a queue).", help=None)
