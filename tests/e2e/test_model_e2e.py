"""Real browser: open the Model page (sample MLP preselected), run the Hessian solve, see the result."""

from __future__ import annotations

import re

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

STATUS = re.compile(r"Run #\d+ \(\w+\): (converged|max_iter reached|stopped|breakdown|failed)")


def test_model_page_runs_the_hessian_solve(ui):  # noqa: ANN001
    page = ui.page
    page.get_by_test_id("stSidebarNav").get_by_text("Model").click()
    page.get_by_text("1,732 parameters").first.wait_for(timeout=60_000)
    ui.click("model_run")
    alert = page.locator('[data-testid="stAlert"]').filter(has_text=STATUS).first
    alert.wait_for(timeout=120_000)
    assert STATUS.search(alert.inner_text()).group(1) == "converged"
    # the live panel left its final chart, and the per-layer shares were drawn
    charts = page.locator('[data-testid="stPlotlyChart"]').filter(visible=True)
    assert charts.count() >= 2
    assert page.get_by_text("Where the eigenvectors live").first.is_visible()
    names = page.evaluate(
        """() => Array.from(document.querySelectorAll('[data-testid="stPlotlyChart"] .js-plotly-plot'))
                 .flatMap(el => (el._fullData || []).map(d => d.name))"""
    )
    assert "\u03b80" in names  # the Ritz value trace of the live figure
