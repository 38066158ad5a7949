"""Detection: class-name mapping, threshold filtering, exports that pycocotools accepts, the CLI."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from detector import checkpoints, models
from detector.data.records import class_name
from detector.detection import ImageDetections, coco_results, detect, detections_csv
from detector.scenes import make_scene

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def loaded(tiny_checkpoint):
    return checkpoints.load_model(tiny_checkpoint)


def test_class_name_mapping_is_one_based_with_background_zero():
    names = ("circle", "rectangle")
    assert class_name(names, 1) == "circle" and class_name(names, 2) == "rectangle"
    assert class_name(names, 0) == "background" and class_name(names, 7) == "class 7"
    assert models.COCO_CLASS_NAMES[0] == "person" and class_name(models.COCO_CLASS_NAMES, 1) == "person"


def test_detect_batches_keep_order_and_map_names(loaded):
    scenes = [make_scene(s, 160, 120) for s in (1, 2, 3)]
    images = [s.image for s in scenes] + [scenes[0].image.resize((100, 140))]
    dets = detect(loaded, images, ["a.png", "b.png", "c.png", "d.png"], batch_size=2)
    assert [d.image for d in dets] == ["a.png", "b.png", "c.png", "d.png"]
    assert (dets[3].width, dets[3].height) == (100, 140)
    for d in dets:
        assert 0 < len(d) <= 5
        assert set(d.label_names) <= {"circle", "rectangle", "triangle"}
        assert list(d.label_names) == [loaded.class_names[i - 1] for i in d.label_ids]
        assert (d.boxes[:, 2] <= d.width + 1e-3).all() and (d.boxes[:, 3] <= d.height + 1e-3).all()
        assert np.all(np.diff(d.scores) <= 1e-6)  # torchvision sorts by score


def test_threshold_and_class_filter():
    det = ImageDetections("x", 10, 10, np.array([[0, 0, 5, 5], [1, 1, 4, 4], [2, 2, 9, 9]], np.float32),
                     np.array([0.9, 0.6, 0.3], np.float32), np.array([1, 2, 1]), ("cat", "dog", "cat"))
    assert det.above(0.5).label_names == ("cat", "dog")
    assert det.above(0.0, ["cat"]).scores.tolist() == pytest.approx([0.9, 0.3])
    assert len(det.above(0.95)) == 0
    csv_text = detections_csv([det.above(0.5)])
    assert csv_text.splitlines()[0].startswith("image,width,height,label") and len(csv_text.splitlines()) == 3


def test_coco_results_load_in_pycocotools_and_score_perfect_predictions():
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = {"images": [{"id": 1, "width": 50, "height": 40, "file_name": "a.png"}],
          "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [5, 5, 20, 10], "area": 200, "iscrowd": 0},
                          {"id": 2, "image_id": 1, "category_id": 2, "bbox": [30, 10, 15, 25], "area": 375, "iscrowd": 0}]}
    coco = COCO()
    coco.dataset = gt
    coco.createIndex()
    det = ImageDetections("a.png", 50, 40, np.array([[5, 5, 25, 15], [30, 10, 45, 35]], np.float32),
                     np.array([0.9, 0.8], np.float32), np.array([1, 2]), ("cat", "dog"))
    res = coco.loadRes(coco_results([det], image_ids=[1], category_ids={"cat": 1, "dog": 2}))
    ev = COCOeval(coco, res, "bbox")
    ev.evaluate(); ev.accumulate(); ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)


def test_cli_detect_json_reports_each_file_and_fails_on_bad_ones(tmp_path, tiny_checkpoint):
    good = tmp_path / "good.png"
    make_scene(4, 120, 90).image.save(good)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = subprocess.run([sys.executable, "-m", "detector", "detect", str(good), str(bad), "--checkpoint",
                          str(tiny_checkpoint), "--score-threshold", "0", "--json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1
    entries = json.loads(out.stdout)
    assert [e["image"] for e in entries] == [str(good), str(bad)]
    assert entries[0]["error"] is None and entries[0]["width"] == 120 and entries[0]["detections"]
    first = entries[0]["detections"][0]
    assert set(first) == {"box", "label", "label_id", "score"} and first["label"] in ("circle", "rectangle", "triangle")
    assert entries[1]["error"] and "bad.jpg" in out.stderr and "Traceback" not in out.stderr


def test_cli_detect_refuses_a_foreign_checkpoint(tmp_path):
    fake = tmp_path / "model.pt"
    fake.write_bytes(b"PK\x03\x04 definitely not ours")
    img = tmp_path / "x.png"
    Image.new("RGB", (20, 20)).save(img)
    out = subprocess.run([sys.executable, "-m", "detector", "detect", str(img), "--checkpoint", str(fake)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "model.pt" in out.stderr and "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_map_from_detect_json_equals_evaluate(tmp_path, capsys):
    """`detect --json` at threshold 0 carries every score and box at full precision: pycocotools on
    that JSON gives exactly `evaluate`'s mAP (rounded scores tie and reorder detections)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from detector.cli import main as cli_main
    from detector.data import load_dataset
    from detector.data.synthetic import write_synthetic

    if not checkpoints.DEMO_CHECKPOINT.is_file():
        pytest.skip("the shipped demo checkpoint is missing")
    folder = write_synthetic(tmp_path / "shapes", images=10, seed=3, format="coco", width=320, height=240)
    ds = load_dataset(folder)
    assert cli_main(["evaluate", "--checkpoint", "demo", "--data", str(folder), "--split", "all", "--json",
                     "--device", "cpu", "--batch-size", "2"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    files = [str(ds.root / r.file) for r in ds.records]
    assert cli_main(["detect", *files, "--checkpoint", "demo", "--score-threshold", "0", "--json",
                     "--device", "cpu", "--batch-size", "2"]) == 0
    entries = json.loads(capsys.readouterr().out)
    names = list(ds.class_names)
    gt = COCO()
    annotations = [{"image_id": i + 1, "category_id": label, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                    "area": (b[2] - b[0]) * (b[3] - b[1]), "iscrowd": 0}
                   for i, r in enumerate(ds.records) for b, label in zip(r.boxes, r.labels)]
    for k, a in enumerate(annotations):
        a["id"] = k + 1
    gt.dataset = {"images": [{"id": i + 1, "width": r.width, "height": r.height} for i, r in enumerate(ds.records)],
                  "categories": [{"id": i + 1, "name": n} for i, n in enumerate(names)], "annotations": annotations}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes([{"image_id": i + 1, "category_id": names.index(d["label"]) + 1, "score": d["score"],
                          "bbox": [d["box"][0], d["box"][1], d["box"][2] - d["box"][0], d["box"][3] - d["box"][1]]}
                         for i, e in enumerate(entries) for d in e["detections"]])
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate(); ev.accumulate(); ev.summarize()
    assert evaluated["mAP"] > 0.05  # a real figure, not 0 == 0
    assert abs(ev.stats[0] - evaluated["mAP"]) < 1e-6 and abs(ev.stats[1] - evaluated["mAP50"]) < 1e-6
    found = [d for e in entries for d in e["detections"]]
    assert any(d["score"] != round(d["score"], 4) for d in found)  # not rounded to 4 decimals any more
    assert any(v != round(v, 3) for d in found for v in d["box"])
