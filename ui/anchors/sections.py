"""The /anchors page's two live sections, each an st.fragment: its widgets rerun that section alone,
so the page's other figures (counts, fitness) stay. Anchors from detector.anchor_grids, labels from
detector.anchor_matching, figures from detector.viz.anchors."""

from __future__ import annotations

import streamlit as st

from detector import anchor_grids, anchor_matching
from detector.viz import anchors as V
from detector.wording import counted
from ui.anchors import glue as U
from ui.inputs import PickedImage


# ---- anchors at one location
@st.fragment
def cell_anchors(picked: PickedImage, grid: anchor_grids.AnchorGrid) -> None:
    """The anchors of one cell (or of one shape): its widgets rerun this section alone."""
    st.subheader("Anchors at each feature-map location")
    c1, c2, c3, c4 = st.columns(4)
    level, row, col, centres = U.cell_inputs(grid, (c1, c2, c3))
    lv = grid.levels[level]
    view = c4.radio("Show", ("anchors at the cell", "all anchors of one shape"), key="anchors_view")
    at = anchor_grids.anchors_at(grid, level, row, col)
    shape_boxes, step = None, 1
    if view == "all anchors of one shape":
        shape = st.selectbox("Anchor shape", range(lv.anchors_per_location), key="anchors_shape",
                             format_func=lambda a: f"#{a}: {lv.shape_label(a)} ({lv.shapes[a][0]:.0f}x{lv.shapes[a][1]:.0f})")
        shape_boxes, step = anchor_grids.anchors_of_shape(grid, level, int(shape))
    fig = V.anchor_cell_figure(picked.image, grid, centres, at, picked.boxes if picked.has_ground_truth else None,
                               shape_boxes)
    st.plotly_chart(fig, on_select="rerun", selection_mode="points", key=U.CHART, width="stretch")
    st.caption(
        f"Click a dot: the {counted(lv.anchors_per_location, 'anchor')} of that sliding-window position (level {lv.name}, stride "
        f"{lv.stride[0]}) are drawn, each labelled with its index in the RPN's flat (level, y, x, a) order, its scale and "
        f"aspect ratio: the paper's 'k anchor boxes' per position. Dots are every{'' if centres.step == 1 else f' {centres.step}th'} "
        f"cell whose centre is on the image"
        + (f"; the faint boxes are one shape at every {step}th cell" if shape_boxes is not None else "") + "."
    )
    st.table(U.cell_table(grid, level, at), hide_index=True)  # a static table: quicker to redraw than a grid


# ---- matching
@st.fragment
def training_labels(key: str, grid: anchor_grids.AnchorGrid, picked: PickedImage) -> None:
    """The RPN's labels for the image's boxes: the sampler seed and the kinds drawn rerun this section alone."""
    st.subheader("Which anchors train the RPN")
    if not picked.has_ground_truth or len(picked.boxes) == 0:
        st.info(f"This image has no ground-truth boxes: every anchor would be a negative. {picked.no_boxes_note}")
    else:
        match = U.matching(key, grid, picked)
        s1, s2 = st.columns([1, 2])
        seed = int(s1.number_input("Sampler seed", 0, 1_000_000, 0, key="anchors_sampler_seed"))
        kinds = s2.multiselect("Draw", ["positive", "ignored", "negative"], default=["positive", "negative"],
                               key="anchors_draw", format_func=lambda k: "sampled negative" if k == "negative" else k)
        batch = anchor_matching.sample_minibatch(match, seed=seed)
        counts = match.counts
        m1, m2, m3, m4 = st.columns(4)
        m1.metric("positive", f"{counts['positive']:,}", help="IoU ≥ 0.7 with a box, or a box's best anchor")
        m2.metric("negative", f"{counts['negative']:,}", help="IoU < 0.3 with every box")
        m3.metric("ignored", f"{counts['ignored']:,}", help="IoU between 0.3 and 0.7: no loss")
        m4.metric("minibatch (pos + neg)", f"{len(batch.positive)} + {len(batch.negative)}",
                  help="torchvision's BalancedPositiveNegativeSampler: 256 anchors, at most half positive")
        st.plotly_chart(V.matching_figure(picked.image, grid, match, batch, picked.boxes, max_per_kind=150, show=kinds),
                        key="anchors_matching", width="stretch")
        st.caption(
            "The paper's RPN labels (section 3.1.2) as torchvision's Matcher gives them: an anchor is positive at IoU ≥ 0.7 "
            "with a ground-truth box, or when it is a box's best anchor; negative under 0.3; otherwise it does not count. "
            f"Each step samples 256 anchors, up to half positive (seed {seed}); the negatives drawn are that sample "
            "(at most 150 of each kind are drawn)."
        )
        table, missing = U.ground_truth_table(picked, match)
        st.table(table, hide_index=True)
        if missing:
            st.warning(f"{counted(missing, 'ground-truth box')} got no positive anchor: the RPN never learns to propose them.")
