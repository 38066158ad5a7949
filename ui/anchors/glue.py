"""Streamlit glue for the anchors page: the anchor source picker, cached grids, matching and
fitness, the cell-click twin of the row/column inputs, and the page's tables.

Anchors come from detector.anchor_grids / anchor_matching / anchor_fitness; figures from
detector.viz.anchors. Boxes are [x1, y1, x2, y2]; each table says its frame.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from detector import anchor_fitness, anchor_grids, anchor_matching, scenes
from detector.viz import anchors as V
from ui.inputs import PickedImage, default_dataset, remember_dataset
from ui.model import current_model

SOURCES = ("The model's AnchorGenerator", "The paper's preset (3 scales x 3 ratios)", "Custom")
LEVEL, ROW, COL, CHART, CLICK = "anchors_level", "anchors_row", "anchors_col", "anchors_chart", "_anchors_click"
SYNTHETIC = "Synthetic scenes (offline, 60 images)"
FIT_KEY = "anchors_fit_dataset"

Source = anchor_grids.AnchorSource


# ---------------------------------------------------------------- cached work


@st.cache_resource(max_entries=16, show_spinner="Building every anchor ...")
def anchor_grid(key: str, image_size: tuple[int, int], _source: Source) -> anchor_grids.AnchorGrid:
    return anchor_grids.anchor_grid(_source, image_size)


@st.cache_resource(max_entries=16, show_spinner="Matching anchors to the ground truth ...")
def _matching(key: str, digest: str, _grid: anchor_grids.AnchorGrid, _gt_input: np.ndarray) -> anchor_matching.Matching:
    return anchor_matching.match_anchors(_grid, _gt_input)


def matching(key: str, grid: anchor_grids.AnchorGrid, picked: PickedImage) -> anchor_matching.Matching:
    """The RPN's labels of every anchor for the picked image's ground truth (cached per image)."""
    return _matching(key, picked.digest, grid, grid.frame.to_input(picked.boxes).numpy())


@st.cache_data(max_entries=8, show_spinner="Reading the dataset's boxes ...")
def dataset_boxes(name: str) -> list[tuple[int, int, list]]:
    """(width, height, boxes in original pixels) of every image of a dataset."""
    if name == SYNTHETIC:
        return [(s.image.width, s.image.height, [list(b) for b in s.boxes]) for s in scenes.sample_scenes(60)]
    from detector.data import open_dataset

    return [(r.width, r.height, [list(b) for b in r.boxes]) for r in open_dataset(name).dataset.records]


@st.cache_resource(max_entries=16, show_spinner="Best anchor IoU of every ground-truth box ...")
def fitness(key: str, dataset: str, _source: Source) -> anchor_fitness.Fitness:
    return anchor_fitness.fitness(_source, dataset_boxes(dataset))


@st.cache_resource(max_entries=32, show_spinner="Recall of the what-if anchors ...")
def _what_if(key: str, dataset: str, sizes: tuple, ratios: tuple, _source: Source) -> anchor_fitness.Suggestion:
    return anchor_fitness.what_if(fitness(key, dataset, _source), _source, dataset_boxes(dataset), sizes, ratios,
                                  name="what-if")


@st.cache_resource(max_entries=16, show_spinner="Fitting anchor sizes and ratios (k-means) ...")
def suggestions(key: str, dataset: str, _source: Source) -> tuple[anchor_fitness.Suggestion, ...]:
    return anchor_fitness.suggestions(fitness(key, dataset, _source), _source, dataset_boxes(dataset))


# ---------------------------------------------------------------- parsing the text inputs


def ratios_text(ratios) -> str:
    return ",".join(f"{r:g}" for r in ratios[0])


def what_if(key: str, dataset: str, source: Source, sizes: str, ratios: str) -> tuple[anchor_fitness.Suggestion, Source]:
    """(recall of the typed what-if anchors, their source); one size group applies to every level.
    Raises ValueError on text that does not parse or anchors that do not fit."""
    levels = anchor_grids.parse_sizes(sizes)
    if len(levels) == 1 and source.num_levels > 1:
        levels = levels * source.num_levels
    ratio_list = anchor_grids.parse_numbers(ratios, "ratios")
    result = _what_if(key, dataset, tuple(map(tuple, levels)), tuple(ratio_list), source)
    return result, source.with_anchors(levels, ratio_list, name="what-if")


# ---------------------------------------------------------------- widgets


def pick_source() -> tuple[str, Source, str]:
    """(cache key, anchor source, the `python -m detector anchors` flags that give the same anchors)."""
    kind = st.radio("Anchor source", SOURCES, key="anchors_from", horizontal=True)
    if kind == SOURCES[0]:
        loaded = current_model()
        st.caption(f"Model: {loaded.description}. Its transform resizes and pads the image; its backbone sets "
                   "each level's grid; its `rpn.anchor_generator` builds the anchors.")
        return (f"model:{loaded.source}:{id(loaded.model)}", anchor_grids.model_source(loaded.model, loaded.arch),
                f"--model {loaded.source}")
    if kind == SOURCES[1]:
        st.caption("Ren et al. 2015, section 3.1: one level at stride 16 (VGG-16 conv5), box areas 128², 256², "
                   "512² x aspect ratios 1:2, 1:1, 2:1, so k = 9 anchors per location; short side rescaled to 600.")
        return ("paper", anchor_grids.paper_source(),
                "--sizes 128,256,512 --ratios 0.5,1,2 --strides 16 --min-size 600 --max-size 1000")
    c1, c2, c3, c4 = st.columns(4)
    sizes = c1.text_input("Sizes ('/' between levels)", "32/64/128/256/512", key="anchors_sizes")
    ratios = c2.text_input("Ratios (height / width)", "0.5,1,2", key="anchors_ratios")
    strides = c3.text_input("Strides (one per level)", "4,8,16,32,64", key="anchors_strides")
    min_size = int(c4.number_input("Short side (0: no resize)", 0, 2000, 800, step=32, key="anchors_min_size"))
    try:
        source = anchor_grids.custom_source(anchor_grids.parse_sizes(sizes), anchor_grids.parse_numbers(ratios, "ratios"),
                                            anchor_grids.parse_numbers(strides, "strides", int),
                                            min_size or None)
    except ValueError as exc:
        st.error(f"Custom anchor set: {exc}")
        st.stop()
    flags = f"--sizes {sizes.replace(' ', '')} --ratios {ratios.replace(' ', '')} --strides {strides.replace(' ', '')}"
    if source.min_size:
        flags += f" --min-size {source.min_size} --max-size {source.max_size}"
    return f"custom:{source!r}", source, flags


def cell_inputs(grid: anchor_grids.AnchorGrid, columns) -> tuple[int, int, int, anchor_grids.CellCentres]:
    """(level, row, column, the level's cell centres on the image) from three inputs in `columns`;
    a click on a cell centre of the chart sets row and column first (the inputs are the click's
    twin, which AppTest can drive). Row and column start on the middle cell of the image."""
    _apply_click(grid)
    _clamp(LEVEL, len(grid.levels) - 1, 0)
    c1, c2, c3 = columns
    level = int(c1.number_input(f"Level (0 to {len(grid.levels) - 1})", 0, len(grid.levels) - 1, key=LEVEL))
    lv = grid.levels[level]
    # at most ~1,000 clickable dots: each is an SVG marker, and 6,000 (resnet50-FPN's P2 on a 480 x 360
    # image) took the browser 5 to 8 s per redraw against 0.6 to 1.1 s (bench/interaction.py, BENCHMARKS.md)
    centres = anchor_grids.cell_centres(grid, level, max_points=1_000)
    _clamp(ROW, lv.grid[1] - 1, (int(centres.rows.max()) + 1) // 2)
    _clamp(COL, lv.grid[0] - 1, (int(centres.cols.max()) + 1) // 2)
    row = int(c2.number_input(f"Row (0 to {lv.grid[1] - 1})", 0, lv.grid[1] - 1, key=ROW))
    col = int(c3.number_input(f"Column (0 to {lv.grid[0] - 1})", 0, lv.grid[0] - 1, key=COL))
    return level, row, col, centres


def _apply_click(grid: anchor_grids.AnchorGrid) -> None:
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
    st.session_state[COL], st.session_state[ROW] = anchor_grids.nearest_cell(grid, level, point["x"] * sx,
                                                                             point["y"] * sy)


def _clamp(key: str, hi: int, default: int) -> None:
    value = st.session_state.get(key, default)
    st.session_state[key] = int(min(max(value, 0), hi))


def fitness_dataset() -> str:
    """The dataset whose boxes the fitness section measures: the user's (default_dataset) when one
    is stored, else the synthetic scenes."""
    from detector.data import list_datasets

    stored = [d.name for d in list_datasets() if d.boxes]
    options = stored + [SYNTHETIC]
    if st.session_state.get(FIT_KEY) not in options:
        st.session_state[FIT_KEY] = default_dataset(stored) or SYNTHETIC
    name = st.selectbox("Dataset", options, key=FIT_KEY,
                        help="Your stored datasets (the one you worked with last first), or synthetic scenes.")
    if name != SYNTHETIC:
        remember_dataset(name)
    return name


# ---------------------------------------------------------------- tables


def counts_table(grid: anchor_grids.AnchorGrid) -> pd.DataFrame:
    """One row per level and a total row (its per-level cells blank)."""
    rows = [{"level": lv.name, "stride (x, y)": f"{lv.stride[0]}, {lv.stride[1]}",
             "grid (columns x rows)": f"{lv.grid[0]} x {lv.grid[1]}", "sizes": ", ".join(map(str, lv.sizes)),
             "ratios": ", ".join(f"{r:g}" for r in lv.ratios), "anchors per location": str(lv.anchors_per_location),
             "anchors": lv.count, "fully inside the image": lv.inside_image} for lv in grid.levels]
    rows.append({"level": "total", "stride (x, y)": "", "grid (columns x rows)": "", "sizes": "", "ratios": "",
                 "anchors per location": "", "anchors": grid.total, "fully inside the image": grid.inside_image})
    return pd.DataFrame(rows)


def paper_table(grid: anchor_grids.AnchorGrid) -> pd.DataFrame:
    """The paper's counts, the original code's and torchvision's for this image size."""
    paper = anchor_grids.original_code_counts(grid.resized_size)
    return pd.DataFrame([
        {"count": "anchors (W/16 x H/16 x 9)", "the paper": f"about {paper.paper_total:,} (1000x600)",
         "original code (py-faster-rcnn)": f"{paper.original_code_total:,}", "here (torchvision)": f"{grid.total:,}"},
        {"count": "after removing cross-boundary anchors", "the paper": f"about {paper.paper_inside:,}",
         "original code (py-faster-rcnn)": f"{paper.original_code_inside:,}",
         "here (torchvision)": f"{grid.inside_image:,}"},
    ])


def cell_table(grid: anchor_grids.AnchorGrid, level: int, at: anchor_grids.AnchorsAt) -> pd.DataFrame:
    """The anchors of one cell in the input frame and in the original image."""
    lv = grid.levels[level]
    orig = grid.frame.to_original(at.boxes).numpy()
    return pd.DataFrame({
        "index": at.indices, "anchor": [lab.split(" ", 1)[1] for lab in at.labels],
        "width x height (input px)": [f"{w:.0f} x {h:.0f}" for w, h in lv.shapes],
        "box (input frame)": [", ".join(f"{v:.0f}" for v in b) for b in at.boxes],
        "box (original image)": [", ".join(f"{v:.1f}" for v in b) for b in orig],
        "fully inside": grid.inside[at.indices].numpy(),
    })


def ground_truth_table(picked: PickedImage, match: anchor_matching.Matching) -> tuple[pd.DataFrame, int]:
    """(per ground-truth box: best anchor, its IoU, positives, flag; boxes without a positive)."""
    missing = set(match.gt_without_positive.tolist())
    return pd.DataFrame({
        "box": range(len(picked.boxes)), "class": picked.label_names,
        "best anchor IoU": match.best_iou_per_gt.numpy().round(3),
        "best anchor": match.best_anchor_per_gt.numpy(),
        "positive anchors": match.positives_per_gt.numpy(),
        "flag": ["no positive anchor" if i in missing else "" for i in range(len(picked.boxes))],
    }), len(missing)


def suggestions_table(sugg, source: Source, fit: anchor_fitness.Fitness) -> pd.DataFrame:
    """The k-means what-ifs beside the current anchors."""
    rows = [{"what-if": s.name, "sizes": anchor_grids.sizes_text(s.sizes), "ratios": ratios_text(s.ratios),
             "recall@0.7": f"{s.recall['0.7']:.1%}", "recall@0.5": f"{s.recall['0.5']:.1%}",
             "mean best IoU": round(s.mean_best_iou, 3)} for s in sugg]
    rows.append({"what-if": "current", "sizes": anchor_grids.sizes_text(source.sizes), "ratios": ratios_text(source.ratios),
                 "recall@0.7": f"{fit.recall['0.7']:.1%}", "recall@0.5": f"{fit.recall['0.5']:.1%}",
                 "mean best IoU": round(float(fit.best_iou.mean()), 3)})
    return pd.DataFrame(rows)
