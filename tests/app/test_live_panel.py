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


def _hooked_page() -> None:
    """live_panel with the hooks a multi-run page uses: its own snapshot, progress line and chart."""
    import streamlit as st

    from explorer.tracking import IterationRecord
    from explorer.ui import live

    def target(tracker) -> str:  # noqa: ANN001
        import torch

        for it in range(1, 4):
            tracker.on_iteration(IterationRecord(
                solver="demo", iteration=it, ritz_values=torch.ones(1, dtype=torch.float64),
                residual_norms=torch.ones(1, dtype=torch.float64), residuals_estimated=False,
                orthogonality_loss=None, n_converged=0, n_matvec=it, elapsed_s=0.0))
        return "ok"

    st.button("Run", key="go", on_click=lambda: live.start_job("hooked", target, label="demo"))
    live.live_panel("hooked", snapshot=lambda view: len(view.records),
                    progress=lambda n: (n / 3, f"{n} of 3 records"), caption=False,
                    render=lambda n, alive: st.markdown(f"drawn: {n} records, alive={alive}"))


def test_live_panel_draws_through_page_hooks(wait_job) -> None:  # noqa: ANN001
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_hooked_page, default_timeout=30).run()
    assert [i.value for i in at.info]  # no job yet: the empty message
    at.button(key="go").click().run()
    wait_job(at, "hooked", timeout=30)
    assert not at.exception, [e.value for e in at.exception]
    assert "drawn: 3 records, alive=False" in [m.value for m in at.markdown]
    assert not at.get("plotly_chart")  # the page's render replaced the default chart
    assert not [c.value for c in at.caption if c.value.startswith("Job #")]
    assert at.get("progress")[0].proto.text == "3 of 3 records"
