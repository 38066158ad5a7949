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


def confusion_matrix(per_image: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
                     class_names: tuple[str, ...], iou: float, score_threshold: float) -> Confusion:
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
        keep = np.flatnonzero(scores >= score_threshold)
        gt_free = np.ones(len(gt_labels), dtype=bool)
        det_free = np.zeros(len(labels), dtype=bool)
        det_free[keep] = True
        for d in keep:
            if match[d] >= 0:
                add(int(gt_labels[match[d]]) - 1, int(labels[d]) - 1, file)
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
                    add(int(gt_labels[g]) - 1, int(labels[d]) - 1, file)
                    gt_free[g] = det_free[d] = False
        for g in np.flatnonzero(gt_free):
            add(int(gt_labels[g]) - 1, bg, file)
        for d in np.flatnonzero(det_free):
            add(bg, int(labels[d]) - 1, file)
    images = tuple(tuple(tuple(cells.get((r, c), ())) for c in range(k + 1)) for r in range(k + 1))
    return Confusion(tuple(class_names) + ("background",), matrix, images, float(iou), float(score_threshold))
