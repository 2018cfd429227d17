"""Eigensolver Explorer: the Streamlit entrypoint (``streamlit run app.py``).

It is the frame of every page: it sets the page config, lists the pages
(``st.navigation``; adding a page is one line in ``PAGES``), owns the session values
shared by all pages (``explorer.ui.state.init_session``) and runs the chosen page
inside ``explorer.ui.entry.frame``. Every page starts with ``entry.require_frame()``,
which hands a page that Streamlit started alone over to this file (the legacy
``pages/`` folder mode of a fresh server, see ``explorer/ui/entry.py``). The menu is
registered before anything heavy is imported (``explorer`` imports torch), which
ends that legacy mode for the whole server at once. The ``__main__`` guard keeps a
multiprocessing child (which re-imports the entrypoint as ``__mp_main__``) from
running the app (../shared/LIVE.md 5, pitfall 2); ``streamlit run`` and AppTest both
execute this file as ``__main__``.
"""

import streamlit as st

PAGES = [
    st.Page("pages/explore.py", title="Explore", icon=":material/insights:", default=True),
    st.Page("pages/history.py", title="History", icon=":material/history:"),
    st.Page("pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
    st.Page("pages/learn.py", title="Learn", icon=":material/school:"),
    st.Page("pages/model.py", title="Model", icon=":material/hub:"),
]


def main() -> None:
    st.set_page_config(page_title="Eigensolver Explorer", page_icon=":material/insights:", layout="wide")
    page = st.navigation(PAGES)

    from explorer.ui import entry, state  # torch and the app's modules: after the menu is registered

    state.init_session()
    with entry.frame():
        page.run()


if __name__ == "__main__":
    main()
