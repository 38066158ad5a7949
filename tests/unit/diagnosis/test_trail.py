"""detector.diagnosis.trail on a real (tiny, random-weight) model: one pass through inspect's stages.

Each stage bucket forced by the model's own knobs: post_nms_top_n = 1 leaves a box that IS an
anchor covered before and after NMS but not among the RoIs (rpn_top_n); a 2x2 box is far smaller
than every anchor (rpn_proposals, no anchor fits).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.ops import box_iou

from detector import checkpoints
from detector.data import ImageRecord
from detector.diagnosis import collect_trails, diagnosis_report
from detector.evaluation import evaluate_model, evaluation_images
from detector.images import to_tensor
from detector.inspect import inspect

pytest.importorskip("pycocotools")

SIZE = 128  # the tiny model's min_size: the input frame is the original frame


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("scene")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)).save(root / "a.png")
    return root


def test_forced_rpn_top_n_and_no_anchor_fits(tiny_checkpoint, scene):
    knobs = {"rpn_pre_nms_top_n_test": 100_000, "rpn_nms_thresh": 1.0, "rpn_post_nms_top_n_test": 1}
    loaded = checkpoints.load_model(str(tiny_checkpoint), "cpu", **knobs)
    image = to_tensor(Image.open(scene / "a.png").convert("RGB"))
    insp = inspect(loaded.model, [image])
    assert insp.frames[0].resized_size == (SIZE, SIZE)
    top = insp.funnels[0].post_nms.boxes
    anchors = torch.cat(list(insp.stage.anchors))
    inside = (anchors[:, 0] >= 0) & (anchors[:, 1] >= 0) & (anchors[:, 2] <= SIZE) & (anchors[:, 3] <= SIZE)
    far = box_iou(anchors, top)[:, 0] < 0.2
    anchor_box = anchors[torch.where(inside & far)[0][0]].tolist()
    tiny_box = [60.0, 60.0, 62.0, 62.0]
    record = ImageRecord("a.png", SIZE, SIZE, (tuple(anchor_box), tuple(tiny_box)), (1, 2), 1)
    trails = collect_trails(loaded.model, [record], scene, loaded.class_names)
    trail = trails.trails[0]
    assert trail.best_anchor_iou[0] == pytest.approx(1.0)
    assert trail.best_anchor_iou[1] < 0.3
    report = diagnosis_report(trails, 0.5, 0.5)
    stages = {tuple(b["box"]): b for b in report["missed"]["boxes"]}
    assert report["missed"]["total"] == 2 == sum(report["missed"]["by_stage"].values())
    assert stages[tuple(round(v, 2) for v in anchor_box)]["stage"] == "rpn_top_n"
    assert stages[tuple(tiny_box)]["stage"] == "rpn_proposals" and stages[tuple(tiny_box)]["anchor_fits"] is False


def test_one_pass_gives_evaluates_map_and_detections(tiny_checkpoint, tmp_path):
    from detector.data import DetectionDataset, collate
    from detector.data.synthetic import write_synthetic

    write_synthetic(tmp_path / "synth", images=6, seed=3, format="coco")
    loaded = checkpoints.load_model(str(tiny_checkpoint), "cpu")
    chosen = evaluation_images(tmp_path / "synth", "all", loaded.class_names)
    trails = collect_trails(loaded.model, chosen.records, chosen.root, loaded.class_names, batch_size=2)
    loader = torch.utils.data.DataLoader(DetectionDataset(list(chosen.records), chosen.root, train=False),
                                         batch_size=2, collate_fn=collate)
    expected = evaluate_model(loaded.model, loader, loaded.class_names)
    report = diagnosis_report(trails, 0.5, 0.5)
    assert (report["mAP"], report["mAP50"], report["mAP75"]) == (expected.mAP, expected.mAP50, expected.mAP75)
    assert report["images"] == 6 and report["detections"] == expected.detections > 0
    assert report["missed"]["total"] == sum(report["missed"]["by_stage"].values())
    gt_total = sum(len(r.labels) for r in chosen.records)
    matched = sum(row["recall"] * row["gt"] for row in report["per_class"] if row["recall"] is not None)
    assert report["missed"]["total"] == pytest.approx(gt_total - matched)
