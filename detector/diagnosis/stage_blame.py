"""Where each missed object is lost: the first stage of Faster R-CNN whose output no longer covers it.

A ground-truth box is *missed* when no detection of its class scoring >= the score threshold
matches it at the chosen IoU (COCO's greedy rule, `matching.greedy_match`). "Covers" means some
box of that stage has IoU >= the chosen IoU with it. In pipeline order:

  rpn_proposals       no pre-NMS proposal covers it (per-level top pre_nms_top_n, clipped, small
                      boxes and score_thresh removed); `best_anchor_iou` < 0.3 (the RPN's negative
                      threshold) says no anchor shape fits it at all
  rpn_nms             covered before the RPN's NMS, not after
  rpn_top_n           covered after NMS, but only beyond post_nms_top_n
  box_localization    the RoIs cover it, but no box refined for its class does any more
  box_classification  refined boxes of its class cover it, but none scores >= the threshold (and
                      above the model's box_score_thresh): background or another class won
  box_nms             a covering refined box of its class scored high enough, but the per-class NMS
                      or the detections-per-image cap removed it
  crowded             a detection covering it exists, but it matched another ground-truth box

(localisation is tested before classification: with no covering refined box, no covering box can
score.) Every missed box falls in exactly one bucket.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detector.data.records import class_name
from detector.diagnosis.matching import iou_matrix
from detector.diagnosis.trail import ImageTrail

STAGES = ("rpn_proposals", "rpn_nms", "rpn_top_n", "box_classification", "box_localization", "box_nms", "crowded")
STAGE_LABELS = {
    "rpn_proposals": "RPN proposals (top-k, score)",
    "rpn_nms": "RPN NMS",
    "rpn_top_n": "RPN post_nms_top_n",
    "box_classification": "box head: classification",
    "box_localization": "box head: localisation",
    "box_nms": "box NMS / detections cap",
    "crowded": "crowded (matched elsewhere)",
}
NO_ANCHOR_FITS = 0.3  # the RPN's bg_iou_thresh: below it, every anchor is a negative for this box
SIZES = ("small", "medium", "large")


def coco_size(box: np.ndarray) -> str:
    """COCO's size of an xyxy box: small < 32^2 <= medium < 96^2 <= large (area in pixels)."""
    area = float((box[2] - box[0]) * (box[3] - box[1]))
    return "small" if area < 32**2 else "medium" if area < 96**2 else "large"


@dataclass(frozen=True)
class MissedBox:
    """One missed ground-truth box and the stage that lost it (box xyxy, original pixels)."""

    image: str
    image_index: int
    box: tuple[float, float, float, float]
    label: int
    class_name: str
    size: str
    stage: str
    best_anchor_iou: float
    best_iou: dict  # rpn_proposals, rpn_nms, rpn_top_n, refined: best IoU each stage reached
    winner: str | None  # box_classification: the class (or "background") the best covering RoI gave
    winner_score: float | None
    best_class_score: float | None  # box_classification: the best score of the box's class among covering RoIs

    @property
    def anchor_fits(self) -> bool:
        return self.best_anchor_iou >= NO_ANCHOR_FITS

    def as_dict(self) -> dict:
        return {"image": self.image, "class": self.class_name, "box": [round(float(v), 2) for v in self.box],
                "stage": self.stage, "best_anchor_iou": round(self.best_anchor_iou, 4),
                "anchor_fits": self.anchor_fits, "size": self.size,
                "best_iou": {k: round(float(v), 4) for k, v in self.best_iou.items()},
                "winner": self.winner, "winner_score": _r(self.winner_score),
                "best_class_score": _r(self.best_class_score)}


def _r(v: float | None) -> float | None:
    return None if v is None else round(float(v), 4)


def blame_image(trail: ImageTrail, image_index: int, missed: np.ndarray, iou: float, score_threshold: float,
                box_score_thresh: float, class_names: tuple[str, ...]) -> list[MissedBox]:
    """The stage that lost each missed ground-truth box (indices `missed`) of one image."""
    out = []
    keep = trail.scores >= score_threshold
    det_iou = iou_matrix(trail.gt_boxes, trail.boxes[keep])  # (G, D')
    det_labels = trail.labels[keep]
    for g in missed.tolist():
        c = int(trail.gt_labels[g])
        covering = trail.refined_iou[g] >= iou
        scores_c = trail.refined_score[g]
        passing = covering & (scores_c >= score_threshold) & (scores_c > box_score_thresh)
        winner = winner_score = best_class = None
        if trail.best_iou_pre_nms[g] < iou:
            stage = "rpn_proposals"
        elif trail.best_iou_after_nms[g] < iou:
            stage = "rpn_nms"
        elif trail.best_iou_rois[g] < iou:
            stage = "rpn_top_n"
        elif not covering.any():
            stage = "box_localization"
        elif not passing.any():
            stage = "box_classification"
            r = int(np.flatnonzero(covering)[np.argmax(scores_c[covering])])
            top = int(trail.roi_top_label[r])
            winner = class_name(class_names, top)
            winner_score, best_class = float(trail.roi_top_score[r]), float(scores_c[r])
        elif not ((det_labels == c) & (det_iou[g] >= iou)).any():
            stage = "box_nms"
        else:
            stage = "crowded"
        refined_best = float(trail.refined_iou[g].max()) if trail.refined_iou.shape[1] else 0.0
        out.append(MissedBox(
            image=trail.file, image_index=image_index, box=tuple(float(v) for v in trail.gt_boxes[g]), label=c,
            class_name=class_name(class_names, c),
            size=coco_size(trail.gt_boxes[g]), stage=stage, best_anchor_iou=float(trail.best_anchor_iou[g]),
            best_iou={"rpn_proposals": float(trail.best_iou_pre_nms[g]), "rpn_nms": float(trail.best_iou_after_nms[g]),
                      "rpn_top_n": float(trail.best_iou_rois[g]), "refined": refined_best},
            winner=winner, winner_score=winner_score, best_class_score=best_class,
        ))
    return out


@dataclass(frozen=True)
class StageBlame:
    """Missed boxes by stage, overall, per class and per COCO size."""

    boxes: tuple[MissedBox, ...]

    @property
    def total(self) -> int:
        return len(self.boxes)

    def by_stage(self) -> dict[str, int]:
        return {s: sum(1 for b in self.boxes if b.stage == s) for s in STAGES}

    def by(self, key: str) -> dict[str, dict[str, int]]:
        """{stage: {class or size: count}} for key "class" or "size"."""
        attr = "class_name" if key == "class" else "size"
        groups = sorted({getattr(b, attr) for b in self.boxes}) if key == "class" else list(SIZES)
        return {s: {g: sum(1 for b in self.boxes if b.stage == s and getattr(b, attr) == g) for g in groups}
                for s in STAGES}

    def no_anchor_fits(self) -> int:
        """rpn_proposals losses where no anchor shape reaches IoU 0.3."""
        return sum(1 for b in self.boxes if b.stage == "rpn_proposals" and not b.anchor_fits)

    def as_dict(self) -> dict:
        return {"total": self.total, "by_stage": self.by_stage(), "by_class": self.by("class"),
                "by_size": self.by("size"), "no_anchor_fits": self.no_anchor_fits(),
                "boxes": [b.as_dict() for b in self.boxes]}
