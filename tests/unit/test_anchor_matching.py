"""detector.anchor_matching against torchvision's Matcher, box_iou and sampler (the RPN's own rule)."""

from __future__ import annotations

import numpy as np
import torch
from torchvision.models.detection._utils import Matcher
from torchvision.ops import box_iou

from detector import anchor_grids, anchor_matching
from detector.models import build_model
from tests.unit.conftest import SMALL, torchvision_anchors


def test_labels_match_assign_targets_to_anchors(mobilenet):
    model = build_model("fasterrcnn_mobilenet_v3_large_320_fpn", weights="none", anchor_sizes=[[16, 32, 64, 128]] * 3,
                        **SMALL).eval()
    image_list, _, anchors = torchvision_anchors(model, 200, 160)
    grid = anchor_grids.anchor_grid(anchor_grids.model_source(model), (200, 160))
    assert torch.equal(grid.anchors, anchors)
    # overlapping boxes, a tiny one and a thin one: low-quality matches and ties matter
    gt = torch.tensor([[10.0, 12.0, 90.0, 70.0], [30.0, 20.0, 100.0, 75.0], [150.0, 90.0, 158.0, 97.0],
                       [5.0, 100.0, 190.0, 112.0]])
    labels, _ = model.rpn.assign_targets_to_anchors([anchors], [{"boxes": gt}])
    match = anchor_matching.match_anchors(grid, gt)
    assert torch.equal(match.labels.to(torch.float32), labels[0])
    iou = box_iou(gt, anchors)
    assert torch.equal(match.best_iou_per_gt, iou.max(1).values)
    # a box has no positive anchor exactly when no positive anchor is matched to it
    positive_gt = set(match.matched_gt[match.labels == 1].tolist())
    assert set(match.gt_without_positive.tolist()) == set(range(len(gt))) - positive_gt
    assert match.counts["positive"] + match.counts["negative"] + match.counts["ignored"] == grid.total


def test_no_ground_truth_means_all_negative(mobilenet):
    grid = anchor_grids.anchor_grid(anchor_grids.model_source(mobilenet), (100, 80))
    match = anchor_matching.match_anchors(grid, np.zeros((0, 4)))
    assert match.counts == {"positive": 0, "negative": grid.total, "ignored": 0}


def test_minibatch_is_seeded_and_balanced(mobilenet):
    grid = anchor_grids.anchor_grid(anchor_grids.model_source(mobilenet), (200, 160))
    match = anchor_matching.match_anchors(grid, [[10.0, 10.0, 120.0, 100.0], [100.0, 50.0, 180.0, 150.0]])
    before = torch.get_rng_state()
    a = anchor_matching.sample_minibatch(match, seed=3)
    assert torch.equal(before, torch.get_rng_state())  # global RNG untouched
    b = anchor_matching.sample_minibatch(match, seed=3)
    assert a.positive.tolist() == b.positive.tolist() and a.negative.tolist() == b.negative.tolist()
    labels = match.labels.numpy()
    assert (labels[a.positive] == 1).all() and (labels[a.negative] == 0).all()
    assert len(a.positive) == min(128, match.counts["positive"])
    assert len(a.positive) + len(a.negative) == 256


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
