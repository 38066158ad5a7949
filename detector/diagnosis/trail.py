"""The per-image trail of one diagnosis pass: what each stage of Faster R-CNN did with every
ground-truth box, collected in one forward per image through `detector.inspect`'s stage functions.

`collect_trails` runs `run_rpn_stage` (transform, backbone, RPN head, decoding) and `run_heads`
(proposal filtering, RoIAlign, box head, post-processing) once per batch, exactly as the RPN page
does, and keeps per image only what the diagnosis reads (a few numbers per ground-truth box and
per RoI), plus, when asked, the batch's RoI candidates with the box head's outputs for each
(`detector.diagnosis.candidates`), so the tuner re-runs the proposal filtering and the
post-processing without the backbone, its features or the head.

Frames: ground truth, detections and every IoU in ORIGINAL image pixels, boxes [x1, y1, x2, y2];
the best anchor IoU is measured in the model's INPUT frame, where anchors live.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torchvision.models.detection.faster_rcnn import FasterRCNN
from torchvision.ops import box_iou
from torchvision.ops import boxes as box_ops

from detector.diagnosis.candidates import CandidatePool, candidate_pool
from detector.inspect import Inspection, run_heads, run_rpn_stage
from detector.proposals import ProposalSettings


@dataclass(frozen=True)
class ImageTrail:
    """One image: ground truth, every detection the model returned, and per ground-truth box the
    best IoU each stage's output reaches (original pixels unless said)."""

    file: str  # as in the dataset's records
    width: int
    height: int
    resized_size: tuple[int, int]  # (W, H) after the model's resize (detector.frames)
    gt_boxes: np.ndarray  # (G, 4) float64
    gt_labels: np.ndarray  # (G,) the model's 1-based class ids
    boxes: np.ndarray  # (D, 4) detections, float64, as model(images) returns them
    scores: np.ndarray  # (D,)
    labels: np.ndarray  # (D,)
    best_iou_pre_nms: np.ndarray  # (G,) best IoU among the pre-NMS proposals (top-k, clipped, min size, score)
    best_iou_after_nms: np.ndarray  # (G,) ... among the proposals that survive the RPN's NMS
    best_iou_rois: np.ndarray  # (G,) ... among the first post_nms_top_n (the RoIs)
    best_anchor_iou: np.ndarray  # (G,) best IoU of any anchor, INPUT frame
    refined_iou: np.ndarray = field(repr=False)  # (G, R) IoU of each RoI's box refined for the box's class
    refined_score: np.ndarray = field(repr=False)  # (G, R) softmax score of the box's class at each RoI
    roi_top_label: np.ndarray = field(repr=False)  # (R,) argmax class of each RoI (0 = background)
    roi_top_score: np.ndarray = field(repr=False)  # (R,)


@dataclass(frozen=True)
class TrailSet:
    """Every image's trail, with the model settings they were collected under."""

    trails: tuple[ImageTrail, ...]
    class_names: tuple[str, ...]  # the model's (label id = index + 1)
    box_score_thresh: float  # the model's own: detections below it never come out
    settings: ProposalSettings  # the RPN's test-time settings used
    pools: Sequence[CandidatePool] = ()  # for the tuner, one per batch; empty unless collected with keep_pool
    seconds: float = 0.0

    def __len__(self) -> int:
        return len(self.trails)

    def held_bytes(self) -> int:
        """Bytes of the trails' arrays (what the report needs, held in memory)."""
        return sum(a.nbytes for t in self.trails for a in vars(t).values() if isinstance(a, np.ndarray))

    def pool_bytes(self) -> int:
        """Bytes of the candidate pools: their tensors in memory, their files for a pass on disk."""
        on_disk = getattr(self.pools, "disk_bytes", None)
        return int(on_disk()) if on_disk is not None else sum(p.nbytes() for p in self.pools)


def _best_iou(gt: torch.Tensor, boxes: torch.Tensor) -> np.ndarray:
    if gt.shape[0] == 0:
        return np.zeros(0)
    if boxes.shape[0] == 0:
        return np.zeros(gt.shape[0])
    return box_iou(gt, boxes.double()).max(dim=1).values.numpy()


def trail_of(model: FasterRCNN, inspection: Inspection, i: int, file: str, gt_boxes: Any, gt_labels: Any) -> ImageTrail:
    """Image `i` of an inspected batch: ground truth against every stage (see ImageTrail)."""
    frame = inspection.frames[i]
    funnel = inspection.funnels[i]
    gt = torch.as_tensor(np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4))
    gl = np.asarray(gt_labels, dtype=np.int64).reshape(-1)
    to_orig = frame.to_original
    # the RPN's stages, in original pixels (as the detections come back)
    pre = _best_iou(gt, to_orig(funnel.pre_nms.boxes))
    after = _best_iou(gt, to_orig(funnel.after_nms.boxes))
    rois_iou = _best_iou(gt, to_orig(funnel.post_nms.boxes))
    anchors = torch.cat(list(inspection.stage.anchors)).detach().cpu()
    anchor_iou = _best_iou(frame.to_input(gt.float()).double(), anchors)
    # the box head: each RoI's class-specific refined box, as postprocess_detections decodes and clips it
    rows = inspection.rois_of(i)
    rois = funnel.post_nms.boxes
    heads = model.roi_heads
    logits = inspection.class_logits[rows].float()
    regression = inspection.box_regression[rows].float()
    refined = heads.box_coder.decode(regression, [rois]).reshape(len(rows), -1, 4)
    refined = box_ops.clip_boxes_to_image(refined, (frame.resized_size[1], frame.resized_size[0]))
    probs = torch.softmax(logits, -1)
    num_classes = probs.shape[1]
    g_count = gt.shape[0]
    refined_iou = np.zeros((g_count, len(rows)))
    refined_score = np.zeros((g_count, len(rows)))
    if len(rows) and g_count:
        for g in range(g_count):
            c = int(gl[g])
            if not 0 < c < num_classes:
                continue
            boxes_c = to_orig(refined[:, c, :]).double()
            refined_iou[g] = box_iou(gt[g:g + 1], boxes_c)[0].numpy()
            refined_score[g] = probs[:, c].numpy()
    top_score, top_label = probs.max(dim=1) if len(rows) else (torch.zeros(0), torch.zeros(0, dtype=torch.int64))
    det = inspection.detections[i]
    return ImageTrail(
        file=file, width=int(frame.original_size[0]), height=int(frame.original_size[1]),
        resized_size=(int(frame.resized_size[0]), int(frame.resized_size[1])),
        gt_boxes=gt.numpy(), gt_labels=gl,
        boxes=det.boxes.double().numpy(), scores=det.scores.double().numpy(), labels=det.labels.numpy().astype(np.int64),
        best_iou_pre_nms=pre, best_iou_after_nms=after, best_iou_rois=rois_iou, best_anchor_iou=anchor_iou,
        refined_iou=refined_iou.astype(np.float32), refined_score=refined_score.astype(np.float32),
        roi_top_label=top_label.numpy().astype(np.int64), roi_top_score=top_score.numpy().astype(np.float32),
    )


@dataclass(frozen=True)
class TrailBatch:
    """One batch of a pass: its index (batch_size images each, in record order), its trails, its
    candidate pool (None unless asked), and the bytes its working set took (features, RoIAlign)."""

    index: int
    trails: tuple[ImageTrail, ...]
    pool: CandidatePool | None
    work_bytes: int


def _stage_bytes(inspection: Inspection) -> int:
    s = inspection.stage
    tensors = [*s.features.values(), s.proposals, s.objectness_flat, inspection.pooled]
    return sum(t.numel() * t.element_size() for t in tensors)


@torch.no_grad()
def trail_batches(
    model: FasterRCNN,
    records: Any,
    root: Any,
    batch_size: int = 2,
    keep_pool: bool = False,
    pool_top_n: int | None = None,
    first_batch: int = 0,
) -> Iterator[TrailBatch]:
    """The pass batch by batch, from batch `first_batch` on (see `collect_trails`): what a pass
    writes as it goes. Batch b holds records[b * batch_size:(b + 1) * batch_size]."""
    from detector.data import DetectionDataset, collate

    if model.training:
        raise ValueError("diagnosis needs the model in eval mode (call model.eval())")
    records = list(records)
    batch_size = max(1, int(batch_size))
    offset = int(first_batch) * batch_size
    dataset = DetectionDataset(records[offset:], root, train=False)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collate)
    settings = ProposalSettings.from_rpn(model.rpn)
    top_n = int(pool_top_n or settings.pre_nms_top_n)
    for b, (images, targets) in enumerate(loader):
        stage = run_rpn_stage(model, list(images))
        inspection = run_heads(model, stage, settings, reuse=False)  # one run per stage: nothing to reuse
        first = offset + b * batch_size
        trails = tuple(trail_of(model, inspection, i, records[first + i].file, target["boxes"], target["labels"])
                       for i, target in enumerate(targets))
        images_of = tuple(range(first, first + len(trails)))
        pool = candidate_pool(model, stage, inspection, images_of, top_n) if keep_pool else None
        yield TrailBatch(int(first_batch) + b, trails, pool, _stage_bytes(inspection))
        del stage, inspection


def collect_trails(
    model: FasterRCNN,
    records: Any,
    root: Any,
    class_names: tuple[str, ...],
    batch_size: int = 2,
    keep_pool: bool = False,
    progress: Callable[[int, int], None] | None = None,
    pool_top_n: int | None = None,
) -> TrailSet:
    """One pass over `records` (labels already the model's ids): one forward per image, through
    `run_rpn_stage` and `run_heads` with the model's own settings (so the detections are
    bit-identical to `model(images)`, batched as `evaluate` batches them), held in memory
    (`detector.diagnosis.passes` writes a pass to a folder as it goes).

    keep_pool: also keep each batch's RoI candidates for the tuner (`candidates.candidate_pool`), the
    top `pool_top_n` per level (default: the model's own pre_nms_top_n).
    """
    import time

    start = time.perf_counter()
    records = list(records)
    trails: list[ImageTrail] = []
    pools: list[CandidatePool] = []
    for batch in trail_batches(model, records, root, batch_size, keep_pool, pool_top_n):
        trails += batch.trails
        if batch.pool is not None:
            pools.append(batch.pool)
        if progress is not None:
            progress(len(trails), len(records))
    return TrailSet(tuple(trails), tuple(class_names), float(model.roi_heads.score_thresh),
                    ProposalSettings.from_rpn(model.rpn), tuple(pools), time.perf_counter() - start)
