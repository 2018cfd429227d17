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


def _endless_page() -> None:
    """A job that adds one record every 20 ms until Stop: a long solve under the default chart."""
    import time

    import streamlit as st

    from explorer.tracking import IterationRecord
    from explorer.ui import live

    def target(tracker) -> None:  # noqa: ANN001
        import torch

        for it in range(1, 100_000):
            tracker.on_iteration(IterationRecord(
                solver="demo", iteration=it, ritz_values=torch.tensor([1.0 + 1.0 / it], dtype=torch.float64),
                residual_norms=torch.tensor([1.0 / it], dtype=torch.float64), residuals_estimated=False,
                orthogonality_loss=None, n_converged=0, n_matvec=it, elapsed_s=0.02 * it))  # raises on Stop
            time.sleep(0.02)

    st.button("Run", key="go", on_click=lambda: live.start_job("endless", target, label="demo"))
    live.live_panel("endless")


def _chart(at) -> str:  # noqa: ANN001
    charts = at.get("plotly_chart")
    assert len(charts) == 1
    return charts[0].proto.spec


def _records_now(at, n: int, timeout: float = 30.0) -> None:  # noqa: ANN001
    import time

    job = at.session_state["_live_meta"]["endless"]["job"]
    deadline = time.monotonic() + timeout
    while len(job.view().records) < n:
        assert time.monotonic() < deadline, "the demo job is too slow"
        time.sleep(0.05)


def test_pause_holds_the_chart_while_progress_goes_on() -> None:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_endless_page, default_timeout=30).run()
    at.button(key="go").click().run()
    try:
        _records_now(at, 5)
        at.run()
        assert not at.toggle(key="endless_pause").value and not at.toggle(key="endless_pause").disabled
        at.toggle(key="endless_pause").set_value(True).run()
        held, progress = _chart(at), at.get("progress")[0].proto.text
        assert any("paused" in c.value for c in at.caption)
        n = len(at.session_state["_live_meta"]["endless"]["job"].view().records)
        _records_now(at, n + 5)
        at.run()
        assert _chart(at) == held  # the same figure: the browser keeps the element and the user's zoom
        assert at.get("progress")[0].proto.text != progress  # while progress goes on
        at.toggle(key="endless_pause").set_value(False).run()
        assert _chart(at) != held  # catches up
        assert not any("paused" in c.value for c in at.caption)
    finally:
        at.button(key="endless_stop").click().run()
    job = at.session_state["_live_meta"]["endless"]["job"]
    assert job.wait(10)
    at.run()
    assert at.toggle(key="endless_pause").disabled  # nothing to pause; the final chart is zoomable anyway
