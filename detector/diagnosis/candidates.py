"""The RoI candidates of one batch: every box a setting of the RPN's knobs could hand the box head,
with the head's outputs for it, computed once in the pass, so that the tuner never needs the
backbone's features (tens of MiB per image) and never re-runs the head.

Why this is exact. At test time the box head treats every RoI on its own: MultiScaleRoIAlign pools
each box from the level its own size picks, TwoMLPHead and FastRCNNPredictor are per-row linear
layers (no BatchNorm, no dropout in eval mode). Whatever RoIs a setting keeps, each one is one of
the pool's rows and its class logits and box regression are the pool's. The RoIs themselves come
from `detector.proposals.funnels_from_top_k` on the pool's rows, the same operations in the same
order as torchvision, so a setting's detections are those of a model rebuilt with its knobs.

Which settings are exact (`CandidatePool.refusal` says why not):
- `rpn_pre_nms_top_n_test` up to the pool's `top_n` per level (default: the model's own
  pre_nms_top_n), or any value at a level whose anchors all fit in the pool. A larger value is
  refused with the reason: its top-k holds boxes the pass never kept (run the pass with a larger pool).
- `rpn_post_nms_top_n_test`, `rpn_nms_thresh`, `rpn_score_thresh` and the box knobs: any value.

Two limits of the oracle "equal to a rebuilt model", both below the last bit of a float and
stated rather than hidden:
- Objectness logits tied exactly at a level's top-k cut: `torch.topk` picks among tied values in
  an order of its own, which can differ between top-k and top-`top_n` (`ties` counts such images).
- Matrix products are not always row-independent: MKL computes very small products (under about
  a dozen rows, the count depending on the threads) with another kernel, and cuBLAS picks its
  kernel by matrix size. The pass runs the head on at least MIN_HEAD_ROWS rows at a time; a
  setting that hands the head fewer RoIs per batch than that can differ in the last bit of a score.

Frames: every box here is [x1, y1, x2, y2] in the model's INPUT frame (resized image), as torchvision's RPN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchvision.models.detection.faster_rcnn import FasterRCNN
from torchvision.ops import boxes as box_ops

from detector.inspect import Inspection, RPNStage
from detector.proposals import ProposalSettings, funnels_from_top_k, top_k_per_level

MIN_HEAD_ROWS = 32  # the head runs on at least this many rows (padded with copies): see the module docstring
HEAD_CHUNK = 1024  # rows per head call in the pass, so RoIAlign's output stays small


@dataclass(frozen=True)
class CandidatePool:
    """One batch's candidates: per image, the top `top_n` anchors of every FPN level by objectness
    (level blocks in level order, each in `torch.topk`'s order), their decoded boxes and logits,
    and the box head's outputs for each (zeros for boxes under min_size, which never reach it).

    Shapes: N images, K = sum(level_counts) rows, C classes with background. Input frame.
    """

    images: tuple[int, ...]  # indices into TrailSet.trails
    top_n: int  # candidates kept per level: the largest exact pre_nms_top_n
    level_anchors: tuple[int, ...]  # anchors at each level (the same for every image of a padded batch)
    image_sizes: tuple[tuple[int, int], ...]  # (height, width) of each resized image, torchvision's order
    original_sizes: tuple[tuple[int, int], ...]  # (height, width) of each original image
    boxes: Tensor  # (N, K, 4) float32 decoded, unclipped boxes
    logits: Tensor  # (N, K) float32 objectness logits
    anchor_index: Tensor  # (N, K) int32 flat (level, y, x, a) anchor index
    class_logits: Tensor  # (N, K, C) float32
    box_regression: Tensor  # (N, K, 4C) float32
    ties: int = 0  # images with an exact logit tie inside a level's pool (see the module docstring)

    @property
    def level_counts(self) -> tuple[int, ...]:
        return tuple(min(self.top_n, n) for n in self.level_anchors)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in
                   (self.boxes, self.logits, self.anchor_index, self.class_logits, self.box_regression))

    def refusal(self, settings: ProposalSettings) -> str | None:
        """Why `settings` cannot be evaluated exactly from this pool, or None when it can."""
        short = [i for i, n in enumerate(self.level_anchors) if min(settings.pre_nms_top_n, n) > self.top_n]
        if short:
            return (f"rpn_pre_nms_top_n_test={settings.pre_nms_top_n} needs more than the {self.top_n} candidates per "
                    f"level the pass kept (levels {', '.join(map(str, short))}): run the pass with a larger pool")
        return None

    def rows_for(self, pre_nms_top_n: int) -> tuple[Tensor, Tensor]:
        """(rows, level) of the top `pre_nms_top_n` per level: the first rows of each level block."""
        rows, levels, start = [], [], 0
        for level, count in enumerate(self.level_counts):
            k = min(pre_nms_top_n, count)
            rows.append(torch.arange(start, start + k))
            levels.append(torch.full((k,), level, dtype=torch.int64))
            start += count
        return torch.cat(rows), torch.cat(levels)

    def rows_of(self, image: int, anchor_index: Tensor) -> Tensor:
        """Pool rows of `image` holding these flat anchor indices (each must be in the pool)."""
        return _rows_of(self.anchor_index[image].long(), anchor_index.long())

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays for an .npz (exact: float32 stays float32)."""
        return {"images": np.asarray(self.images, dtype=np.int64), "top_n": np.asarray(self.top_n),
                "level_anchors": np.asarray(self.level_anchors, dtype=np.int64),
                "image_sizes": np.asarray(self.image_sizes, dtype=np.int64).reshape(-1, 2),
                "original_sizes": np.asarray(self.original_sizes, dtype=np.int64).reshape(-1, 2),
                "boxes": self.boxes.numpy(), "logits": self.logits.numpy(), "anchor_index": self.anchor_index.numpy(),
                "class_logits": self.class_logits.numpy(), "box_regression": self.box_regression.numpy(),
                "ties": np.asarray(self.ties)}

    @classmethod
    def from_arrays(cls, a: Any) -> "CandidatePool":
        return cls(images=tuple(int(i) for i in a["images"]), top_n=int(a["top_n"]),
                   level_anchors=tuple(int(n) for n in a["level_anchors"]),
                   image_sizes=tuple((int(h), int(w)) for h, w in a["image_sizes"]),
                   original_sizes=tuple((int(h), int(w)) for h, w in a["original_sizes"]),
                   boxes=torch.from_numpy(a["boxes"]), logits=torch.from_numpy(a["logits"]),
                   anchor_index=torch.from_numpy(a["anchor_index"]), class_logits=torch.from_numpy(a["class_logits"]),
                   box_regression=torch.from_numpy(a["box_regression"]), ties=int(a["ties"]))


def _rows_of(pool_anchors: Tensor, wanted: Tensor) -> Tensor:
    order = torch.argsort(pool_anchors)
    position = torch.searchsorted(pool_anchors[order], wanted)
    return order[position.clamp(max=max(len(order) - 1, 0))]


def _head(model: FasterRCNN, features: Any, boxes: list[Tensor], image_sizes: list[tuple[int, int]]) -> tuple[Tensor, Tensor]:
    """(class_logits, box_regression) of the box head for `boxes` (per image, input frame), at least
    MIN_HEAD_ROWS rows per call (padded with copies of the first box, dropped again)."""
    heads = model.roi_heads
    count = sum(len(b) for b in boxes)
    pad = max(0, MIN_HEAD_ROWS - count)
    if pad:
        first = next(i for i, b in enumerate(boxes) if len(b))
        boxes = list(boxes)
        boxes[first] = torch.cat([boxes[first], boxes[first][:1].expand(pad, 4)])
    pooled = heads.box_roi_pool(features, boxes, image_sizes)
    class_logits, box_regression = heads.box_predictor(heads.box_head(pooled))
    if pad:
        keep = torch.ones(len(class_logits), dtype=torch.bool)
        start = sum(len(b) for b in boxes[:first]) + len(boxes[first]) - pad
        keep[start:start + pad] = False
        class_logits, box_regression = class_logits[keep], box_regression[keep]
    return class_logits, box_regression


@torch.no_grad()
def candidate_pool(model: FasterRCNN, stage: RPNStage, inspection: Inspection, images: tuple[int, ...],
                   top_n: int) -> CandidatePool:
    """The batch's pool, from its RPN stage and the pass's own heads (`inspection`, the model's settings).

    Rows that are the pass's RoIs take the pass's own head outputs (so a setting with the model's RPN
    knobs is exact whatever the matrix kernels do); the others run through RoIAlign and the head here.
    """
    settings = ProposalSettings.from_rpn(model.rpn)
    num_images = len(stage.frames)
    device = stage.proposals.device
    objectness = stage.objectness_flat.detach().reshape(num_images, -1)
    idx = top_k_per_level(objectness, stage.num_anchors_per_level, int(top_n))
    batch_idx = torch.arange(num_images, device=device)[:, None]
    boxes, logits = stage.proposals[batch_idx, idx], objectness[batch_idx, idx]
    classes = int(inspection.class_logits.shape[1])
    class_logits = torch.zeros(num_images, idx.shape[1], classes)
    box_regression = torch.zeros(num_images, idx.shape[1], classes * 4)
    sizes = stage.image_sizes
    todo: list[Tensor] = []  # per image, pool rows the head still has to see
    for i in range(num_images):
        rois = inspection.funnels[i].post_nms.anchor_index.to(device)
        rows = _rows_of(idx[i], rois)
        found = idx[i][rows] == rois  # a RoI outside the pool (a topk tie at the cut) keeps nothing
        class_logits[i, rows[found].cpu()] = inspection.class_logits[inspection.rois_of(i)][found.cpu()]
        box_regression[i, rows[found].cpu()] = inspection.box_regression[inspection.rois_of(i)][found.cpu()]
        clipped = box_ops.clip_boxes_to_image(boxes[i], sizes[i])
        usable = torch.zeros(idx.shape[1], dtype=torch.bool, device=device)
        usable[box_ops.remove_small_boxes(clipped, settings.min_size)] = True
        usable[rows[found]] = False
        todo.append(torch.where(usable)[0])
    for i, rows in enumerate(todo):
        clipped = box_ops.clip_boxes_to_image(boxes[i], sizes[i])
        for chunk in rows.tensor_split(max(1, -(-len(rows) // HEAD_CHUNK))):
            if not len(chunk):
                continue
            per_image = [clipped[chunk] if j == i else clipped[:0] for j in range(num_images)]
            cl, br = _head(model, stage.features, per_image, sizes)
            class_logits[i, chunk.cpu()] = cl.float().cpu()
            box_regression[i, chunk.cpu()] = br.float().cpu()
    ties = sum(_has_ties(logits[i], stage.num_anchors_per_level, int(top_n)) for i in range(num_images))
    return CandidatePool(
        images=tuple(images), top_n=int(top_n), level_anchors=tuple(stage.num_anchors_per_level),
        image_sizes=tuple((int(h), int(w)) for h, w in sizes),
        original_sizes=tuple((int(f.original_size[1]), int(f.original_size[0])) for f in stage.frames),
        boxes=boxes.float().cpu(), logits=logits.float().cpu(), anchor_index=idx.to(torch.int32).cpu(),
        class_logits=class_logits, box_regression=box_regression, ties=int(ties),
    )


def _has_ties(logits: Tensor, level_anchors: list[int], top_n: int) -> bool:
    counts = [min(top_n, n) for n in level_anchors]
    return any(bool((block[1:] == block[:-1]).any()) for block in logits.split(counts) if len(block) > 1)


@torch.no_grad()
def setting_detections(view: FasterRCNN, pool: CandidatePool, settings: ProposalSettings) -> list[dict[str, Tensor]]:
    """What `view(images)` returns for the pool's batch under RPN `settings` and the view's box
    knobs: the proposal filtering on the pool's rows, then the box post-processing on their cached
    head outputs. ValueError (the reason) when the setting is beyond the pool."""
    reason = pool.refusal(settings)
    if reason:
        raise ValueError(reason)
    rows, levels = pool.rows_for(settings.pre_nms_top_n)
    num_images = pool.boxes.shape[0]
    funnels = funnels_from_top_k(
        pool.boxes[:, rows], pool.logits[:, rows], levels.expand(num_images, -1),
        pool.anchor_index[:, rows].long(), list(pool.image_sizes), sum(pool.level_anchors), settings)
    picked = [pool.rows_of(i, f.post_nms.anchor_index) for i, f in enumerate(funnels)]
    class_logits = torch.cat([pool.class_logits[i, r] for i, r in enumerate(picked)])
    box_regression = torch.cat([pool.box_regression[i, r] for i, r in enumerate(picked)])
    proposals = [f.post_nms.boxes for f in funnels]
    sizes = list(pool.image_sizes)
    boxes, scores, labels = view.roi_heads.postprocess_detections(class_logits, box_regression, proposals, sizes)
    raw = [{"boxes": b, "labels": lab, "scores": s} for b, s, lab in zip(boxes, scores, labels)]
    return view.transform.postprocess(raw, sizes, list(pool.original_sizes))
