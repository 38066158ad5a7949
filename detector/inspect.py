"""A step-by-step eval forward of a torchvision Faster R-CNN that keeps every intermediate.

Built from the model's own submodules, in the order `GeneralizedRCNN.forward` calls them, so its
detections are bit-identical to `model(images)` and its post-NMS proposals to `model.rpn`'s.
Two stages, so a page can re-run the cheap one alone:

- `run_rpn_stage` (expensive, once per image): transform, backbone, RPN head, anchors, box decoding.
- `run_heads` (cheap, per setting): proposal filtering (`detector.proposals.filter_proposals`),
  RoIAlign, box head, box predictor, post-processing. Never touches the backbone.

`inspect` runs both. Frames (`detector.frames`): "original" is the image as given; "input" is the
model's resized image (the padded batch tensor extends it below and to the right, so padded and
resized coordinates coincide). Every field says its frame; `ImageFrame.to_original` / `.to_input`
map boxes. Sizes are (width, height), grids (columns, rows), strides (x, y), as everywhere.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Iterable

import torch
from torch import Tensor
from torchvision.models.detection.faster_rcnn import FasterRCNN
from torchvision.models.detection.rpn import concat_box_prediction_layers

from detector.frames import ImageFrame, level_stride
from detector.proposals import (
    PAPER_TABLE1, AnchorLocation, ProposalFunnel, ProposalSet, ProposalSettings, filter_proposals,
    locate_anchor, shape_of_anchor_index,
)
from detector.wording import counted


@dataclass(frozen=True)
class FeatureLevel:
    """One FPN level as the RPN sees it."""

    name: str  # the backbone's key ("0", "1", ..., "pool")
    channels: int
    grid: tuple[int, int]  # feature map (columns, rows)
    stride: tuple[int, int]  # (x, y) input pixels per cell (padded_size // grid), as the AnchorGenerator
    sizes: tuple[int, ...]  # anchor sizes at this level (input pixels)
    ratios: tuple[float, ...]  # anchor aspect ratios (height / width)
    cell_anchors: Tensor  # (A, 4) anchors centred on (0, 0), a = ratio_index * len(sizes) + size_index

    @property
    def anchors_per_location(self) -> int:
        return len(self.sizes) * len(self.ratios)

    @property
    def num_anchors(self) -> int:
        return self.grid[0] * self.grid[1] * self.anchors_per_location


class HeadMemo:
    """The second stage's per-RoI work of one RPNStage (RoIAlign, box head, box predictor), kept
    per RoI so a knob that changes some RoIs runs that work on those alone.

    An RoI's pooled feature, class logits and box regression depend only on its box (RoIAlign pools
    it from the stage's fixed feature maps at the level its size picks; each output is computed on
    its own), so a row is keyed by (image, box) and reused bit for bit. New rows run the box head in
    one batch padded with at least MIN_ROWS memo rows: a matrix product of a handful of rows may take
    another kernel path (on a CPU, fewer than 8 rows gave other last bits than the same rows in a
    batch of 1000), so the padding rows run again and are compared with the memo; on any difference
    the whole batch runs afresh, as a cold run does. Post-processing (per-class NMS over every RoI)
    always runs.
    """

    MIN_ROWS = 64
    MAX_ROWS = 5_000  # a pooled row is C x 7 x 7 floats (50 KB for 256 channels): 250 MB at most

    def __init__(self) -> None:
        self.rows: dict[tuple[int, bytes], tuple[Tensor, Tensor, Tensor]] = {}  # pooled, logits, regression
        self.lock = threading.Lock()
        self.head_rows_run = 0  # RoIs the box head ran on since the stage was made (tests read it)

    def run(self, roi_heads, features: "OrderedDict[str, Tensor]", proposals: list[Tensor],
            image_sizes: list[tuple[int, int]]) -> tuple[Tensor, Tensor, Tensor]:
        """(pooled, class_logits, box_regression) of every RoI, images in batch order."""
        keys = roi_keys(proposals)
        with self.lock:
            missing = [i for i, k in enumerate(keys) if k not in self.rows]
            if len(missing) < len(keys):
                if not missing or self._add(roi_heads, features, proposals, image_sizes, keys, missing):
                    rows = [self.rows[k] for k in keys]
                    return tuple(torch.stack([r[j] for r in rows]) for j in range(3))
                self.rows.clear()  # another kernel path gave other bits: start over from a full batch
            pooled = roi_heads.box_roi_pool(features, proposals, image_sizes)
            logits, regression = self._head(roi_heads, pooled)
            if len(self.rows) + len(keys) > self.MAX_ROWS:
                self.rows.clear()
            self._store(keys, pooled, logits, regression)
            return pooled, logits, regression

    def _add(self, roi_heads, features, proposals, image_sizes, keys, missing) -> bool:
        """Run the missing rows (padded with known ones) and keep them; False when the padding rows
        did not come out with the memo's bits."""
        if len(self.rows) + len(missing) > self.MAX_ROWS:
            return False
        sizes = [len(p) for p in proposals]
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        missing_set = set(missing)
        # RoIAlign on the missing boxes alone, per image (order of `missing`: images in batch order)
        new_boxes = [p[[r - s for r in range(s, s + n) if r in missing_set]] for p, s, n in zip(proposals, starts, sizes)]
        pooled_new = roi_heads.box_roi_pool(features, new_boxes, image_sizes)
        known = [i for i, k in enumerate(keys) if k in self.rows]
        pad = known[:max(1, self.MIN_ROWS - len(missing))]
        batch = torch.cat([pooled_new, torch.stack([self.rows[keys[i]][0] for i in pad])])
        logits, regression = self._head(roi_heads, batch)
        n = len(missing)
        for j, i in enumerate(pad):
            _, lg, rg = self.rows[keys[i]]
            if not (torch.equal(logits[n + j], lg) and torch.equal(regression[n + j], rg)):
                return False
        self._store([keys[i] for i in missing], pooled_new, logits[:n], regression[:n])
        return True

    def _head(self, roi_heads, pooled: Tensor) -> tuple[Tensor, Tensor]:
        self.head_rows_run += len(pooled)
        return roi_heads.box_predictor(roi_heads.box_head(pooled))

    def _store(self, keys, pooled: Tensor, logits: Tensor, regression: Tensor) -> None:
        for k, p, lg, rg in zip(keys, pooled, logits, regression):
            self.rows[k] = (p, lg, rg)


def roi_keys(proposals: list[Tensor]) -> list[tuple[int, bytes]]:
    """(image index, the box's bytes) of every RoI, images in batch order: what HeadMemo keys on."""
    keys = []
    for i, boxes in enumerate(proposals):
        arr = boxes.detach().cpu().contiguous().numpy()
        keys += [(i, row.tobytes()) for row in arr]
    return keys


@dataclass(frozen=True)
class RPNStage:
    """The expensive part, computed once per image batch: everything up to decoded proposals.

    Tensors stay on the model's device (heads re-run from them); shapes name N images, A anchors
    per location, (rows, columns) the level's feature map, T the total number of anchors.
    """

    frames: tuple[ImageFrame, ...]
    levels: tuple[FeatureLevel, ...]
    features: "OrderedDict[str, Tensor]"  # FPN outputs, (N, C, H, W) per level
    objectness: tuple[Tensor, ...]  # logits per level, (N, A, rows, columns)
    bbox_deltas: tuple[Tensor, ...]  # regression per level, (N, A*4, H, W)
    anchors: tuple[Tensor, ...]  # per level (H*W*A, 4), input frame, flat order (y, x, a)
    proposals: Tensor  # (N, T, 4) decoded, unclipped, input frame, flat order (level, y, x, a)
    objectness_flat: Tensor  # (N*T, 1) logits in the same order (as torchvision concatenates them)
    timings: dict[str, float]  # seconds: transform, backbone, rpn_head, anchors_decode
    _anchors_per_image: list[Tensor] = field(repr=False, default_factory=list)
    head_memo: HeadMemo = field(repr=False, compare=False, default_factory=HeadMemo)  # run_heads' box head rows

    @property
    def num_anchors_per_level(self) -> list[int]:
        return [lvl.num_anchors for lvl in self.levels]

    @property
    def image_sizes(self) -> list[tuple[int, int]]:
        """torchvision's `image_sizes`: (height, width) of each resized image, for torchvision's own calls."""
        return [(f.resized_size[1], f.resized_size[0]) for f in self.frames]

    def objectness_prob(self, image: int, level: int) -> Tensor:
        """sigmoid(objectness) of one image at one level, (A, rows, columns), on the CPU."""
        return torch.sigmoid(self.objectness[level][image].detach()).cpu()

    def anchor_boxes(self, anchor_index: Tensor) -> Tensor:
        """Anchors (K, 4) in the input frame for flat (level, y, x, a) indices."""
        return torch.cat(list(self.anchors))[anchor_index.to(self.anchors[0].device)].cpu()

    def decoded_boxes(self, image: int, anchor_index: Tensor) -> Tensor:
        """The unclipped regressed boxes (K, 4), input frame, for flat anchor indices of one image."""
        return self.proposals[image][anchor_index.to(self.proposals.device)].cpu()


@dataclass(frozen=True)
class DetectionTensors:
    """The RoI heads' final detections of one image as the model returns them (tensors, label ids):
    boxes (D, 4) [x1, y1, x2, y2] in the ORIGINAL frame. What pages and files show, with the image's
    name and class names, is `detector.detection.ImageDetections`."""

    boxes: Tensor
    scores: Tensor
    labels: Tensor  # 1-based class ids (0 is background)

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def above(self, threshold: float) -> "DetectionTensors":
        keep = self.scores >= threshold
        return DetectionTensors(self.boxes[keep], self.scores[keep], self.labels[keep])


@dataclass(frozen=True)
class Inspection:
    """Every intermediate of one eval forward over a batch, per image where it is per image.

    funnels: the proposal filtering stages (input frame); roi_*: one row per RoI, images in batch
    order (`roi_image` says which); detections in the original frame.
    """

    stage: RPNStage
    settings: ProposalSettings
    funnels: tuple[ProposalFunnel, ...]
    roi_image: Tensor  # (R,) image index of each RoI
    roi_boxes: Tensor  # (R, 4) the RoIs = post-NMS proposals, input frame
    roi_level: Tensor  # (R,) index into roi_featmap_names of the FPN level RoIAlign pooled from
    roi_featmap_names: tuple[str, ...]  # FPN levels RoIAlign may pool from
    pooled: Tensor  # (R, C, S, S) RoIAlign output
    class_logits: Tensor  # (R, num_classes)
    box_regression: Tensor  # (R, num_classes * 4)
    detections: tuple[DetectionTensors, ...]  # original frame
    raw_detections: tuple[dict[str, Tensor], ...]  # exactly what model(images) returns
    timings: dict[str, float]  # seconds: the stage's, then proposal_filtering, roi_heads

    @property
    def frames(self) -> tuple[ImageFrame, ...]:
        return self.stage.frames

    @property
    def proposals(self) -> tuple[ProposalSet, ...]:
        """The post-NMS proposals of each image (equal to model.rpn's boxes), input frame."""
        return tuple(f.post_nms for f in self.funnels)

    def rois_of(self, image: int) -> Tensor:
        """Row indices into the roi_* fields for one image."""
        return torch.where(self.roi_image == image)[0]

    def roi_level_counts(self, image: int) -> dict[str, int]:
        """FPN level name -> how many of this image's RoIs RoIAlign pooled from it."""
        levels = self.roi_level[self.rois_of(image)]
        counts = torch.bincount(levels, minlength=len(self.roi_featmap_names)).tolist()
        return dict(zip(self.roi_featmap_names, counts))

    def counts(self, image: int) -> dict[str, int]:
        """The funnel for one image: anchors ... post_nms, then rois and detections."""
        out = self.funnels[image].counts()
        out["rois"] = int(self.rois_of(image).numel())
        out["detections"] = len(self.detections[image])
        return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _as_tensors(images: list[Tensor] | Tensor, device: torch.device) -> list[Tensor]:
    if isinstance(images, Tensor):
        images = [images] if images.dim() == 3 else list(images)
    out = []
    for i, img in enumerate(images):
        if img.dim() != 3 or img.shape[0] != 3:
            raise ValueError(f"image {i}: expected a (3, H, W) float tensor in [0, 1], got shape {tuple(img.shape)}")
        out.append(img.to(device))
    return out


@torch.no_grad()
def run_rpn_stage(model: FasterRCNN, images: list[Tensor] | Tensor) -> RPNStage:
    """Transform, backbone, RPN head, anchors and decoding for a batch of (3, H, W) images in [0, 1].

    The model must be in eval mode (as `model(images)` returning detections).
    """
    if model.training:
        raise ValueError("inspect needs the model in eval mode (call model.eval())")
    device = next(model.parameters()).device
    images = _as_tensors(images, device)
    original_sizes = [(int(img.shape[-1]), int(img.shape[-2])) for img in images]  # (width, height)
    timings: dict[str, float] = {}

    _sync(device)
    t0 = time.perf_counter()
    image_list, _ = model.transform(images, None)
    _sync(device)
    t1 = time.perf_counter()
    features = model.backbone(image_list.tensors)
    if isinstance(features, Tensor):
        features = OrderedDict([("0", features)])
    _sync(device)
    t2 = time.perf_counter()
    feature_list = list(features.values())
    objectness, bbox_deltas = model.rpn.head(feature_list)
    _sync(device)
    t3 = time.perf_counter()
    anchors_per_image = model.rpn.anchor_generator(image_list, feature_list)
    num_images = len(anchors_per_image)
    num_anchors_per_level = [o[0].shape[0] * o[0].shape[1] * o[0].shape[2] for o in objectness]
    objectness_flat, deltas_flat = concat_box_prediction_layers(objectness, bbox_deltas)
    proposals = model.rpn.box_coder.decode(deltas_flat.detach(), anchors_per_image).view(num_images, -1, 4)
    _sync(device)
    t4 = time.perf_counter()
    timings.update(transform=t1 - t0, backbone=t2 - t1, rpn_head=t3 - t2, anchors_decode=t4 - t3)

    padded = (int(image_list.tensors.shape[-1]), int(image_list.tensors.shape[-2]))  # (width, height)
    frames = tuple(
        ImageFrame(orig, (int(s[1]), int(s[0])), padded) for orig, s in zip(original_sizes, image_list.image_sizes)
    )
    generator = model.rpn.anchor_generator
    levels = []
    for name, feat, n, sizes, ratios, cell in zip(
        features.keys(), feature_list, num_anchors_per_level, generator.sizes, generator.aspect_ratios,
        generator.cell_anchors,
    ):
        grid = (int(feat.shape[-1]), int(feat.shape[-2]))  # (columns, rows)
        levels.append(FeatureLevel(
            name=str(name), channels=int(feat.shape[1]), grid=grid, stride=level_stride(padded, grid),
            sizes=tuple(int(s) for s in sizes), ratios=tuple(float(r) for r in ratios),
            cell_anchors=cell.detach().cpu(),
        ))
    anchors = tuple(anchors_per_image[0].split(num_anchors_per_level, 0))
    return RPNStage(
        frames=frames, levels=tuple(levels), features=features, objectness=tuple(objectness),
        bbox_deltas=tuple(bbox_deltas), anchors=anchors, proposals=proposals, objectness_flat=objectness_flat,
        timings=timings, _anchors_per_image=anchors_per_image,
    )


@torch.no_grad()
def run_heads(model: FasterRCNN, stage: RPNStage, settings: ProposalSettings | None = None,
              reuse: bool = True) -> Inspection:
    """Proposal filtering and the RoI heads from a cached RPNStage; `settings` default: the model's own.

    Never runs the backbone. With the model's own settings the proposals and detections are
    bit-identical to model.rpn's and model(images)'s. reuse: the box head runs only on RoIs this
    stage has not seen (stage.head_memo); the results are the same bits either way.
    """
    if model.training:
        raise ValueError("inspect needs the model in eval mode (call model.eval())")
    settings = settings or ProposalSettings.from_rpn(model.rpn)
    device = stage.proposals.device
    image_sizes = stage.image_sizes

    _sync(device)
    t0 = time.perf_counter()
    funnels = filter_proposals(
        stage.proposals, stage.objectness_flat, image_sizes, stage.num_anchors_per_level, settings
    )
    _sync(device)
    t1 = time.perf_counter()
    proposals = [f.post_nms.boxes for f in funnels]
    roi_heads = model.roi_heads
    pooler = roi_heads.box_roi_pool
    if reuse:  # RoIAlign and the box head only on RoIs this stage has not seen (HeadMemo: same bits)
        pooled, class_logits, box_regression = stage.head_memo.run(roi_heads, stage.features, proposals, image_sizes)
    else:
        pooled = pooler(stage.features, proposals, image_sizes)
        class_logits, box_regression = roi_heads.box_predictor(roi_heads.box_head(pooled))
    boxes, scores, labels = roi_heads.postprocess_detections(class_logits, box_regression, proposals, image_sizes)
    raw = [{"boxes": b, "labels": lab, "scores": s} for b, s, lab in zip(boxes, scores, labels)]
    raw = model.transform.postprocess(raw, image_sizes, [(f.original_size[1], f.original_size[0]) for f in stage.frames])
    _sync(device)
    t2 = time.perf_counter()

    featmap_names = tuple(k for k in stage.features if k in pooler.featmap_names)
    if len(featmap_names) > 1 and pooler.map_levels is not None:
        roi_level = pooler.map_levels(proposals)
    else:
        roi_level = torch.zeros(sum(len(p) for p in proposals), dtype=torch.int64, device=device)
    roi_image = torch.cat([torch.full((len(p),), i, dtype=torch.int64) for i, p in enumerate(proposals)])
    timings = dict(stage.timings)
    timings.update(proposal_filtering=t1 - t0, roi_heads=t2 - t1)
    return Inspection(
        stage=stage, settings=settings, funnels=tuple(f.cpu() for f in funnels),
        roi_image=roi_image, roi_boxes=torch.cat(proposals).cpu(), roi_level=roi_level.cpu(),
        roi_featmap_names=featmap_names, pooled=pooled.cpu(), class_logits=class_logits.cpu(),
        box_regression=box_regression.cpu(),
        detections=tuple(DetectionTensors(d["boxes"].cpu(), d["scores"].cpu(), d["labels"].cpu()) for d in raw),
        raw_detections=tuple(raw), timings=timings,
    )


def inspect(
    model: FasterRCNN, images: list[Tensor] | Tensor, settings: ProposalSettings | None = None
) -> Inspection:
    """The whole eval forward with every intermediate: `run_heads(model, run_rpn_stage(model, images), settings)`."""
    return run_heads(model, run_rpn_stage(model, images), settings)


# ---------------------------------------------------------------- reading an Inspection


@dataclass(frozen=True)
class ProposalTrace:
    """One post-NMS proposal traced to its anchor; boxes [x1, y1, x2, y2] in the INPUT frame."""

    rank: int  # position among the post-NMS proposals (0 = highest objectness)
    score: float  # sigmoid(objectness)
    anchor_index: int  # flat (level, y, x, a) index
    location: AnchorLocation
    level_name: str
    anchor: Tensor  # (4,) the anchor
    regressed: Tensor  # (4,) the anchor after the RPN's box regression, before clipping
    proposal: Tensor  # (4,) the proposal (clipped)


def trace_proposal(inspection: Inspection, image: int, rank: int) -> ProposalTrace:
    """The anchor behind post-NMS proposal `rank` of `image`, and the box it was regressed to."""
    post = inspection.funnels[image].post_nms
    if not 0 <= rank < len(post):
        raise IndexError(f"rank {rank} out of range: image {image} has {counted(len(post), 'proposal')}")
    stage = inspection.stage
    idx = int(post.anchor_index[rank])
    location = locate_anchor(
        idx, [lvl.grid for lvl in stage.levels], [lvl.sizes for lvl in stage.levels],
        [lvl.ratios for lvl in stage.levels],
    )
    index = torch.tensor([idx])
    return ProposalTrace(
        rank=rank, score=float(post.scores[rank]), anchor_index=idx, location=location,
        level_name=stage.levels[location.level_index].name, anchor=stage.anchor_boxes(index)[0],
        regressed=stage.decoded_boxes(image, index)[0], proposal=post.boxes[rank].clone(),
    )


@dataclass(frozen=True)
class ProposalSizeRow:
    """One row of the paper's Table 1 for this model: an anchor shape and its learned proposal size.

    Sizes are width x height in INPUT pixels (the paper's figures are for images resized to s = 600).
    """

    level: str  # FPN level name
    size: int  # anchor size (sqrt of area)
    ratio: float  # anchor height / width
    anchor_wh: tuple[float, float]  # the anchor's own width, height
    count: int  # post-NMS proposals regressed from this anchor shape
    mean_wh: tuple[float, float] | None  # their average width, height; None without proposals
    paper_wh: tuple[int, int] | None  # Faster R-CNN Table 1 (ZF) for this size and ratio, when listed


def proposal_size_table(inspections: Iterable[Inspection]) -> list[ProposalSizeRow]:
    """The paper's Table 1 for this model: mean post-NMS proposal size per anchor shape, over images.

    `inspections` is read once, so a generator keeps one image's intermediates in memory at a time.
    """
    levels: tuple[FeatureLevel, ...] = ()
    sums: dict[tuple[int, int], list[float]] = {}
    for insp in inspections:
        levels = levels or insp.stage.levels
        per_loc = [lvl.anchors_per_location for lvl in insp.stage.levels]
        for funnel in insp.funnels:
            post = funnel.post_nms
            if len(post) == 0:
                continue
            lvl_idx, a = shape_of_anchor_index(post.anchor_index, insp.stage.num_anchors_per_level, per_loc)
            wh = (post.boxes[:, 2:] - post.boxes[:, :2]).double()
            for key in set(zip(lvl_idx.tolist(), a.tolist())):
                mask = (lvl_idx == key[0]) & (a == key[1])
                acc = sums.setdefault(key, [0.0, 0.0, 0.0])
                acc[0] += float(wh[mask, 0].sum())
                acc[1] += float(wh[mask, 1].sum())
                acc[2] += int(mask.sum())
    rows = []
    for li, lvl in enumerate(levels):
        for a in range(lvl.anchors_per_location):
            ratio_i, size_i = divmod(a, len(lvl.sizes))
            size, ratio = lvl.sizes[size_i], lvl.ratios[ratio_i]
            cell = lvl.cell_anchors[a]
            acc = sums.get((li, a), [0.0, 0.0, 0])
            n = int(acc[2])
            rows.append(ProposalSizeRow(
                level=lvl.name, size=size, ratio=ratio,
                anchor_wh=(float(cell[2] - cell[0]), float(cell[3] - cell[1])), count=n,
                mean_wh=(acc[0] / n, acc[1] / n) if n else None,
                paper_wh=PAPER_TABLE1.get((size, round(ratio, 3))),
            ))
    return rows
