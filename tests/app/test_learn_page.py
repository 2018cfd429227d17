"""AppTest (no browser): every lesson of the Learn page renders and runs its demo."""

from __future__ import annotations

import json

import pytest

from explorer.lessons import LESSONS
from explorer.solvers import SOLVERS

pytestmark = pytest.mark.slow

PAGE = "pages/learn.py"


def _no_trouble(at) -> None:  # noqa: ANN001
    assert not at.exception, [e.value for e in at.exception]


def test_learn_page_lists_every_lesson(apptest) -> None:  # noqa: ANN001
    at = apptest(page=PAGE)
    _no_trouble(at)
    assert list(at.radio(key="learn_lesson").options) == [lesson.title for lesson in LESSONS.values()]


@pytest.mark.parametrize("key", list(LESSONS))
def test_each_lesson_renders_and_runs_its_demo(apptest, wait_job, key: str) -> None:  # noqa: ANN001
    lesson = LESSONS[key]
    at = apptest(page=PAGE)
    at.radio(key="learn_lesson").set_value(key).run()
    _no_trouble(at)
    assert any(lesson.title in h.value for h in at.header)
    missing = [name for name in lesson.solvers if name not in SOLVERS]
    if missing:
        assert at.button(key="learn_run").disabled
        assert any("needs the solver" in i.value for i in at.info)
        pytest.skip(f"lesson {key} needs unregistered solver(s) {missing}")
    at.button(key="learn_run").click().run()
    _no_trouble(at)
    assert not at.session_state["learn_error"], at.session_state["learn_error"]
    wait_job(at, f"learn_{key}", timeout=90, poll=0.5)  # fewer reruns: the solver keeps the GIL
    _no_trouble(at)
    assert not at.error, [e.value for e in at.error]
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert charts, "the demo drew no chart"
    styles = {trace.get("line", {}).get("dash") for chart in charts for trace in chart["data"]}
    assert "dash" in styles, "no theory curve drawn over the measurement"
    assert any("What the run shows" in m.value for m in at.markdown)
