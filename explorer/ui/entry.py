"""Every page runs inside the entrypoint (app.py); a page that Streamlit starts alone hands over to it.

app.py is the frame of every page: page config, the session's settings
(``explorer.ui.state.init_session``) and the ``st.navigation`` menu. It runs the
chosen page inside :func:`frame`, and each page calls :func:`require_frame` first.

Why (Streamlit 1.67 source, ``runtime/pages_manager.py``, ``commands/navigation.py``,
``ScriptRunner._run_script``): a ``pages/`` folder next to the entrypoint makes the
server treat the app as a legacy multipage app (``PagesManager.uses_pages_directory``,
one flag per process) until the first ``st.navigation`` call of *any* session clears
it. Until then every script run goes through ``_mpa_v1``: the sidebar lists the files
of ``pages/`` ("app", "compare", ...) and a click on one of them (or a URL such as
``/compare``) executes that file alone, without app.py. That is the first-load race
of a fresh server, and AppTest has it on every run after ``switch_page`` (it resets
the flag each run). There is no config option that turns the folder scan off
(``client.showSidebarNavigation = false`` only hides the list, and it hides the
``st.navigation`` menu as well), and the folder keeps its name. So a page that finds
itself outside the frame runs the entrypoint instead: its ``st.navigation`` clears the
flag and resolves the same page (legacy and ``st.Page`` entries share the URL path,
hence the page hash), which then runs inside the frame; the stand-alone run stops.
"""

from __future__ import annotations

import threading
import types
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

__all__ = ["frame", "in_frame", "require_frame"]

_LOCAL = threading.local()  # per script thread: how many frames are open


@contextmanager
def frame() -> Iterator[None]:
    """The entrypoint runs the page inside this: ``with entry.frame(): page.run()``."""
    depth = getattr(_LOCAL, "depth", 0)
    _LOCAL.depth = depth + 1
    try:
        yield
    finally:
        _LOCAL.depth = depth


def in_frame() -> bool:
    """True while the entrypoint's frame is open in this script thread."""
    return getattr(_LOCAL, "depth", 0) > 0


def require_frame() -> None:
    """First call of every page: when the page runs without the entrypoint, run the entrypoint instead.

    The entrypoint then shows this page in its frame and this stand-alone run stops
    (``st.stop``). Inside the frame, and outside a Streamlit run, it does nothing. The
    entrypoint runs under an open frame, so a page that is itself the main script
    (``streamlit run pages/x.py``) just runs once, as it is.
    """
    if in_frame():
        return
    ctx = get_script_run_ctx()
    entry = Path(ctx.main_script_path) if ctx is not None else None
    if entry is None or not entry.is_file():
        return
    code = compile(entry.read_text(encoding="utf-8"), str(entry), "exec")
    module = types.ModuleType("__main__")  # as Streamlit runs a script: a fresh __main__ with __file__
    module.__dict__["__file__"] = str(entry)
    with frame():
        exec(code, module.__dict__)  # noqa: S102 - the app's own entrypoint
    st.stop()
