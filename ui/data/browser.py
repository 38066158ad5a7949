"""'Browse images' on the data page: filter a stored dataset's records by class and problem, page
through them with their ground-truth boxes, split and problems."""

from __future__ import annotations

import math
from pathlib import Path

import streamlit as st
from PIL import Image

from detector.data import StoredDataset
from detector.data.records import LoadedDataset, Problem
from detector.data.validation import action_kind
from detector.images import ImageError, load_image
from detector.viz.data import record_figure
from detector.wording import counted

PER_PAGE = 6


@st.cache_data(show_spinner=False, max_entries=256)
def thumbnail(root: str, file: str, max_side: int = 480) -> tuple[Image.Image | None, str | None, float]:
    """(downsampled image, error, scale) for the browser; boxes stay in original pixels."""
    try:
        image = load_image(Path(root) / file, name=file)
    except ImageError as exc:
        return None, str(exc), 1.0
    scale = min(1.0, max_side / max(image.size))
    if scale < 1.0:
        image = image.resize((round(image.width * scale), round(image.height * scale)))
    return image, None, scale


BROWSE_FILTERS = ["all images", "images with problems", "empty images (negatives)"]


def problem_kinds(problems_of: dict[int, list[Problem]]) -> dict[int, set[str]]:
    """Record index -> the action kinds of its problems."""
    return {i: {action_kind(p) for p in ps} for i, ps in problems_of.items()}


def browse_indices(ds: LoadedDataset, problems_of: dict[int, list[Problem]], classes: list[str],
                   problem_filter: str) -> list[int]:
    """Indices of the records that hold one of these classes (empty: any) and pass the problem filter:
    one of BROWSE_FILTERS or an action kind."""
    kinds_by_record = problem_kinds(problems_of)
    all_kinds = set().union(*kinds_by_record.values())
    wanted_labels = {ds.class_names.index(c) + 1 for c in classes}
    indices = []
    for i, r in enumerate(ds.records):
        if wanted_labels and not wanted_labels & set(r.labels):
            continue
        if problem_filter == "images with problems" and i not in problems_of:
            continue
        if problem_filter == "empty images (negatives)" and r.boxes:
            continue
        if problem_filter in all_kinds and problem_filter not in kinds_by_record.get(i, ()):
            continue
        indices.append(i)
    return indices


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
    st.caption(f"{counted(len(indices), 'image')} {'matches' if len(indices) == 1 else 'match'}. Ground-truth boxes in original-image pixels; hover a corner for the "
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
