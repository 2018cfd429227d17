"""Eigensolver Explorer: the Streamlit entrypoint (``streamlit run app.py``).

It sets the page config, owns the session values shared by all pages
(``explorer.ui.state.init_session``) and lists the pages. Adding a page is one line
in ``PAGES``. The ``__main__`` guard keeps a multiprocessing child (which re-imports
the entrypoint as ``__mp_main__``) from running the app (../shared/LIVE.md 5, pitfall 2);
``streamlit run`` and AppTest both execute this file as ``__main__``.
"""

import streamlit as st

from explorer.ui import state

PAGES = [
    st.Page("pages/explore.py", title="Explore", icon=":material/insights:", default=True),
    st.Page("pages/history.py", title="History", icon=":material/history:"),
    st.Page("pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
    st.Page("pages/learn.py", title="Learn", icon=":material/school:"),
    st.Page("pages/model.py", title="Model", icon=":material/hub:"),
]


def main() -> None:
    st.set_page_config(page_title="Eigensolver Explorer", page_icon=":material/insights:", layout="wide")
    state.init_session()
    st.navigation(PAGES).run()


if __name__ == "__main__":
    main()
