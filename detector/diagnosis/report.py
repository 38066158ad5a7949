"""The diagnosis of a model on a set of images, computed from their trails (no model needed).

Two parts: what does not depend on the chosen IoU and score threshold (COCO's per-class AP from
the same pycocotools evaluator `evaluate` uses, TIDE's error types), computed once per pass; and
what does (precision / recall at the operating point, PR curves, confusion matrix, where each
missed box was lost), recomputed in milliseconds when a widget moves.

`diagnosis_report` returns the JSON the CLI prints and the page renders (diagnosis.json):

    images, mAP, mAP50, mAP75                     as `evaluate` on the same input
    per_class   [{class, gt, AP, AP50, AP75, AP_small, AP_medium, AP_large, precision, recall,
                  best_f1_threshold, best_f1}]
    pr_curves   {class: {"0.5": {recall, precision, score}, "0.75": {...}}}   (downsampled)
    confusion   {labels, matrix, iou, score_threshold, images}
    errors      {Cls, Loc, Both, Dupe, Bkg, Miss, FalsePos, FalseNeg}   (TIDE, AP50 points)
    error_counts, tide_ap50
    missed      {total, by_stage, by_class, by_size, no_anchor_fits, boxes: [{image, class, box,
                  stage, best_anchor_iou, ...}]}
    iou, score_threshold, box_score_thresh, settings (the RPN's), classes
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from detector.diagnosis.confusion import PerImage, WrongDetection, confusion_matrix, wrong_detections
from detector.diagnosis.matching import ClassCurve, greedy_match, kept_by_coco
from detector.diagnosis.stage_blame import StageBlame, blame_image
from detector.diagnosis.tide import TideErrors, TideImage, tide_errors
from detector.diagnosis.trail import TrailSet
from detector.evaluation import CocoEvaluator, EvalResult, class_ap

PR_IOUS = (0.5, 0.75)
CURVE_POINTS = 200  # points per PR curve kept in the report


@dataclass(frozen=True)
class ThresholdFree:
    """The figures that do not depend on the chosen IoU or score threshold."""

    coco: EvalResult
    per_class_ap: dict[int, dict[str, float | None]]  # label -> AP, AP50, AP75, AP_small, AP_medium, AP_large
    tide: TideErrors


def coco_figures(trails: TrailSet) -> tuple[EvalResult, dict[int, dict[str, float | None]]]:
    """mAP and per-class AP of every detection, through the evaluator `evaluate` uses."""
    evaluator = CocoEvaluator(trails.class_names)
    for t in trails.trails:
        evaluator.process(t.width, t.height, t.gt_boxes, t.gt_labels, t.boxes, t.scores, t.labels)
    coco_eval = evaluator.run_cocoeval()
    result = evaluator.result(coco_eval)
    present = evaluator.present_labels()
    per_class: dict[int, dict[str, float | None]] = {}
    for label in range(1, len(trails.class_names) + 1):
        if coco_eval is None:
            value = 0.0 if label in present else None
            per_class[label] = dict.fromkeys(("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large"), value)
            continue
        per_class[label] = {
            "AP": class_ap(coco_eval, label), "AP50": class_ap(coco_eval, label, 0.5),
            "AP75": class_ap(coco_eval, label, 0.75), "AP_small": class_ap(coco_eval, label, area="small"),
            "AP_medium": class_ap(coco_eval, label, area="medium"), "AP_large": class_ap(coco_eval, label, area="large"),
        }
    return result, per_class


def threshold_free(trails: TrailSet) -> ThresholdFree:
    coco, per_class = coco_figures(trails)
    tide = tide_errors([TideImage(t.gt_boxes, t.gt_labels, t.boxes, t.scores, t.labels) for t in trails.trails])
    return ThresholdFree(coco, per_class, tide)


def _matchings(trails: TrailSet, iou: float) -> list[np.ndarray]:
    return [greedy_match(t.gt_boxes, t.gt_labels, t.boxes, t.scores, t.labels, iou) for t in trails.trails]


def _per_image(trails: TrailSet, matches: list[np.ndarray]) -> list[PerImage]:
    return [(t.file, t.gt_boxes, t.gt_labels, t.boxes, t.scores, t.labels, m) for t, m in zip(trails.trails, matches)]


def wrong_detections_in(trails: TrailSet, iou: float, score_threshold: float) -> list[WrongDetection]:
    """Every false positive and confusion at these thresholds, as the confusion matrix counts them."""
    return wrong_detections(_per_image(trails, _matchings(trails, iou)), trails.class_names, iou, score_threshold)


def class_curves(trails: TrailSet, matches: list[np.ndarray]) -> dict[int, ClassCurve]:
    """Per class: every detection COCO counts, best first, and whether it is a true positive."""
    scores = np.concatenate([t.scores for t in trails.trails]) if trails.trails else np.zeros(0)
    labels = np.concatenate([t.labels for t in trails.trails]) if trails.trails else np.zeros(0, dtype=np.int64)
    tp = np.concatenate([m >= 0 for m in matches]) if matches else np.zeros(0, dtype=bool)
    kept = (np.concatenate([kept_by_coco(t.scores, t.labels) for t in trails.trails]) if trails.trails
            else np.zeros(0, dtype=bool))
    gts = np.concatenate([t.gt_labels for t in trails.trails]) if trails.trails else np.zeros(0, dtype=np.int64)
    out = {}
    for c in range(1, len(trails.class_names) + 1):
        sel = (labels == c) & kept
        order = np.argsort(-scores[sel], kind="mergesort")
        out[c] = ClassCurve(int(np.sum(gts == c)), scores[sel][order], tp[sel][order])
    return out


def _curve_json(curve: ClassCurve) -> dict[str, list[float]]:
    n = len(curve.scores)
    idx = np.unique(np.linspace(0, n - 1, min(n, CURVE_POINTS)).round().astype(int)) if n else np.zeros(0, dtype=int)
    return {"recall": np.round(curve.recall[idx], 4).tolist(), "precision": np.round(curve.precision[idx], 4).tolist(),
            "score": np.round(curve.scores[idx], 4).tolist()}


def missed_boxes(trails: TrailSet, matches: list[np.ndarray], iou: float, score_threshold: float) -> StageBlame:
    """Every missed ground-truth box at (iou, score_threshold) and the stage that lost it."""
    boxes = []
    for index, (t, match) in enumerate(zip(trails.trails, matches)):
        matched = set(match[(match >= 0) & (t.scores >= score_threshold)].tolist())
        missed = np.array([g for g in range(len(t.gt_labels)) if g not in matched], dtype=np.int64)
        if len(missed):
            boxes += blame_image(t, index, missed, iou, score_threshold, trails.box_score_thresh, trails.class_names)
    return StageBlame(tuple(boxes))


def _f(v: float | None) -> float | None:
    return None if v is None else round(float(v), 6)


def diagnosis_report(trails: TrailSet, iou: float = 0.5, score_threshold: float = 0.5,
                     fixed: ThresholdFree | None = None) -> dict[str, Any]:
    """The whole diagnosis as JSON-ready data (keys in the module docstring)."""
    if not 0.0 < iou <= 1.0:
        raise ValueError(f"iou must be in (0, 1], not {iou}")
    if not 0.0 <= score_threshold <= 1.0:
        raise ValueError(f"score threshold must be in [0, 1], not {score_threshold}")
    fixed = fixed or threshold_free(trails)
    names = trails.class_names
    matches = _matchings(trails, iou)
    curves = class_curves(trails, matches)
    pr_matches = {p: (matches if abs(p - iou) < 1e-9 else _matchings(trails, p)) for p in PR_IOUS}
    pr_curves = {p: class_curves(trails, m) for p, m in pr_matches.items()}
    dets = {c: int(np.sum([np.sum(t.labels == c) for t in trails.trails])) for c in range(1, len(names) + 1)}
    per_class = []
    for c in range(1, len(names) + 1):
        curve = curves[c]
        if curve.num_gt == 0 and dets[c] == 0:
            continue
        precision, recall = curve.at(score_threshold)
        best_t, best_f1 = curve.best_f1()
        per_class.append({"class": names[c - 1], "gt": curve.num_gt,
                          **{k: _f(v) for k, v in fixed.per_class_ap[c].items()},
                          "precision": _f(precision), "recall": _f(recall),
                          "best_f1_threshold": _f(best_t), "best_f1": _f(best_f1)})
    present = [row["class"] for row in per_class]
    pr_json = {names[c - 1]: {str(p): {**_curve_json(pr_curves[p][c]),
                                       "operating_point": dict(zip(("precision", "recall"),
                                                                   map(_f, pr_curves[p][c].at(score_threshold))))}
                              for p in PR_IOUS}
               for c in range(1, len(names) + 1) if names[c - 1] in present}
    confusion = confusion_matrix(_per_image(trails, matches), names, iou, score_threshold)
    blame = missed_boxes(trails, matches, iou, score_threshold)
    coco = fixed.coco
    return {
        "images": len(trails), "mAP": coco.mAP, "mAP50": coco.mAP50, "mAP75": coco.mAP75,
        "ground_truth": coco.ground_truth, "detections": coco.detections,
        "per_class": per_class, "pr_curves": pr_json, "confusion": confusion.as_dict(),
        "errors": {k: round(v, 4) for k, v in fixed.tide.as_dict().items()},
        "error_counts": dict(fixed.tide.counts), "tide_ap50": round(fixed.tide.ap50, 4),
        "missed": blame.as_dict(),
        "iou": float(iou), "score_threshold": float(score_threshold),
        "box_score_thresh": trails.box_score_thresh, "settings": asdict(trails.settings),
        "classes": list(names),
    }
