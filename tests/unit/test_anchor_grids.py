"""detector.anchor_grids against torchvision's own AnchorGenerator and transform."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from detector import anchor_grids
from detector.models import MODEL_NAMES, build_model
from tests.unit.conftest import SMALL, torchvision_anchors


def test_tiny_feature_map_written_out_by_hand():
    # one level, stride 8, sizes 8 and 16 x ratios 1 and 2 on a 16 x 16 image: a 2 x 2 grid, 4 anchors per cell
    grid = anchor_grids.anchor_grid(anchor_grids.custom_source([[8, 16]], [1.0, 2.0], [8]), (16, 16))
    # base anchors (x1, y1, x2, y2) centred on 0, rounded as torchvision rounds them; a = ratio_i * 2 + size_i
    # ratio 1: 8 x 8 and 16 x 16; ratio 2 (h/w): w = s / sqrt(2), h = s * sqrt(2) -> halves 2.83, 5.66 / 5.66, 11.31
    base = [[-4, -4, 4, 4], [-8, -8, 8, 8], [-3, -6, 3, 6], [-6, -11, 6, 11]]
    expected = []
    for y in (0, 8):  # flat order (y, x, a), centres at (x * 8, y * 8)
        for x in (0, 8):
            expected += [[b[0] + x, b[1] + y, b[2] + x, b[3] + y] for b in base]
    assert grid.anchors.tolist() == expected
    assert grid.padded_size == (16, 16) and grid.levels[0].grid == (2, 2) and grid.levels[0].stride == (8, 8)
    # inside the 16 x 16 image: the 8 x 8, 16 x 16 and 6 x 12 anchors of cell (1, 1), centred at (8, 8)
    assert grid.inside_image == 3
    assert np.flatnonzero(grid.inside.numpy()).tolist() == [12, 13, 14]
    at = anchor_grids.anchors_at(grid, 0, row=1, col=0)
    assert at.centre == (0.0, 8.0)
    assert at.indices.tolist() == [8, 9, 10, 11]
    assert at.boxes.tolist() == expected[8:12]
    assert at.labels[3] == "#11 size 16, ratio 2"


def test_paper_check_from_design():
    grid = anchor_grids.anchor_grid(anchor_grids.custom_source([[128, 256, 512]], [0.5, 1, 2], [16]), (1000, 600))
    assert (grid.total, grid.inside_image) == (21_546, 8_044)
    assert grid.resized_size == (1000, 600) and grid.padded_size == (1008, 608)
    assert grid.levels[0].grid == (63, 38) and grid.levels[0].anchors_per_location == 9
    # inside means x1 >= 0, y1 >= 0, x2 <= W, y2 <= H, counted directly
    a = grid.anchors
    direct = ((a[:, 0] >= 0) & (a[:, 1] >= 0) & (a[:, 2] <= 1000) & (a[:, 3] <= 600)).sum()
    assert int(direct) == 8_044


@pytest.mark.parametrize("size", [(1000, 600), (190, 150), (37, 301)])
def test_layout_only_grid_counts_without_building_anchors(mobilenet, size):
    for source in (anchor_grids.custom_source([[128, 256, 512]], [0.5, 1, 2], [16]), anchor_grids.model_source(mobilenet),
                   anchor_grids.custom_source([[20, 40], [90]], [0.4, 1.7], [8, 32], min_size=200)):
        full = anchor_grids.anchor_grid(source, size)
        layout = anchor_grids.anchor_grid(source, size, with_anchors=False)
        assert layout.anchors is None and layout.total == full.total == len(full.anchors)
        assert [lv.inside_image for lv in layout.levels] == [lv.inside_image for lv in full.levels]
        assert layout.inside_image == int(full.inside.sum())


def test_input_sizes_follow_torchvisions_resize(mobilenet):
    from torchvision.models.detection.transform import _resize_image_and_masks

    source = anchor_grids.model_source(mobilenet)
    rng = np.random.default_rng(0)
    for width, height in [(190, 150), (333, 17), (17, 333), (128, 128), (640, 480)] + [
            tuple(int(v) for v in rng.integers(5, 700, 2)) for _ in range(20)]:
        resized, _ = _resize_image_and_masks(torch.zeros(1, height, width), 128.0, 200.0)
        assert anchor_grids.input_sizes(source, (width, height))[0] == (resized.shape[-1], resized.shape[-2])


def test_paper_preset_resizes_short_side_to_600():
    grid = anchor_grids.anchor_grid(anchor_grids.paper_source(), (500, 300))
    assert grid.resized_size == (1000, 600) and grid.total == 21_546


def test_original_code_keeps_about_8100_not_6000():
    counts = anchor_grids.original_code_counts((1000, 600))
    assert counts.original_code_total == 21_546
    assert 8_000 < counts.original_code_inside < 8_200  # the paper says about 6,000


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_counts_match_torchvision_for_every_builder(name):
    model = build_model(name, weights="none", **SMALL).eval()
    image_list, features, expected = torchvision_anchors(model, 190, 150)
    grid = anchor_grids.anchor_grid(anchor_grids.model_source(model, name), (190, 150))
    assert torch.equal(grid.anchors, expected)
    assert grid.padded_size == (image_list.tensors.shape[-1], image_list.tensors.shape[-2])
    assert grid.resized_size == (image_list.image_sizes[0][1], image_list.image_sizes[0][0])
    per_location = model.rpn.anchor_generator.num_anchors_per_location()
    assert [lv.count for lv in grid.levels] == [f.shape[-2] * f.shape[-1] * a for f, a in zip(features, per_location)]
    assert [lv.grid for lv in grid.levels] == [(f.shape[-1], f.shape[-2]) for f in features]
    assert grid.total == sum(lv.count for lv in grid.levels) == len(expected)


def test_model_anchor_grid_after_set_anchors(mobilenet):
    model = build_model("fasterrcnn_mobilenet_v3_large_320_fpn", weights="none", anchor_sizes=[[20, 40]] * 3,
                        aspect_ratios=[[0.5, 1.0]], **SMALL).eval()
    _, _, expected = torchvision_anchors(model, 97, 211)
    grid = anchor_grids.anchor_grid(anchor_grids.model_source(model), (97, 211))
    assert torch.equal(grid.anchors, expected)
    assert grid.levels[0].anchors_per_location == 4


def test_cell_centres_and_nearest_cell(mobilenet):
    grid = anchor_grids.anchor_grid(anchor_grids.model_source(mobilenet), (190, 150))
    lv = grid.levels[0]
    centres = anchor_grids.cell_centres(grid, 0)
    assert centres.step == 1
    assert centres.xs.max() < grid.resized_size[0] and centres.ys.max() < grid.resized_size[1]
    for r, c, x, y in zip(centres.rows, centres.cols, centres.xs, centres.ys):
        assert anchor_grids.nearest_cell(grid, 0, x + 3, y - 3) == (c, r)
        at = anchor_grids.anchors_at(grid, 0, int(r), int(c))
        mid = (at.boxes[:, :2] + at.boxes[:, 2:]) / 2
        assert mid == pytest.approx(np.tile([[x, y]], (lv.anchors_per_location, 1)), abs=0.5)
    sub = anchor_grids.cell_centres(grid, 0, max_points=10)
    assert sub.step > 1 and len(sub.xs) <= 16
    boxes, step = anchor_grids.anchors_of_shape(grid, 0, 1, max_boxes=1000)
    assert step == 1 and len(boxes) == lv.grid[0] * lv.grid[1]
    with pytest.raises(ValueError, match="outside"):
        anchor_grids.anchors_at(grid, 0, lv.grid[1], 0)


def test_bad_anchor_sets_are_refused():
    with pytest.raises(ValueError, match=r"2 levels of sizes but 1 stride$"):
        anchor_grids.custom_source([[32], [64]], [1.0], [16])
    with pytest.raises(ValueError, match="positive"):
        anchor_grids.custom_source([[32]], [0.0], [16])
    with pytest.raises(ValueError, match="positive"):
        anchor_grids.anchor_grid(anchor_grids.custom_source([[32]], [1.0], [16]), (0, 10))


def test_anchors_import_neither_streamlit_nor_plotly():
    import subprocess
    import sys

    code = "import sys, detector.anchor_grids, detector.anchor_matching, detector.anchor_fitness, detector.cli.anchors; print(sorted({'streamlit', 'plotly'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]))
    assert out.stdout.strip() == "[]"
