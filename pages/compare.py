"""Compare: one problem, two to five solver configurations, one matvec budget, and a diagnosis."""

from typing import Sequence

import numpy as np
import streamlit as st

from explorer.analysis.compare import RunOutcome, angle_frame, reference_for, summary_frame, target_note
from explorer.runs.jobs import friendly_error
from explorer.plots.figures import live_figure, reference_match
from explorer.ui import compare_form, entry, live, problem
from explorer.ui.charts import show
from explorer.plots.compare import SEVERITY_ICONS, orthogonality_figure, overlay_figure, pairs_figure
from explorer.ui.compare_live import comparison_panel, start_comparison
from explorer.ui.state import ensure

entry.require_frame()  # run alone (a fresh server's legacy pages/ mode): app.py takes over

KEY = "compare"
ERROR = "compare_error"

live.collect_finished(KEY)

with st.sidebar:
    st.subheader("Problem", divider="gray")
    problem.problem_sidebar(st.sidebar)
source, prob = problem.active_problem()
spectrum = problem.cached_reference(source, prob)
eigenvalues = None if spectrum is None else np.asarray(spectrum.numpy() if hasattr(spectrum, "numpy") else spectrum)
running = live.is_running(KEY)

st.title("Compare solvers")
st.markdown(f"**Problem:** {source.label} \u2014 {prob.description}")
st.caption("Why does a solver not converge? Run several configurations on the same problem under the same "
           "matvec budget, overlay their errors, and read the diagnosis. "
           + ("Exact eigenvalues are known: curves show the error against them." if eigenvalues is not None
              else "Exact eigenvalues are unknown here: curves show the relative residual."))

with st.expander("Settings and configurations", expanded=live.current_job(KEY) is None, icon=":material/tune:"):
    compare_form.settings_form(n=prob.k_max, disabled=running, kind=prob.kind)
    compare_form.configs_form(disabled=running, kind=prob.kind)
    note = target_note(compare_form.read_configs(), compare_form.read_settings(), eigenvalues)
    if note:
        st.warning(note, icon=":material/compare_arrows:")


def on_run() -> None:
    """Run button callback: start the comparison of the current form (errors become a message)."""
    st.session_state[ERROR] = None
    try:
        start_comparison(KEY, prob, compare_form.read_configs(), compare_form.read_settings(), reference=eigenvalues,
                         label=f"comparison on {source.label}", meta={"source": source.label}, log_as=source.label)
    except Exception as error:  # noqa: BLE001 - a bad configuration is a message, not a crash
        st.session_state[ERROR] = friendly_error(error)


ensure("cmp_curves", "worst pair")
run_col, curve_col = st.columns([1, 2], vertical_alignment="center")
run_col.button("Run comparison", key="cmp_run", type="primary", icon=":material/play_arrow:", on_click=on_run,
               disabled=running)
curve_col.radio("Curves", ["worst pair", "every pair"], key="cmp_curves", horizontal=True,
                help="The worst Ritz value of each run, or one thin line per Ritz value.")
if st.session_state.get(ERROR):
    st.error(st.session_state[ERROR], icon=":material/error:")


def render(outcomes: Sequence[RunOutcome], alive: bool) -> None:
    """Overlays while the runs go on; then the table, the angles, each run in detail and the diagnosis."""
    meta = live.job_meta(KEY)
    settings = meta["settings"]
    exact = meta.get("reference")
    eps = float(np.finfo(np.float32 if settings.dtype == "float32" else np.float64).eps)
    every = st.session_state.get("cmp_curves") == "every pair"
    if every:
        what = "Error |θᵢ − λᵢ| of every Ritz value" if exact is not None \
            else "Relative residual of every Ritz value (no exact eigenvalues known)"
        figure = pairs_figure
    else:
        what = "Error max|θᵢ − λᵢ| against the exact eigenvalues" if exact is not None \
            else "Max relative residual (no exact eigenvalues known)"
        figure = overlay_figure
    left, right = st.columns(2)
    with left:
        st.markdown(f"**{what}, per matvec**")
        show(figure(outcomes, exact, settings.k, settings.which, x="n_matvec", tol=settings.tol),
             key="cmp_fig_matvec")
    with right:
        st.markdown(f"**{what}, per second**")
        show(figure(outcomes, exact, settings.k, settings.which, x="elapsed_s", tol=settings.tol),
             key="cmp_fig_time")
    st.markdown("**Orthogonality loss of each run's basis** (above √ε ghosts become possible)")
    show(orthogonality_figure(outcomes, eps=eps), key="cmp_fig_ortho")
    if alive:
        return
    st.subheader("Results")
    table = summary_frame(outcomes, settings, exact)
    st.dataframe(table, hide_index=True, key="cmp_table", column_config={
        "max rel. error": st.column_config.NumberColumn(format="%.2e"),
        "max rel. residual": st.column_config.NumberColumn(format="%.2e"),
        "orthogonality loss": st.column_config.NumberColumn(format="%.1e"),
        "time (s)": st.column_config.NumberColumn(format="%.3f"),
        "time to tol (s)": st.column_config.NumberColumn(format="%.3f")})
    if settings.mode == "parallel":
        st.caption("Runs shared the CPU side by side: their times include the sharing.")
    st.markdown("**Subspace angles** \u2014 largest principal angle (degrees) between the eigenvector subspaces "
                "the runs found (0 = the same invariant subspace).")
    st.dataframe(angle_frame(outcomes).style.format("{:.2e}", na_rep="\u2014"), key="cmp_angles")
    st.markdown("**Each run in detail** (the Explore page's panel)")
    for i, outcome in enumerate(outcomes):
        if not outcome.records:
            continue
        with st.expander(outcome.label, icon=":material/insights:"):
            show(live_figure(outcome.records, reference=reference_for(outcome, exact, settings.k, settings.which),
                             tol=settings.tol, spectrum=exact, match=reference_match(outcome.config.params),
                             dtype=outcome.dtype, x="n_matvec", height=520), key=f"cmp_detail_{i}")
    st.subheader("Diagnosis")
    for outcome in outcomes:
        with st.container(border=True):
            st.markdown(f"**{outcome.label}**")
            if outcome.error:
                st.error(outcome.error, icon=":material/error:")
                continue
            if outcome.state == "skipped":
                st.info("Skipped: the comparison was stopped before this run started.")
                continue
            if not outcome.findings:
                st.success("No problem found: converged, no ghosts, nothing flat.", icon=":material/check_circle:")
            for finding in outcome.findings:
                box = {"error": st.error, "warning": st.warning}.get(finding.severity, st.info)
                box(f"**{finding.rule.replace('_', ' ')}** \u2014 {finding.message}\n\n"
                    f"*Try:* {finding.suggestion}", icon=SEVERITY_ICONS.get(finding.severity))


comparison_panel(KEY, render, stop_key="cmp_stop",
                 empty_message="Pick configurations and press **Run comparison**; their curves appear here live.")
