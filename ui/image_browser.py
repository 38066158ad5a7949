"""'Browse images' on the data page: filter a stored dataset's records by class and problem, page
through them with their ground-truth boxes, split and problems."""

from __future__ import annotations

import math

import streamlit as st

from detector.data import StoredDataset
from detector.viz.data import record_figure
from ui.data import BROWSE_FILTERS, browse_indices, problem_kinds, thumbnail

PER_PAGE = 6


def render_browser(sd: StoredDataset, problems_of: dict) -> None:
    """The 'Browse images' section: filters, the page number and a two-column grid of PER_PAGE images."""
    ds = sd.dataset
    st.header("Browse images")
    b1, b2 = st.columns(2)
    class_filter = b1.multiselect("Images containing", list(ds.class_names), key="data_class_filter",
                                  help="Empty: every image.")
    all_kinds = sorted(set().union(*problem_kinds(problems_of).values()))
    problem_filter = b2.selectbox("Problems", BROWSE_FILTERS + all_kinds, key="data_problem_filter")
    indices = browse_indices(ds, problems_of, class_filter, problem_filter)
    pages = max(1, math.ceil(len(indices) / PER_PAGE))
    page = int(st.number_input(f"Page (1 to {pages})", 1, pages, 1, key="data_page"))
    st.caption(f"{len(indices)} image(s) match. Ground-truth boxes in original-image pixels; hover a corner for the "
               "class and size.")
    train_set = set(sd.train_indices)
    cols = st.columns(2)
    for slot, i in enumerate(indices[(page - 1) * PER_PAGE: page * PER_PAGE]):
        r = ds.records[i]
        col = cols[slot % 2]
        image, error, scale = thumbnail(str(ds.root), r.file)
        if error:
            col.error(error)
        else:
            fig = record_figure(image, r.boxes, r.labels, ds.class_names, title=r.file, max_side=480,
                                original_size=(r.width, r.height))
            col.plotly_chart(fig, key=f"data_img_{i}")
        split = "train" if i in train_set else "validation"
        col.caption(f"{r.width}x{r.height} px, {len(r.boxes)} box(es), {split}, id {r.image_id}")
        for p in problems_of.get(i, []):
            col.warning(f"{p.message} → {p.action}", icon=":material/warning:")
