"""AppTest: the History page, and sessions that do not see each other's runs."""

from __future__ import annotations

import json

import pytest

from explorer.solvers import SOLVERS

pytestmark = pytest.mark.slow


def _solver() -> str:
    return next(n for n in ("lobpcg", "lanczos", "power_iteration") if n in SOLVERS)


def test_history_page_without_runs(apptest):
    at = apptest(page="pages/history.py")
    assert not at.exception
    assert "No runs yet" in at.info[0].value


def test_history_lists_runs_overlays_two_and_exports(apptest, wait_job):
    at = apptest()
    at.selectbox(key="solver").set_value(_solver()).run()
    at.button(key="run").click().run()
    wait_job(at)
    at.selectbox(key="which").set_value("SA").run()
    at.number_input(key="tol").set_value(1e-9).run()
    at.button(key="run").click().run()
    wait_job(at)
    at.switch_page("pages/history.py").run()
    assert not at.exception, [e.value for e in at.exception]
    frame = at.dataframe[0].value
    assert list(frame["run"]) == [1, 2]
    assert {"solver", "params", "problem", "status", "matvecs", "time_s", "max_error"} <= set(frame.columns)
    assert frame["max_error"].notna().all() and (frame["max_error"] < 1e-5).all()
    assert at.multiselect(key="history_pick").value == [1, 2]
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    names = [t["name"] for t in spec["data"]]
    assert names[0].startswith("#1") and names[1].startswith("#2")
    assert spec["layout"]["yaxis"]["type"] == "log"
    at.radio(key="history_metric").set_value("error").run()
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert "error" in spec["layout"]["yaxis"]["title"]["text"]
    assert any(b.label == "Export table (CSV)" for b in at.get("download_button"))
    at.selectbox(key="history_detail").set_value(1).run()
    assert not at.exception
    assert any("Run #1" in s.value for s in at.success)


def test_two_sessions_do_not_share_jobs_or_runs(apptest, get_job, wait_job):
    first, second = apptest(), apptest()
    for at in (first, second):
        at.selectbox(key="solver").set_value(_solver()).run()
        at.button(key="run").click().run()
    job1, job2 = get_job(first), get_job(second)
    assert job1 is not None and job2 is not None and job1 is not job2
    wait_job(first)
    wait_job(second)
    assert len(first.session_state["runs"]) == 1 and len(second.session_state["runs"]) == 1
    assert first.session_state["runs"][0] is not second.session_state["runs"][0]
