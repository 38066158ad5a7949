"""match_anchors computes IoU only for overlapping (box, anchor) pairs: the result must equal
torchvision's dense box_iou + Matcher exactly, ties and low-quality matches included."""

from __future__ import annotations

import numpy as np
import torch
from torchvision.models.detection._utils import Matcher
from torchvision.ops import box_iou

from detector import anchor_grids, anchor_matching

FPN = anchor_grids.custom_source([[32], [64], [128], [256], [512]], [0.5, 1.0, 2.0], [4, 8, 16, 32, 64], None)


def dense(grid, gt):
    iou = box_iou(gt, grid.anchors)
    return Matcher(0.7, 0.3, allow_low_quality_matches=True)(iou), iou


def test_sparse_matching_equals_torchvision_matcher():
    rng = np.random.default_rng(0)
    for trial in range(12):
        w, h = int(rng.integers(150, 420)), int(rng.integers(120, 320))
        grid = anchor_grids.anchor_grid(FPN, (w, h))
        m = int(rng.integers(1, 25))
        xy = rng.uniform(0, [w * 0.9, h * 0.9], size=(m, 2))
        boxes = np.concatenate([xy, np.minimum(xy + rng.uniform(3, [w / 2, h / 2], size=(m, 2)), [w, h])], 1)
        gt = grid.frame.to_input(boxes)
        if trial % 3 == 0 and m > 2:  # ties: duplicate boxes, and boxes that are anchors
            gt[1] = gt[0]
            gt[2] = grid.anchors[len(grid.anchors) // 3]
        assert anchor_matching._overlap_pairs(grid, gt) is not None  # the fast path runs
        matched, iou = dense(grid, gt)
        match = anchor_matching.match_anchors(grid, gt)
        assert torch.equal(match.matched_gt, matched)
        assert torch.equal(match.anchor_iou, iou.max(0).values)
        assert torch.equal(match.best_iou_per_gt, iou.max(1).values)
        assert torch.equal(match.best_anchor_per_gt, iou.max(1).indices)


def test_box_outside_every_anchor_takes_the_dense_path():
    # torchvision's low-quality rule with a best IoU of 0 touches every anchor: kept as torchvision does it
    grid = anchor_grids.anchor_grid(anchor_grids.custom_source([[16]], [1.0], [16], None), (64, 64))
    gt = torch.tensor([[10.0, 10.0, 30.0, 30.0], [500.0, 500.0, 510.0, 510.0]])
    matched, _ = dense(grid, gt)
    assert torch.equal(anchor_matching.match_anchors(grid, gt).matched_gt, matched)
