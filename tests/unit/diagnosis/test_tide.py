"""detector.diagnosis.tide against TIDE's reference implementation (tidecv) on the same detections.

The reference reads COCO files as COCO writes them (an instances file, a results file); ours reads
the same boxes. No compatibility shim was needed for tidecv 1.0.1 on this numpy / Python.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from detector.diagnosis.tide import MAIN_ERRORS, TideImage, tide_errors

tidecv = pytest.importorskip("tidecv")
from tidecv import TIDE, datasets  # noqa: E402

BOX = [0, 0, 100, 100]


def _known_case() -> list[TideImage]:
    """Each of TIDE's six error types exactly once (plus one true positive)."""
    def img(gt, gl, boxes, scores, labels):
        return TideImage(np.array(gt, float).reshape(-1, 4), np.array(gl), np.array(boxes, float).reshape(-1, 4),
                         np.array(scores, float), np.array(labels))
    return [
        img([BOX], [1], [BOX, [0, 0, 100, 96]], [0.9, 0.8], [1, 1]),  # TP, then a duplicate (Dupe)
        img([BOX], [1], [BOX], [0.7], [2]),  # right box, wrong class (Cls)
        img([BOX], [2], [[0, 0, 100, 40]], [0.6], [2]),  # right class, IoU 0.4 (Loc)
        img([[200, 200, 300, 300]], [1], [[0, 0, 50, 50]], [0.5], [1]),  # on nothing (Bkg); its gt: Miss
        img([BOX], [1], [[0, 0, 100, 40]], [0.4], [2]),  # IoU 0.4, wrong class (Both); gt Miss
        img([], [], [[10, 10, 60, 60]], [0.3], [3]),  # a negative image: background
    ]


def _write_coco(tmp_path, images: list[TideImage]):
    """An instances file and a results file, in COCO's own layout (bbox = [x, y, w, h]; a box-only
    annotation's segmentation is its rectangle, as COCO's own box-derived polygons)."""
    gt = {"images": [], "annotations": [], "categories": [{"id": c, "name": f"c{c}"} for c in (1, 2, 3)]}
    results = []
    for i, im in enumerate(images, start=1):
        gt["images"].append({"id": i, "file_name": f"{i}.jpg", "width": 400, "height": 300})
        for b, c in zip(im.gt_boxes, im.gt_labels):
            w, h = float(b[2] - b[0]), float(b[3] - b[1])
            x1, y1, x2, y2 = (float(v) for v in b)
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": i, "category_id": int(c),
                                      "bbox": [x1, y1, w, h], "area": w * h, "iscrowd": 0,
                                      "segmentation": [[x1, y1, x2, y1, x2, y2, x1, y2]]})
        for b, s, c in zip(im.boxes, im.scores, im.labels):
            results.append({"image_id": i, "category_id": int(c), "score": float(s),
                            "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]})
    (tmp_path / "instances.json").write_text(json.dumps(gt))
    (tmp_path / "results.json").write_text(json.dumps(results))
    return tmp_path / "instances.json", tmp_path / "results.json"


def _reference(tmp_path, images):
    gt_file, res_file = _write_coco(tmp_path, images)
    tide = TIDE()  # TIDE's defaults: foreground IoU 0.5, background IoU 0.1
    tide.evaluate(datasets.COCO(str(gt_file)), datasets.COCOResult(str(res_file)), mode=TIDE.BOX, name="run")
    errors = tide.get_all_errors()
    return tide.runs["run"], {**errors["main"]["run"], **errors["special"]["run"]}


def test_each_error_type_is_found_where_it_was_put(tmp_path):
    ours = tide_errors(_known_case())
    assert ours.counts == {"Cls": 1, "Loc": 1, "Both": 1, "Dupe": 1, "Bkg": 2, "Miss": 2}
    run, ref = _reference(tmp_path, _known_case())
    ref_counts = {e.short_name: n for e, n in run.count_errors().items()}
    assert ours.counts == ref_counts
    assert ours.ap50 == pytest.approx(run.ap, abs=1e-9)
    assert ours.as_dict() == pytest.approx(ref, abs=1e-9)
    # fixing the classification error adds AP; so does fixing the localisation error
    assert ours.main["Cls"] > 0 and ours.main["Loc"] > 0 and ours.main["Miss"] > 0


def _random_case(rng, n_images=40) -> list[TideImage]:
    images = []
    for _ in range(n_images):
        g = int(rng.integers(0, 6))
        xy = rng.uniform(0, 300, (g, 2))
        wh = rng.uniform(10, 120, (g, 2))
        gt = np.hstack([xy, xy + wh])
        gl = rng.integers(1, 4, g)
        boxes, scores, labels = [], [], []
        for b, c in zip(gt, gl):  # a few detections near each object, of its class or not
            for _ in range(int(rng.integers(0, 4))):
                jitter = rng.normal(0, rng.choice([2, 10, 30]), 4)
                boxes.append(b + jitter)
                labels.append(c if rng.random() < 0.7 else int(rng.integers(1, 4)))
                scores.append(rng.random())
        for _ in range(int(rng.integers(0, 3))):  # background detections
            xy = rng.uniform(0, 300, 2)
            boxes.append(np.r_[xy, xy + rng.uniform(10, 80, 2)])
            labels.append(int(rng.integers(1, 4)))
            scores.append(rng.random())
        boxes = np.array(boxes, float).reshape(-1, 4)
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        images.append(TideImage(gt, gl, boxes, np.round(np.array(scores), 6), np.array(labels, int)))
    return images


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_figures_agree_with_tidecv_on_random_detections(tmp_path, seed):
    images = _random_case(np.random.default_rng(seed))
    ours = tide_errors(images)
    run, ref = _reference(tmp_path, images)
    assert ours.ap50 == pytest.approx(run.ap, abs=1e-6)
    for name in (*MAIN_ERRORS, "FalsePos", "FalseNeg"):
        assert ours.as_dict()[name] == pytest.approx(ref[name], abs=1e-6), name
    assert ours.counts == {e.short_name: n for e, n in run.count_errors().items()}
