"""AppTest (no browser): the shared live panel of explorer.ui.live, on small stand-alone scripts."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def _fast_job_page() -> None:
    """A page whose job ends while the script still runs: after the page decided it runs, before the panel."""
    import threading

    import streamlit as st

    from explorer.ui import live

    def record(job, view) -> None:  # noqa: ANN001
        st.session_state["finished"] = st.session_state.get("finished", 0) + 1

    def on_run() -> None:
        gate = st.session_state["gate"] = threading.Event()
        live.start_job("fast", lambda tracker: gate.wait(10), label="instant", on_finish=record)

    live.collect_finished("fast")
    running = live.is_running("fast")
    st.button("Run", key="go", on_click=on_run)
    job = live.current_job("fast")
    if job is not None:
        st.session_state["gate"].set()
        job.wait(10)  # a very fast solve: done before the panel is drawn
    st.markdown("page: running" if running else "page: idle")
    live.live_panel("fast")


def test_a_job_that_ends_during_the_script_run_is_collected_and_the_page_redrawn() -> None:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_fast_job_page, default_timeout=30).run()
    assert not at.exception
    at.button(key="go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    # without another interaction: on_finish ran once, and the page was drawn again ("idle", not "running")
    assert at.session_state["finished"] == 1
    assert [m.value for m in at.markdown if m.value.startswith("page:")] == ["page: idle"]
    at.run()
    assert at.session_state["finished"] == 1  # collected exactly once
