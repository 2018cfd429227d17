"""Explore: choose a problem and a solver, press Run, watch it converge live, inspect the result."""

import streamlit as st

from explorer.ui import entry, live, problem, results, runner, runstore, solver

entry.require_frame()  # run alone (a fresh server's legacy pages/ mode): app.py takes over

KEY = "explore"

live.collect_finished(KEY)  # log a solve that ended since the last run of this page

with st.sidebar:
    st.subheader("1 \u00b7 Problem", divider="gray")
    problem.problem_sidebar(st.sidebar)
source, prob = problem.active_problem()
running = live.is_running(KEY)
with st.sidebar:
    st.subheader("2 \u00b7 Solver", divider="gray")
    # editable during a run; the next Run uses it. A rectangular matrix: the SVD solvers only
    config = solver.solver_sidebar(n=prob.k_max, kind=prob.kind)
    runner.run_button(KEY)
    live.server_caption()
    runstore.store_warning(container=st.sidebar)  # only when runs are not kept (or a bad file was moved aside)

st.title("Eigensolver Explorer")
st.markdown(f"**Problem:** {source.label} \u2014 {prob.description}")
spectrum = problem.cached_reference(source, prob)
last = runner.last_run(KEY)
problem.problem_preview(source, prob, expanded=last is None and not running,
                        spectrum=None if spectrum is None else spectrum.numpy())

head, axis = st.columns([3, 2], vertical_alignment="bottom")
head.subheader("Convergence")
axis.radio("x axis", ["iteration", "n_matvec", "elapsed_s"], key="live_x", horizontal=True,
           format_func={"iteration": "iterations", "n_matvec": "matvecs", "elapsed_s": "seconds"}.get)
live.live_panel(KEY, x=st.session_state.get("live_x", "iteration"), stop_key="stop")

if last is not None and not running:
    st.subheader("Result")
    results.render_run(last, spectrum=None if spectrum is None else spectrum.numpy(),
                       snippet=last.extra.get("snippet"), key="explore_result")
