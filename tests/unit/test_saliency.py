"""detector.saliency on synthetic scenes with two well separated objects, against the model's own gradient.

Oracle for "zero where the score has no gradient": `model(images)` itself, run with gradients, its
backbone's FPN outputs kept by a forward hook, and the detection's score backpropagated.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from detector import checkpoints
from detector.explain import explain_image
from detector.frames import cell_placement, cells_on_boxes
from detector.images import to_tensor
from detector.inspect import inspect
from detector.saliency import detection_score, eigen_map, gradient_map
from detector.scenes import make_scene

pytestmark = pytest.mark.skipif(not checkpoints.DEMO_CHECKPOINT.is_file(), reason="no demo checkpoint")

# make_scene seeds with exactly two objects, far apart (gaps 111 and 81 px): two circles, a circle and a triangle
SEEDS = (20011, 20043)


@pytest.fixture(scope="module")
def demo():
    return checkpoints.load_model(checkpoints.DEMO)


@pytest.fixture(scope="module")
def scenes(demo):
    out = {}
    for seed in SEEDS:
        scene = make_scene(seed)
        assert len(scene.boxes) == 2
        insp = inspect(demo.model, [to_tensor(scene.image)])
        expl = explain_image(demo.model, insp, 0, demo.class_names)
        dets = [d for d in expl.detections if d.score >= 0.5]
        assert len(dets) == 2  # the demo model finds both
        out[seed] = (scene, insp, dets)
    return out


def _own_and_other(scene, det):
    gt = np.asarray(scene.boxes)
    ious = [_iou(det.box.numpy(), g) for g in gt]
    own = int(np.argmax(ious))
    assert ious[own] > 0.5
    return gt[own], gt[1 - own]


def _iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.mark.parametrize("seed", SEEDS)
def test_each_detections_gradient_map_sits_on_its_own_object(seed, scenes, demo):
    scene, insp, dets = scenes[seed]
    for det in dets:
        smap = gradient_map(demo.model, insp, det)
        own, other = _own_and_other(scene, det)
        assert smap.level == det.roi.level and smap.heat.max() == 1.0
        assert smap.mass_near(own, margin_cells=0) > 0.7
        assert smap.mass_near(other, margin_cells=0) < 0.1


@pytest.mark.parametrize("seed", SEEDS)
def test_gradient_map_is_zero_where_the_models_own_score_has_no_gradient(seed, scenes, demo):
    scene, insp, dets = scenes[seed]
    model = demo.model
    kept = {}
    handle = model.backbone.register_forward_hook(
        lambda m, i, out: [v.retain_grad() for v in out.values()] and kept.update(features=out))
    try:
        with torch.enable_grad():
            outputs = model([to_tensor(scene.image)])
    finally:
        handle.remove()
    assert torch.equal(outputs[0]["boxes"][:2].detach(), torch.stack([d.box for d in dets]))
    for det in dets:
        model.zero_grad()
        for v in kept["features"].values():
            v.grad = None
        outputs[0]["scores"][det.index].backward(retain_graph=True)
        grads = {k: v.grad for k, v in kept["features"].items()}
        # the score reaches exactly one FPN level, the one the LevelMapper chose for its RoI
        touched = [k for k, g in grads.items() if g is not None and bool(g.abs().sum() > 0)]
        assert touched == [det.roi.level]
        smap = gradient_map(model, insp, det)
        rows, cols = smap.heat.shape
        oracle_support = (grads[det.roi.level][0] != 0).any(0)[:rows, :cols].numpy()
        assert (smap.heat[~oracle_support] == 0).all()
        assert np.array_equal(smap.support, oracle_support)
        assert smap.heat[oracle_support].max() == 1.0


def test_score_recomputed_from_features_is_the_detections(scenes, demo):
    _, insp, dets = scenes[SEEDS[0]]
    frame = insp.frames[0]
    for det in dets:
        with torch.no_grad():
            score = detection_score(demo.model, insp.stage.features, det, (frame.resized_size[1], frame.resized_size[0]))
        assert abs(float(score) - det.score) < 1e-5


def test_eigencam_is_gradient_free_and_sits_on_the_objects(scenes):
    scene, insp, dets = scenes[SEEDS[0]]
    level = dets[0].roi.level
    assert dets[1].roi.level == level
    smap = eigen_map(insp, level)
    again = eigen_map(insp, dets[1].roi.level)
    assert np.array_equal(smap.heat, again.heat)  # the same for every detection on the level
    assert smap.heat.min() >= 0 and smap.heat.max() == 1.0 and smap.support.all()
    on = cells_on_boxes(cell_placement(smap.stride, smap.scale), (smap.heat.shape[1], smap.heat.shape[0]), scene.boxes)
    assert smap.heat[on].mean() > 3 * smap.heat[~on].mean()
