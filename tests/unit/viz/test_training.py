"""detector.viz.training: smoothing, objectness contrast and the training figures, checked by their data."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from detector.frames import cell_placement, level_stride
from detector.runs import SnapshotImage
from detector.viz.training import (
    comparison_figure, ema, loss_figure, objectness_contrast, snapshot_detections_figure, snapshot_objectness_figure,
    snapshot_proposals_figure, validation_figure,
)
from tests.unit.conftest import anchor_centres, anchor_tiles_on_boxes


def _rows(n: int, per_epoch: int, dt: float = 0.5) -> list[dict]:
    return [{"kind": "train", "epoch": 1 + (i - 1) // per_epoch, "step": i, "time": i * dt, "images_per_s": 4.0,
             "lr": 0.01, "loss": 4.0 / i, "loss_classifier": 1.0 / i, "loss_box_reg": 1.0 / i,
             "loss_objectness": 1.0 / i, "loss_rpn_box_reg": 1.0 / i} for i in range(1, n + 1)]


def test_ema_matches_hand_computed_values_and_skips_gaps():
    assert np.allclose(ema([1.0, 2.0, 3.0], 0.0), [1.0, 2.0, 3.0])
    assert np.allclose(ema([5.0] * 4, 0.9), 5.0)  # debiased: no pull towards 0 at the start
    out = ema([1.0, None, 3.0], 0.5)
    # acc: 0.5*1 -> norm 0.5 -> 1.0; then 0.5*0.5 + 0.5*3 = 1.75, norm 0.75 -> 2.333
    assert out[0] == pytest.approx(1.0) and math.isnan(out[1]) and out[2] == pytest.approx(1.75 / 0.75)
    with pytest.raises(ValueError):
        ema([1.0], 1.0)


def _snap(heat: np.ndarray, boxes: list[list[float]]) -> SnapshotImage:
    empty = np.zeros((0, 4), np.float32)
    return SnapshotImage("a.png", 40, 40, np.array(boxes, np.float32).reshape(-1, 4), np.ones(len(boxes), np.int64),
                         (heat,), ("0",), empty, np.zeros(0, np.float32), empty, np.zeros(0, np.float32),
                         np.zeros(0, np.int64))


def test_objectness_contrast_separates_cells_on_and_off_the_object():
    heat = np.zeros((4, 4))
    heat[:3, :3] = 0.9  # a 40 x 40 image, 4 x 4 cells centred at 0, 10, 20, 30 (torchvision's anchor centres)
    inside, outside = objectness_contrast(_snap(heat, [[0, 0, 20, 20]]))
    # the box reaches the tiles of the cells centred at 0, 10 and 20 (each spans its centre -/+ 5):
    # three columns, not the two that cells laid edge to edge from the corner would give
    assert (inside, outside) == pytest.approx((0.9, 0.0))
    # a box smaller than a cell still counts the cell it overlaps: [2, 5] lies in cell 0's tile only
    heat = np.zeros((4, 4))
    heat[0, 0] = 0.9
    assert objectness_contrast(_snap(heat, [[2, 2, 5, 5]])) == pytest.approx((0.9, 0.0))


def test_objectness_contrast_counts_the_heatmaps_cells_centred_on_torchvisions_anchors():
    """The contrast's cells are the objectness panel's: centred on the anchor centres of
    torchvision's AnchorGenerator (original frame), one stride wide."""
    padded, grid, scale = (256, 192), (16, 12), (1.6, 1.25)
    stride = level_stride(padded, grid)
    cx, cy = anchor_centres(padded, grid)
    gt = [[3.0, 2.0, 14.0, 11.0], [70.0, 60.0, 100.0, 90.0]]  # original pixels
    on = anchor_tiles_on_boxes(padded, grid, scale, gt)  # oracle: torchvision anchor centre -/+ stride / 2
    heat = np.where(on, 0.8, 0.1).astype(np.float32)
    snap = replace(_snap(heat, gt), width=156, height=152, cells=(cell_placement(stride, scale),))
    assert objectness_contrast(snap) == pytest.approx((0.8, 0.1)) and objectness_contrast(snap, 0) == objectness_contrast(snap)
    # the heatmap draws these very cells: its centres are torchvision's
    (hm,) = [t for t in snapshot_objectness_figure(None, snap, 0).data if t.type == "heatmap"]
    assert np.allclose(hm.x0 + np.arange(grid[0]) * hm.dx, cx / scale[0])
    assert np.allclose(hm.y0 + np.arange(grid[1]) * hm.dy, cy / scale[1])


def test_loss_figure_draws_raw_and_smoothed_and_zooms_to_a_window():
    rows = _rows(40, per_epoch=10)
    fig = loss_figure(rows, smoothing=0.6, uirevision="r1")
    assert fig.layout.uirevision == "r1"
    assert len(fig.data) == 5 * 2 + 1  # total + four losses (raw, smoothed) + learning rate
    assert list(fig.data[0].x) == list(range(1, 41))
    zoomed = loss_figure(rows, smoothing=0.0, step_range=(20, 30))
    assert list(zoomed.layout.xaxis.range) == [20, 30]
    lo, hi = zoomed.layout.yaxis.range  # the total loss between steps 20 and 30: 4/30 .. 4/20
    assert lo < 4 / 30 < 4 / 20 < hi and hi < 4 / 10


def test_validation_and_comparison_figures_by_data():
    val = [{"kind": "val", "epoch": e, "val_loss": 1.0 / e, "mAP": 0.1 * e, "mAP50": 0.2 * e, "mAP75": 0.05 * e,
            **{f"val_{k}": 0.25 / e for k in ("loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg")}}
           for e in (1, 2, 3)]
    fig = validation_figure(val, _rows(6, per_epoch=2))
    by_name = {t.name: t for t in fig.data}
    assert list(by_name["mAP@[.5:.95]"].y) == pytest.approx([0.1, 0.2, 0.3])
    assert list(by_name["training total (epoch mean)"].x) == [1, 2, 3]
    comp = comparison_figure({"a": _rows(5, 5), "b": _rows(8, 4)}, "loss", smoothing=0.0)
    assert [t.name for t in comp.data] == ["a", "b"] and len(comp.data[1].x) == 8
    comp_val = comparison_figure({"a": val}, "mAP")
    assert list(comp_val.data[0].y) == pytest.approx([0.1, 0.2, 0.3])
    with pytest.raises(ValueError):
        comparison_figure({"a": val}, "nope")


@pytest.mark.parametrize("size", [(40, 40), (120, 40), (40, 120)])
def test_snapshot_panels_share_one_frame_and_the_bar_sits_beside_the_image(size):
    """The three panels have one frame (height, margins, ranges), so their images are drawn at one
    size; the objectness colour bar lies right of the image's x domain, in the right margin, for a
    square, a wide and a tall image (the bar used to sit inside the plot, over a wide image)."""
    w, h = size
    snap = replace(_snap(np.full((5, 5), 0.5, np.float32), [[5, 5, 20, 20]]), width=w, height=h)
    figs = [snapshot_objectness_figure(None, snap, 0), snapshot_proposals_figure(None, snap),
            snapshot_detections_figure(None, snap, ("a",))]
    frames = {(f.layout.height, f.layout.margin.l, f.layout.margin.r, f.layout.margin.t, f.layout.margin.b,
               tuple(f.layout.xaxis.domain or (0, 1)), tuple(f.layout.xaxis.range), tuple(f.layout.yaxis.range))
              for f in figs}
    assert len(frames) == 1
    layout = figs[0].layout
    bar = next(t for t in figs[0].data if t.type == "heatmap").colorbar
    # the image is drawn inside the x axis domain (constrain="domain" only shrinks it); the bar's
    # left edge is at paper x, its box grows rightwards from there
    domain_right = (layout.xaxis.domain or (0, 1))[1]
    assert layout.xaxis.constrain == "domain" and layout.yaxis.constrain == "domain"
    assert bar.xref == "paper" and bar.xanchor == "left" and bar.x >= domain_right
    # and the box fits in the margin: padding both sides, the bar, three-character tick labels ("0.8",
    # about 0.6 em a character) and the rotated title's line at plotly's default 12 px font: 53 px
    # by this count, 54 px as Chromium drew it
    font = 12
    assert 2 * bar.xpad + bar.thickness + 3 * 0.6 * font + 1.3 * font <= layout.margin.r
