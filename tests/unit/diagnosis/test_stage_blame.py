"""detector.diagnosis.stage_blame on hand-built trails: each bucket where it was put."""

from __future__ import annotations

import pytest

from detector.diagnosis.report import diagnosis_report
from detector.diagnosis.stage_blame import STAGES

from .conftest import make_trail, trail_set

BOX = [0, 0, 100, 100]


def _cases():
    return {
        "rpn_proposals": make_trail("p.jpg", [BOX], [1], pre=[0.2], after=[0.2], rois=[0.2], anchor=[0.1]),
        "rpn_nms": make_trail("n.jpg", [BOX], [1], pre=[0.8], after=[0.3], rois=[0.3]),
        "rpn_top_n": make_trail("t.jpg", [BOX], [1], pre=[0.8], after=[0.8], rois=[0.3]),
        "box_localization": make_trail("l.jpg", [BOX], [1], refined_iou=[[0.3, 0.2]], refined_score=[[0.9, 0.9]]),
        "box_classification": make_trail("c.jpg", [BOX], [1], refined_iou=[[0.8, 0.2]], refined_score=[[0.2, 0.9]],
                                         roi_top_label=[0, 1], roi_top_score=[0.7, 0.9]),
        "box_nms": make_trail("s.jpg", [BOX], [1], refined_iou=[[0.8]], refined_score=[[0.9]]),
        # two overlapping boxes, one detection: it matches the first, the second is crowded out
        "crowded": make_trail("w.jpg", [BOX, [0, 0, 100, 90]], [1, 1], [BOX], [0.9], [1],
                              refined_iou=[[1.0], [0.9]], refined_score=[[0.9], [0.9]]),
    }


def test_every_bucket_gets_the_box_put_there_and_they_sum_to_the_missed():
    cases = _cases()
    missed = diagnosis_report(trail_set(cases.values()), 0.5, 0.5)["missed"]
    assert missed["total"] == 7 == sum(missed["by_stage"].values())
    assert missed["by_stage"] == dict.fromkeys(STAGES, 1)
    stage_of = {b["image"]: b["stage"] for b in missed["boxes"]}
    assert stage_of == {t.file: stage for stage, t in cases.items()}
    by_file = {b["image"]: b for b in missed["boxes"]}
    assert by_file["p.jpg"]["anchor_fits"] is False and missed["no_anchor_fits"] == 1
    assert by_file["c.jpg"]["winner"] == "background" and by_file["c.jpg"]["winner_score"] == pytest.approx(0.7)
    assert by_file["w.jpg"]["box"] == [0, 0, 100, 90]
    assert missed["by_class"]["rpn_nms"] == {"circle": 1}
    assert missed["by_size"]["box_nms"] == {"small": 0, "medium": 0, "large": 1}


def test_a_lower_threshold_or_iou_moves_boxes_out_of_the_missed():
    cases = _cases()
    # at score threshold 0.1, box_classification's refined box (score 0.2) passes: then it is the box NMS
    missed = diagnosis_report(trail_set(cases.values()), 0.5, 0.1)["missed"]
    assert {b["image"]: b["stage"] for b in missed["boxes"]}["c.jpg"] == "box_nms"
    # at IoU 0.25 the RPN NMS and top-n boxes are covered: they move on to the box head
    missed = diagnosis_report(trail_set(cases.values()), 0.25, 0.5)["missed"]
    assert missed["by_stage"]["rpn_nms"] == 0 and missed["by_stage"]["rpn_top_n"] == 0


def test_the_models_own_box_score_thresh_counts_too():
    # a refined box scoring 0.3 >= the chosen 0.2, but under the model's box_score_thresh 0.5: never output
    trail = make_trail("c.jpg", [BOX], [1], refined_iou=[[0.8]], refined_score=[[0.3]], roi_top_label=[0])
    missed = diagnosis_report(trail_set([trail], box_score_thresh=0.5), 0.5, 0.2)["missed"]
    assert missed["boxes"][0]["stage"] == "box_classification"
