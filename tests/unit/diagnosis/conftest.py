"""Hand-built trails: every figure of a diagnosis known in advance, no model needed."""

from __future__ import annotations

import numpy as np
import pytest

from detector.diagnosis.trail import ImageTrail, TrailSet
from detector.proposals import ProposalSettings

NAMES = ("circle", "rectangle", "triangle")


def make_trail(file="img.jpg", gt=(), gt_labels=(), boxes=(), scores=(), labels=(), width=400, height=300,
               pre=None, after=None, rois=None, anchor=None, refined_iou=None, refined_score=None,
               roi_top_label=None, roi_top_score=None) -> ImageTrail:
    """A trail with the given ground truth and detections; stage figures default to 'covered'."""
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    g = len(gt)
    ones = np.ones(g)

    def arr(v, default):
        return np.asarray(default if v is None else v, dtype=np.float64)

    refined_iou = arr(refined_iou, np.ones((g, 1)))
    r = refined_iou.shape[1] if refined_iou.ndim == 2 else 1
    refined_iou = refined_iou.reshape(g, r)
    return ImageTrail(
        file=file, width=width, height=height, resized_size=(width, height), gt_boxes=gt,
        gt_labels=np.asarray(gt_labels, dtype=np.int64).reshape(-1),
        boxes=np.asarray(boxes, dtype=np.float64).reshape(-1, 4), scores=np.asarray(scores, dtype=np.float64),
        labels=np.asarray(labels, dtype=np.int64).reshape(-1),
        best_iou_pre_nms=arr(pre, ones), best_iou_after_nms=arr(after, ones), best_iou_rois=arr(rois, ones),
        best_anchor_iou=arr(anchor, ones), refined_iou=refined_iou.astype(np.float32),
        refined_score=arr(refined_score, np.ones((g, r))).reshape(g, r).astype(np.float32),
        roi_top_label=np.asarray(roi_top_label if roi_top_label is not None else np.ones(r), dtype=np.int64),
        roi_top_score=np.asarray(roi_top_score if roi_top_score is not None else np.ones(r), dtype=np.float32),
    )


def trail_set(trails, box_score_thresh=0.05) -> TrailSet:
    return TrailSet(tuple(trails), NAMES, box_score_thresh, ProposalSettings(300, 100, 0.7))


@pytest.fixture
def trails_of():
    return trail_set
