"""Real browser (Chromium via Playwright): one shift-invert run through the real Explore form.

The sample 30 x 30 Laplacian opens first; its eigenvalues are the closed-form sums of
4 sin^2(j pi / 62), so the run is judged against those, not against the solver."""

from __future__ import annotations

import re

import numpy as np
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

STATUS = re.compile(r"Run #\d+ \(\w+\): (converged|max_iter reached|stopped|breakdown|failed)")


def _exact_2d(n: int = 30) -> np.ndarray:
    one = 4.0 * np.sin(np.arange(1, n + 1) * np.pi / (2 * (n + 1))) ** 2
    return np.sort((one[:, None] + one[None, :]).ravel())


def _choice(ui, key: str) -> str:
    """The option a selectbox shows (its combobox input's value)."""
    return ui.el(key).locator("input").first.input_value()


def _metric(page, label: str) -> str:
    box = page.get_by_test_id("stMetric").filter(has_text=label).filter(visible=True).first
    return box.get_by_test_id("stMetricValue").inner_text().strip()


def test_a_shift_invert_run_through_the_form(ui):
    page = ui.page
    ui.select("solver", "Lanczos (thick restart)")
    page.get_by_test_id("stExpander").filter(has_text="lanczos options").first.locator("summary").click()
    sigma = page.locator(".st-key-p_lanczos_sigma input").filter(visible=True).first
    sigma.wait_for()
    assert sigma.get_attribute("placeholder") == "off (empty = no shift)"
    assert _choice(ui, "which") == "LA"
    ui.fill("p_lanczos_sigma", "1.0")
    caption = page.get_by_text("Shift-invert at sigma = 1: the k eigenvalues nearest it")
    caption.first.wait_for()
    assert _choice(ui, "which") == "LM: nearest sigma"  # which follows sigma
    ui.fill("tol", "1e-9")
    ui.click("run")
    alert = page.locator('[data-testid="stAlert"]').filter(has_text=STATUS).first
    alert.wait_for(timeout=120_000)
    text = alert.inner_text()
    assert STATUS.search(text).group(1) == "converged", text
    assert "Shift-invert at sigma = 1 (nearest" in text and "solves with the factorization" in text
    assert _metric(page, "converged") == "4 / 4"
    # the error is against the 4 exact eigenvalues nearest 1 (0.98..1.03), not the largest (~7.98)
    error = float(_metric(page, "max error"))
    assert error < 1e-8, error
    exact = _exact_2d()
    nearest = exact[np.argsort(np.abs(exact - 1.0), kind="stable")[:4]]
    assert 0.9 < nearest.min() and nearest.max() < 1.1
    with page.expect_download() as download:
        page.locator(".st-key-explore_result_dl_values button").filter(visible=True).first.click()
    values = np.load(download.value.path())
    np.testing.assert_allclose(values, nearest, atol=8e-9)  # |theta - lambda| <= ||r|| <= tol ||A||
    # clearing the field switches shift-invert off: which is the plain choice again
    sigma = page.locator(".st-key-p_lanczos_sigma input").filter(visible=True).first
    sigma.fill("")
    sigma.press("Enter")
    ui.wait_idle()
    caption.first.wait_for(state="detached", timeout=30_000)
    assert _choice(ui, "which") == "LA"


def test_a_comparison_near_sigma_through_the_compare_form(page, app_server, streamlit_ui):
    """The shared sigma of the Compare page: which follows it, Lanczos and LOBPCG run near sigma = 1, and
    the diagnosis finds nothing wrong (before sigma was known to it, their results read as 'missed
    eigenvalues' of the LM end)."""
    page.set_default_timeout(60_000)
    page.goto(app_server + "/compare")
    ui = streamlit_ui(page)
    page.locator(".st-key-cmp_run button").filter(visible=True).first.wait_for(state="visible", timeout=90_000)
    ui.select("cmp_preset", "Lanczos vs LOBPCG")
    assert _choice(ui, "cmp_which") == "LA"
    ui.fill("cmp_sigma", "1.0")
    page.get_by_text("Near sigma = 1: every run looks for the k eigenvalues nearest sigma").first.wait_for()
    assert _choice(ui, "cmp_which") == "LM: nearest sigma"
    ui.fill("cmp_tol", "1e-9")
    ui.fill("cmp_budget", "0")
    ui.click("cmp_run")
    page.get_by_role("heading", name="Diagnosis").first.wait_for(timeout=120_000)
    healthy = page.locator('[data-testid="stAlert"]').filter(has_text="No problem found").filter(visible=True)
    healthy.nth(1).wait_for(timeout=30_000)  # the diagnosis of both runs (it renders after the heading)
    ui.wait_idle()
    assert healthy.count() == 2
    assert page.get_by_text("Missed eigenvalue").count() == 0
