"""detector.proposals by hand: anchor indices decoded, proposal recall."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.ops import box_iou

from detector.proposals import locate_anchor, proposal_recall


def test_locate_anchor_by_hand():
    grids = [(3, 2), (1, 1)]  # (columns, rows)
    sizes = [(32, 64), (128,)]
    ratios = [(0.5, 1.0, 2.0), (1.0,)]
    # level 0 has 2 * 3 cells * 6 shapes = 36 anchors; index 6*4 + 5 is cell (1, 1), a = 5 (ratio 2, size 64)
    loc = locate_anchor(6 * 4 + 5, grids, sizes, ratios)
    assert (loc.level_index, loc.row, loc.column, loc.shape, loc.size, loc.ratio) == (0, 1, 1, 5, 64, 2.0)
    loc = locate_anchor(36, grids, sizes, ratios)
    assert (loc.level_index, loc.row, loc.column, loc.shape, loc.size) == (1, 0, 0, 0, 128)
    with pytest.raises(IndexError):
        locate_anchor(37, grids, sizes, ratios)


def test_proposal_recall_by_hand():
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    proposals = torch.tensor([
        [0.0, 0.0, 10.0, 12.0],  # IoU 0.83 with the first
        [50.0, 50.0, 60.0, 60.0],  # covers nothing
        [20.0, 20.0, 30.0, 36.0],  # IoU 0.625 with the second
    ])
    recall = proposal_recall(proposals, gt, [1, 2, 3, 10])
    assert recall[0.5] == [0.5, 0.5, 1.0, 1.0]
    assert recall[0.7] == [0.5, 0.5, 0.5, 0.5]
    assert box_iou(gt, proposals)[1, 2].item() == pytest.approx(0.625)
    assert all(math.isnan(v) for v in proposal_recall(proposals, torch.zeros(0, 4), [1])[0.5])
    assert proposal_recall(torch.zeros(0, 4), gt, [1])[0.5] == [0.0]
