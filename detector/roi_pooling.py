"""RoI pooling beside RoIAlign for one RoI: where each samples the feature map and what each returns.

The paper's second stage pools every RoI to a fixed S x S feature "by an RoI pooling layer" (Fast
R-CNN's RoIPool); torchvision's box head uses RoIAlign (Mask R-CNN, section 3) instead:

- RoIPool (`torchvision.ops.roi_pool`) rounds the RoI's corners to whole feature cells, splits the
  rounded box into S x S bins whose edges are rounded again (floor / ceil), and takes the maximum
  of the cells in each bin. A box a few cells wide is moved by up to half a cell (half a stride in
  input pixels) and its bins repeat or skip cells: the pooled feature no longer lines up with it.
- RoIAlign (`torchvision.ops.roi_align`, as `MultiScaleRoIAlign` calls it: `sampling_ratio`
  points per bin side, aligned=False) keeps the RoI's exact fractional position and averages
  bilinear samples at `sampling_ratio` x `sampling_ratio` regular points in every bin.

Coordinates here are FEATURE-map coordinates of the RoI's level (input pixels x spatial_scale,
cell (c, r) centred at (c, r)), boxes [x1, y1, x2, y2]; `roi_input` is in the model's INPUT frame.
The rounding follows torchvision's CPU kernels (`roi_pool_kernel.cpp`, `roi_align_kernel.cpp`); the
tests check the bins and points against those ops' outputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torchvision.models.detection.faster_rcnn import FasterRCNN
from torchvision.ops import roi_align, roi_pool

from detector.inspect import Inspection


@dataclass(frozen=True)
class PoolingComparison:
    """RoIPool's quantised bins and RoIAlign's sampling points for one RoI, and both pooled features."""

    level: str  # the FPN level RoIAlign pools this RoI from (MultiScaleRoIAlign's LevelMapper)
    spatial_scale: float  # feature cells per input pixel at that level (1 / stride)
    grid: tuple[int, int]  # the level's (columns, rows)
    roi_input: Tensor  # (4,) the RoI, INPUT frame
    roi_feature: np.ndarray  # (4,) the RoI in feature coordinates (RoIAlign's exact box)
    pool_box: np.ndarray  # (4,) the box RoIPool rounds it to: cells [x1, x2] x [y1, y2], inclusive ends
    pool_bins: np.ndarray  # (S, S, 4) cells [x1, x2) x [y1, y2) each RoIPool bin takes the max of (rows, columns)
    align_points: np.ndarray  # (S, S, n, 2) RoIAlign's sampling points (x, y) per bin, n = sampling_ratio ** 2
    pooled_pool: Tensor  # (C, S, S) torchvision.ops.roi_pool
    pooled_align: Tensor  # (C, S, S) torchvision.ops.roi_align (the box head's input for this RoI)

    @property
    def corner_shift_input(self) -> float:
        """The largest move RoIPool's rounding gives a corner of the RoI, in INPUT pixels."""
        exact = self.roi_feature
        rounded = np.array([self.pool_box[0], self.pool_box[1], self.pool_box[2], self.pool_box[3]], dtype=float)
        return float(np.abs(rounded - exact).max() / self.spatial_scale)

    @property
    def rounded_cells(self) -> tuple[int, int]:
        """(columns, rows) of whole cells RoIPool's rounded box covers (its S x S bins share them out)."""
        x1, y1, x2, y2 = (int(v) for v in self.pool_box)
        return max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)


def _round_half_away(x: float) -> int:
    """C's round(): halves away from zero (torchvision's roi_pool kernel), not Python's to-even."""
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))


def pool_bins(roi: np.ndarray, spatial_scale: float, size: int, grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """RoIPool's rounded box (inclusive cell ends) and its (S, S, 4) bins [x1, y1, x2, y2) in cells."""
    x1, y1, x2, y2 = (_round_half_away(float(v) * spatial_scale) for v in roi)
    width, height = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)
    bin_w, bin_h = width / size, height / size
    bins = np.zeros((size, size, 4), dtype=np.int64)
    for ph in range(size):
        hs = min(max(math.floor(ph * bin_h) + y1, 0), grid[1])
        he = min(max(math.ceil((ph + 1) * bin_h) + y1, 0), grid[1])
        for pw in range(size):
            ws = min(max(math.floor(pw * bin_w) + x1, 0), grid[0])
            we = min(max(math.ceil((pw + 1) * bin_w) + x1, 0), grid[0])
            bins[ph, pw] = (ws, hs, we, he)
    return np.array([x1, y1, x2, y2], dtype=np.int64), bins


def align_points(roi: np.ndarray, spatial_scale: float, size: int, sampling_ratio: int) -> np.ndarray:
    """RoIAlign's (S, S, n, 2) sampling points (x, y) in feature coordinates (aligned=False)."""
    x1, y1, x2, y2 = (float(v) * spatial_scale for v in roi)
    width, height = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
    bin_w, bin_h = width / size, height / size
    nx = sampling_ratio if sampling_ratio > 0 else math.ceil(width / size)
    ny = sampling_ratio if sampling_ratio > 0 else math.ceil(height / size)
    out = np.zeros((size, size, nx * ny, 2))
    for ph in range(size):
        for pw in range(size):
            pts = [(x1 + pw * bin_w + (ix + 0.5) * bin_w / nx, y1 + ph * bin_h + (iy + 0.5) * bin_h / ny)
                   for iy in range(ny) for ix in range(nx)]
            out[ph, pw] = pts
    return out


def compare_pooling(model: FasterRCNN, inspection: Inspection, roi_row: int, image: int = 0) -> PoolingComparison:
    """RoIPool and RoIAlign of RoI `roi_row` (a row of the Inspection's roi_* fields) on the level it was
    pooled from, with the scale and sampling ratio of the model's MultiScaleRoIAlign."""
    pooler_level = int(inspection.roi_level[roi_row])
    level = inspection.roi_featmap_names[pooler_level]
    stage = inspection.stage
    lvl = next(lv for lv in stage.levels if lv.name == level)
    features = stage.features[level][image:image + 1].detach().cpu()
    size = int(inspection.pooled.shape[-1])
    pooler = model.roi_heads.box_roi_pool
    scale = float(pooler.scales[pooler_level]) if pooler.scales else 1.0 / lvl.stride[0]
    sampling_ratio = int(pooler.sampling_ratio)
    roi = inspection.roi_boxes[roi_row].detach().cpu()
    boxes = torch.cat([torch.zeros(1, 1), roi[None]], dim=1)
    pooled_pool = roi_pool(features, boxes, (size, size), scale)[0]
    pooled_align = roi_align(features, boxes, (size, size), scale, sampling_ratio, aligned=False)[0]
    pool_box, bins = pool_bins(roi.numpy(), scale, size, lvl.grid)
    return PoolingComparison(
        level=level, spatial_scale=scale, grid=lvl.grid, roi_input=roi, roi_feature=roi.numpy() * scale,
        pool_box=pool_box, pool_bins=bins, align_points=align_points(roi.numpy(), scale, size, sampling_ratio),
        pooled_pool=pooled_pool, pooled_align=pooled_align,
    )
