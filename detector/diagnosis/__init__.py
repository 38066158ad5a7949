"""Diagnose a detector on a dataset: which classes fail, what kind of error, and at which stage
of Faster R-CNN each missed object is lost.

One pass over the images (`trail.collect_trails`: one forward per image through
`detector.inspect`'s stage functions) keeps a per-image trail; everything else is computed from it
without the model: per-class COCO AP (`report`, through `detector.evaluation`'s evaluator), PR
curves and the best-F1 threshold (`matching`), the confusion matrix (`confusion`), TIDE's error
types (`tide`), the stage that lost each missed box (`stage_blame`). The tuner (`tuner`) re-runs
only the proposal filtering and the post-processing, on each batch's RoI candidates and the box
head's outputs for them (`candidates`), kept by the pass instead of the FPN features. Boxes are [x1, y1, x2, y2]
in original image pixels unless a field says otherwise.
"""

from detector.diagnosis.report import ThresholdFree, diagnosis_report, threshold_free
from detector.diagnosis.stage_blame import STAGE_LABELS, STAGES
from detector.diagnosis.tide import MAIN_ERRORS, SPECIAL_ERRORS, tide_errors
from detector.diagnosis.trail import ImageTrail, TrailSet, collect_trails
from detector.diagnosis.tuner import KNOBS, evaluate_setting, save_tuned_checkpoint, with_knobs

__all__ = [
    "ImageTrail", "KNOBS", "MAIN_ERRORS", "SPECIAL_ERRORS", "STAGES", "STAGE_LABELS", "ThresholdFree", "TrailSet",
    "collect_trails", "diagnosis_report", "evaluate_setting", "save_tuned_checkpoint", "threshold_free",
    "tide_errors", "with_knobs",
]
