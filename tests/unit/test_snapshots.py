"""Per-epoch RPN snapshots: built with inspect's stages, drawn where /rpn draws the same level."""

import numpy as np
import pytest
import torch
from PIL import Image

from detector import runs
from detector.images import to_tensor
from detector.inspect import inspect
from detector.models import DEMO_ARCH, build_model
from detector.scenes import make_scene
from detector.snapshots import SNAPSHOT_PROPOSALS, rpn_snapshot
from detector.viz.rpn import OBJECTNESS_SCALE, objectness_figure
from detector.viz.training import snapshot_objectness_figure


class _Records:
    """The two things rpn_snapshot reads from a dataset: items and each record's file name."""

    def __init__(self, images):
        self.images = images
        self.records = [type("R", (), {"file": f"img_{i}.png"})() for i in range(len(images))]

    def __getitem__(self, i):
        return self.images[i], {"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.int64)}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(DEMO_ARCH, ("a", "b"), min_size=160, max_size=240).eval()


@pytest.fixture(scope="module")
def scene_image():
    return make_scene(7, 230, 170).image  # not a multiple of any stride: the padding has whole cells


def _centres(trace):
    z = np.asarray(trace.z)
    return trace.x0 + np.arange(z.shape[1]) * trace.dx, trace.y0 + np.arange(z.shape[0]) * trace.dy


def test_same_level_same_cell_centres_and_colour_scale_on_rpn_and_train(model, scene_image, tmp_path):
    image = to_tensor(scene_image)
    runs.write_snapshot(tmp_path, rpn_snapshot(model, _Records([image]), [0], torch.device("cpu"), ("a", "b"), epoch=1))
    snap = runs.read_snapshot(tmp_path, 1).images[0]
    result = inspect(model, [image])
    stage, frame = result.stage, result.frames[0]
    for k, level in enumerate(stage.levels):
        heat = stage.objectness_prob(0, k).amax(0).numpy()
        (on_rpn,) = [t for t in objectness_figure(scene_image, heat, level.stride, frame.scale, frame.resized_size).data
                     if t.type == "heatmap"]
        (on_train,) = [t for t in snapshot_objectness_figure(scene_image, snap, k).data if t.type == "heatmap"]
        xs_rpn, ys_rpn = _centres(on_rpn)
        xs_train, ys_train = _centres(on_train)
        assert np.allclose(xs_rpn, xs_train) and np.allclose(ys_rpn, ys_train)
        assert np.allclose(np.asarray(on_rpn.z), np.asarray(on_train.z), atol=1e-3)  # float16 storage
        assert on_rpn.colorscale == on_train.colorscale  # one objectness scale, OBJECTNESS_SCALE
        assert [list(c) for c in on_train.colorscale] == [list(c) for c in OBJECTNESS_SCALE]
        assert (on_rpn.zmin, on_rpn.zmax) == (on_train.zmin, on_train.zmax) == (0.0, 1.0)
        # the oracle: torchvision's own anchors of this level are centred at these cells
        cols, rows = len(xs_rpn), len(ys_rpn)
        if max(level.grid) <= 96:  # unpooled: one heatmap cell per feature-map cell
            anchors = stage.anchors[k].view(level.grid[1], level.grid[0], level.anchors_per_location, 4)
            centre_x = ((anchors[0, :cols, 0, 0] + anchors[0, :cols, 0, 2]) / 2).numpy() / frame.scale[0]
            centre_y = ((anchors[:rows, 0, 0, 1] + anchors[:rows, 0, 0, 3]) / 2).numpy() / frame.scale[1]
            assert np.allclose(xs_train, centre_x, atol=1e-3) and np.allclose(ys_train, centre_y, atol=1e-3)
            # the cells dropped are exactly those centred in the padding
            assert (cols - 1) * level.stride[0] < frame.resized_size[0] <= cols * level.stride[0] or cols == level.grid[0]


def test_snapshot_proposals_and_detections_are_inspects(model, scene_image):
    image = to_tensor(scene_image)
    (snap,) = rpn_snapshot(model, _Records([image]), [0], torch.device("cpu"), ("a", "b"), epoch=0).images
    result = inspect(model, [image])
    post = result.funnels[0].post_nms
    frame = result.frames[0]
    assert np.array_equal(snap.proposals, frame.to_original(post.boxes[:SNAPSHOT_PROPOSALS]).numpy())
    assert np.array_equal(snap.boxes, result.detections[0].boxes.numpy())
    assert snap.width == 230 and snap.height == 170
    assert snap.resized == tuple(frame.resized_size) and model.training is False


def test_snapshot_written_before_placements_spreads_cells_from_the_corner():
    snap = runs.SnapshotImage("a.png", 40, 20, np.zeros((0, 4)), np.zeros(0), (np.zeros((2, 4)),), ("0",),
                              np.zeros((0, 4)), np.zeros(0), np.zeros((0, 4)), np.zeros(0), np.zeros(0))
    placement = snap.cell_placement(0)
    assert (placement.x0, placement.dx, placement.y0, placement.dy) == (0.0, 10.0, 0.0, 10.0)
    (hm,) = [t for t in snapshot_objectness_figure(Image.new("RGB", (40, 20)), snap, 0).data if t.type == "heatmap"]
    assert hm.x0 == 0.0 and hm.dx == 10.0
