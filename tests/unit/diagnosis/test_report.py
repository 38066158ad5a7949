"""detector.diagnosis.report and .matching: per-class AP, matching and PR figures against pycocotools."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from detector.diagnosis.matching import greedy_match
from detector.diagnosis.report import diagnosis_report

from .conftest import NAMES, make_trail, trail_set

pytest.importorskip("pycocotools")
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402


def _random_trails(seed: int, n: int = 30):
    rng = np.random.default_rng(seed)
    trails = []
    for i in range(n):
        g = int(rng.integers(0, 5))
        xy = rng.uniform(0, 300, (g, 2))
        wh = rng.uniform(8, 150, (g, 2))  # small, medium and large boxes
        gt = np.hstack([xy, xy + wh])
        gl = rng.integers(1, 4, g)
        boxes, labels = [], []
        for b, c in zip(gt, gl):
            for _ in range(int(rng.integers(0, 3))):
                boxes.append(b + rng.normal(0, 0.15 * np.sqrt((b[2] - b[0]) * (b[3] - b[1])), 4))
                labels.append(int(c) if rng.random() < 0.8 else int(rng.integers(1, 4)))
        boxes.append(np.r_[rng.uniform(0, 200, 2), 0, 0])
        boxes[-1][2:] = boxes[-1][:2] + rng.uniform(10, 60, 2)
        labels.append(int(rng.integers(1, 4)))
        boxes = np.array(boxes).reshape(-1, 4)
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        trails.append(make_trail(f"img_{i:03d}.jpg", gt, gl, boxes, np.round(rng.random(len(boxes)), 5), labels))
    return trails


def _coco_files(tmp_path, trails):
    gt = {"images": [], "annotations": [], "categories": [{"id": i + 1, "name": n} for i, n in enumerate(NAMES)]}
    res = []
    for i, t in enumerate(trails, start=1):
        gt["images"].append({"id": i, "file_name": t.file, "width": t.width, "height": t.height})
        for b, c in zip(t.gt_boxes, t.gt_labels):
            w, h = float(b[2] - b[0]), float(b[3] - b[1])
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": i, "category_id": int(c),
                                      "bbox": [float(b[0]), float(b[1]), w, h], "area": w * h, "iscrowd": 0})
        for b, s, c in zip(t.boxes, t.scores, t.labels):
            res.append({"image_id": i, "category_id": int(c), "score": float(s),
                        "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]})
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(res))
    return str(tmp_path / "gt.json"), str(tmp_path / "res.json")


def _cocoeval(gt_file, res_file, cat=None, iou=None):
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(gt_file)
        ev = COCOeval(gt, gt.loadRes(res_file), "bbox")
        if cat is not None:
            ev.params.catIds = [cat]
        if iou is not None:
            ev.params.iouThrs = np.array([iou])
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def test_per_class_ap_equals_pycocotools_for_each_class_alone(tmp_path):
    trails = _random_trails(0)
    report = diagnosis_report(trail_set(trails), 0.5, 0.5)
    gt_file, res_file = _coco_files(tmp_path, trails)
    overall = _cocoeval(gt_file, res_file)
    assert report["mAP"] == pytest.approx(overall.stats[0]) and report["mAP50"] == pytest.approx(overall.stats[1])
    rows = {r["class"]: r for r in report["per_class"]}
    for c, name in enumerate(NAMES, start=1):
        stats = _cocoeval(gt_file, res_file, cat=c).stats  # pycocotools' own summary, this class only
        for key, i in (("AP", 0), ("AP50", 1), ("AP75", 2), ("AP_small", 3), ("AP_medium", 4), ("AP_large", 5)):
            expected = None if stats[i] < 0 else stats[i]
            assert rows[name][key] == pytest.approx(expected, abs=1e-6), (name, key)
        assert rows[name]["gt"] == sum(int(np.sum(t.gt_labels == c)) for t in trails)


@pytest.mark.parametrize("iou", [0.5, 0.75, 0.6])
def test_matching_equals_cocoeval_matches(tmp_path, iou):
    trails = _random_trails(1)
    gt_file, res_file = _coco_files(tmp_path, trails)
    ev = _cocoeval(gt_file, res_file, iou=iou)
    ann_index = {}  # pycocotools' annotation id -> (image, index in the image)
    for a in ev.cocoGt.dataset["annotations"]:
        ann_index[a["id"]] = (a["image_id"], sum(1 for b in ev.cocoGt.dataset["annotations"]
                                                 if b["image_id"] == a["image_id"] and b["id"] < a["id"]))
    for e in ev.evalImgs:
        if e is None or e["aRng"] != [0, 1e10]:
            continue
        image = e["image_id"]
        t = trails[image - 1]
        ours = greedy_match(t.gt_boxes, t.gt_labels, t.boxes, t.scores, t.labels, iou)
        dets = ev.cocoDt.loadAnns(e["dtIds"])
        first = min((d["id"] for d in ev.cocoDt.loadAnns(ev.cocoDt.getAnnIds(imgIds=[image]))), default=0)
        for d, m in zip(dets, e["dtMatches"][0]):
            expected = ann_index[int(m)][1] if m > 0 else -1
            assert ours[d["id"] - first] == expected


def test_precision_recall_at_threshold_and_best_f1():
    box = [0, 0, 100, 100]
    far = [200, 200, 260, 260]
    trails = [
        make_trail("a.jpg", [box], [1], [box, far], [0.9, 0.8], [1, 1]),  # TP 0.9, FP 0.8
        make_trail("b.jpg", [box], [1], [box], [0.4], [1]),  # TP 0.4
        make_trail("c.jpg", [box], [1], [], [], []),  # missed
    ]
    report = diagnosis_report(trail_set(trails), 0.5, 0.5)
    row = next(r for r in report["per_class"] if r["class"] == "circle")
    assert (row["precision"], row["recall"]) == (pytest.approx(0.5), pytest.approx(1 / 3))
    # F1 at 0.9: 2*(1*1/3)/(4/3) = 0.5; at 0.8: P 1/2 R 1/3 -> 0.4; at 0.4: P 2/3 R 2/3 -> 0.667
    assert row["best_f1_threshold"] == pytest.approx(0.4) and row["best_f1"] == pytest.approx(2 / 3, abs=1e-6)
    curve = report["pr_curves"]["circle"]["0.5"]
    assert curve["score"] == [0.9, 0.8, 0.4] and curve["recall"] == pytest.approx([1 / 3, 1 / 3, 2 / 3], abs=1e-4)
    assert curve["operating_point"] == {"precision": pytest.approx(0.5), "recall": pytest.approx(1 / 3)}


def test_confusion_cells_are_known():
    box, other = [0, 0, 100, 100], [150, 0, 250, 100]
    trails = [
        make_trail("a.jpg", [box, other], [1, 2], [box, other], [0.9, 0.9], [1, 3]),  # circle ok; rectangle->triangle
        make_trail("b.jpg", [box], [3], [[300, 200, 350, 250]], [0.7], [2]),  # triangle missed; rectangle on nothing
        make_trail("c.jpg", [box], [1], [box], [0.3], [1]),  # below the threshold: missed
    ]
    conf = diagnosis_report(trail_set(trails), 0.5, 0.5)["confusion"]
    assert conf["labels"] == ["circle", "rectangle", "triangle", "background"]
    assert conf["matrix"] == [[1, 0, 0, 1],
                              [0, 0, 1, 0],
                              [0, 0, 0, 1],
                              [0, 1, 0, 0]]
    assert conf["images"][1][2] == ["a.jpg"] and conf["images"][0][3] == ["c.jpg"] and conf["images"][3][1] == ["b.jpg"]
    # every ground-truth box is in exactly one cell of its row
    assert sum(map(sum, conf["matrix"][:3])) == 4


def test_wrong_detections_are_the_confusion_matrixs_off_diagonal_and_background_cells():
    from detector.diagnosis.report import wrong_detections_in

    box, other = [0, 0, 100, 100], [150, 0, 250, 100]
    trails = trail_set([
        make_trail("a.jpg", [box, other], [1, 2], [box, other], [0.9, 0.8], [1, 3]),  # circle ok; rectangle->triangle
        make_trail("b.jpg", [box], [3], [[300, 200, 350, 250], box], [0.7, 0.2], [2, 3]),  # rectangle on nothing
    ])
    wrong = wrong_detections_in(trails, 0.5, 0.5)
    assert [(w.file, w.detection, w.label, w.confused_with) for w in wrong] == [
        ("a.jpg", 1, "triangle", "rectangle"), ("b.jpg", 0, "rectangle", None)]
    assert wrong[0].box == tuple(float(v) for v in other) and wrong[1].score == pytest.approx(0.7)
    # the same counts as the matrix: its background row and its off-diagonal cells
    for iou, score in ((0.5, 0.5), (0.5, 0.1), (0.9, 0.0)):
        matrix = np.array(diagnosis_report(trails, iou, score)["confusion"]["matrix"])
        off_diagonal = matrix[:-1, :-1].sum() - np.trace(matrix[:-1, :-1])
        assert len(wrong_detections_in(trails, iou, score)) == off_diagonal + matrix[-1].sum()
