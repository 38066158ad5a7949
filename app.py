"""Faster R-CNN Explorer: the router (st.navigation over pages/) and the shared sidebar."""

from pathlib import Path

import streamlit as st

from ui.compute import policy
from ui.sidebar import render_sidebar

st.set_page_config(page_title="Faster R-CNN Explorer", page_icon=":material/center_focus_strong:", layout="wide")

HERE = Path(__file__).resolve().parent
# (file, title, icon, url path); a page is listed only once its file exists.
PAGES = [
    ("pages/home.py", "Overview", ":material/home:", ""),
    ("pages/anchors.py", "Anchors", ":material/grid_on:", "anchors"),
    ("pages/rpn.py", "RPN inspector", ":material/visibility:", "rpn"),
    ("pages/data.py", "Data", ":material/dataset:", "data"),
    ("pages/train.py", "Train", ":material/model_training:", "train"),
    ("pages/detect.py", "Detect", ":material/image_search:", "detect"),
    ("pages/diagnose.py", "Diagnose", ":material/troubleshoot:", "diagnose"),
]

pages = [
    st.Page(file, title=title, icon=icon, url_path=url or None, default=(url == ""))
    for file, title, icon, url in PAGES
    if (HERE / file).is_file()
]
policy()  # this server's torch threads and forward gate, set once per process (ui/compute.py)
current = st.navigation(pages)
render_sidebar()
current.run()
