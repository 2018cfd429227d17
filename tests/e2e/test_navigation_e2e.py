"""Real browser: the first request to a fresh server opens a page directly (the legacy pages/ race)."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

MENU = ["Explore", "History", "Compare", "Learn", "Model"]


def _menu(page) -> list[str]:  # noqa: ANN001
    nav = page.get_by_test_id("stSidebarNav")
    nav.get_by_role("link").first.wait_for()
    return [link.inner_text().strip().split("\n")[-1] for link in nav.get_by_role("link").all()]  # after the icon


def test_a_page_opened_before_the_menu_exists_runs_inside_the_app(page, fresh_server):  # noqa: ANN001
    """Before any session has called st.navigation, Streamlit serves pages/ as a legacy app: a URL such as
    /compare (or a click on the legacy sidebar list) runs pages/compare.py without app.py."""
    page.set_default_timeout(90_000)
    page.goto(fresh_server + "/compare")
    page.get_by_role("heading", name="Compare solvers").first.wait_for()
    page.locator(".st-key-cmp_run button").first.wait_for()
    assert _menu(page) == MENU  # app.py's st.navigation menu, not the file list ("app", "compare", ...)
    # the frame ran: the sidebar settings exist, and the menu works both ways
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Explore").click()
    page.locator(".st-key-run button").filter(visible=True).first.wait_for()
    assert _menu(page) == MENU
