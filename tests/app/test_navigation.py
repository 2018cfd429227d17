"""AppTest: every page runs inside app.py's frame, also when Streamlit starts the page file alone.

AppTest resets Streamlit's legacy ``pages/`` flag before each run, so every run after
``switch_page`` starts the page file alone, as a fresh server does before its first
``st.navigation`` call (explorer/ui/entry.py). The page must hand over to app.py.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_sidebar_settings_survive_a_visit_to_another_page(apptest) -> None:  # noqa: ANN001
    at = apptest()
    at.number_input(key="k").set_value(5).run()
    at.radio(key="live_x").set_value("n_matvec").run()
    assert not at.exception, [e.value for e in at.exception]
    for page in ("pages/history.py", "pages/learn.py", "pages/explore.py"):
        at.switch_page(page).run()
        assert not at.exception, (page, [e.value for e in at.exception])
    assert at.number_input(key="k").value == 5
    assert at.radio(key="live_x").value == "n_matvec"
    assert at.title[0].value == "Eigensolver Explorer"


@pytest.mark.parametrize("page", ["pages/explore.py", "pages/history.py", "pages/compare.py", "pages/learn.py",
                                  "pages/model.py"])
def test_each_page_runs_inside_the_frame(apptest, page: str) -> None:  # noqa: ANN001
    at = apptest()
    del at.session_state["_run_counter"]  # only app.py's state.init_session sets it again
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["_run_counter"] == 0
    assert len(at.title) == 1, [t.value for t in at.title]  # drawn once, not once alone and once in the frame
