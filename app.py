"""Faster R-CNN Explorer: the router (st.navigation over pages/) and the shared sidebar."""

from pathlib import Path

import streamlit as st

from ui.compute import policy
from ui.router import PAGES
from ui.sidebar import render_sidebar

st.set_page_config(page_title="Faster R-CNN Explorer", page_icon=":material/center_focus_strong:", layout="wide")

HERE = Path(__file__).resolve().parent
# ui.router.PAGES is the one list of pages; a page is listed only once its file exists.
pages = [
    st.Page(p.file, title=p.title, icon=p.icon, url_path=p.url or None, default=(p.url == ""))
    for p in PAGES
    if (HERE / p.file).is_file()
]
policy()  # this server's torch threads and forward gate, set once per process (ui/compute.py)
current = st.navigation(pages)
render_sidebar()
current.run()
