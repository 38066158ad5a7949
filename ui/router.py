"""Keep every URL on app.py's router.

Because the page files live in `pages/`, a fresh Streamlit server treats the app as a legacy
multipage app until app.py first calls `st.navigation`; a first request straight to a sub-page
URL (a shared link, a bookmark) would then run that page file alone, without the shared sidebar.
`ensure_router()`, called first by every page, switches such a run over to app.py and reruns.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st


@dataclass(frozen=True)
class PageInfo:
    """One page of the app: its file, title, icon and URL path ("" is the home page)."""

    file: str
    title: str
    icon: str
    url: str


# The one list of pages: the router (app.py), the overview's page list and ui.links read it.
PAGES: tuple[PageInfo, ...] = (
    PageInfo("pages/home.py", "Overview", ":material/home:", ""),
    PageInfo("pages/anchors.py", "Anchors", ":material/grid_on:", "anchors"),
    PageInfo("pages/rpn.py", "RPN inspector", ":material/visibility:", "rpn"),
    PageInfo("pages/data.py", "Data", ":material/dataset:", "data"),
    PageInfo("pages/train.py", "Train", ":material/model_training:", "train"),
    PageInfo("pages/detect.py", "Detect", ":material/image_search:", "detect"),
    PageInfo("pages/diagnose.py", "Diagnose", ":material/troubleshoot:", "diagnose"),
)


def ensure_router() -> None:
    """Rerun through app.py's st.navigation if Streamlit ran this page file directly."""
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()
