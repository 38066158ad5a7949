"""Anchor explorer: the anchors at every feature-map location, their RPN labels, and their fitness
for a dataset. Widgets and layout only: caches, parsers and tables live in ui.anchors.glue, the anchors in
detector.anchor_grids / anchor_matching / anchor_fitness, figures in detector.viz.anchors."""

from __future__ import annotations

import streamlit as st

from detector import anchor_grids
from detector.viz import anchors as V
from detector.wording import counted
from ui.anchors import glue as U
from ui.anchors.sections import cell_anchors, training_labels
from ui.anchors.study import pick_section, render_study_section
from ui.inputs import image_input
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
