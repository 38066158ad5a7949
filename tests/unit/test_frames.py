"""detector.frames: one geometry, boxes mapped both ways as torchvision's resize does."""

from __future__ import annotations

import numpy as np
import pytest

from detector import anchor_grids, frames
from tests.unit.conftest import anchor_centres, anchor_tiles_on_boxes


def test_frames_round_trip(mobilenet):
    grid = anchor_grids.anchor_grid(anchor_grids.model_source(mobilenet), (300, 200))
    boxes = np.array([[10.0, 20.0, 110.0, 90.0], [0.0, 0.0, 300.0, 200.0]])
    inp = grid.frame.to_input(boxes).numpy()
    assert inp[1].tolist() == pytest.approx([0, 0, grid.resized_size[0], grid.resized_size[1]], abs=1e-3)
    assert grid.frame.to_original(inp).numpy() == pytest.approx(boxes, abs=1e-3)


@pytest.mark.parametrize("scale", [(1.0, 1.0), (1.6, 1.25)])
def test_cell_tiles_are_centred_on_torchvisions_anchor_centres(scale):
    """A level's cell tiles (what the heatmaps draw and objectness_contrast counts) are stride-wide
    and centred on the anchor centres of torchvision's AnchorGenerator, mapped to the original frame."""
    padded, grid = (256, 192), (16, 12)
    stride = frames.level_stride(padded, grid)
    cx, cy = anchor_centres(padded, grid)
    xs, ys = frames.cell_placement(stride, scale).edges(grid)
    assert np.allclose((xs[:-1] + xs[1:]) / 2, cx / scale[0]) and np.allclose((ys[:-1] + ys[1:]) / 2, cy / scale[1])
    assert np.allclose(np.diff(xs), stride[0] / scale[0]) and np.allclose(np.diff(ys), stride[1] / scale[1])
    # pooled 3 x 3 (16 x 12 -> 6 x 4, the last column short): each tile starts where its first cell's does
    px, py = frames.cell_placement(stride, scale, 3).edges((6, 4))
    assert np.allclose(px[:6], xs[::3]) and np.allclose(py, ys[::3])


def test_cells_on_boxes_are_the_cells_whose_anchor_tile_overlaps_a_box():
    padded, grid, scale = (256, 192), (16, 12), (1.6, 1.25)
    stride = frames.level_stride(padded, grid)
    boxes = np.array([[3.0, 2.0, 14.0, 11.0], [70.0, 60.0, 100.0, 90.0]])  # original pixels
    mask = frames.cells_on_boxes(frames.cell_placement(stride, scale), grid, boxes)
    expected = anchor_tiles_on_boxes(padded, grid, scale, boxes)
    assert np.array_equal(mask, expected) and mask.sum() > 0
    # the first box starts in cell (0, 0)'s tile (centre 0, half a stride = 5 x 6.4 original pixels)
    # and reaches cell (1, 1)'s: cells reach back half a stride past the image's corner
    assert mask[:2, :2].all() and not mask[2, 0] and not mask[0, 2]
