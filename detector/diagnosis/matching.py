"""COCO-style greedy matching of detections to ground truth, and what it gives per class.

pycocotools' rule (`COCOeval.evaluateImg`): per image and class, detections in decreasing score
order (a stable sort, at most 100), each takes the unmatched ground-truth box with the highest IoU
>= the threshold (ties: the later box). Matching in score order means the matches of the
detections scoring >= s are the same whatever the lower ones do, so one matching over every
detection answers every score threshold. Boxes are [x1, y1, x2, y2], original image pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
import numpy as np
import torch
from torchvision.ops import box_iou

MAX_DETS = 100  # COCOeval's maxDets for AP


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU of xyxy boxes, float64 (torchvision's box_iou)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    return box_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy()


def greedy_match(gt_boxes: np.ndarray, gt_labels: np.ndarray, boxes: np.ndarray, scores: np.ndarray,
                 labels: np.ndarray, iou_thresh: float, max_dets: int = MAX_DETS) -> np.ndarray:
    """For each detection, the index of the ground-truth box it matches, or -1 (COCO's rule)."""
    labels = np.asarray(labels).reshape(-1)
    gt_labels = np.asarray(gt_labels).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    match = np.full(len(labels), -1, dtype=np.int64)
    iou = iou_matrix(boxes, gt_boxes)
    for c in np.unique(labels):
        dets = np.flatnonzero(labels == c)
        dets = dets[np.argsort(-scores[dets], kind="mergesort")][:max_dets]
        gts = np.flatnonzero(gt_labels == c)
        taken = np.zeros(len(gts), dtype=bool)
        for d in dets:
            best, m = min(iou_thresh, 1 - 1e-10), -1
            for j, g in enumerate(gts):
                if taken[j] or iou[d, g] < best:
                    continue
                best, m = iou[d, g], j
            if m >= 0:
                taken[m] = True
                match[d] = gts[m]
    return match


@dataclass(frozen=True)
class ClassCurve:
    """One class's precision / recall at every score, from a matching over all images.

    scores: detection scores in decreasing order; tp: whether each is a true positive; the
    precision and recall of keeping the detections scoring >= scores[i] are at index i.
    """

    num_gt: int
    scores: np.ndarray
    tp: np.ndarray

    @property
    def precision(self) -> np.ndarray:
        hits = np.cumsum(self.tp)
        return hits / np.arange(1, len(self.tp) + 1) if len(self.tp) else np.zeros(0)

    @property
    def recall(self) -> np.ndarray:
        hits = np.cumsum(self.tp)
        return hits / self.num_gt if self.num_gt else np.zeros(len(self.tp))

    def at(self, threshold: float) -> tuple[float | None, float | None]:
        """(precision, recall) keeping the detections scoring >= threshold (None where undefined)."""
        n = int(np.sum(self.scores >= threshold))
        hits = int(np.sum(self.tp[:n]))
        precision = hits / n if n else None
        recall = hits / self.num_gt if self.num_gt else None
        return precision, recall

    def best_f1(self) -> tuple[float | None, float | None]:
        """(score threshold, F1) maximising F1 over every threshold; (None, None) with no TP."""
        if not len(self.tp) or not self.num_gt or not self.tp.any():
            return None, None
        p, r = self.precision, self.recall
        f1 = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-12), 0.0)
        # a threshold equal to a score keeps every detection with that score: take the last of a tie
        last_of_tie = np.r_[self.scores[1:] != self.scores[:-1], True]
        f1 = np.where(last_of_tie, f1, -1.0)
        i = int(np.argmax(f1))
        return float(self.scores[i]), float(f1[i])


def kept_by_coco(scores: np.ndarray, labels: np.ndarray, max_dets: int = MAX_DETS) -> np.ndarray:
    """Mask of the detections COCOeval counts in one image: the top `max_dets` of each class."""
    labels = np.asarray(labels).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    kept = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        dets = np.flatnonzero(labels == c)
        kept[dets[np.argsort(-scores[dets], kind="mergesort")][:max_dets]] = True
    return kept
