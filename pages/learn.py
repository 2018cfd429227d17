"""Learn: short lessons, each with a demo you can run and the theory drawn over the measurement."""

from typing import Sequence

import streamlit as st

from explorer.analysis.compare import RunOutcome
from explorer.runs.jobs import friendly_error
from explorer.teaching import LESSON_RUNS, LESSONS
from explorer.solvers import SOLVERS
from explorer.ui import entry, live
from explorer.ui.charts import show
from explorer.ui.compare_live import comparison_panel, start_comparison
from explorer.plots.lessons import chart_figure, pretty
from explorer.ui.state import ensure_choice
from explorer.ui.widgets import param_form

entry.require_frame()  # run alone (a fresh server's legacy pages/ mode): app.py takes over

ERROR = "learn_error"

st.title("Learn")
st.caption("Each lesson explains one idea in a few sentences, runs a small demo with the explorer's own solvers, "
           "and draws the theory (dashed) over the measurement (solid). Change the parameters and run again.")

keys = list(LESSONS)
ensure_choice("learn_lesson", keys)
st.radio("Lesson", keys, key="learn_lesson", format_func=lambda key: LESSONS[key].title)
lesson = LESSONS[st.session_state["learn_lesson"]]
job_key = f"learn_{lesson.key}"
live.collect_finished(job_key)
running = live.is_running(job_key)
missing = [name for name in lesson.solvers if name not in SOLVERS]

st.header(lesson.title, divider="gray")
text, side = st.columns([3, 2])
with text:
    st.markdown(lesson.text)
    if lesson.references:
        st.caption("References: " + "; ".join(lesson.references) + ".")
with side:
    st.markdown("**Parameters**")
    values = param_form(lesson.params, f"learn_{lesson.key}_", columns=2, disabled=running)
    try:
        setup = lesson.setup(values)
    except Exception as error:  # noqa: BLE001 - a parameter combination the demo refuses
        setup = None
        st.error(friendly_error(error), icon=":material/error:")
    if setup is not None:
        st.dataframe({"quantity": [pretty(q) for q in setup.facts], "value": list(setup.facts.values())}, hide_index=True,
                     key=f"learn_{lesson.key}_facts")


def on_run() -> None:
    """Run button callback: build the lesson's demo from the widgets and start it."""
    st.session_state[ERROR] = None
    try:
        current = lesson.setup({spec.name: st.session_state.get(f"learn_{lesson.key}_{spec.name}", spec.default)
                                for spec in lesson.params})
        start_comparison(job_key, current.problem, current.configs, current.settings, count=LESSON_RUNS,
                         label=f"lesson {lesson.key}", meta={"setup": current})
    except Exception as error:  # noqa: BLE001
        st.session_state[ERROR] = friendly_error(error)


if missing:
    st.info(f"This lesson needs the solver(s) {', '.join(missing)}, which this installation does not register yet.")
st.button("Run the demo", key="learn_run", type="primary", icon=":material/play_arrow:", on_click=on_run,
          disabled=running or bool(missing) or setup is None)
if st.session_state.get(ERROR):
    st.error(st.session_state[ERROR], icon=":material/error:")


def render(outcomes: Sequence[RunOutcome], alive: bool) -> None:
    """The lesson's charts (measurement and theory) for the runs so far; its notes once they end."""
    current = live.job_meta(job_key).get("setup")
    if current is None:
        return
    charts = current.charts(outcomes)
    columns = st.columns(2) if len(charts) > 1 else [st.container()]
    for i, chart in enumerate(charts):
        with columns[i % len(columns)]:
            show(chart_figure(chart), key=f"learn_chart_{chart.key}")
    failed = [o for o in outcomes if o.error]
    for outcome in failed:
        st.error(f"{outcome.label}: {outcome.error}", icon=":material/error:")
    if not alive:
        notes = current.notes(outcomes)
        if notes:
            st.markdown("**What the run shows**\n\n" + "\n".join(f"- {pretty(note)}" for note in notes))


comparison_panel(job_key, render, stop_key="learn_stop",
                 empty_message="Press **Run the demo**: the measurement and the theory appear here live.")
