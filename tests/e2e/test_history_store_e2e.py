"""Real browser: a solve started from a terminal (python -m explorer solve) is watched live on the History page,
and its run is still there after a page reload and in a restarted server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from explorer.store import RunStore

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _records(store: Path) -> int:
    if not store.exists():
        return 0
    frame = RunStore(store).runs()
    return int(frame["n_records"].iloc[-1]) if len(frame) else 0


def test_an_external_cli_solve_is_followed_live_and_survives_a_reload(page, store_server, streamlit_ui,
                                                                     server_factory, tmp_path):
    url, store = store_server
    # LOBPCG on the 110 x 110 Laplacian to tol 1e-14 (SA): thousands of iterations, ~10 per second
    # here; the test stops it with Ctrl-C once it has seen what it needs.
    cli = subprocess.Popen(
        [sys.executable, "-m", "explorer", "solve", "laplacian_2d:110", "--solver", "lobpcg", "-k", "8",
         "--which", "SA", "--tol", "1e-14", "--max-iter", "20000", "--name", "terminal run", "--json"],
        cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "EXPLORER_STORE": str(store), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        while _records(store) < 3:
            assert cli.poll() is None, cli.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "the CLI solve wrote no records"
            time.sleep(0.2)
        page.set_default_timeout(90_000)
        page.goto(url + "/history")
        ui = streamlit_ui(page)
        page.get_by_text("Following run #1").first.wait_for()
        assert page.get_by_text(str(store)).count() >= 1  # the page says where the store is
        states = set()
        deadline = time.monotonic() + 90
        while len(states) < 3 and time.monotonic() < deadline:
            state = ui.chart_state()
            if state:
                states.add(tuple(state))
            time.sleep(0.3)
        assert len(states) >= 3, f"the live chart did not grow: {states}"
        last_x = sorted(s[1] for s in states)  # (points, last x): the points are capped at 400 by decimation
        assert last_x[-1] > last_x[0]

        page.reload()  # a new browser session: the run is in the store, so it is still listed and followed
        page.get_by_text("Following run #1").first.wait_for()
        page.get_by_test_id("stDataFrame").filter(visible=True).first.wait_for()
        table = page.get_by_test_id("stDataFrame").filter(visible=True).first
        assert "cli" in table.inner_text() or page.get_by_text("terminal run").count() >= 1
        deadline = time.monotonic() + 60
        before = None
        while before is None and time.monotonic() < deadline:
            before = ui.chart_state()
            time.sleep(0.3)
        after = before
        while after == before and time.monotonic() < deadline:  # it keeps following after the reload
            time.sleep(0.3)
            after = ui.chart_state() or before
        assert before and after and after[1] > before[1], (before, after)
    finally:
        if cli.poll() is None:
            cli.send_signal(signal.SIGINT)  # Ctrl-C: the CLI stops the solve and keeps the partial run
        out, err = cli.communicate(timeout=60)
    assert cli.returncode == 130, err[-2000:]
    assert json.loads(out)["status"] == "stopped"
    # the live view notices the end and shows the result; after a reload it is still there
    page.get_by_text("Run #1 (lobpcg): stopped").first.wait_for(timeout=90_000)
    page.reload()
    page.get_by_text("Run #1 (lobpcg): stopped").first.wait_for()
    assert RunStore(store).run(1).status == "stopped"
    # a new server process on the same store (a restart) lists it too
    with server_factory(tmp_path / "restarted" / "streamlit.log", store=store) as restarted:
        page.goto(restarted + "/history")
        page.get_by_text("Run #1 (lobpcg): stopped").first.wait_for()
