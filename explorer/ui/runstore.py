"""The app's run store: where runs are kept across reloads and restarts, and the live view of stored runs.

``app_store()`` is the server's ``explorer.store.RunStore`` at ``$EXPLORER_STORE`` or the
per-user default (one per path, shared by every session through ``st.cache_resource``;
the store is thread-safe). When it cannot be used (read-only, full disk, an unusable
path, a write that failed later) the handle says why (``StoreHandle.problem``) and the
app keeps runs in the session's memory, as before, with a warning: a run is never lost
to a store failure and no page fails because of one. A corrupt or foreign file at the
path was moved aside by ``RunStore``; ``notice`` says so.

* ``tracker(...)``: a ``StoreTracker`` for a solve the app starts (Explore), or None;
* ``finish_job_run(...)``: the stored run id once the job ended (its failure or stop
  recorded too);
* ``save_run(run)``: store a finished ``RunRecord`` of another page (Compare, Model);
* ``all_runs()``: every stored run (any session, any process) and this session's unstored ones;
* ``records_of(run)``: a run's records (from memory or the store, cached per session);
* ``follow_panel(run)``: the live view of a stored run that is still going, which follows
  its records as another process (or session) commits them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import streamlit as st

from explorer.plots.figures import live_figure
from explorer.runs.record import RunRecord, run_from_store
from explorer.store import RunStore, StoreError, StoredResult, StoreTracker, default_store_path

__all__ = ["StoreHandle", "app_store", "tracker", "finish_job_run", "save_run", "all_runs", "records_of",
           "follow_panel", "store_caption", "store_warning", "FOLLOW_REFRESH_S"]

FOLLOW_REFRESH_S = 0.5  # the live view of a stored run polls the store this often (LIVE.md: 0.25-0.5 s)
_RECORDS = "_store_records"  # session_state: {run_id: list[IterationRecord]} read from the store


@dataclass(eq=False)
class StoreHandle:
    """The server's store, or why there is none (then runs stay in each session's memory)."""

    path: str
    store: RunStore | None
    problem: str | None = None  # why runs are not (or no longer) written
    notice: str | None = None  # a bad file was moved aside at this path
    max_seen_id: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def writable(self) -> bool:
        return self.store is not None and self.problem is None

    def degrade(self, reason: str) -> None:
        """Stop writing (keep reading if possible): later runs stay in memory, with ``reason`` shown."""
        if self.problem is None:
            self.problem = reason


@st.cache_resource(show_spinner=False)
def _open(path: str) -> StoreHandle:
    try:
        store = RunStore(path)
    except (StoreError, OSError) as err:
        return StoreHandle(path=path, store=None, problem=str(err))
    handle = StoreHandle(path=str(store.path), store=store, notice=store.notice)
    if not store.writable:
        handle.problem = store.read_only_reason
    return handle


def app_store() -> StoreHandle:
    """The store at ``$EXPLORER_STORE`` or the per-user default (read on every call: tests point it elsewhere)."""
    try:
        path = str(default_store_path())
    except StoreError as err:  # e.g. no platformdirs and no EXPLORER_STORE
        return StoreHandle(path="(none)", store=None, problem=str(err))
    return _open(path)


def store_caption(handle: StoreHandle | None = None) -> None:
    """Where the runs are kept (and any warning about it)."""
    handle = handle or app_store()
    if handle.store is not None:
        st.caption(f":material/database: Runs are kept in `{handle.path}` (SQLite; set `EXPLORER_STORE` to use "
                   "another file). Solves from `python -m explorer solve`, notebooks and scripts that use a "
                   "`StoreTracker` appear here too.")
    store_warning(handle)


def store_warning(handle: StoreHandle | None = None, container: Any = None) -> None:
    """A warning when runs are not kept in the store, and the notice of a moved-aside file."""
    handle = handle or app_store()
    box = container if container is not None else st
    if handle.notice:
        box.warning(handle.notice, icon=":material/report:")
    if handle.problem:
        box.warning(f"Run history is kept in this browser session only: {handle.problem}",
                    icon=":material/cloud_off:")


# -- writing --------------------------------------------------------------------------
def tracker(*, problem: str, params: Mapping[str, Any], source: str, reference: Any = None,
            name: str | None = None) -> StoreTracker | None:
    """A StoreTracker on the app's store for a solve to start, or None when runs stay in memory."""
    handle = app_store()
    if not handle.writable:
        return None
    return StoreTracker(handle.store, name, problem=problem, params=dict(params), source=source, reference=reference)


def finish_job_run(store_tracker: StoreTracker | None, view: Any, *, solver: str, n: int,
                   params: Mapping[str, Any]) -> int | None:
    """The stored id of a job's run once it ended (None: not stored), recording a failure or an early stop.

    A solve that returned a result was closed by the tracker itself (``on_finish``); one
    that raised, or was stopped before the solver started, is recorded here.
    """
    if store_tracker is None:
        return None
    handle = app_store()
    if getattr(view, "result", None) is None:
        if view.error:
            store_tracker.fail(view.error, solver=solver, n=n, k=params.get("k"), which=params.get("which"),
                               tol=params.get("tol"), max_iter=params.get("max_iter"), device=params.get("device"),
                               dtype=params.get("dtype"))
        else:
            reason = view.stop_reason or "stopped"
            store_tracker.fail(f"Stopped before the solver produced a result ({reason}).", status="stopped",
                               solver=solver, n=n, k=params.get("k"), which=params.get("which"),
                               tol=params.get("tol"), device=params.get("device"), dtype=params.get("dtype"))
    if store_tracker.error:
        handle.degrade(store_tracker.error)
        return None
    if store_tracker.run_id is not None:
        handle.max_seen_id = max(handle.max_seen_id, store_tracker.run_id)
    return store_tracker.run_id


def save_run(run: RunRecord) -> bool:
    """Store a finished run of a page that does not stream (Compare, Model); its ``run_id`` becomes the
    store's. False (the run stays in memory only) when the store is unavailable."""
    handle = app_store()
    if run.stored or not handle.writable:
        return run.stored
    params = {key: value for key, value in run.params.items()}
    try:
        run_id = handle.store.save_run(
            solver=run.solver, records=run.records, result=run.result, status=run.status, message=run.message,
            name=run.extra.get("label"), source=run.page, problem=run.problem, n=run.n, k=params.get("k"),
            which=params.get("which"), tol=params.get("tol"), max_iter=params.get("max_iter"), params=params,
            device=params.get("device"), dtype=params.get("dtype"), reference=run.reference,
            started_at=run.started_at, n_iter=run.n_iter, n_matvec=run.n_matvec, elapsed_s=run.elapsed_s)
    except (StoreError, OSError) as err:
        handle.degrade(str(err))
        return False
    run.run_id = run_id
    run.extra["stored"] = True
    handle.max_seen_id = max(handle.max_seen_id, run_id)
    return True


# -- reading --------------------------------------------------------------------------
def all_runs(session_runs: list[RunRecord]) -> list[RunRecord]:
    """Every stored run, oldest first, with this session's own record in place of the stored one (it has
    the eigenvectors and the snippet), then this session's runs that are not in the store."""
    handle = app_store()
    own = {run.run_id: run for run in session_runs if run.stored}
    listed: list[RunRecord] = []
    if handle.store is not None:
        try:
            infos = handle.store.run_infos()
        except (StoreError, OSError) as err:
            handle.degrade(str(err))
            infos = []
        for info in infos:
            handle.max_seen_id = max(handle.max_seen_id, info.id)
            mine = own.pop(info.id, None)
            if mine is not None and not info.running:
                listed.append(mine)
                continue
            run = run_from_store(info, StoredResult.from_info(info))
            if mine is not None:  # still running in this session: follow the store
                run.extra.update(snippet=mine.extra.get("snippet"), spectrum=mine.extra.get("spectrum"))
            listed.append(run)
    listed += [run for run in session_runs if not run.stored or run.run_id in own]
    return listed


def records_of(run: RunRecord) -> list:
    """The iteration records of ``run``: in memory for this session's runs, else read from the store (cached
    in the session; a finished run's records never change)."""
    if run.records or not run.stored:
        return run.records
    cache: dict[int, list] = st.session_state.setdefault(_RECORDS, {})
    cached = cache.get(run.run_id)
    count = int(run.extra.get("n_records") or 0)
    if cached is not None and len(cached) >= count:
        run.records = cached
        return cached
    handle = app_store()
    if handle.store is None:
        return []
    try:
        records = (cached or []) + handle.store.records(run.run_id, after=len(cached or []))
    except (StoreError, OSError):
        return cached or []
    if not run.running:
        cache[run.run_id] = records
    run.records = records
    return records


# -- following a running stored run ---------------------------------------------------
def follow_panel(run: RunRecord, *, key: str = "history_follow", x: str = "iteration", height: int = 600) -> None:
    """Progress line and live chart of a stored run that is still going, redrawn every FOLLOW_REFRESH_S.

    One top-level fragment (LIVE.md pattern b); each rerun reads only the records committed
    since the last one. When the run ends (or its process is found gone) the whole page
    reruns once, which shows the final result.
    """
    st.fragment(_follow_body, run_every=FOLLOW_REFRESH_S)(run.run_id, key, x, height)


def _follow_body(run_id: int, key: str, x: str, height: int) -> None:
    handle = app_store()
    if handle.store is None:
        st.warning("The run store is not available any more; the live view stopped.")
        return
    try:
        info = handle.store.run(run_id)
    except (StoreError, OSError, KeyError) as err:
        st.warning(f"Run #{run_id} cannot be read any more: {err}")
        return
    follow = st.session_state.setdefault(f"_{key}", {})
    if follow.get("run_id") != run_id:
        follow.clear()
        follow.update(run_id=run_id, records=[])
    try:
        follow["records"] += handle.store.records(run_id, after=len(follow["records"]))
    except (StoreError, OSError):
        pass
    records = follow["records"]
    last = records[-1] if records else None
    k = info.k or (len(last.ritz_values) if last else 0)
    fraction = min(1.0, (last.iteration / info.max_iter) if (last and info.max_iter) else 0.0)
    text = (f"Iteration {last.iteration:,}" + (f" / {info.max_iter:,}" if info.max_iter else "")
            + f" \u00b7 converged {last.n_converged}/{k} \u00b7 {last.n_matvec:,} matvecs \u00b7 {last.elapsed_s:.1f} s"
            if last else "Waiting for the first iteration ...")
    where = {"explore": "this app", "compare": "this app", "model": "this app"}.get(info.source, info.source)
    st.caption(f":material/sensors: Following run #{run_id} ({where}) live from the store: "
               f"{info.n_records:,} records so far, updated every {FOLLOW_REFRESH_S:g} s.")
    st.progress(fraction, text=("Running: " if info.running else "") + text)
    if records:
        figure = live_figure(records, reference=info.reference, tol=info.tol, dtype=info.dtype or "float64", x=x,
                             height=height)
        st.plotly_chart(figure, key=f"{key}_chart", config={"displaylogo": False})
    if not info.running:
        st.session_state.pop(f"_{key}", None)
        st.rerun()  # app scope: the page shows the final result, and the timer stops

