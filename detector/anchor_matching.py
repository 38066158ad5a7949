"""Anchor matching: the RPN's training labels for every anchor, and the minibatch it samples.

torchvision's rule, as `RegionProposalNetwork.assign_targets_to_anchors` applies it: `Matcher`
over `box_iou` (computed here only for the overlapping pairs, bit-identical), then
`BalancedPositiveNegativeSampler` for the 256-anchor minibatch. Boxes are xyxy in the *input*
frame of the `detector.anchor_grids.AnchorGrid` they are matched against.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torchvision.models.detection._utils import BalancedPositiveNegativeSampler, Matcher
from torchvision.ops import box_iou

from detector.anchor_grids import AnchorGrid, _anchors

# RPN training defaults of the paper and torchvision.
FG_IOU = 0.7
BG_IOU = 0.3
RPN_BATCH = 256
RPN_POSITIVE_FRACTION = 0.5


@dataclass(frozen=True, eq=False)
class Matching:
    """RPN training labels of every anchor for one image's ground truth (torchvision's rule).

    labels: (N,) int8, 1 positive / 0 negative / -1 ignored, as `rpn.assign_targets_to_anchors`.
    matched_gt: (N,) index of the ground-truth box each anchor is matched to (-1 / -2: none).
    best_iou_per_gt: (M,) best IoU over all anchors; best_anchor_per_gt: (M,) its flat index.
    positives_per_gt: (M,) positive anchors assigned to each box; a 0 means no positive anchor.
    gt_boxes: (M, 4) xyxy in the *input* frame.
    """

    labels: torch.Tensor
    matched_gt: torch.Tensor
    anchor_iou: torch.Tensor  # (N,) each anchor's best IoU with any ground-truth box
    best_iou_per_gt: torch.Tensor
    best_anchor_per_gt: torch.Tensor
    positives_per_gt: torch.Tensor
    gt_boxes: torch.Tensor
    fg_iou: float
    bg_iou: float

    @property
    def counts(self) -> dict[str, int]:
        return {"positive": int((self.labels == 1).sum()), "negative": int((self.labels == 0).sum()),
                "ignored": int((self.labels == -1).sum())}

    @property
    def gt_without_positive(self) -> np.ndarray:
        """Indices of ground-truth boxes that got no positive anchor."""
        return np.flatnonzero(self.positives_per_gt.numpy() == 0)


def _overlap_pairs(grid: AnchorGrid, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """(box index, anchor index, IoU) of every (ground-truth box, anchor) pair that overlaps; None
    when that is not worth it (most pairs overlap).

    Anchors of one shape on one level form a grid whose columns share x1, x2 and rows share y1, y2,
    so the x and y overlaps are computed per column and per row (M x A x W and M x A x H) and only
    pairs with both positive are expanded. Each IoU is `box_iou`'s float32 arithmetic, step for
    step, so the values are bit-identical; every pair left out has IoU exactly 0.
    """
    anchors = _anchors(grid)
    area_gt = (gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1])
    area_anchor = (anchors[:, 2] - anchors[:, 0]) * (anchors[:, 3] - anchors[:, 1])
    out_m, out_n, out_iou = [], [], []
    total = 0
    for lv in grid.levels:
        (gw, gh), a_n = lv.grid, lv.anchors_per_location
        block = anchors[lv.offset:lv.offset + lv.count].view(gh, gw, a_n, 4)
        x1, x2 = block[0, :, :, 0].T, block[0, :, :, 2].T  # (A, W): shared by every row
        y1, y2 = block[:, 0, :, 1].T, block[:, 0, :, 3].T  # (A, H): shared by every column
        # box_iou: wh = (min(x2, X2) - max(x1, X1)).clamp(min=0), per axis
        wx = (torch.min(gt[:, None, None, 2], x2) - torch.max(gt[:, None, None, 0], x1)).clamp(min=0)  # (M, A, W)
        wy = (torch.min(gt[:, None, None, 3], y2) - torch.max(gt[:, None, None, 1], y1)).clamp(min=0)  # (M, A, H)
        kx, ky = (wx > 0).sum(-1).flatten(), (wy > 0).sum(-1).flatten()  # per (box, shape) group
        cols, rows = torch.nonzero(wx > 0)[:, 2], torch.nonzero(wy > 0)[:, 2]  # grouped, in (box, shape) order
        count = kx * ky
        total += int(count.sum())
        if total * 4 > grid.total * len(gt):
            return None
        # expand each group's columns x rows; group = box * A + shape
        group = torch.repeat_interleave(torch.arange(len(count)), count)
        j = torch.arange(len(group)) - (torch.cumsum(count, 0) - count).index_select(0, group)
        kxg = kx.index_select(0, group)
        jy = torch.div(j, kxg, rounding_mode="floor")
        col = cols.index_select(0, (torch.cumsum(kx, 0) - kx).index_select(0, group) + (j - jy * kxg))
        row = rows.index_select(0, (torch.cumsum(ky, 0) - ky).index_select(0, group) + jy)
        m = torch.div(group, a_n, rounding_mode="floor")
        n = lv.offset + (row * gw + col) * a_n + (group - m * a_n)
        inter = wx.reshape(-1).index_select(0, group * gw + col) * wy.reshape(-1).index_select(0, group * gh + row)
        union = area_gt.index_select(0, m) + area_anchor.index_select(0, n) - inter
        out_m.append(m)
        out_n.append(n)
        out_iou.append(inter / union)
    return torch.cat(out_m), torch.cat(out_n), torch.cat(out_iou)


def _match_sparse(grid: AnchorGrid, gt: torch.Tensor, fg_iou: float, bg_iou: float,
                  allow_low_quality_matches: bool):
    """torchvision's Matcher over the overlapping pairs only: (matched, anchor_iou, best_iou_per_gt,
    best_anchor_per_gt), equal to the dense computation; None where the dense one must run (a
    box that overlaps no anchor: there torchvision's low-quality rule would touch every anchor)."""
    if not bool(((gt[:, 2] > gt[:, 0]) & (gt[:, 3] > gt[:, 1])).all()):
        return None
    pairs = _overlap_pairs(grid, gt)
    if pairs is None:
        return None
    m, n, iou = pairs
    if not bool(torch.isfinite(iou).all()):
        return None
    n_anchors, n_gt = grid.total, len(gt)
    best_iou = torch.zeros(n_gt).scatter_reduce_(0, m, iou, "amax")
    if bool((best_iou <= 0).any()):
        return None
    # Matcher: each anchor's best box (the first on ties, as max(dim=0)); thresholds
    anchor_iou = torch.zeros(n_anchors).scatter_reduce_(0, n, iou, "amax")
    top = iou == anchor_iou[n]
    all_matches = torch.zeros(n_anchors, dtype=torch.int64).scatter_reduce_(
        0, n[top], m[top], "amin", include_self=False)
    matched = all_matches.clone()
    matched[anchor_iou < bg_iou] = Matcher.BELOW_LOW_THRESHOLD
    matched[(anchor_iou >= bg_iou) & (anchor_iou < fg_iou)] = Matcher.BETWEEN_THRESHOLDS
    # each box's best anchors (ties included) keep their best box: set_low_quality_matches_
    best = iou == best_iou[m]
    if allow_low_quality_matches:
        matched[n[best]] = all_matches[n[best]]
    best_anchor = torch.full((n_gt,), n_anchors, dtype=torch.int64).scatter_reduce_(
        0, m[best], n[best], "amin", include_self=True)
    return matched, anchor_iou, best_iou, best_anchor


def match_anchors(
    grid: AnchorGrid,
    gt_boxes_input,
    fg_iou: float = FG_IOU,
    bg_iou: float = BG_IOU,
    allow_low_quality_matches: bool = True,
) -> Matching:
    """Label every anchor against ground-truth boxes (xyxy, *input* frame) by the RPN's rule.

    torchvision's `Matcher(fg_iou, bg_iou, allow_low_quality_matches=True)` over `box_iou`:
    IoU >= fg_iou positive, < bg_iou negative, between ignored, and each box's best anchors
    (ties included) kept positive. All anchors take part, cross-boundary ones included, as in
    torchvision (the paper ignored cross-boundary anchors during training).
    """
    gt = torch.as_tensor(np.asarray(gt_boxes_input, dtype=np.float32).reshape(-1, 4))
    n = grid.total
    if len(gt) == 0:  # background image: every anchor negative
        zeros = torch.zeros(0)
        return Matching(torch.zeros(n, dtype=torch.int8), torch.full((n,), -1, dtype=torch.int64),
                        torch.zeros(n), zeros, zeros.long(), zeros.long(), gt, fg_iou, bg_iou)
    sparse = _match_sparse(grid, gt, fg_iou, bg_iou, allow_low_quality_matches)
    if sparse is not None:  # the same result from the overlapping pairs only (about 10x faster)
        matched, anchor_iou, best_iou, best_anchor = sparse
    else:
        # IoU of every (box, anchor) pair, M x N
        iou = box_iou(gt, _anchors(grid))
        # torchvision's matcher: best box per anchor, thresholds, low-quality matches
        matched = Matcher(fg_iou, bg_iou, allow_low_quality_matches=allow_low_quality_matches)(iou)
        best_iou, best_anchor = iou.max(dim=1)
        anchor_iou = iou.max(dim=0).values
    labels = torch.zeros(n, dtype=torch.int8)
    labels[matched >= 0] = 1
    labels[matched == Matcher.BETWEEN_THRESHOLDS] = -1
    positives = torch.bincount(matched[matched >= 0], minlength=len(gt))
    return Matching(labels, matched, anchor_iou, best_iou, best_anchor, positives, gt, fg_iou, bg_iou)


@dataclass(frozen=True)
class Minibatch:
    """The anchors the RPN's sampler draws for one training step: flat indices."""

    positive: np.ndarray
    negative: np.ndarray
    seed: int


def sample_minibatch(matching: Matching, batch_size: int = RPN_BATCH, positive_fraction: float = RPN_POSITIVE_FRACTION,
                     seed: int = 0) -> Minibatch:
    """The minibatch torchvision's BalancedPositiveNegativeSampler draws (positives up to
    positive_fraction, the rest negatives), seeded without touching the global RNG."""
    sampler = BalancedPositiveNegativeSampler(batch_size, positive_fraction)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pos, neg = sampler([matching.labels.to(torch.float32)])
    return Minibatch(np.flatnonzero(pos[0].numpy()), np.flatnonzero(neg[0].numpy()), seed)
