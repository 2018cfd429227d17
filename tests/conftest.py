"""Shared fixtures: the repository on sys.path, AppTest helpers, a live Streamlit server and Chromium.

AppTest (tests/app/):
    ``apptest`` - factory: ``apptest()`` -> a fresh ``AppTest`` of app.py (its own session),
    already run once; ``apptest(page="pages/history.py")`` switches to a page.
    ``wait_for_job(at, key="explore", timeout=60)`` - poll ``at.run()`` while the job under
    ``key`` is alive (``run_every`` never fires by itself in AppTest, ../shared/LIVE.md 4.1).

Browser (tests/e2e/, marked ``browser``):
    ``app_server`` - session-scoped: ``python -m streamlit run app.py`` on a free port,
    waits for /_stcore/health, yields the base URL, terminates the process at the end.
    ``fresh_server`` - the same, for one test (a server no session has used yet).
    ``store_server`` - a server for one test, yielding (URL, its run store's path).
    Each server's run store (``$EXPLORER_STORE``) is a ``runs.sqlite`` next to its log.
    ``app_page`` - a Playwright ``page`` opened on the app with the first render done.
    ``browser_type_launch_args`` - Debian's /usr/bin/chromium with the flags of LIVE.md 4.2.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import torch

# One intra-op torch thread in the test process, set at import (before any test): solves
# in the test thread, and threads started later, which inherit it (SolveJob workers set
# their own count). On a small shared box two threads made LOBPCG ~30x slower
# (../shared/LIVE.md 2.4). The e2e server is a separate process with its own setting.
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app.py"
# AppTest puts the app directory on sys.path only while a script runs; solver threads
# and the tests import explorer.* afterwards too.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

APPTEST_TIMEOUT = 60.0
CHROMIUM = os.environ.get("EXPLORER_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(autouse=True)
def _run_store_in_tmp(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own run store (``$EXPLORER_STORE``) in a temporary folder: no test
    writes into the user's data directory, and no test sees another's runs."""
    path = tmp_path_factory.mktemp("store") / "runs.sqlite"
    monkeypatch.setenv("EXPLORER_STORE", str(path))
    return path


# -- AppTest -------------------------------------------------------------------------
def wait_for_job(at: Any, key: str = "explore", timeout: float = 60.0, poll: float = 0.1) -> Any:
    """Rerun ``at`` until the job under ``key`` has ended (and once more to render the result)."""
    deadline = time.monotonic() + timeout
    while True:
        job = _job(at, key)
        if job is None or not job.alive:
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"the {key} job still runs after {timeout} s")
        time.sleep(poll)
        at.run()
    at.run()
    return at


def _job(at: Any, key: str) -> Any:
    meta = at.session_state["_live_meta"] if "_live_meta" in at.session_state else {}
    entry = meta.get(key)
    return entry.get("job") if entry else None


def job_of(at: Any, key: str = "explore") -> Any:
    """The latest job (running or finished) under ``key`` in this AppTest session, or None."""
    return _job(at, key)


@pytest.fixture
def apptest() -> Callable[..., Any]:
    """Factory for AppTest sessions of app.py (each call: a new, isolated session)."""
    from streamlit.testing.v1 import AppTest

    made: list[Any] = []

    def make(page: str | None = None, timeout: float = APPTEST_TIMEOUT) -> Any:
        at = AppTest.from_file(str(APP), default_timeout=timeout)
        at.run()
        if page is not None:
            at.switch_page(page).run()
        made.append(at)
        return at

    yield make
    for at in made:  # stop anything a failed test left running
        meta = at.session_state["_live_meta"] if "_live_meta" in at.session_state else {}
        for key in list(meta):
            job = _job(at, key)
            if job is not None and job.alive:
                job.request_stop("test ended")
                job.wait(10)


# -- live server + browser -----------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as response:
            return response.read().strip() == b"ok"
    except OSError:
        return False


_TEST_FLAGS = ("--server.headless", "true", "--server.address", "127.0.0.1", "--server.fileWatcherType", "none",
               "--browser.gatherUsageStats", "false")


@contextlib.contextmanager
def streamlit_server(log: Path, app: Path = APP, store: Path | None = None, *, default_flags: bool = False,
                     env: dict[str, str] | None = None) -> Iterator[str]:
    """``python -m streamlit run <app>`` on a free port; yields the base URL once /_stcore/health says ok.

    Stops the process it started (by handle) on exit. Each server is a fresh Streamlit
    process, as after a deploy (e.g. the legacy ``pages/`` mode before any session ran).
    Its run store (``$EXPLORER_STORE``) is ``store``, default ``runs.sqlite`` next to ``log``;
    ``env`` replaces the environment's variables (without EXPLORER_STORE: the default one).
    ``default_flags``: only ``--server.port``, as the README's ``streamlit run app.py``.
    """
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    if env is None:
        env = {**os.environ, "EXPLORER_STORE": str(store if store is not None else log.parent / "runs.sqlite")}
    env = {**env, "PYTHONUNBUFFERED": "1"}
    flags = () if default_flags else _TEST_FLAGS
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(port), *flags],
            cwd=str(app.parent), stdout=out, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 90
        while not _healthy(url):
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not become healthy in 90 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(scope="session")
def app_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A real ``streamlit run app.py`` server for the browser tests (its own run store); yields its base URL."""
    with streamlit_server(tmp_path_factory.mktemp("server") / "streamlit.log") as url:
        yield url


@pytest.fixture
def fresh_server(tmp_path: Path) -> Any:
    """A server of its own for one test (no session has run on it yet); yields its base URL."""
    with streamlit_server(tmp_path / "streamlit.log") as url:
        yield url


@pytest.fixture
def store_server(tmp_path: Path) -> Any:
    """A server of its own for one test; yields (base URL, path of its run store)."""
    store = tmp_path / "runs.sqlite"
    with streamlit_server(tmp_path / "streamlit.log", store=store) as url:
        yield url, store


@pytest.fixture
def server_factory() -> Any:
    """``streamlit_server`` itself, for a test that starts (or restarts) servers of its own."""
    return streamlit_server


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    return {**browser_type_launch_args, "executable_path": CHROMIUM,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--no-first-run",
                     "--disable-dev-shm-usage"]}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict) -> dict:
    return {**browser_context_args, "viewport": {"width": 1440, "height": 1000}, "accept_downloads": True}


@pytest.fixture
def app_page(page: Any, app_server: str) -> Any:
    """A Playwright page on the app, after the first full render (the Run button is there)."""
    page.set_default_timeout(60_000)
    page.goto(app_server)
    page.locator(".st-key-run button").filter(visible=True).first.wait_for(state="visible", timeout=90_000)
    return page


@pytest.fixture
def wait_job() -> Callable[..., Any]:
    """``wait_job(at, key="explore", timeout=60)``: see :func:`wait_for_job`."""
    return wait_for_job


@pytest.fixture
def get_job() -> Callable[..., Any]:
    """``get_job(at, key="explore")``: the latest SolveJob under ``key`` (or None)."""
    return job_of


class StreamlitUI:
    """Small Playwright helpers for Streamlit widgets addressed by their ``key`` (CSS class ``st-key-<key>``).

    A button with ``help`` renders twice (tooltip target + fallback), and a fragment
    rerun can leave a stale copy of an element, so every lookup keeps visible nodes only.
    """

    def __init__(self, page: Any) -> None:
        self.page = page

    def el(self, key: str) -> Any:
        return self.page.locator(f".st-key-{key}").filter(visible=True).first

    def button(self, key: str) -> Any:
        return self.page.locator(f".st-key-{key} button").filter(visible=True).first

    def click(self, key: str) -> None:
        button = self.button(key)
        button.wait_for(state="visible")
        _wait_enabled(button)
        button.click()

    def fill(self, key: str, value: Any) -> None:
        """Type into a number/text input and commit it with Enter."""
        box = self.page.locator(f".st-key-{key} input").filter(visible=True).first
        box.fill(str(value))
        box.press("Enter")
        self.wait_idle()

    def radio(self, key: str, label: str) -> None:
        self.el(key).get_by_text(label, exact=True).click()
        self.wait_idle()

    def select(self, key: str, label: str, attempts: int = 5) -> None:
        """Pick ``label`` in a selectbox (reopens it if a rerun closed the dropdown meanwhile)."""
        option = self.page.get_by_role("option", name=label, exact=True)
        for attempt in range(attempts):
            self.el(key).click()
            try:
                option.first.wait_for(state="visible", timeout=5_000)
                option.first.click(timeout=5_000)
                break
            except Exception:  # noqa: BLE001 - playwright TimeoutError; retry after a rerun settles
                if attempt == attempts - 1:
                    raise
                self.page.keyboard.press("Escape")
                self.wait_idle()
        self.wait_idle()

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Wait until the app is not running a script (the status widget says so)."""
        deadline = time.monotonic() + timeout
        time.sleep(0.2)
        while time.monotonic() < deadline:
            if self.page.locator('[data-testid="stStatusWidget"]').count() == 0:
                return
            time.sleep(0.1)

    def chart_state(self) -> Any:
        """(points, last x) of the first Ritz trace of the visible live chart, or None."""
        return self.page.evaluate(
            """() => {
                for (const el of document.querySelectorAll('[data-testid="stPlotlyChart"] .js-plotly-plot')) {
                    if (!el.offsetParent || !el._fullData) continue;
                    const t = el._fullData.find(d => d.name === '\\u03b80');
                    if (t && t.x) return [t.x.length, t.x[t.x.length - 1]];
                }
                return null;
            }"""
        )


def _wait_enabled(button: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while button.is_disabled() and time.monotonic() < deadline:
        time.sleep(0.1)


@pytest.fixture
def streamlit_ui() -> type:
    """The ``StreamlitUI`` class, for tests that open their own page."""
    return StreamlitUI


@pytest.fixture
def ui(app_page: Any) -> StreamlitUI:
    """``StreamlitUI`` on a fresh app page (a new browser session)."""
    return StreamlitUI(app_page)
