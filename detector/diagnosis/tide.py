"""TIDE's error types (Bolya et al., ECCV 2020): the AP50 lost to each kind of detection error.

Follows the reference implementation (`tidecv` 1.0.1) step by step, so its figures agree with
TIDE's on the same detections: per image, detections sorted by score (at most `max_dets`) are
matched greedily to unused ground truth of their class at IoU >= `pos_thresh` (0.5); each
unmatched detection is, in this order, a localisation error (its best same-class IoU in
[bg_thresh, pos_thresh]), a classification error (IoU >= pos_thresh with another class), a
duplicate (IoU >= pos_thresh with an already matched box of its class), background (every IoU <=
bg_thresh) or "both"; ground truth left unmatched and not fixable by a Cls/Loc error is missed.
Each main error's figure is the AP50 gained by fixing that type alone (TIDE's non-progressive
dAP, clamped at 0); FalsePos / FalseNeg are AP50 with perfect precision / perfect recall.
AP is TIDE's own: COCO's 101-point interpolation, averaged over every class that has ground truth
or a detection, in points (0-100). Boxes are [x1, y1, x2, y2], one frame for both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from detector.frames import iou_matrix

MAIN_ERRORS = ("Cls", "Loc", "Both", "Dupe", "Bkg", "Miss")
SPECIAL_ERRORS = ("FalsePos", "FalseNeg")


@dataclass(frozen=True)
class TideImage:
    """One image's ground truth and detections (xyxy, same frame)."""

    gt_boxes: np.ndarray  # (G, 4)
    gt_labels: np.ndarray  # (G,)
    boxes: np.ndarray  # (D, 4)
    scores: np.ndarray  # (D,)
    labels: np.ndarray  # (D,)


@dataclass(frozen=True)
class TideErrors:
    """AP50 points (0-100) gained by fixing each error type; `counts` how many errors of each."""

    ap50: float  # TIDE's base AP50 (points)
    main: dict[str, float]  # Cls, Loc, Both, Dupe, Bkg, Miss
    special: dict[str, float]  # FalsePos, FalseNeg
    counts: dict[str, int]  # errors of each main type

    def as_dict(self) -> dict[str, float]:
        """The issue's JSON: {Cls, Loc, Both, Dupe, Bkg, Miss, FalsePos, FalseNeg}."""
        return {**{k: float(v) for k, v in self.main.items()}, **{k: float(v) for k, v in self.special.items()}}


def _ap(points: list[tuple[float, bool]], num_gt: int) -> float:
    """TIDE's APDataObject.get_ap: stable sort by score, envelope, 101-point sum, in points."""
    if num_gt == 0:
        return 0.0
    points = sorted(points, key=lambda p: -p[0])
    correct = np.array([p[1] for p in points], dtype=bool)
    tp = np.cumsum(correct)
    fp = np.cumsum(~correct)
    precision = (tp / np.maximum(tp + fp, 1)).tolist()
    recall = tp / num_gt
    for i in range(len(precision) - 1, 0, -1):
        if precision[i] > precision[i - 1]:
            precision[i - 1] = precision[i]
    x_range = np.array([x / 100 for x in range(101)])
    idx = np.searchsorted(recall, x_range, side="left")
    y = [precision[i] if i < len(precision) else 0 for i in idx]
    return sum(y) / len(y) * 100


class _Classed:
    """TIDE's ClassedAPDataObject: per class, data points in insertion order and a gt count."""

    def __init__(self) -> None:
        self.points: dict[int, dict[int, tuple[float, bool]]] = {}
        self.gt: dict[int, int] = {}

    def _touch(self, cls: int) -> None:
        self.points.setdefault(cls, {})
        self.gt.setdefault(cls, 0)

    def push(self, cls: int, pid: int, score: float, correct: bool) -> None:
        self._touch(cls)
        self.points[cls][pid] = (score, correct)

    def add_gt(self, cls: int, n: int) -> None:
        self._touch(cls)
        self.gt[cls] += n

    def mAP(self) -> float:
        aps = [_ap(list(self.points[c].values()), self.gt[c]) for c in self.points
               if self.points[c] or self.gt[c]]
        return sum(aps) / len(aps) if aps else 0.0


def tide_errors(images: Sequence[TideImage], pos_thresh: float = 0.5, bg_thresh: float = 0.1,
                max_dets: int = 100) -> TideErrors:
    """TIDE's main and special errors over `images` (every detection, no score threshold)."""
    ap_data = _Classed()
    errors: list[dict] = []  # in the order TIDE adds them
    gt_state: dict[int, dict] = {}  # gt id -> used, usable, best_score, best_id, class
    false_negatives: dict[int, int] = {}
    next_pred, next_gt = 0, 0
    for img in images:
        gl = np.asarray(img.gt_labels, dtype=np.int64).reshape(-1)
        gb = np.asarray(img.gt_boxes, dtype=np.float64).reshape(-1, 4)
        gt_ids = list(range(next_gt, next_gt + len(gl)))
        next_gt += len(gl)
        for gid, c in zip(gt_ids, gl.tolist()):
            gt_state[gid] = {"_id": gid, "used": False, "usable": False, "class": c}
            ap_data.add_gt(c, 1)
        order = sorted(range(len(img.scores)), key=lambda i: -float(img.scores[i]))[:max_dets]
        pred_ids = list(range(next_pred, next_pred + len(order)))
        next_pred += len(order)
        if not order:
            for gid, c in zip(gt_ids, gl.tolist()):
                errors.append({"type": "Miss", "gt": gid})
                false_negatives[c] = false_negatives.get(c, 0) + 1
            continue
        pb = np.asarray(img.boxes, dtype=np.float64).reshape(-1, 4)[order]
        ps = [float(img.scores[i]) for i in order]
        pl = np.asarray(img.labels, dtype=np.int64).reshape(-1)[order]
        used = np.zeros(len(order), dtype=bool)
        if len(gl):
            iou = iou_matrix(pb, gb)  # (D, G)
            same = pl[:, None] == gl[None, :]
            cls_iou = iou * same
            buffer = cls_iou.copy()
            for d in range(len(order)):
                g = int(np.argmax(buffer[d]))
                if buffer[d, g] >= pos_thresh:
                    used[d] = True
                    gt_state[gt_ids[g]]["used"] = True
                    buffer[:, g] = 0
            gt_used = np.array([gt_state[gid]["used"] for gid in gt_ids])[None, :]
            noncls_iou = iou * ~same
            used_cls = gt_used * iou * same
        for d, pid in enumerate(pred_ids):
            c, s = int(pl[d]), ps[d]
            ap_data.push(c, pid, s, bool(used[d]))
            if used[d]:
                continue
            err = {"pred": pid, "class": c, "score": s}
            if len(gl) == 0:
                errors.append({**err, "type": "Bkg"})
                continue
            g = int(cls_iou[d].argmax())
            if bg_thresh <= cls_iou[d, g] <= pos_thresh:
                errors.append({**err, "type": "Loc", **_best_gt_match(gt_state[gt_ids[g]], pid, s)})
                continue
            g = int(noncls_iou[d].argmax())
            if noncls_iou[d, g] >= pos_thresh:
                errors.append({**err, "type": "Cls", **_best_gt_match(gt_state[gt_ids[g]], pid, s)})
                continue
            g = int(used_cls[d].argmax())
            if used_cls[d, g] >= pos_thresh:
                errors.append({**err, "type": "Dupe"})
                continue
            if iou[d].max() <= bg_thresh:
                errors.append({**err, "type": "Bkg"})
                continue
            errors.append({**err, "type": "Both"})
        for gid in gt_ids:
            state = gt_state[gid]
            if not state["used"]:
                false_negatives[state["class"]] = false_negatives.get(state["class"], 0) + 1
                if not state["usable"]:
                    errors.append({"type": "Miss", "gt": gid})

    base = ap_data.mAP()

    found = (ap_data, errors, gt_state, false_negatives)
    main = {t: max(_fixed_map(*found, fix_type=t) - base, 0.0) for t in MAIN_ERRORS}
    special = {"FalsePos": _fixed_map(*found, perfect_precision=True) - base,
               "FalseNeg": _fixed_map(*found, perfect_recall=True) - base}
    counts = {t: sum(1 for e in errors if e["type"] == t) for t in MAIN_ERRORS}
    return TideErrors(ap50=base, main=main, special=special, counts=counts)


def _fixed_map(ap_data: "_Classed", errors: list[dict], gt_state: dict[int, dict], false_negatives: dict[int, int],
               fix_type: str | None = None, perfect_precision: bool = False, perfect_recall: bool = False) -> float:
    """The mAP50 with the errors of `fix_type` fixed (or every false positive / negative gone), as TIDE's
    fix_main_errors / fix_special_errors compute it."""
    new = _Classed()
    gt_pos = dict(ap_data.gt)
    for e in errors:
        if e["type"] == "Miss":
            if e["type"] == fix_type:
                gt_pos[gt_state[e["gt"]]["class"]] -= 1
            continue
        cls, point = e["class"], (e["score"], False)
        if e["type"] == fix_type:
            point = None
            if e["type"] in ("Cls", "Loc") and e.get("gt") is not None:
                state = gt_state[e["gt"]]
                if not e["suppress"] and state.get("best_id") == e["pred"]:
                    point = (e["score"], True)
                    cls = state["class"] if e["type"] == "Cls" else cls
        if point is not None:
            if perfect_precision:
                point = (0.0, False)
            new.push(cls, e["pred"], *point)
    for k in gt_pos:
        for pid, (score, correct) in ap_data.points[k].items():
            if correct:
                new.push(k, pid, 1.0 if perfect_precision else score, True)
    for k, v in gt_pos.items():
        new.add_gt(k, v - (false_negatives.get(k, 0) if perfect_recall else 0))
    return new.mAP()


def _best_gt_match(state: dict, pid: int, score: float) -> dict:
    """TIDE's BestGTMatch: of the Cls/Loc errors on one unmatched ground truth only the
    highest-scoring one may be fixed; on a matched one, none."""
    if state["used"]:
        return {"gt": None, "suppress": True}
    state["usable"] = True
    if state.get("best_score", -1) < score:
        state["best_score"] = score
        state["best_id"] = pid
    return {"gt": state["_id"], "suppress": False}
