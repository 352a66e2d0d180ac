"""The dashboard's navigation, run by app.py and by any page that finds itself running without it.

Streamlit keeps a server-wide flag for its old multipage mode when a `pages/` folder exists, and only
`st.navigation` clears it. A fresh server whose first request is a deep link (`/audit?...`) therefore
runs the page file alone: no app layout, file names in the sidebar. Each page calls
`require_navigation()` first; in that case it runs the app's navigation itself (which renders the
requested page) and stops, so the page appears exactly as through app.py, widget events intact.
"""

from __future__ import annotations

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

PAGES = (
    ("pages/home.py", "Overview", ":material/home:", None),
    ("pages/episodes.py", "Episodes", ":material/movie:", "episodes"),
    ("pages/prompts.py", "Prompts", ":material/edit_note:", "prompts"),
    ("pages/audit.py", "Audit", ":material/fact_check:", "audit"),
    ("pages/training.py", "Training", ":material/model_training:", "training"),
    ("pages/compare.py", "Compare", ":material/leaderboard:", "compare"),
)


def run_app() -> None:
    """Page config and navigation: the whole of app.py."""
    st.set_page_config(page_title="RG-VLM Studio", page_icon=":material/insights:", layout="wide")
    pages = [
        st.Page(path, title=title, icon=icon, url_path=url, default=url is None)
        for path, title, icon, url in PAGES
    ]
    st.navigation(pages).run()


def require_navigation() -> None:
    """Make sure the current page runs inside the app's navigation (see the module docstring)."""
    if PagesManager.uses_pages_directory:
        run_app()
        st.stop()
