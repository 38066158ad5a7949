"""The shipped demo checkpoint: loads with weights_only, stays small, and really detects.

A broken, truncated or retrained-badly checkpoint fails here: detections on freshly generated
scenes (seeds never used in training: training used seed 1, validation 2, the card's test 3)
must reach a meaningful mAP50, and objectness must peak on the objects.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from detector import checkpoints, models
from detector.detection import detect
from detector.evaluation import CocoEvaluator
from detector.images import to_tensor
from detector.scenes import make_scene


@pytest.fixture(scope="module")
def demo():
    return checkpoints.load_model(checkpoints.DEMO)


def test_demo_checkpoint_is_ours_small_and_weights_only():
    path = checkpoints.DEMO_CHECKPOINT
    assert path.stat().st_size < 25 * 1024 * 1024
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert ckpt["model"] == models.DEMO_ARCH and ckpt["class_names"] == ["circle", "rectangle", "triangle"]
    card = json.loads((path.parent / "demo_card.json").read_text())
    assert card["held_out_test"]["mAP50"] >= 0.9


def test_demo_is_the_offline_default():
    source, why = checkpoints.default_model("cpu")
    assert source == checkpoints.DEMO and "demo" in why


def test_demo_detects_fresh_scenes(demo):
    scenes = [make_scene(seed) for seed in range(900_000, 900_030)]
    dets = detect(demo, [s.image for s in scenes], batch_size=8)
    ev = CocoEvaluator(demo.class_names)
    for s, d in zip(scenes, dets):
        ev.process(s.image.width, s.image.height, np.array(s.boxes).reshape(-1, 4), list(s.labels),
                   d.boxes, d.scores, d.label_ids)
    result = ev.evaluate()
    assert result.mAP50 >= 0.8, result
    assert result.mAP >= 0.5, result


def test_demo_objectness_peaks_on_objects(demo):
    # the RPN's best-scoring anchors lie on the objects, not on the background
    scene = make_scene(900_101)
    assert scene.boxes
    model = demo.model
    with torch.no_grad():
        images, _ = model.transform([to_tensor(scene.image)])
        features = list(model.backbone(images.tensors).values())
        proposals, _ = model.rpn(images, dict(enumerate(features)))
    scale = scene.image.width / images.image_sizes[0][1]
    top = proposals[0][:10] * scale
    cx, cy = (top[:, 0] + top[:, 2]) / 2, (top[:, 1] + top[:, 3]) / 2
    gt = torch.tensor(scene.boxes)
    inside = ((cx[:, None] >= gt[:, 0]) & (cx[:, None] <= gt[:, 2]) & (cy[:, None] >= gt[:, 1]) & (cy[:, None] <= gt[:, 3])).any(1)
    assert inside.float().mean() >= 0.8
