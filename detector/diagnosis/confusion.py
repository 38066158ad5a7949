"""The confusion matrix at one IoU and score threshold, with a background row and column.

Rows are the ground-truth class (last row: background, i.e. a detection that matches nothing),
columns the predicted class (last column: background, i.e. a ground-truth box nothing matched).
Detections scoring >= the threshold are matched first within their class by COCO's greedy rule
(the diagonal is then the true positives of `matching`), then the boxes left over are paired
across classes, highest IoU first, one to one, at IoU >= the threshold (the off-diagonal cells);
what is still left is background. Each cell lists its images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detector.diagnosis.matching import iou_matrix


@dataclass(frozen=True)
class Confusion:
    labels: tuple[str, ...]  # class names, then "background"
    matrix: np.ndarray  # (K+1, K+1) counts
    images: tuple[tuple[tuple[str, ...], ...], ...]  # images[row][col]: files with a pair in that cell
    iou: float
    score_threshold: float

    def as_dict(self, with_images: bool = True) -> dict:
        out = {"labels": list(self.labels), "matrix": self.matrix.astype(int).tolist(), "iou": self.iou,
               "score_threshold": self.score_threshold}
        if with_images:
            out["images"] = [[list(cell) for cell in row] for row in self.images]
        return out


PerImage = tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class ImagePairs:
    """One image's detections scoring >= the threshold, paired with its ground truth as the matrix pairs them."""

    same_class: tuple[tuple[int, int], ...]  # (gt, detection): the greedy same-class matches (true positives)
    other_class: tuple[tuple[int, int], ...]  # (gt, detection): left over, paired across classes at IoU >= iou
    missed: tuple[int, ...]  # gt boxes nothing paired with
    background: tuple[int, ...]  # detections paired with nothing


def pair_image(gt_boxes: np.ndarray, gt_labels: np.ndarray, boxes: np.ndarray, scores: np.ndarray,
               labels: np.ndarray, match: np.ndarray, iou: float, score_threshold: float) -> ImagePairs:
    """The matrix's pairing for one image (module docstring): same class first, then across classes."""
    keep = np.flatnonzero(scores >= score_threshold)
    gt_free = np.ones(len(gt_labels), dtype=bool)
    det_free = np.zeros(len(labels), dtype=bool)
    det_free[keep] = True
    same, other = [], []
    for d in keep:
        if match[d] >= 0:
            same.append((int(match[d]), int(d)))
            gt_free[match[d]] = False
            det_free[d] = False
    gi, di = np.flatnonzero(gt_free), np.flatnonzero(det_free)
    if len(gi) and len(di):
        iou_m = iou_matrix(gt_boxes[gi], boxes[di])
        pairs = np.argwhere(iou_m >= iou)
        order = np.argsort(-iou_m[pairs[:, 0], pairs[:, 1]], kind="mergesort")
        for a, b in pairs[order]:
            g, d = gi[a], di[b]
            if gt_free[g] and det_free[d]:
                other.append((int(g), int(d)))
                gt_free[g] = det_free[d] = False
    return ImagePairs(tuple(same), tuple(other), tuple(int(g) for g in np.flatnonzero(gt_free)),
                      tuple(int(d) for d in np.flatnonzero(det_free)))


def confusion_matrix(per_image: list[PerImage], class_names: tuple[str, ...], iou: float,
                     score_threshold: float) -> Confusion:
    """per_image: (file, gt_boxes, gt_labels, boxes, scores, labels, match) with `match` the
    same-class greedy matching at `iou` (matching.greedy_match over every detection)."""
    k = len(class_names)
    bg = k
    matrix = np.zeros((k + 1, k + 1), dtype=np.int64)
    cells: dict[tuple[int, int], list[str]] = {}

    def add(row: int, col: int, file: str) -> None:
        matrix[row, col] += 1
        names = cells.setdefault((row, col), [])
        if not names or names[-1] != file:
            names.append(file)

    for file, gt_boxes, gt_labels, boxes, scores, labels, match in per_image:
        pairs = pair_image(gt_boxes, gt_labels, boxes, scores, labels, match, iou, score_threshold)
        for g, d in pairs.same_class + pairs.other_class:
            add(int(gt_labels[g]) - 1, int(labels[d]) - 1, file)
        for g in pairs.missed:
            add(int(gt_labels[g]) - 1, bg, file)
        for d in pairs.background:
            add(bg, int(labels[d]) - 1, file)
    images = tuple(tuple(tuple(cells.get((r, c), ())) for c in range(k + 1)) for r in range(k + 1))
    return Confusion(tuple(class_names) + ("background",), matrix, images, float(iou), float(score_threshold))


@dataclass(frozen=True)
class WrongDetection:
    """A detection scoring >= the threshold that matched no ground-truth box of its class."""

    file: str
    detection: int  # its index among the image's detections (the model's output order)
    label: str  # its class
    score: float
    box: tuple[float, float, float, float]  # [x1, y1, x2, y2], original pixels
    confused_with: str | None  # the ground-truth class it sits on (IoU >= iou), None: background


def wrong_detections(per_image: list[PerImage], class_names: tuple[str, ...], iou: float,
                     score_threshold: float) -> list[WrongDetection]:
    """The false positives (the matrix's background row) and the confusions (its off-diagonal cells),
    one per detection, in image order then score order."""
    out = []
    for file, gt_boxes, gt_labels, boxes, scores, labels, match in per_image:
        pairs = pair_image(gt_boxes, gt_labels, boxes, scores, labels, match, iou, score_threshold)
        wrong = [(d, class_names[int(gt_labels[g]) - 1]) for g, d in pairs.other_class]
        wrong += [(d, None) for d in pairs.background]
        for d, gt_class in sorted(wrong, key=lambda w: (-float(scores[w[0]]), w[0])):
            out.append(WrongDetection(file, int(d), class_names[int(labels[d]) - 1], float(scores[d]),
                                      tuple(float(v) for v in boxes[d]), gt_class))  # type: ignore[arg-type]
    return out
