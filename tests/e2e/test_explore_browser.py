"""Real browser (Chromium via Playwright) against a live `streamlit run app.py`."""

from __future__ import annotations

import csv
import io
import re
import time
from pathlib import Path

import pytest

from explorer.solvers import SOLVERS

pytestmark = [pytest.mark.browser, pytest.mark.slow]

STATUS = re.compile(r"Run #\d+ \(\w+\): (converged|max_iter reached|stopped|breakdown|failed)")


def _solver() -> str:
    if "lobpcg" not in SOLVERS:
        pytest.skip("lobpcg is not registered")
    return "lobpcg"


def _big_laplacian(ui, n: int = 110) -> None:
    ui.radio("problem_mode", "Generate")
    ui.select("gen_name", "2-D Laplacian (sparse)")
    ui.fill("g_laplacian_2d_nx", n)
    ui.fill("g_laplacian_2d_ny", n)
    ui.click("generate")
    ui.page.get_by_text(f"laplacian_2d(nx={n}, ny={n})").first.wait_for()


def _set_solver(ui, name: str, tol: str, max_iter: int, which: str | None = None) -> None:
    ui.select("solver", SOLVERS[name].label)
    if which is not None:
        ui.select("which", which)
    ui.fill("tol", tol)
    ui.fill("max_iter", max_iter)


def _start_long_run(ui) -> None:
    """LOBPCG on a 110 x 110 Laplacian to tol 1e-14: far longer than any test waits (Stop ends it)."""
    _big_laplacian(ui)
    _set_solver(ui, _solver(), "1e-14", 20000)
    ui.click("run")


def _status(page, timeout_s: float = 120) -> str:
    alert = page.locator('[data-testid="stAlert"]').filter(has_text=STATUS).first
    alert.wait_for(timeout=timeout_s * 1000)
    return STATUS.search(alert.inner_text()).group(1)


def _download_csv(page, key: str = "explore_result_dl_csv") -> list[dict]:
    button = page.locator(f".st-key-{key} button").filter(visible=True).first
    with page.expect_download() as download:
        button.click()
    text = Path(download.value.path()).read_text()
    return list(csv.DictReader(io.StringIO(text)))


def test_live_run_shows_changing_charts_then_the_result(ui):
    page = ui.page
    _big_laplacian(ui)
    # The smallest eigenvalues of a 110 x 110 Laplacian have tiny relative gaps: without a
    # preconditioner 1500 iterations stay far from tol = 1e-14, so the run lasts all 1500. That is
    # ~5-15 s: at 300 an idle machine finished in ~1 s, too fast to see three redraws at 0.5 s.
    _set_solver(ui, _solver(), "1e-14", 1500, which="SA")
    ui.click("run")
    states = set()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        state = ui.chart_state()
        if state:
            states.add(tuple(state))
        if page.locator('[data-testid="stAlert"]').filter(has_text=STATUS).count():
            break
        time.sleep(0.25)
    assert _status(page) == "max_iter reached"
    assert len(states) >= 3, f"only {len(states)} chart states seen: {sorted(states)}"
    print(f"{len(states)} chart states: {sorted(states)[:3]} ... {sorted(states)[-1]}")
    final = ui.chart_state()
    assert final is not None and final[1] >= max(s[1] for s in states)


def test_stop_ends_the_run_and_keeps_the_history(ui):
    page = ui.page
    _start_long_run(ui)
    progress = page.get_by_test_id("stProgress").filter(visible=True).first
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        match = re.search(r"Iteration ([\d,]+)", progress.inner_text() if progress.count() else "")
        if match and int(match.group(1).replace(",", "")) >= 3:
            break
        time.sleep(0.2)
    t0 = time.monotonic()
    ui.click("stop")
    assert _status(page, 60) == "stopped"
    assert time.monotonic() - t0 < 30
    assert ui.chart_state()[0] >= 3  # the partial history is still drawn
    rows = _download_csv(page)
    assert rows and int(rows[-1]["iteration"]) >= 3


def test_upload_mtx_solve_download_and_history(ui, tmp_path):
    from explorer.problems.files import save_matrix
    from explorer.problems import generate

    page = ui.page
    path = tmp_path / "chain.mtx"
    save_matrix(path, generate("laplacian_1d", n=200).operator)
    ui.radio("problem_mode", "Upload")
    page.locator('.st-key-upload input[type="file"]').set_input_files(str(path))
    page.get_by_text("upload chain.mtx").first.wait_for()
    _set_solver(ui, _solver(), "1e-8", 1000)
    ui.click("run")
    assert _status(page) == "converged"
    rows = _download_csv(page)
    assert list(rows[0])[:5] == ["solver", "iteration", "index", "ritz_value", "residual_norm"]
    assert {int(r["index"]) for r in rows} == {0, 1, 2, 3}
    assert float(rows[-1]["residual_norm"]) < 1e-3
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="History").click()
    page.get_by_text("Run history").wait_for()
    # the title comes first; the table (a canvas grid) renders a moment later on a loaded machine
    page.get_by_test_id("stDataFrame").filter(visible=True).first.wait_for()


def test_upload_a_rectangular_npy_see_its_shape_and_get_singular_values(ui, tmp_path):
    """Upload a tall .npy built from a known SVD: the preview shows m x n, the solver menu offers the SVD
    solvers (golub_kahan selected), Run converges, the table lists the singular values against the
    exact ones (a dense SVD of the upload), and U, V download."""
    import numpy as np

    page = ui.page
    rng = np.random.default_rng(0)
    U, _ = np.linalg.qr(rng.standard_normal((300, 40)))
    V, _ = np.linalg.qr(rng.standard_normal((120, 40)))
    values = np.linspace(3.0, 1.5, 40)
    A = (U * values) @ V.T  # 300 x 120, rank 40
    path = tmp_path / "tall.npy"
    np.save(path, A)
    ui.radio("problem_mode", "Upload")
    page.locator('.st-key-upload input[type="file"]').set_input_files(str(path))
    page.get_by_text("upload tall.npy").first.wait_for()
    page.get_by_text(re.compile("Preview: 300 \u00d7 120, SVD")).first.wait_for()
    solver_box = ui.el("solver")
    solver_box.click()
    options = {o.inner_text().strip() for o in page.get_by_role("option").all()}
    page.keyboard.press("Escape")
    assert options == {spec.label for spec in SOLVERS.values() if spec.kind == "svd"}, options
    ui.fill("k", 3)
    ui.fill("tol", "1e-10")
    ui.click("run")
    assert _status(page) == "converged"
    page.get_by_text("Singular triplets").first.wait_for()
    page.get_by_test_id("stDataFrame").filter(visible=True).first.wait_for()  # (a canvas grid: no text to read)
    with page.expect_download() as download:
        page.locator(".st-key-explore_result_dl_vectors button").filter(visible=True).first.click()
    arrays = np.load(download.value.path())
    assert arrays["U"].shape == (300, 3) and arrays["V"].shape == (120, 3)
    S = np.diag(arrays["U"].T @ A @ arrays["V"])
    np.testing.assert_allclose(np.abs(S), values[:3], rtol=0, atol=1e-8)


def _server_jobs(page) -> int:
    caption = page.get_by_text(re.compile(r"\d+ solves? running on this server")).first
    caption.wait_for()
    return int(re.search(r"(\d+) solves? running", caption.inner_text()).group(1))


def test_closing_the_tab_ends_its_run(ui, app_server):
    page = ui.page
    _start_long_run(ui)
    page.get_by_text(re.compile(r"Iteration [1-9]")).first.wait_for()
    watcher = page.context.new_page()
    watcher.goto(app_server)
    assert _server_jobs(watcher) >= 1
    page.close()
    deadline = time.monotonic() + 90  # detach grace is 10 s; generous for a loaded machine
    while time.monotonic() < deadline:
        watcher.reload()
        if _server_jobs(watcher) == 0:
            return
        time.sleep(2)
    raise AssertionError("the solve of the closed tab is still running after 90 s")


_LIVE_RANGE = """() => {
    for (const el of document.querySelectorAll('.st-key-explore_live_chart .js-plotly-plot')) {
        if (el.offsetParent && el._fullLayout) return [el._fullLayout.xaxis.range, el._fullLayout.xaxis.autorange];
    }
    return null;
}"""


def test_pause_keeps_the_users_zoom_while_the_solve_goes_on(ui):
    page = ui.page
    _start_long_run(ui)
    progress = page.get_by_test_id("stProgress").filter(visible=True).first
    page.get_by_text(re.compile(r"Iteration [1-9]\d")).first.wait_for()
    ui.el("explore_pause").locator("label").click()
    page.get_by_text("Live view paused").first.wait_for()
    time.sleep(1.0)  # let the fragment rerun that drew the held chart settle
    plot = page.locator(".st-key-explore_live_chart .js-plotly-plot").filter(visible=True).first
    box = plot.locator(".nsewdrag").first.bounding_box()  # the Ritz value panel
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.7, steps=5)
    page.mouse.up()
    zoomed = page.evaluate(_LIVE_RANGE)
    assert zoomed is not None and zoomed[1] is False, zoomed
    before = progress.inner_text()
    time.sleep(2.5)  # about five fragment reruns
    assert page.evaluate(_LIVE_RANGE) == zoomed
    assert progress.inner_text() != before  # the solve and its progress line went on
    ui.click("stop")
    assert _status(page, 60) == "stopped"
