"""Real browser: the README's first command, ``streamlit run app.py`` with its default flags and no
EXPLORER_STORE, opens on a ready sample problem, Run works, and the run lands in the per-user store
(a temporary XDG_DATA_HOME and HOME here: a test never writes into the user's home)."""

from __future__ import annotations

import importlib.util
import os
import re

import pytest

from explorer.store import RunStore

pytestmark = [pytest.mark.browser, pytest.mark.slow]

STATUS = re.compile(r"Run #1 \(\w+\): (converged|max_iter reached)")


def test_streamlit_run_app_py_opens_on_a_sample_and_runs_into_the_default_store(page, tmp_path, server_factory):
    env = {key: value for key, value in os.environ.items() if key != "EXPLORER_STORE"}
    env.update(HOME=str(tmp_path / "home"), XDG_DATA_HOME=str(tmp_path / "data"))
    (tmp_path / "home").mkdir()
    with server_factory(tmp_path / "streamlit.log", default_flags=True, env=env) as url:
        page.set_default_timeout(90_000)
        page.goto(url)
        run = page.locator(".st-key-run button").filter(visible=True).first
        run.wait_for(state="visible")
        page.get_by_text("sample laplacian2d_30x30").first.wait_for()  # the ready sample problem
        run.click()
        page.locator('[data-testid="stAlert"]').filter(has_text=STATUS).first.wait_for(timeout=120_000)
        default = tmp_path / "data" / "eigensolver-explorer" / "runs.sqlite"
        if importlib.util.find_spec("platformdirs") is None:  # a venv without requirements.txt's platformdirs
            page.get_by_text("kept in this browser session only").first.wait_for()
            assert not default.exists()
            return
        frame = RunStore(default).runs()
        assert len(frame) == 1 and frame["source"].iloc[0] == "explore"
        page.get_by_test_id("stSidebarNav").get_by_role("link", name="History").click()
        page.get_by_text(str(default)).first.wait_for()  # the History page says where the store is
        assert not list((tmp_path / "home").rglob("*.sqlite"))
