"""detector.diagnosis.tuner: a setting re-run from the candidate pools equals a full forward of a
model built with that setting (torchvision's own post-processing is the oracle)."""

from __future__ import annotations

import pytest
import torch

from detector import checkpoints
from detector.data import DetectionDataset, collate
from detector.diagnosis import collect_trails, evaluate_setting, with_knobs
from detector.diagnosis.tuner import current_knobs, parse_sweep, sweep_grid
from detector.evaluation import evaluate_model, evaluation_images

pytest.importorskip("pycocotools")


@pytest.fixture(scope="module")
def setup(tiny_checkpoint, tmp_path_factory):
    from detector.data.synthetic import write_synthetic

    root = write_synthetic(tmp_path_factory.mktemp("tuner") / "synth", images=5, seed=4, format="coco")
    loaded = checkpoints.load_model(str(tiny_checkpoint), "cpu")
    chosen = evaluation_images(root, "all", loaded.class_names)
    trails = collect_trails(loaded.model, chosen.records, chosen.root, loaded.class_names, keep_pool=True)
    return loaded, chosen, trails


@pytest.mark.parametrize("knobs", [
    {},
    {"rpn_post_nms_top_n_test": 7, "box_nms_thresh": 0.3},
    {"rpn_pre_nms_top_n_test": 20, "rpn_nms_thresh": 0.5, "box_detections_per_img": 2},
    {"rpn_score_thresh": 0.5, "box_score_thresh": 0.3},
    {"box_score_thresh": 0.4, "box_nms_thresh": 0.2, "box_detections_per_img": 3},  # post-processing alone
])
def test_a_setting_from_the_cache_equals_a_model_built_with_it(setup, tiny_checkpoint, knobs):
    loaded, chosen, trails = setup
    point = evaluate_setting(loaded.model, trails, knobs)
    rebuilt = checkpoints.load_model(str(tiny_checkpoint), "cpu", **knobs)
    loader = torch.utils.data.DataLoader(DetectionDataset(list(chosen.records), chosen.root, train=False),
                                         batch_size=2, collate_fn=collate)
    expected = evaluate_model(rebuilt.model, loader, rebuilt.class_names)
    assert (point.mAP, point.mAP50) == (expected.mAP, expected.mAP50)


def test_the_view_leaves_the_shared_model_alone(setup):
    loaded, _, _ = setup
    before = current_knobs(loaded.model)
    view, settings = with_knobs(loaded.model, {"box_score_thresh": 0.9, "rpn_post_nms_top_n_test": 3})
    assert view.roi_heads.score_thresh == 0.9 and settings.post_nms_top_n == 3
    assert view.backbone is loaded.model.backbone and view.roi_heads.box_head is loaded.model.roi_heads.box_head
    assert current_knobs(loaded.model) == before


def test_sweeps_make_a_grid():
    grid = sweep_grid([parse_sweep("box_score_thresh=0.1,0.5"), parse_sweep("rpn_post_nms_top_n_test=10,50,100")])
    assert len(grid) == 6 and grid[0] == {"box_score_thresh": 0.1, "rpn_post_nms_top_n_test": 10}
    assert isinstance(grid[0]["rpn_post_nms_top_n_test"], int)


def test_the_tuner_needs_cached_stages(setup):
    loaded, chosen, _ = setup
    trails = collect_trails(loaded.model, chosen.records[:1], chosen.root, loaded.class_names)
    with pytest.raises(ValueError, match="keep_pool"):
        evaluate_setting(loaded.model, trails, {})


@pytest.mark.parametrize("knobs", [{"box_score_thresh": 0.1, "box_nms_thresh": 0.3, "box_detections_per_img": 3},
                                   {"rpn_post_nms_top_n_test": 7}])
def test_detections_from_the_cache_are_the_rebuilt_models_own(setup, tiny_checkpoint, knobs):
    """Boxes, scores and labels bit-identical to model(images) of a model built with the knobs
    (the proposal filtering and the post-processing on the candidate pool, no head rerun)."""
    from detector.diagnosis.candidates import setting_detections

    loaded, chosen, trails = setup
    rebuilt = checkpoints.load_model(str(tiny_checkpoint), "cpu", **knobs)
    dataset = DetectionDataset(list(chosen.records), chosen.root, train=False)
    view, settings = with_knobs(loaded.model, knobs)
    for batch in trails.pools:
        ours = setting_detections(view, batch, settings)
        with torch.no_grad():
            expected = rebuilt.model([dataset[i][0] for i in batch.images])
        for a, b in zip(ours, expected):
            assert len(b["boxes"]) > 0
            for key in ("boxes", "scores", "labels"):
                assert torch.equal(a[key], b[key]), key
