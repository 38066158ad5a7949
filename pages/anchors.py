"""Anchor explorer: the anchors at every feature-map location, their RPN labels, and their fitness
for a dataset. Widgets and layout only; the anchors come from detector.anchors, figures from
detector.viz.anchors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from detector import anchor_fitness, anchor_grids, anchor_matching
from detector import scenes
from detector.viz import anchors as V
from ui.inputs import image_input
from ui.model import current_model
from ui.router import ensure_router

ensure_router()

SOURCES = ("The model's AnchorGenerator", "The paper's preset (3 scales x 3 ratios)", "Custom")
LEVEL, ROW, COL, CHART, CLICK = "anchors_level", "anchors_row", "anchors_col", "anchors_chart", "_anchors_click"
SYNTHETIC = "Synthetic scenes (offline, 60 images)"


@st.cache_resource(max_entries=16, show_spinner="Building every anchor ...")
def anchor_grid(key: str, image_size: tuple[int, int], _source: anchor_grids.AnchorSource) -> anchor_grids.AnchorGrid:
    return anchor_grids.anchor_grid(_source, image_size)


@st.cache_resource(max_entries=16, show_spinner="Matching anchors to the ground truth ...")
def matching(key: str, digest: str, _grid: anchor_grids.AnchorGrid, _gt_input: np.ndarray) -> anchor_matching.Matching:
    return anchor_matching.match_anchors(_grid, _gt_input)


@st.cache_data(max_entries=8, show_spinner="Reading the dataset's boxes ...")
def dataset_boxes(name: str) -> list[tuple[int, int, list]]:
    """(width, height, boxes in original pixels) of every image of a dataset."""
    if name == SYNTHETIC:
        return [(s.image.width, s.image.height, [list(b) for b in s.boxes]) for s in scenes.sample_scenes(60)]
    from detector.data import open_dataset

    return [(r.width, r.height, [list(b) for b in r.boxes]) for r in open_dataset(name).dataset.records]


@st.cache_resource(max_entries=16, show_spinner="Best anchor IoU of every ground-truth box ...")
def fitness(key: str, dataset: str, _source: anchor_grids.AnchorSource) -> anchor_fitness.Fitness:
    return anchor_fitness.fitness(_source, dataset_boxes(dataset))


@st.cache_resource(max_entries=32, show_spinner="Recall of the what-if anchors ...")
def what_if(key: str, dataset: str, sizes: tuple, ratios: tuple, _source: anchor_grids.AnchorSource) -> anchor_fitness.Suggestion:
    return anchor_fitness.what_if(fitness(key, dataset, _source), _source, dataset_boxes(dataset), sizes, ratios, name="what-if")


@st.cache_resource(max_entries=16, show_spinner="Fitting anchor sizes and ratios (k-means) ...")
def suggestions(key: str, dataset: str, _source: anchor_grids.AnchorSource) -> tuple[anchor_fitness.Suggestion, ...]:
    return anchor_fitness.suggestions(fitness(key, dataset, _source), _source, dataset_boxes(dataset))


def parse_custom(sizes: str, ratios: str, strides: str, min_size: int) -> anchor_grids.AnchorSource:
    levels = [[int(v) for v in level.split(",") if v.strip()] for level in sizes.split("/")]
    return anchor_grids.custom_source(levels, [float(v) for v in ratios.split(",") if v.strip()],
                           [int(v) for v in strides.split(",") if v.strip()], min_size or None)


def pick_source() -> tuple[str, anchor_grids.AnchorSource, str]:
    """(cache key, anchor source, the `python -m detector anchors` flags that give the same anchors)."""
    kind = st.radio("Anchor source", SOURCES, key="anchors_from", horizontal=True)
    if kind == SOURCES[0]:
        loaded = current_model()
        st.caption(f"Model: {loaded.description}. Its transform resizes and pads the image; its backbone sets "
                   "each level's grid; its `rpn.anchor_generator` builds the anchors.")
        return f"model:{loaded.source}:{id(loaded.model)}", anchor_grids.model_source(loaded.model, loaded.arch), \
            f"--model {loaded.source}"
    if kind == SOURCES[1]:
        st.caption("Ren et al. 2015, section 3.1: one level at stride 16 (VGG-16 conv5), box areas 128², 256², "
                   "512² x aspect ratios 1:2, 1:1, 2:1, so k = 9 anchors per location; short side rescaled to 600.")
        return "paper", anchor_grids.paper_source(), "--sizes 128,256,512 --ratios 0.5,1,2 --strides 16 --min-size 600 --max-size 1000"
    c1, c2, c3, c4 = st.columns(4)
    sizes = c1.text_input("Sizes ('/' between levels)", "32/64/128/256/512", key="anchors_sizes")
    ratios = c2.text_input("Ratios (height / width)", "0.5,1,2", key="anchors_ratios")
    strides = c3.text_input("Strides (one per level)", "4,8,16,32,64", key="anchors_strides")
    min_size = c4.number_input("Short side (0: no resize)", 0, 2000, 800, step=32, key="anchors_min_size")
    try:
        source = parse_custom(sizes, ratios, strides, int(min_size))
    except ValueError as exc:
        st.error(f"Custom anchor set: {exc}")
        st.stop()
    flags = f"--sizes {sizes.replace(' ', '')} --ratios {ratios.replace(' ', '')} --strides {strides.replace(' ', '')}"
    if source.min_size:
        flags += f" --min-size {source.min_size} --max-size {source.max_size}"
    return f"custom:{source!r}", source, flags


def apply_click(grid: anchor_grids.AnchorGrid) -> None:
    """A click on a cell centre (the plotly scatter) sets the row / column inputs before they render."""
    event = st.session_state.get(CHART)
    points = [p for p in ((event or {}).get("selection", {}) or {}).get("points", [])
              if p.get("curve_number") == V.CENTRES_CURVE]
    if not points:
        st.session_state[CLICK] = None
        return
    point = points[-1]
    level = int(st.session_state.get(LEVEL, 0))
    signature = (level, point["x"], point["y"])
    if signature == st.session_state.get(CLICK) or level >= len(grid.levels):
        return
    st.session_state[CLICK] = signature
    sx, sy = grid.frame.scale
    st.session_state[ROW], st.session_state[COL] = anchor_grids.nearest_cell(grid, level, point["x"] * sx, point["y"] * sy)


def clamp_state(key: str, hi: int, default: int) -> None:
    value = st.session_state.get(key, default)
    st.session_state[key] = int(min(max(value, 0), hi))


# ---------------------------------------------------------------- page

st.title("Anchors")
st.markdown(
    "The RPN predicts, at every cell of a feature map, an objectness score and a box correction for each of "
    "**k anchors**: reference boxes of several scales and aspect ratios centred on that cell. Here you see every "
    "anchor the model lays over an image, which of them become positive and negative training examples for a "
    "ground-truth box, and how well they fit the boxes of a whole dataset."
)

picked = image_input("anchors")
if picked is None:
    st.stop()
key, source, cli_flags = pick_source()
grid = anchor_grid(key, picked.image.size, source)

# ---- counts
st.subheader("How many anchors")
rows = [{"level": lv.name, "stride (x, y)": f"{lv.stride[0]}, {lv.stride[1]}", "grid (columns x rows)":
         f"{lv.grid[0]} x {lv.grid[1]}", "sizes": ", ".join(map(str, lv.sizes)),
         "ratios": ", ".join(f"{r:g}" for r in lv.ratios), "anchors per location": lv.anchors_per_location,
         "anchors": lv.count, "fully inside the image": lv.inside_image} for lv in grid.levels]
rows.append({"level": "total", "stride (x, y)": "", "grid (columns x rows)": "", "sizes": "", "ratios": "",
             "anchors per location": None, "anchors": grid.total, "fully inside the image": grid.inside_image})
st.dataframe(pd.DataFrame(rows).astype({"anchors per location": "Int64"}), hide_index=True, key="anchors_counts")
st.caption(
    f"Image {grid.image_size[0]}x{grid.image_size[1]} → resized {grid.resized_size[0]}x{grid.resized_size[1]} → "
    f"padded {grid.padded_size[0]}x{grid.padded_size[1]} (the model's input frame). Anchors are built on the padded "
    "size and none is dropped at the border; 'fully inside' means inside the resized image. Same numbers as "
    f"`python -m detector anchors --image-size {grid.image_size[0]} {grid.image_size[1]} {cli_flags}`."
)
if key == "paper":
    paper = anchor_grids.original_code_counts(grid.resized_size)
    st.table(pd.DataFrame([
        {"count": "anchors (W/16 x H/16 x 9)", "the paper": f"about {paper.paper_total:,} (1000x600)",
         "original code (py-faster-rcnn)": f"{paper.original_code_total:,}", "here (torchvision)": f"{grid.total:,}"},
        {"count": "after removing cross-boundary anchors", "the paper": f"about {paper.paper_inside:,}",
         "original code (py-faster-rcnn)": f"{paper.original_code_inside:,}", "here (torchvision)": f"{grid.inside_image:,}"},
    ]))
    st.caption(
        "The paper's 'about 20k' holds; its 'about 6k after ignoring cross-boundary anchors' does not reproduce: "
        "the original code keeps about 8.1k for a 1000x600 image (8,151), torchvision's anchors 8,044 (they are "
        "centred at x·16 rather than x·16 + 7.5 and rounded differently). torchvision trains on all anchors."
    )

# ---- anchors at one location
st.subheader("Anchors at each feature-map location")
apply_click(grid)
clamp_state(LEVEL, len(grid.levels) - 1, 0)
c1, c2, c3, c4 = st.columns(4)
level = int(c1.number_input(f"Level (0 to {len(grid.levels) - 1})", 0, len(grid.levels) - 1, key=LEVEL))
lv = grid.levels[level]
centres = anchor_grids.cell_centres(grid, level, max_points=6_000)
n_rows, n_cols = int(centres.rows.max()) + 1, int(centres.cols.max()) + 1
clamp_state(ROW, lv.grid[1] - 1, n_rows // 2)
clamp_state(COL, lv.grid[0] - 1, n_cols // 2)
row = int(c2.number_input(f"Row (0 to {lv.grid[1] - 1})", 0, lv.grid[1] - 1, key=ROW))
col = int(c3.number_input(f"Column (0 to {lv.grid[0] - 1})", 0, lv.grid[0] - 1, key=COL))
view = c4.radio("Show", ("anchors at the cell", "all anchors of one shape"), key="anchors_view")
at = anchor_grids.anchors_at(grid, level, row, col)
shape_boxes, step = None, 1
if view == "all anchors of one shape":
    shape = st.selectbox("Anchor shape", range(lv.anchors_per_location), key="anchors_shape",
                         format_func=lambda a: f"#{a}: {lv.shape_label(a)} ({lv.shapes[a][0]:.0f}x{lv.shapes[a][1]:.0f})")
    shape_boxes, step = anchor_grids.anchors_of_shape(grid, level, int(shape))
fig = V.anchor_cell_figure(picked.image, grid, centres, at, picked.boxes if picked.has_ground_truth else None,
                           shape_boxes)
st.plotly_chart(fig, on_select="rerun", selection_mode="points", key=CHART, width="stretch")
st.caption(
    f"Click a dot: the {lv.anchors_per_location} anchors of that sliding-window position (level {lv.name}, stride "
    f"{lv.stride[0]}) are drawn, each labelled with its index in the RPN's flat (level, y, x, a) order, its scale and "
    f"aspect ratio: the paper's 'k anchor boxes' per position. Dots are every{'' if centres.step == 1 else f' {centres.step}th'} "
    f"cell whose centre is on the image"
    + (f"; the faint boxes are one shape at every {step}th cell" if shape_boxes is not None else "") + "."
)
orig = grid.frame.to_original(at.boxes).numpy()
st.dataframe(pd.DataFrame({
    "index": at.indices, "anchor": [lab.split(" ", 1)[1] for lab in at.labels],
    "width x height (input px)": [f"{w:.0f} x {h:.0f}" for w, h in lv.shapes],
    "box (input frame)": [", ".join(f"{v:.0f}" for v in b) for b in at.boxes],
    "box (original image)": [", ".join(f"{v:.1f}" for v in b) for b in orig],
    "fully inside": grid.inside[at.indices].numpy(),
}), hide_index=True, key="anchors_cell_table")

# ---- matching
st.subheader("Which anchors train the RPN")
if not picked.has_ground_truth or len(picked.boxes) == 0:
    st.info("This image has no ground-truth boxes: every anchor would be a negative. Pick a sample scene or a stored "
            "dataset image to see positives.")
else:
    gt_input = grid.frame.to_input(picked.boxes).numpy()
    match = matching(key, picked.digest, grid, gt_input)
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
    missing = set(match.gt_without_positive.tolist())
    st.dataframe(pd.DataFrame({
        "box": range(len(picked.boxes)), "class": picked.label_names,
        "best anchor IoU": match.best_iou_per_gt.numpy().round(3),
        "best anchor": match.best_anchor_per_gt.numpy(),
        "positive anchors": match.positives_per_gt.numpy(),
        "flag": ["no positive anchor" if i in missing else "" for i in range(len(picked.boxes))],
    }), hide_index=True, key="anchors_gt_table")
    if missing:
        st.warning(f"{len(missing)} ground-truth box(es) got no positive anchor: the RPN never learns to propose them.")

# ---- fitness
st.subheader("Fitness for a whole dataset")
try:
    from detector.data import list_datasets

    stored = [d.name for d in list_datasets() if d.boxes]
except ImportError:
    stored = []
dataset = st.selectbox("Dataset", [SYNTHETIC] + stored, key="anchors_fit_dataset")
fit = fitness(key, dataset, source)
if fit.boxes == 0:
    st.info(f"{dataset} has no ground-truth boxes.")
    st.stop()
r1, r2, r3, r4 = st.columns(4)
r1.metric("boxes", f"{fit.boxes:,}", help=f"in {fit.images} images")
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
sugg = suggestions(key, dataset, source)
st.dataframe(pd.DataFrame([{
    "what-if": s.name, "sizes": " / ".join(",".join(map(str, lv)) for lv in s.sizes),
    "ratios": ",".join(f"{r:g}" for r in s.ratios[0]), "recall@0.7": f"{s.recall['0.7']:.1%}",
    "recall@0.5": f"{s.recall['0.5']:.1%}", "mean best IoU": round(s.mean_best_iou, 3),
} for s in sugg] + [{"what-if": "current", "sizes": " / ".join(",".join(map(str, lv)) for lv in source.sizes),
                     "ratios": ",".join(f"{r:g}" for r in source.ratios[0]), "recall@0.7": f"{fit.recall['0.7']:.1%}",
                     "recall@0.5": f"{fit.recall['0.5']:.1%}", "mean best IoU": round(float(fit.best_iou.mean()), 3)}]),
    hide_index=True, key="anchors_suggestions")
st.caption("Sizes and ratios from k-means on the box shapes with an IoU distance (log size and log aspect ratio), "
           "keeping the number of anchors per location; recall measured on the same grids and boxes.")
best = sugg[0]
if best.recall["0.7"] <= fit.recall["0.7"]:
    st.info("None of the fitted sets beats the current anchors at IoU 0.7 on this data: the current ones fit well, "
            "or the boxes need more shapes per location (try more sizes or ratios below).")
w1, w2 = st.columns(2)
alt_sizes = w1.text_input("What-if sizes ('/' between levels)",
                          " / ".join(",".join(map(str, lv)) for lv in best.sizes), key="anchors_whatif_sizes")
alt_ratios = w2.text_input("What-if ratios", ",".join(f"{r:g}" for r in best.ratios[0]), key="anchors_whatif_ratios")
try:
    alt_levels = [[int(v) for v in lvl.split(",") if v.strip()] for lvl in alt_sizes.split("/")]
    if len(alt_levels) == 1 and source.num_levels > 1:
        alt_levels = alt_levels * source.num_levels
    alt_r = [float(v) for v in alt_ratios.split(",") if v.strip()]
    what = what_if(key, dataset, tuple(map(tuple, alt_levels)), tuple(alt_r), source)
    alt_source = source.with_anchors(alt_levels, alt_r, name="what-if")
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
