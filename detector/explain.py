"""Why this box: every final detection traced back through the box head and the RPN to its anchor.

`explain_image` reads an `Inspection` (detector.inspect's stage-by-stage forward) and re-runs only
torchvision's `RoIHeads.postprocess_detections`, operation for operation, keeping the indices that
torchvision throws away (its issue #4309): which RoI and which class each detection is, and what
became of every other (RoI, class) candidate. The detections it returns are bit-identical to
`model(images)` (tests/unit/test_explain.py checks this against the model itself).

Per detection (`DetectionExplanation`):
- `roi`: the RoI it came from: its row among the image's RoIs (the box head's input, which is the
  RPN's output order, so its rank by objectness after the RPN's NMS too), box, objectness;
- `anchor`: the anchor that RoI was regressed from (`detector.inspect.trace_proposal`, reused):
  FPN level, feature-map row and column, anchor shape, the anchor box and the RPN head's deltas;
- the box head's class distribution for that RoI: softmax over ALL classes, background first,
  and the logits;
- `box_deltas`: the class-specific regression (dx, dy, dw, dh) in the units the box head's
  `BoxCoder` (weights (10, 10, 5, 5)) decodes; `anchor.rpn_deltas` likewise for the RPN's coder
  (weights (1, 1, 1, 1));
- `suppressed`: the same-class candidates its per-class NMS removed (box, score, IoU).
`HeadDecisions.fate` says, for any candidate, whether it became a detection, was kept by NMS but
cut by box_detections_per_img, was suppressed (and by which candidate), fell under
box_score_thresh, or was too small.

Frames (detector.frames): fields named `*_input` are in the model's INPUT frame (the resized
image, where anchors, RoIs and the regressions live); every other box is in ORIGINAL-image pixels,
mapped with torchvision's own `resize_boxes` as its postprocess does. Boxes are [x1, y1, x2, y2].
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection.faster_rcnn import FasterRCNN
from torchvision.ops import boxes as box_ops

from detector.data.records import class_name
from detector.frames import ImageFrame
from detector.inspect import Inspection, trace_proposal
from detector.proposals import AnchorLocation

# What became of one (RoI, class) candidate in postprocess_detections, in the order it is decided.
DETECTION, BEYOND_LIMIT, SUPPRESSED, UNDER_THRESHOLD, TOO_SMALL = 0, 1, 2, 3, 4
FATES: dict[int, str] = {
    DETECTION: "a detection",
    BEYOND_LIMIT: "kept by NMS but beyond box_detections_per_img",
    SUPPRESSED: "suppressed by per-class NMS",
    UNDER_THRESHOLD: "score not above box_score_thresh",
    TOO_SMALL: "under 0.01 px wide or high after clipping",
}
BACKGROUND = "__background__"  # torchvision's name for class 0


@dataclass(frozen=True)
class HeadDecisions:
    """torchvision's `postprocess_detections` for one image, with every candidate's fate.

    A candidate is one RoI's box regressed for one class (R RoIs x C classes, column 0 the
    background, which is never a candidate). Flat candidate index: roi * C + class.
    """

    boxes_input: Tensor  # (R, C, 4) class-specific boxes, decoded by the box coder and clipped, INPUT frame
    logits: Tensor  # (R, C) the box predictor's class logits
    probs: Tensor  # (R, C) softmax over all C classes, background included
    regression: Tensor  # (R, C, 4) the box predictor's class-specific deltas (dx, dy, dw, dh)
    fate: Tensor  # (R, C) int64: a FATES code; -1 in the background column
    suppressor: Tensor  # (R, C) int64 flat index of the kept candidate that suppressed it, else -1
    suppressor_iou: Tensor  # (R, C) IoU with that suppressor (nan when none)
    detection_of: Tensor  # (R, C) int64 the detection index a candidate became, else -1
    keep: Tensor  # (D,) flat candidate indices of the detections, in model(images) order
    boxes: Tensor  # (D, 4) the detections' boxes, ORIGINAL frame (model(images)'s "boxes")
    scores: Tensor  # (D,) model(images)'s "scores"
    labels: Tensor  # (D,) model(images)'s "labels" (1-based)
    score_thresh: float  # the model's box_score_thresh
    nms_thresh: float  # the model's box_nms_thresh (per class)
    detections_per_img: int  # the model's box_detections_per_img

    @property
    def num_classes(self) -> int:
        return int(self.probs.shape[1])


def decide_heads(model: FasterRCNN, inspection: Inspection) -> list[HeadDecisions]:
    """`model.roi_heads.postprocess_detections` (and the transform's postprocess) over an Inspection,
    keeping every candidate's fate; one HeadDecisions per image.

    Same operations on the same tensors as torchvision, over the whole batch where torchvision
    works on the whole batch, so `boxes`, `scores` and `labels` equal model(images)'s bit for bit
    (on the CPU, where the Inspection keeps its tensors).
    """
    heads = model.roi_heads
    num_images = len(inspection.frames)
    proposals = [inspection.roi_boxes[inspection.rois_of(i)] for i in range(num_images)]
    class_logits, box_regression = inspection.class_logits, inspection.box_regression
    num_classes = class_logits.shape[-1]
    boxes_per_image = [len(p) for p in proposals]
    # decode and softmax over the whole batch, as postprocess_detections does
    pred_boxes = heads.box_coder.decode(box_regression, proposals)
    pred_scores = F.softmax(class_logits, -1)
    out = []
    for i, (boxes, scores, logits, deltas, frame) in enumerate(zip(
        pred_boxes.split(boxes_per_image, 0), pred_scores.split(boxes_per_image, 0),
        class_logits.split(boxes_per_image, 0), box_regression.split(boxes_per_image, 0), inspection.frames,
    )):
        image_shape = (frame.resized_size[1], frame.resized_size[0])
        boxes = box_ops.clip_boxes_to_image(boxes, image_shape)
        out.append(_decide_image(heads, boxes, scores, logits, deltas.reshape(len(boxes), num_classes, 4), frame))
    return out


def _decide_image(heads, boxes_all: Tensor, probs: Tensor, logits: Tensor, deltas: Tensor,
                  frame: ImageFrame) -> HeadDecisions:
    """One image of postprocess_detections: boxes_all (R, C, 4) clipped, probs (R, C)."""
    num_rois, num_classes = probs.shape
    labels = torch.arange(num_classes).view(1, -1).expand_as(probs)
    flat = (torch.arange(num_rois)[:, None] * num_classes + labels)[:, 1:].reshape(-1)
    # remove predictions with the background label; every class prediction a separate candidate
    boxes = boxes_all[:, 1:].reshape(-1, 4)
    scores = probs[:, 1:].reshape(-1)
    labels = labels[:, 1:].reshape(-1)
    fate = torch.full((num_rois * num_classes,), -1, dtype=torch.int64)
    fate[flat] = UNDER_THRESHOLD
    # remove low scoring boxes
    inds = torch.where(scores > heads.score_thresh)[0]
    boxes, scores, labels, flat = boxes[inds], scores[inds], labels[inds], flat[inds]
    fate[flat] = TOO_SMALL
    # remove empty boxes
    keep = box_ops.remove_small_boxes(boxes, min_size=1e-2)
    boxes, scores, labels, flat = boxes[keep], scores[keep], labels[keep], flat[keep]
    fate[flat] = SUPPRESSED
    # non-maximum suppression, independently done per class
    keep = box_ops.batched_nms(boxes, scores, labels, heads.nms_thresh)
    fate[flat[keep]] = BEYOND_LIMIT
    # keep only topk scoring predictions
    keep = keep[: heads.detections_per_img]
    fate[flat[keep]] = DETECTION
    detection_of = torch.full_like(fate, -1)
    detection_of[flat[keep]] = torch.arange(len(keep))
    suppressor, suppressor_iou = _suppressors(boxes, scores, labels, flat, fate, heads.nms_thresh, len(fate))
    original = frame.to_original(boxes[keep])  # the transform's postprocess: resize_boxes back
    shape = (num_rois, num_classes)
    return HeadDecisions(
        boxes_input=boxes_all, logits=logits, probs=probs, regression=deltas, fate=fate.view(shape),
        suppressor=suppressor.view(shape), suppressor_iou=suppressor_iou.view(shape),
        detection_of=detection_of.view(shape), keep=flat[keep], boxes=original, scores=scores[keep],
        labels=labels[keep], score_thresh=float(heads.score_thresh), nms_thresh=float(heads.nms_thresh),
        detections_per_img=int(heads.detections_per_img),
    )


def _suppressors(boxes: Tensor, scores: Tensor, labels: Tensor, flat: Tensor, fate: Tensor, nms_thresh: float,
                 total: int) -> tuple[Tensor, Tensor]:
    """For each candidate that NMS removed, the kept candidate that removed it, and their IoU.

    Greedy NMS visits a class's candidates by decreasing score; a removed candidate was removed by
    the first kept one before it whose IoU with it exceeds nms_thresh.
    """
    suppressor = torch.full((total,), -1, dtype=torch.int64)
    suppressor_iou = torch.full((total,), float("nan"))
    for label in labels.unique().tolist():
        members = torch.where(labels == label)[0]
        order = members[torch.sort(scores[members], descending=True, stable=True).indices]
        kept = fate[flat[order]] != SUPPRESSED
        if bool(kept.all()):
            continue
        rows = torch.where(kept)[0]  # positions of the kept candidates in score order
        columns = torch.arange(len(order))
        iou = box_ops.box_iou(boxes[order[rows]], boxes[order])  # (kept, n)
        earlier = rows[:, None] < columns[None, :]
        removes = earlier & (iou > nms_thresh)
        # borderline IoUs (NMS's own arithmetic) fall back to the earlier kept candidate nearest to it
        first = torch.where(removes.any(0), removes.to(torch.int8).argmax(0),
                            torch.where(earlier, iou, torch.full_like(iou, -1.0)).argmax(0))
        removed = ~kept & earlier[first, columns]
        suppressor[flat[order[removed]]] = flat[order[rows[first[removed]]]]
        suppressor_iou[flat[order[removed]]] = iou[first[removed], columns[removed]]
    return suppressor, suppressor_iou


# ---------------------------------------------------------------- one detection's explanation


@dataclass(frozen=True)
class RoIOrigin:
    """The RoI a detection came from: one of the proposals the RPN handed to the box head."""

    index: int  # row among this image's RoIs (the box head's input; the RPN's output order)
    rank: int  # rank by objectness among the proposals that survived the RPN's NMS (0 = best)
    box: Tensor  # (4,) ORIGINAL frame
    box_input: Tensor  # (4,) INPUT frame: exactly the proposal model.rpn returned
    objectness: float  # sigmoid of the RPN's objectness logit
    level: str  # the FPN level RoIAlign pooled it from (MultiScaleRoIAlign's LevelMapper, FPN eq. 1)


@dataclass(frozen=True)
class AnchorOrigin(AnchorLocation):
    """The anchor an RoI was regressed from (where it sits: `AnchorLocation`), and the RPN head's
    regression of it."""

    level: str  # FPN level name (the backbone's key)
    box: Tensor  # (4,) the anchor, ORIGINAL frame
    box_input: Tensor  # (4,) the anchor, INPUT frame (AnchorGenerator's)
    rpn_deltas: Tensor  # (4,) the RPN head's (tx, ty, tw, th) for this anchor (BoxCoder weights (1, 1, 1, 1))
    regressed: Tensor  # (4,) the anchor decoded with rpn_deltas, before clipping, ORIGINAL frame
    regressed_input: Tensor  # (4,) the same, INPUT frame


@dataclass(frozen=True)
class Candidate:
    """One (RoI, class) candidate of postprocess_detections and what became of it."""

    roi: int  # row among the image's RoIs
    label: int  # 1-based class id
    box: Tensor  # (4,) the RoI regressed for this class and clipped, ORIGINAL frame
    score: float  # softmax probability of this class at this RoI
    fate: int  # a FATES code
    iou: float | None  # with the detection it is listed under (suppressed) or its suppressor


@dataclass(frozen=True)
class DetectionExplanation:
    """One final detection, its chain anchor -> proposal -> RoI -> detection and its decisions."""

    index: int  # position in model(images)'s output for the image
    box: Tensor  # (4,) ORIGINAL frame, equal to model(images)'s
    box_input: Tensor  # (4,) INPUT frame: roi.box_input decoded with box_deltas, clipped
    label: int  # 1-based class id
    label_name: str
    score: float  # = class_probs[label]
    roi: RoIOrigin
    anchor: AnchorOrigin
    class_probs: Tensor  # (C,) softmax over all classes, background (0) first
    class_logits: Tensor  # (C,)
    box_deltas: Tensor  # (4,) (dx, dy, dw, dh) for `label`, box head BoxCoder units (weights (10, 10, 5, 5))
    suppressed: tuple[Candidate, ...]  # same-class candidates this detection's NMS removed, by score


@dataclass(frozen=True)
class ImageExplanation:
    """Every detection of one image explained; `decisions` answers for any other candidate."""

    frame: ImageFrame
    class_names: tuple[str, ...]  # C names, BACKGROUND first (label id = index)
    detections: tuple[DetectionExplanation, ...]
    decisions: HeadDecisions
    box_coder_weights: tuple[float, ...]  # the box head's BoxCoder weights
    rpn_coder_weights: tuple[float, ...]  # the RPN's BoxCoder weights

    def candidate(self, roi: int, label: int) -> Candidate:
        """The candidate of RoI `roi` for class `label` (1-based) and its fate."""
        d = self.decisions
        iou = float(d.suppressor_iou[roi, label])
        return Candidate(roi, label, self.frame.to_original(d.boxes_input[roi, label])[0],
                         float(d.probs[roi, label]), int(d.fate[roi, label]), None if iou != iou else iou)

    def suppressed_by(self, roi: int, label: int) -> int | None:
        """The detection index that suppressed candidate (roi, label); None when none did (not suppressed,
        or suppressed by a candidate that NMS kept but box_detections_per_img cut)."""
        d = self.decisions
        s = int(d.suppressor[roi, label])
        if s < 0:
            return None
        det = int(d.detection_of.view(-1)[s])
        return det if det >= 0 else None

    def fate_text(self, roi: int, label: int) -> str:
        """One line on what became of candidate (roi, label), in torchvision's terms."""
        fate = int(self.decisions.fate[roi, label])
        if fate == DETECTION:
            return f"detection {int(self.decisions.detection_of[roi, label])}"
        if fate == SUPPRESSED:
            by = self.suppressed_by(roi, label)
            iou = float(self.decisions.suppressor_iou[roi, label])
            who = f"detection {by}" if by is not None else "a candidate kept by NMS beyond box_detections_per_img"
            return f"suppressed by {who} (IoU {iou:.2f} > box_nms_thresh {self.decisions.nms_thresh:g})"
        if fate == UNDER_THRESHOLD:
            return f"score not above box_score_thresh {self.decisions.score_thresh:g}"
        return FATES.get(fate, "not a candidate (background)")


def rpn_deltas_at(inspection: Inspection, image: int, level: int, row: int, column: int, shape: int) -> Tensor:
    """The RPN head's (tx, ty, tw, th) for one anchor: its box regression at (level, row, column, shape).

    The head's output per level is (N, A * 4, rows, columns), four channels per anchor shape, as
    torchvision's `concat_box_prediction_layers` reads it.
    """
    deltas = inspection.stage.bbox_deltas[level][image]
    return deltas.view(-1, 4, deltas.shape[-2], deltas.shape[-1])[shape, :, row, column].detach().cpu()


def explain_image(model: FasterRCNN, inspection: Inspection, image: int = 0,
                  class_names: tuple[str, ...] | list[str] = (),
                  decisions: list[HeadDecisions] | None = None) -> ImageExplanation:
    """Explain every detection of image `image` of an Inspection made with `model`'s own settings.

    class_names: the model's, without the background (label id = index + 1); missing names read
    'class N'. `decisions` (from `decide_heads`) can be passed when explaining several images.
    """
    decisions = decisions or decide_heads(model, inspection)
    d = decisions[image]
    frame = inspection.frames[image]
    names = (BACKGROUND,) + tuple(class_name(class_names, k) for k in range(1, d.num_classes))
    post = inspection.funnels[image].post_nms
    roi_rows = inspection.rois_of(image)
    explained = []
    for k, candidate in enumerate(d.keep.tolist()):
        r, label = divmod(candidate, d.num_classes)
        trace = trace_proposal(inspection, image, r)  # the RoI is post-NMS proposal r
        loc = trace.location
        removed = torch.where(d.suppressor.view(-1) == candidate)[0]
        removed = removed[torch.sort(d.probs.view(-1)[removed], descending=True, stable=True).indices]
        suppressed = tuple(
            Candidate(s // d.num_classes, s % d.num_classes,
                      frame.to_original(d.boxes_input.view(-1, 4)[s])[0], float(d.probs.view(-1)[s]), SUPPRESSED,
                      float(d.suppressor_iou.view(-1)[s]))
            for s in removed.tolist()
        )
        explained.append(DetectionExplanation(
            index=k, box=d.boxes[k], box_input=d.boxes_input[r, label], label=label, label_name=names[label],
            score=float(d.scores[k]),
            roi=RoIOrigin(index=r, rank=r, box=frame.to_original(post.boxes[r])[0], box_input=post.boxes[r],
                          objectness=float(post.scores[r]),
                          level=inspection.roi_featmap_names[int(inspection.roi_level[roi_rows[r]])]),
            anchor=AnchorOrigin(
                **dataclasses.asdict(loc), level=trace.level_name,
                box=frame.to_original(trace.anchor)[0], box_input=trace.anchor,
                rpn_deltas=rpn_deltas_at(inspection, image, loc.level_index, loc.row, loc.column, loc.shape),
                regressed=frame.to_original(trace.regressed)[0], regressed_input=trace.regressed,
            ),
            class_probs=d.probs[r], class_logits=d.logits[r], box_deltas=d.regression[r, label],
            suppressed=suppressed,
        ))
    return ImageExplanation(
        frame=frame, class_names=names, detections=tuple(explained), decisions=d,
        box_coder_weights=tuple(float(w) for w in model.roi_heads.box_coder.weights),
        rpn_coder_weights=tuple(float(w) for w in model.rpn.box_coder.weights),
    )


# ---------------------------------------------------------------- the CLI's JSON


def _box(t: Tensor) -> list[float]:
    return [float(v) for v in t.tolist()]


def probs_by_name(names: tuple[str, ...], probs: Tensor) -> dict[str, float]:
    """{class name: probability}, background first; a name used twice (COCO's 'N/A') gets its id."""
    seen = {n: names.count(n) for n in names}
    return {(n if seen[n] == 1 else f"{n} ({i})"): float(p) for i, (n, p) in enumerate(zip(names, probs.tolist()))}


def detection_json(explanation: ImageExplanation, det: DetectionExplanation) -> dict:
    """One detection as the CLI's `explain --json` writes it (README, Command line)."""
    return {
        "box": _box(det.box), "label": det.label_name, "label_id": det.label, "score": det.score,
        "roi": {"index": det.roi.index, "box": _box(det.roi.box), "objectness": det.roi.objectness,
                "rank": det.roi.rank},
        "anchor": {"level": det.anchor.level, "row": det.anchor.row, "column": det.anchor.column,
                   "shape": det.anchor.shape, "box": _box(det.anchor.box), "rpn_deltas": _box(det.anchor.rpn_deltas)},
        "class_probs": probs_by_name(explanation.class_names, det.class_probs),
        "box_deltas": _box(det.box_deltas),
        "suppressed": [{"box": _box(c.box), "score": c.score, "iou": c.iou} for c in det.suppressed],
    }


# ---------------------------------------------------------------- a box no detection found


@dataclass(frozen=True)
class Nearest:
    """The box of one stage's output that overlaps a given box most."""

    stage: str  # "anchor", "proposal before NMS", "proposal after NMS", "RoI"
    index: int  # flat anchor index (anchors), else the position in that stage's set (score order)
    box: Tensor  # (4,) ORIGINAL frame
    iou: float  # with the given box (anchors: measured in the INPUT frame, where they live)
    objectness: float | None  # sigmoid(objectness) of a proposal; None for an anchor


@dataclass(frozen=True)
class MissedBox:
    """For a box no detection found (a missed ground-truth box): the nearest candidate at each stage."""

    box: Tensor  # (4,) the box asked about, ORIGINAL frame
    label: int | None  # its 1-based class when known
    nearest: tuple[Nearest, ...]  # anchor, proposal before NMS, after NMS, RoI (stages with no box left out)
    roi: int | None  # row of the nearest RoI among the image's RoIs
    class_probs: Tensor | None  # (C,) the box head's softmax at that RoI, background first
    class_logits: Tensor | None


def nearest_candidates(inspection: Inspection, image: int, box: Tensor | list[float], label: int | None = None,
                       decisions: HeadDecisions | None = None) -> MissedBox:
    """The stage blame of one box made visible: the best anchor by IoU (input frame, as the RPN's
    matcher sees it), the best proposal before and after the RPN's NMS, and the best RoI with its
    class distribution (`decisions` from `decide_heads` gives the distribution; the RoI's candidate
    for `label` is `ImageExplanation.candidate`). `box` is [x1, y1, x2, y2] in original pixels."""
    frame = inspection.frames[image]
    box = torch.as_tensor(box, dtype=torch.float32).reshape(1, 4)
    funnel = inspection.funnels[image]
    anchors = torch.cat(list(inspection.stage.anchors)).cpu()
    iou = box_ops.box_iou(frame.to_input(box), anchors)[0]
    best = int(iou.argmax())
    nearest = [Nearest("anchor", best, frame.to_original(anchors[best])[0], float(iou[best]), None)]
    roi = None
    for stage, boxes in (("proposal before NMS", funnel.pre_nms), ("proposal after NMS", funnel.after_nms),
                         ("RoI", funnel.post_nms)):
        if len(boxes) == 0:
            continue
        original = frame.to_original(boxes.boxes)
        iou = box_ops.box_iou(box, original)[0]
        best = int(iou.argmax())
        nearest.append(Nearest(stage, best, original[best], float(iou[best]), float(boxes.scores[best])))
        roi = best if stage == "RoI" else roi
    probs = decisions.probs[roi] if decisions is not None and roi is not None else None
    logits = decisions.logits[roi] if decisions is not None and roi is not None else None
    return MissedBox(box[0], label, tuple(nearest), roi, probs, logits)
