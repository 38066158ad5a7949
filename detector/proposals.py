"""Region proposals: the RPN's proposal filtering, stage by stage, and what to measure on it.

`filter_proposals` mirrors torchvision's `RegionProposalNetwork.filter_proposals` operation for
operation (so its output is bit-identical to `model.rpn`'s), but keeps every stage, every score,
each proposal's FPN level and the index of the anchor it was regressed from. It is cheap: it
starts from the decoded proposals and objectness logits, so the knobs (pre_nms_top_n,
post_nms_top_n, nms_thresh, score_thresh) can be changed without running the backbone again.

Frames: every box here is [x1, y1, x2, y2] in the model's *input* frame (the resized image; the
padding lies below and right of it, so padded and resized coordinates coincide). The flat anchor
index follows torchvision's order `(level, y, x, a)` with `a = ratio_index * len(sizes) +
size_index`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor
from torchvision.models.detection import _utils as det_utils
from torchvision.ops import boxes as box_ops

from detector.wording import counted

# The paper's Table 1 (ZF net, s = 600): learned average proposal size (width x height) per anchor.
# Keys: (anchor size, aspect ratio as height/width); torchvision's ratios are height/width too,
# so the paper's "2:1" (wide) anchor is ratio 0.5.
PAPER_TABLE1: dict[tuple[int, float], tuple[int, int]] = {
    (128, 0.5): (188, 111), (128, 1.0): (113, 114), (128, 2.0): (70, 92),
    (256, 0.5): (416, 229), (256, 1.0): (261, 284), (256, 2.0): (174, 332),
    (512, 0.5): (768, 437), (512, 1.0): (499, 501), (512, 2.0): (355, 715),
}


@dataclass(frozen=True)
class ProposalSettings:
    """The RPN's test-time knobs (RegionProposalNetwork's names and meanings)."""

    pre_nms_top_n: int  # proposals kept per FPN level, by objectness, before NMS
    post_nms_top_n: int  # proposals kept per image after NMS
    nms_thresh: float  # IoU above which NMS suppresses the lower-scoring box (per level)
    score_thresh: float = 0.0  # proposals with sigmoid(objectness) below this are dropped
    min_size: float = 1e-3  # boxes narrower or shorter than this (input pixels) are dropped

    def __post_init__(self) -> None:
        if self.pre_nms_top_n < 1 or self.post_nms_top_n < 1:
            raise ValueError("pre_nms_top_n and post_nms_top_n must be at least 1")
        if not 0.0 <= self.nms_thresh <= 1.0:
            raise ValueError(f"nms_thresh must be in [0, 1], not {self.nms_thresh}")
        if not 0.0 <= self.score_thresh <= 1.0:
            raise ValueError(f"score_thresh must be in [0, 1], not {self.score_thresh}")

    @classmethod
    def from_rpn(cls, rpn: Any) -> "ProposalSettings":
        """The test-time settings a torchvision RegionProposalNetwork uses in eval mode."""
        return cls(
            pre_nms_top_n=int(rpn._pre_nms_top_n["testing"]),
            post_nms_top_n=int(rpn._post_nms_top_n["testing"]),
            nms_thresh=float(rpn.nms_thresh),
            score_thresh=float(rpn.score_thresh),
            min_size=float(rpn.min_size),
        )

    def with_(self, **changes: Any) -> "ProposalSettings":
        """A copy with some knobs changed (checked again)."""
        return replace(self, **changes)


@dataclass(frozen=True)
class ProposalSet:
    """Proposals of one image at one stage, in score order where the stage sorts.

    boxes (K, 4) [x1, y1, x2, y2] in the model's input frame; scores (K,) sigmoid(objectness);
    levels (K,) FPN level index (0 = finest); anchor_index (K,) flat index in (level, y, x, a) order.
    """

    boxes: Tensor
    scores: Tensor
    levels: Tensor
    anchor_index: Tensor

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def take(self, keep: Tensor) -> "ProposalSet":
        """The subset (or reordering) selected by index or mask `keep`."""
        return ProposalSet(self.boxes[keep], self.scores[keep], self.levels[keep], self.anchor_index[keep])

    def cpu(self) -> "ProposalSet":
        return ProposalSet(self.boxes.cpu(), self.scores.cpu(), self.levels.cpu(), self.anchor_index.cpu())

    def count_per_level(self, num_levels: int) -> list[int]:
        """How many proposals came from each FPN level."""
        return torch.bincount(self.levels.cpu(), minlength=num_levels).tolist()


# The funnel's stages, in order, with the paper's / torchvision's words for each.
FUNNEL_STAGES: tuple[tuple[str, str], ...] = (
    ("top_k", "top pre_nms_top_n per level by objectness"),
    ("clipped", "clipped to the image (same count)"),
    ("after_min_size", "boxes smaller than min_size removed"),
    ("after_score_thresh", "objectness below score_thresh removed (the pre-NMS set)"),
    ("after_nms", "after NMS per level (nms_thresh)"),
    ("post_nms", "first post_nms_top_n kept: the proposals (RoIs)"),
)


@dataclass(frozen=True)
class ProposalFunnel:
    """Every stage of `filter_proposals` for one image; each a ProposalSet in the input frame.

    top_k holds the decoded, unclipped boxes; every later stage the clipped ones.
    `pre_nms` is `after_score_thresh`; `post_nms` equals what `model.rpn` returns.
    """

    num_anchors: int
    top_k: ProposalSet
    clipped: ProposalSet
    after_min_size: ProposalSet
    after_score_thresh: ProposalSet
    after_nms: ProposalSet
    post_nms: ProposalSet
    settings: ProposalSettings

    @property
    def pre_nms(self) -> ProposalSet:
        return self.after_score_thresh

    def cpu(self) -> "ProposalFunnel":
        sets = {name: getattr(self, name).cpu() for name, _ in FUNNEL_STAGES}
        return ProposalFunnel(num_anchors=self.num_anchors, settings=self.settings, **sets)

    def counts(self) -> dict[str, int]:
        """Stage name -> number of boxes, starting with every anchor."""
        out = {"anchors": self.num_anchors}
        for name, _ in FUNNEL_STAGES:
            out[name] = len(getattr(self, name))
        return out


def top_k_per_level(objectness: Tensor, num_anchors_per_level: list[int], pre_nms_top_n: int) -> Tensor:
    """Flat anchor indices (N, K) of the top `pre_nms_top_n` anchors of each level by objectness logit,
    level blocks in level order, each in `topk`'s order (as RegionProposalNetwork._get_top_n_idx).

    objectness (N, T) logits in flat (level, y, x, a) order; K = sum over levels of min(pre_nms_top_n, level count).
    """
    top_n_idx = []
    offset = 0
    for ob in objectness.split(num_anchors_per_level, 1):
        k = det_utils._topk_min(ob, pre_nms_top_n, 1)
        _, idx = ob.topk(k, dim=1)
        top_n_idx.append(idx + offset)
        offset += ob.shape[1]
    return torch.cat(top_n_idx, dim=1)


def filter_proposals(
    proposals: Tensor,
    objectness: Tensor,
    image_sizes: list[tuple[int, int]],
    num_anchors_per_level: list[int],
    settings: ProposalSettings,
) -> list[ProposalFunnel]:
    """torchvision's `filter_proposals`, keeping every stage: one ProposalFunnel per image.

    proposals (N, total, 4) decoded boxes in the input frame; objectness (N, total) or (N*total, 1)
    logits, both in flat (level, y, x, a) order; image_sizes the resized (H, W) of each image.
    Same operations in the same order as torchvision, so `post_nms` is bit-identical to `model.rpn`.
    """
    num_images = proposals.shape[0]
    device = proposals.device
    objectness = objectness.detach().reshape(num_images, -1)

    levels = torch.cat(
        [torch.full((n,), idx, dtype=torch.int64, device=device) for idx, n in enumerate(num_anchors_per_level)], 0
    )
    levels = levels.reshape(1, -1).expand_as(objectness)

    # top-k per level, independently, by objectness logit
    top_n_idx = top_k_per_level(objectness, num_anchors_per_level, settings.pre_nms_top_n)
    batch_idx = torch.arange(num_images, device=device)[:, None]
    return funnels_from_top_k(proposals[batch_idx, top_n_idx], objectness[batch_idx, top_n_idx],
                              levels[batch_idx, top_n_idx], top_n_idx, image_sizes,
                              int(sum(num_anchors_per_level)), settings)


def funnels_from_top_k(
    boxes: Tensor,
    logits: Tensor,
    levels: Tensor,
    anchor_index: Tensor,
    image_sizes: list[tuple[int, int]],
    num_anchors: int,
    settings: ProposalSettings,
) -> list[ProposalFunnel]:
    """`filter_proposals` after its top-k: one ProposalFunnel per image.

    boxes (N, K, 4) the decoded, unclipped top-k boxes in the input frame; logits (N, K) their
    objectness logits; levels and anchor_index (N, K); rows as `top_k_per_level` orders them. Given
    the same rows in the same order, the result is bit-identical to torchvision's (the sigmoid is
    taken over the whole (N, K) tensor, as torchvision takes it: its value can depend on the position).
    """
    objectness_prob = torch.sigmoid(logits)
    funnels = []
    for boxes_i, scores, lvl, anchor_idx, img_shape in zip(boxes, objectness_prob, levels, anchor_index, image_sizes):
        top_k = ProposalSet(boxes_i, scores, lvl, anchor_idx)
        # clip to the image
        clipped = ProposalSet(box_ops.clip_boxes_to_image(boxes_i, img_shape), scores, lvl, anchor_idx)
        # remove small boxes
        after_min_size = clipped.take(box_ops.remove_small_boxes(clipped.boxes, settings.min_size))
        # remove low-scoring boxes (>= as torchvision, for backwards compatibility)
        after_score = after_min_size.take(torch.where(after_min_size.scores >= settings.score_thresh)[0])
        # non-maximum suppression, independently per level; keep is in decreasing score order
        keep = box_ops.batched_nms(after_score.boxes, after_score.scores, after_score.levels, settings.nms_thresh)
        after_nms = after_score.take(keep)
        # keep the post_nms_top_n best
        post_nms = after_score.take(keep[: settings.post_nms_top_n])
        funnels.append(ProposalFunnel(
            num_anchors=num_anchors, top_k=top_k, clipped=clipped, after_min_size=after_min_size,
            after_score_thresh=after_score, after_nms=after_nms, post_nms=post_nms, settings=settings,
        ))
    return funnels


# ---------------------------------------------------------------- anchors behind proposals


@dataclass(frozen=True)
class AnchorLocation:
    """Where a flat anchor index points: FPN level, feature-map cell, anchor shape."""

    level_index: int  # FPN level, in the backbone's order
    row: int  # feature-map row
    column: int  # feature-map column
    shape: int  # anchor shape index at this level: ratio_index * len(sizes) + size_index
    size: int  # anchor size (sqrt of area, input pixels)
    ratio: float  # height / width


def locate_anchor(
    index: int,
    grid_sizes: list[tuple[int, int]],
    sizes: list[tuple[int, ...]],
    ratios: list[tuple[float, ...]],
) -> AnchorLocation:
    """Decode a flat (level, y, x, a) anchor index; grid_sizes (columns, rows) per level, sizes/ratios per level."""
    offset = 0
    for level, ((w, h), lvl_sizes, lvl_ratios) in enumerate(zip(grid_sizes, sizes, ratios)):
        a_count = len(lvl_sizes) * len(lvl_ratios)
        n = h * w * a_count
        if index < offset + n:
            local = index - offset
            cell, a = divmod(local, a_count)
            y, x = divmod(cell, w)
            ratio_i, size_i = divmod(a, len(lvl_sizes))
            return AnchorLocation(level, y, x, a, int(lvl_sizes[size_i]), float(lvl_ratios[ratio_i]))
        offset += n
    raise IndexError(f"anchor index {index} out of range ({counted(offset, 'anchor')})")


def shape_of_anchor_index(
    anchor_index: Tensor, num_anchors_per_level: list[int], anchors_per_location: list[int]
) -> tuple[Tensor, Tensor]:
    """(level, a) for each flat anchor index: a = the anchor shape index at its level."""
    bounds = torch.tensor(num_anchors_per_level, dtype=torch.int64).cumsum(0)
    level = torch.bucketize(anchor_index.cpu(), bounds, right=True)
    starts = torch.cat([torch.zeros(1, dtype=torch.int64), bounds[:-1]])
    per_loc = torch.tensor(anchors_per_location, dtype=torch.int64)
    a = (anchor_index.cpu() - starts[level]) % per_loc[level]
    return level, a


# ---------------------------------------------------------------- measures


def proposal_recall(
    proposals: Tensor, gt_boxes: Tensor, ks: list[int], iou_thresholds: tuple[float, ...] = (0.5, 0.7)
) -> dict[float, list[float]]:
    """Share of ground-truth boxes covered (best IoU >= t) by the top k proposals, for each k and t.

    proposals (K, 4) in score order and gt_boxes (G, 4), both [x1, y1, x2, y2] in the same frame.
    Returns {t: [recall at k for k in ks]}; with no ground truth every recall is nan.
    """
    proposals = proposals.detach().float().cpu()
    gt = torch.as_tensor(gt_boxes, dtype=torch.float32).reshape(-1, 4)
    if gt.shape[0] == 0:
        return {t: [float("nan")] * len(ks) for t in iou_thresholds}
    if proposals.shape[0] == 0:
        return {t: [0.0] * len(ks) for t in iou_thresholds}
    iou = box_ops.box_iou(gt, proposals)  # (G, K)
    best_so_far = iou.cummax(dim=1).values  # best IoU among the first k+1 proposals
    out: dict[float, list[float]] = {}
    for t in iou_thresholds:
        row = []
        for k in ks:
            k = min(max(int(k), 1), proposals.shape[0])
            row.append(float((best_so_far[:, k - 1] >= t).float().mean()))
        out[t] = row
    return out
