"""AppTest (no browser): every lesson of the Learn page renders and runs its demo."""

from __future__ import annotations

import json

import pytest

from explorer.teaching import LESSONS
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


def test_lesson_and_parameters_survive_a_visit_to_another_page(apptest) -> None:  # noqa: ANN001
    at = apptest(page=PAGE)
    at.radio(key="learn_lesson").set_value("lanczos").run()
    at.number_input(key="learn_lanczos_steps").set_value(33).run()
    at.number_input(key="learn_lanczos_seed").set_value(7).run()
    _no_trouble(at)
    at.switch_page("pages/history.py").run()
    _no_trouble(at)
    at.switch_page(PAGE).run()
    _no_trouble(at)
    assert at.radio(key="learn_lesson").value == "lanczos"
    assert at.number_input(key="learn_lanczos_steps").value == 33
    assert at.number_input(key="learn_lanczos_seed").value == 7
    # a lesson not shown keeps its values too
    at.number_input(key="learn_lanczos_steps").set_value(44).run()
    at.radio(key="learn_lesson").set_value("power").run()
    at.switch_page("pages/explore.py").run()
    at.switch_page(PAGE).run()
    at.radio(key="learn_lesson").set_value("lanczos").run()
    _no_trouble(at)
    assert at.number_input(key="learn_lanczos_steps").value == 44

