"""ui.rpn.views: the small computations the RPN inspector's views make from an inspection."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torchvision.models.detection.anchor_utils import AnchorGenerator

from detector.inspect import FeatureLevel
from ui.rpn.views import RECALL_POINTS, VIEWS, anchor_shape_text, box_crop, recall_ks


def test_box_crop_is_the_region_the_box_covers_in_whole_pixels():
    pixels = np.arange(40 * 30 * 3, dtype=np.uint8).reshape(30, 40, 3)
    image = Image.fromarray(pixels)
    crop = box_crop(image, np.array([3.4, 5.9, 10.2, 12.0]))
    assert np.array_equal(np.asarray(crop), pixels[5:12, 3:11])  # floor the top-left, ceil the bottom-right
    tiny = box_crop(image, np.array([7.0, 8.0, 7.0, 8.0]))  # a degenerate box still shows its pixel
    assert np.array_equal(np.asarray(tiny), pixels[8:9, 7:8])


def test_recall_ks_span_one_to_all_proposals():
    for n in (1, 5, 24, 1000):
        ks = recall_ks(n)
        assert ks[0] == 1 and ks[-1] == n and ks == sorted(set(ks))
        assert len(ks) <= RECALL_POINTS
    many = recall_ks(1000)
    assert len(many) > RECALL_POINTS - 4  # few repeats once rounded
    assert max(b / a for a, b in zip(many, many[1:])) <= 2  # geometric steps, no gap wider than x2
    assert recall_ks(5) == [1, 2, 3, 5]  # geometric steps 1, 1.5, 2.2, 3.3, 5 rounded, repeats dropped


def test_anchor_shape_text_names_torchvisions_cell_anchor():
    sizes, ratios = (32, 64), (0.5, 1.0, 2.0)
    cell = AnchorGenerator((sizes,), (ratios,)).generate_anchors(sizes, ratios)  # torchvision's own order
    level = FeatureLevel("0", 256, (10, 8), (4, 4), sizes, ratios, cell)
    for a in range(level.anchors_per_location):
        w, h = (cell[a, 2:] - cell[a, :2]).tolist()
        r, s = divmod(a, len(sizes))
        assert abs(h / w / ratios[r] - 1) < 0.05 and abs((w * h) ** 0.5 / sizes[s] - 1) < 0.05  # torchvision rounds
        assert anchor_shape_text(level, a) == f"size {sizes[s]}, ratio {ratios[r]:g} (h/w): {w:.0f}x{h:.0f}"
    assert torch.equal(level.cell_anchors, cell)


def test_every_view_has_a_renderer_in_the_selector_order():
    assert VIEWS == ("Objectness", "Proposals", "Trace", "Recall", "RoIAlign", "Detections", "Table 1")
