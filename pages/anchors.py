"""Anchor explorer: the anchors at every feature-map location, their RPN labels, and their fitness
for a dataset. Widgets and layout only: caches, parsers and tables live in ui.anchors.glue, the anchors in
detector.anchor_grids / anchor_matching / anchor_fitness, figures in detector.viz.anchors."""

from __future__ import annotations

import streamlit as st

from detector import anchor_grids, anchor_matching
from detector.viz import anchors as V
from detector.wording import counted
from ui.anchors import glue as U
from ui.anchors.study import pick_section, render_study_section
from ui.inputs import PickedImage, image_input
from ui.router import ensure_router

ensure_router()

st.title("Anchors")
st.markdown(
    "The RPN predicts, at every cell of a feature map, an objectness score and a box correction for each of "
    "**k anchors**: reference boxes of several scales and aspect ratios centred on that cell. Here you see every "
    "anchor the model lays over an image, which of them become positive and negative training examples for a "
    "ground-truth box, and how well they fit the boxes of a whole dataset; the Study section trains one run "
    "per anchor set, as the paper's Table 8 did, and compares them."
)

if pick_section() == "study":
    render_study_section()
    st.stop()

picked = image_input("anchors")
if picked is None:
    st.stop()
key, source, cli_flags = U.pick_source()
grid = U.anchor_grid(key, picked.image.size, source)

# ---- counts
st.subheader("How many anchors")
st.dataframe(U.counts_table(grid), hide_index=True, key="anchors_counts")
st.caption(
    f"Image {grid.image_size[0]}x{grid.image_size[1]} → resized {grid.resized_size[0]}x{grid.resized_size[1]} → "
    f"padded {grid.padded_size[0]}x{grid.padded_size[1]} (the model's input frame). Anchors are built on the padded "
    "size and none is dropped at the border; 'fully inside' means inside the resized image. Same numbers as "
    f"`python -m detector anchors --image-size {grid.image_size[0]} {grid.image_size[1]} {cli_flags}`."
)
if key == "paper":
    st.table(U.paper_table(grid))
    st.caption(
        "The paper's 'about 20k' holds; its 'about 6k after ignoring cross-boundary anchors' does not reproduce: "
        "the original code keeps about 8.1k for a 1000x600 image (8,151), torchvision's anchors 8,044 (they are "
        "centred at x·16 rather than x·16 + 7.5 and rounded differently). torchvision trains on all anchors."
    )

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
    st.dataframe(U.cell_table(grid, level, at), hide_index=True, key="anchors_cell_table")


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
        st.dataframe(table, hide_index=True, key="anchors_gt_table")
        if missing:
            st.warning(f"{missing} ground-truth box(es) got no positive anchor: the RPN never learns to propose them.")


# each section's widgets rerun that section alone (st.fragment): the anchors page's other figures stay
cell_anchors(picked, grid)
training_labels(key, grid, picked)

# ---- fitness

st.subheader("Fitness for a whole dataset")
dataset = U.fitness_dataset()
fit = U.fitness(key, dataset, source)
if fit.boxes == 0:
    st.info(f"{dataset} has no ground-truth boxes.")
    st.stop()
r1, r2, r3, r4 = st.columns(4)
r1.metric("boxes", f"{fit.boxes:,}", help=f"in {counted(fit.images, 'image')}")
for col_, t in zip((r2, r3, r4), ("0.7", "0.5", "0.3")):
    col_.metric(f"recall at IoU {t}", f"{fit.recall[t]:.1%}")
h1, h2 = st.columns(2)
h1.plotly_chart(V.best_iou_histogram(fit), key="anchors_hist", width="stretch")
h1.caption("For every ground-truth box after the model's resize, its best IoU with any anchor: a box under 0.7 can "
           "only become a positive as its own best anchor, and a box under 0.3 is poorly covered by the anchors.")
h2.plotly_chart(V.recall_breakdown(fit), key="anchors_breakdown", width="stretch")
h2.caption("Recall at 0.7 by COCO size (area in original pixels: small < 32², medium < 96², large) and by aspect "
           "ratio h/w (wide < 1/3 < landscape < 2/3 < square-ish < 3/2 < portrait < 3 < tall), boxes in brackets: "
           "which objects the anchor scales and ratios miss.")

st.markdown("**What if the anchors were fitted to these boxes?**")
sugg = U.suggestions(key, dataset, source)
st.dataframe(U.suggestions_table(sugg, source, fit), hide_index=True, key="anchors_suggestions")
st.caption("Sizes and ratios from k-means on the box shapes with an IoU distance (log size and log aspect ratio), "
           "keeping the number of anchors per location; recall measured on the same grids and boxes.")
best = sugg[0]
if best.recall["0.7"] <= fit.recall["0.7"]:
    st.info("None of the fitted sets beats the current anchors at IoU 0.7 on this data: the current ones fit well, "
            "or the boxes need more shapes per location (try more sizes or ratios below).")
w1, w2 = st.columns(2)
alt_sizes = w1.text_input("What-if sizes ('/' between levels)", anchor_grids.sizes_text(best.sizes), key="anchors_whatif_sizes")
alt_ratios = w2.text_input("What-if ratios", U.ratios_text(best.ratios), key="anchors_whatif_ratios")
try:
    what, alt_source = U.what_if(key, dataset, source, alt_sizes, alt_ratios)
except ValueError as exc:
    st.error(f"What-if anchors: {exc}")
    st.stop()
a1, a2, a3 = st.columns(3)
for col_, t in zip((a1, a2, a3), ("0.7", "0.5", "0.3")):
    col_.metric(f"what-if recall at {t}", f"{what.recall[t]:.1%}", f"{(what.recall[t] - fit.recall[t]) * 100:+.1f} pts")
if not what.fits_pretrained_head:
    st.warning(f"This changes the anchors per location from {list(source.anchors_per_location)} to "
               f"{list(what.anchors_per_location)}: a pretrained RPN head no longer fits and would be replaced by a "
               "fresh, untrained one.")
st.plotly_chart(V.box_shape_figure(fit, source, alt_source), key="anchors_shapes", width="stretch")
st.caption("Ground-truth box shapes after the model's resize (colour: best anchor IoU) against the anchor shapes "
           "(x: current, diamonds: what-if): the paper's 'pyramid of anchors' seen from the data's side.")
