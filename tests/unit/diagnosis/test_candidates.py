"""detector.diagnosis.candidates: the RoI candidate pool the tuner reads instead of the FPN features.

Oracle: torchvision itself, a model rebuilt with the knobs (`model(images)`), on a pool that holds
fewer candidates per level than the level has anchors, so a setting's top-k really is a prefix of
the pool. Memory: bytes held per image are the same at 8 and 32 images.
"""

from __future__ import annotations

import pytest
import torch

from detector import checkpoints
from detector.data import DetectionDataset
from detector.diagnosis import collect_trails, evaluate_setting, with_knobs
from detector.diagnosis.candidates import setting_detections
from detector.evaluation import evaluation_images

pytest.importorskip("pycocotools")

POOL = 40  # candidates per level: below every level's anchor count of the tiny model (300, 300, 90)


@pytest.fixture(scope="module")
def data(tiny_checkpoint, tmp_path_factory):
    from detector.data.synthetic import write_synthetic

    root = write_synthetic(tmp_path_factory.mktemp("pool") / "synth", images=32, seed=5, format="coco")
    loaded = checkpoints.load_model(str(tiny_checkpoint), "cpu")
    return loaded, evaluation_images(root, "all", loaded.class_names)


@pytest.fixture(scope="module")
def small_pool(data):
    loaded, chosen = data
    records = chosen.records[:5]
    trails = collect_trails(loaded.model, records, chosen.root, loaded.class_names, keep_pool=True, pool_top_n=POOL)
    assert all(n > POOL for n in trails.pools[0].level_anchors)
    return trails


@pytest.mark.parametrize("knobs", [
    {"rpn_pre_nms_top_n_test": 20, "rpn_nms_thresh": 0.5},
    {"rpn_pre_nms_top_n_test": POOL, "rpn_post_nms_top_n_test": 30, "box_nms_thresh": 0.3},
    {"rpn_pre_nms_top_n_test": 7, "rpn_nms_thresh": 0.9, "rpn_score_thresh": 0.45, "box_detections_per_img": 3},
])
def test_a_prefix_of_the_pool_gives_the_rebuilt_models_detections(data, small_pool, tiny_checkpoint, knobs):
    loaded, chosen = data
    rebuilt = checkpoints.load_model(str(tiny_checkpoint), "cpu", **knobs)
    dataset = DetectionDataset(list(chosen.records[:5]), chosen.root, train=False)
    view, settings = with_knobs(loaded.model, knobs)
    compared = 0
    for pool in small_pool.pools:
        assert pool.ties == 0
        ours = setting_detections(view, pool, settings)
        with torch.no_grad():
            expected = rebuilt.model([dataset[i][0] for i in pool.images])
        for a, b in zip(ours, expected):
            for key in ("boxes", "scores", "labels"):
                assert torch.equal(a[key], b[key]), key
            compared += len(b["boxes"])
    assert compared > 0


def test_beyond_the_pool_is_refused_with_the_reason(data, small_pool):
    loaded, _ = data
    with pytest.raises(ValueError, match=rf"rpn_pre_nms_top_n_test={POOL + 1} needs more than the {POOL} candidates"):
        evaluate_setting(loaded.model, small_pool, {"rpn_pre_nms_top_n_test": POOL + 1})


def test_the_pool_is_small_and_does_not_grow_per_image(data):
    """Bytes held per image (trails and candidate pools) at 8 and 32 images: equal within a few
    percent; per candidate row, 4 bytes per float of its box, logit, anchor and head outputs."""
    loaded, chosen = data
    per_image = []
    for n in (8, 32):
        trails = collect_trails(loaded.model, chosen.records[:n], chosen.root, loaded.class_names, keep_pool=True)
        per_image.append((trails.held_bytes() + trails.pool_bytes()) / n)
        rows = sum(p.boxes.shape[0] * p.boxes.shape[1] for p in trails.pools)
        classes = len(loaded.class_names) + 1
        assert trails.pool_bytes() == rows * 4 * (4 + 1 + 1 + 5 * classes)  # box, logit, anchor, C + 4C floats
    assert per_image[1] == pytest.approx(per_image[0], rel=0.05)
    assert per_image[1] < 100 * 1024
