"""History: every stored run (this browser's, other sessions', the command line's, notebooks'), any of them
overlaid, CSV export, details; a run that is still going opens as a live view that follows it."""

import streamlit as st

from explorer.runs.record import runs_frame
from explorer.ui import charts, entry, live, results, runstore, state

entry.require_frame()  # run alone (a fresh server's legacy pages/ mode): app.py takes over

for key in ("explore", "model", "compare"):
    live.collect_finished(key)  # runs that ended while another page was open

head, refresh = st.columns([6, 1], vertical_alignment="bottom")
head.title("Run history")
refresh.button("Refresh", key="history_refresh", icon=":material/refresh:", width="stretch",
               help="Read the run store again (new runs of other sessions and processes).")
handle = runstore.app_store()
runstore.store_caption(handle)
runs = runstore.all_runs(state.runs())
if not runs:
    st.info("No runs yet. Go to **Explore**, pick a problem and press **Run**, or start one from a terminal: "
            "`python -m explorer solve laplacian_2d:100 -k 6`.")
    st.stop()

frame = runs_frame(runs)
st.dataframe(frame.style.format({"max_error": "{:.2e}", "max_residual": "{:.2e}", "time_s": "{:.2f}"},
                                na_rep="\u2013"), hide_index=True, key="history_table")
st.download_button("Export table (CSV)", data=lambda: frame.to_csv(index=False),
                   file_name="runs.csv", mime="text/csv", key="history_csv", on_click="ignore",
                   icon=":material/download:")

by_id = {run.run_id: run for run in runs}
labels = {run.run_id: run.label for run in runs}
ids = list(labels)

st.subheader("Compare runs")
state.ensure("history_pick", ids[-2:])
st.session_state["history_pick"] = [i for i in st.session_state["history_pick"] if i in labels] or ids[-2:]
c1, c2, c3 = st.columns([4, 2, 2])
picked = c1.multiselect("Runs", ids, key="history_pick", format_func=labels.get,
                        help="Pick two (or more) runs to overlay.")
state.ensure("history_metric", "residual")
metric = c2.radio("Quantity", ["residual", "error"], key="history_metric", horizontal=True,
                  format_func={"residual": "relative residual", "error": "error vs exact"}.get,
                  help="The worst of the k pairs at each iteration.")
state.ensure("history_x", "n_matvec")
x = c3.radio("Against", ["n_matvec", "iteration", "elapsed_s"], key="history_x", horizontal=True,
             format_func={"n_matvec": "matvecs", "iteration": "iterations", "elapsed_s": "seconds"}.get)
chosen = [by_id[i] for i in picked if i in by_id]
if chosen:
    if metric == "error" and all(run.reference is None for run in chosen):
        st.info("None of these runs has exact eigenvalues to compare with; showing nothing for the error.")
    tols = {run.params.get("tol") for run in chosen}
    figure = charts.compare_figure(
        [{"label": run.label, "records": runstore.records_of(run), "reference": run.reference, "dtype": run.dtype,
          "match": charts.reference_match(run.params),
          "spectrum": run.extra.get("spectrum")} for run in chosen], metric=metric, x=x, tol=tols.pop() if len(tols) == 1 else None)
    charts.show(figure, key="history_compare")

st.subheader("Run details")
detail = st.selectbox("Run", ids[::-1], format_func=labels.get, key="history_detail")
run = by_id.get(detail)
if run is not None and run.running:
    runstore.follow_panel(run, x=st.session_state.get("history_x", "n_matvec"))
elif run is not None:
    runstore.records_of(run)  # downloads and charts need them
    results.render_run(run, spectrum=run.extra.get("spectrum"), snippet=run.extra.get("snippet"),
                       key=f"history_run{run.run_id}")
