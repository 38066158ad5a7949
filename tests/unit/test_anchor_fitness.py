"""detector.anchor_fitness: best anchor IoU against brute force, recall, what-ifs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from detector import anchor_fitness, anchor_grids


@pytest.mark.parametrize("which", ["model", "custom"])
def test_best_anchor_iou_equals_brute_force(mobilenet, which):
    source = anchor_grids.model_source(mobilenet) if which == "model" else anchor_grids.custom_source([[24, 48], [96]], [0.5, 1, 2.5], [8, 32])
    grid = anchor_grids.anchor_grid(source, (190, 150))
    rng = np.random.default_rng(1)
    xy = rng.uniform(-20, 200, (300, 2))
    wh = rng.uniform(2, 180, (300, 2))
    boxes = torch.tensor(np.concatenate([xy, xy + wh], 1), dtype=torch.float32)
    brute = box_iou(boxes, grid.anchors).max(1).values.numpy()
    assert anchor_fitness.best_anchor_iou(grid, boxes) == pytest.approx(brute, abs=1e-6)


def test_fitness_on_a_hand_made_case():
    # one level, stride 16, one 32 x 32 anchor per cell, no resize: a 64 x 64 image has centres 0, 16, 32, 48
    source = anchor_grids.custom_source([[32]], [1.0], [16])
    boxes = [[0, 0, 32, 32],  # exactly the anchor at (16, 16): IoU 1
             [8, 8, 24, 24],  # 16 x 16 inside that anchor: IoU 256 / 1024 = 0.25
             [0, 0, 32, 64]]  # 32 x 64 centred at (16, 32): the anchor there covers half, IoU 0.5
    fit = anchor_fitness.fitness(source, [(64, 64, boxes), (64, 64, [])])
    assert fit.images == 2 and fit.boxes == 3
    assert fit.best_iou.tolist() == pytest.approx([1.0, 0.25, 0.5])
    assert fit.recall == pytest.approx({"0.3": 2 / 3, "0.5": 2 / 3, "0.7": 1 / 3})
    small, medium, large = fit.by_size
    assert (small.boxes, medium.boxes, large.boxes) == (1, 2, 0)  # areas 1024 (= 32^2: medium), 256, 2048
    assert small.recall["0.3"] == 0.0 and medium.recall["0.7"] == 0.5
    ratios = {b.name.split(" ")[0]: b.boxes for b in fit.by_ratio}
    assert ratios["square-ish"] == 2 and ratios["portrait"] == 1
    assert sum(fit.histogram[1]) == 3
    out = fit.to_dict()
    assert out["boxes"] == 3 and set(out["recall"]) == {"0.3", "0.5", "0.7"}


def test_fitness_uses_the_resized_frame():
    # short side 32 -> 64: a 16 x 16 box at the origin becomes 32 x 32, exactly an anchor
    source = anchor_grids.custom_source([[32]], [1.0], [16], min_size=64, max_size=64)
    fit = anchor_fitness.fitness(source, [(32, 32, [[0, 0, 16, 16]])])
    assert fit.best_iou.tolist() == pytest.approx([1.0])
    assert fit.by_size[0].boxes == 1  # COCO size uses the original area (256 px)


def test_suggestions_raise_recall_and_keep_counts():
    source = anchor_grids.custom_source([[32]], [1.0], [16])
    # 45 x 45 squares on cell centres: the 32 x 32 anchor reaches IoU 1024 / 2025 = 0.51 only
    boxes = [[c - 22.5, c - 22.5, c + 22.5, c + 22.5] for c in (32.0, 48.0, 64.0)]
    images = [(96, 96, boxes)]
    fit = anchor_fitness.fitness(source, images)
    assert fit.recall["0.7"] == 0.0
    sugg = anchor_fitness.suggestions(fit, source, images)
    best = sugg[0]
    assert best.sizes == ((45,),) and best.recall["0.7"] == 1.0
    assert all(s.fits_pretrained_head for s in sugg)
    more = anchor_fitness.what_if(fit, source, images, [[32, 45]], [1.0])
    assert not more.fits_pretrained_head and more.anchors_per_location == (2,)
