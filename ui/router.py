"""Keep every URL on app.py's router.

Because the page files live in `pages/`, a fresh Streamlit server treats the app as a legacy
multipage app until app.py first calls `st.navigation`; a first request straight to a sub-page
URL (a shared link, a bookmark) would then run that page file alone, without the shared sidebar.
`ensure_router()`, called first by every page, switches such a run over to app.py and reruns.
"""

from __future__ import annotations

import streamlit as st


def ensure_router() -> None:
    """Rerun through app.py's st.navigation if Streamlit ran this page file directly."""
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()
