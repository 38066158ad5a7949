"""detector.roi_pooling against torchvision's roi_pool and roi_align and the model's own MultiScaleRoIAlign."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from detector import checkpoints
from detector.images import to_tensor
from detector.inspect import inspect
from detector.roi_pooling import align_points, compare_pooling, pool_bins
from detector.scenes import make_scene

pytestmark = pytest.mark.skipif(not checkpoints.DEMO_CHECKPOINT.is_file(), reason="no demo checkpoint")


@pytest.fixture(scope="module")
def demo_run():
    demo = checkpoints.load_model(checkpoints.DEMO)
    return demo.model, inspect(demo.model, [to_tensor(make_scene(10_002).image)])


def _bilinear(feat: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """torchvision's bilinear_interpolate (roi_align_kernel.cpp) at one point, (C,)."""
    _, h, w = feat.shape
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return torch.zeros(feat.shape[0])
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= h - 1:
        y_high = y_low = h - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= w - 1:
        x_high = x_low = w - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1 - ly, 1 - lx
    return (hy * hx * feat[:, y_low, x_low] + hy * lx * feat[:, y_low, x_high]
            + ly * hx * feat[:, y_high, x_low] + ly * lx * feat[:, y_high, x_high])


def test_rois_bins_and_points_give_torchvisions_outputs(demo_run):
    model, insp = demo_run
    rows = insp.rois_of(0)
    for row in rows[:12].tolist() + rows[-5:].tolist():
        cmp = compare_pooling(model, insp, row)
        # RoIAlign with the pooler's scale and sampling ratio is exactly the box head's input for this RoI
        assert torch.allclose(cmp.pooled_align, insp.pooled[row], atol=1e-5, rtol=0)
        feat = insp.stage.features[cmp.level][0].detach().cpu()
        # the max over each quantised bin's cells is torchvision's roi_pool
        for ph in range(7):
            for pw in range(7):
                x1, y1, x2, y2 = cmp.pool_bins[ph, pw]
                expected = (feat[:, y1:y2, x1:x2].amax(dim=(1, 2)) if x2 > x1 and y2 > y1
                            else torch.zeros(feat.shape[0]))
                assert torch.equal(cmp.pooled_pool[:, ph, pw], expected), (row, ph, pw)
                # the mean of bilinear samples at the points is torchvision's roi_align
                samples = torch.stack([_bilinear(feat, float(x), float(y)) for x, y in cmp.align_points[ph, pw]])
                assert torch.allclose(samples.mean(0), cmp.pooled_align[:, ph, pw], atol=1e-5, rtol=0)


def test_quantisation_of_a_small_box():
    # a box of 2.6 cells at stride 16: RoIPool rounds its corners to cells 1 and 4 (half away from zero)
    roi = np.array([20.0, 8.0, 61.6, 50.0])
    box, bins = pool_bins(roi, 1 / 16, 7, (10, 10))
    assert box.tolist() == [1, 1, 4, 3]  # 1.25 -> 1, 0.5 -> 1, 3.85 -> 4, 3.125 -> 3
    assert bins.shape == (7, 7, 4) and (bins[..., 2] > bins[..., 0]).all()
    pts = align_points(roi, 1 / 16, 7, 2)
    assert pts.shape == (7, 7, 4, 2)
    assert pts[..., 0].min() > roi[0] / 16 and pts[..., 0].max() < roi[2] / 16  # inside the exact box


def test_corner_shift_and_rounded_cells(demo_run):
    model, insp = demo_run
    cmp = compare_pooling(model, insp, int(insp.rois_of(0)[0]))
    stride = 1 / cmp.spatial_scale
    assert 0 <= cmp.corner_shift_input <= stride / 2 + 1e-6
    cols, rows = cmp.rounded_cells
    assert cols == cmp.pool_bins[0, -1, 2] - cmp.pool_bins[0, 0, 0] and rows == cmp.pool_bins[-1, 0, 3] - cmp.pool_bins[0, 0, 1]
