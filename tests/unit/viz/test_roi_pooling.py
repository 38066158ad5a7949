"""detector.viz.roi_pooling: RoIPool's bins and RoIAlign's points drawn where the ops sample, by their data."""

from __future__ import annotations

import numpy as np
import pytest

from detector import checkpoints
from detector.roi_pooling import compare_pooling
from detector.viz import roi_pooling as viz

pytestmark = pytest.mark.skipif(not checkpoints.DEMO_CHECKPOINT.is_file(), reason="no demo checkpoint")


@pytest.fixture(scope="module")
def case(demo_scene):
    demo, scene, insp = demo_scene
    return scene.image, insp.frames[0], compare_pooling(demo.model, insp, int(insp.rois_of(0)[1]))


def _trace(fig, name):
    return next(t for t in fig.data if t.name == name)


def test_pool_bins_are_cell_extents_in_original_pixels(case):
    image, frame, cmp = case
    fig = viz.roi_pool_bins_figure(image, cmp, frame)
    bins = _trace(fig, "RoIPool bins (cells max-pooled)")
    xs = [v for v in bins.x if v is not None]
    step = 1 / cmp.spatial_scale / frame.scale[0]  # one cell in original pixels
    x0 = (cmp.pool_box[0] - 0.5) * step
    assert min(xs) == pytest.approx(x0) and max(xs) == pytest.approx((cmp.pool_box[2] + 0.5) * step)
    roi = _trace(fig, "RoI (exact)")
    assert min(v for v in roi.x if v is not None) == pytest.approx(float(frame.to_original(cmp.roi_input)[0, 0]))


def test_align_points_and_pooled_pair(case):
    image, frame, cmp = case
    fig = viz.roi_align_points_figure(image, cmp, frame)
    pts = _trace(fig, "sampling points (bilinear)")
    assert len(pts.x) == cmp.align_points.reshape(-1, 2).shape[0]
    assert np.allclose(pts.x, cmp.align_points.reshape(-1, 2)[:, 0] / cmp.spatial_scale / frame.scale[0])
    pair = viz.pooled_pair_figure(cmp)
    assert np.allclose(np.asarray(pair.data[0].z), cmp.pooled_pool.mean(0).numpy())
    assert np.allclose(np.asarray(pair.data[1].z), cmp.pooled_align.mean(0).numpy())
