"""Where the model looked for one detection: saliency maps on the FPN level its RoI was pooled from.

Two maps, each (rows, columns) over that level's feature-map cells, scaled to [0, 1]:

- `gradient_map` (Grad-CAM's element-wise form, HiResCAM: Draelos and Carin, 2020): the gradient
  of the detection's score (the softmax probability of its class at its RoI) with respect to the
  FPN level, times the level's activations, summed over channels, negative values cut. The score
  reaches the features only through RoIAlign of that one RoI on that one level (torchvision's
  `MultiScaleRoIAlign` picks the level with its `LevelMapper`, FPN eq. 1), so the map is exactly
  zero wherever the score has no gradient: it shows which of the pooled cells pushed the score up,
  never anything outside the RoI. Grad-CAM's channel-averaged weights would instead light every
  place with features like these (another object of the same class too), so they are not used.
- `eigen_map` (EigenCAM: Muhammad and Yeasin, 2020): gradient-free, the level's activations
  projected on their first principal component (over the cells showing the image), sign chosen so
  that it agrees with the channels' mean, negative values cut. It is the same for every detection
  pooled from that level: what the level responds to most, with no notion of class or score.

Cell (c, r) is centred at (c * stride_x, r * stride_y) in the model's INPUT frame, the convention
RoIAlign (aligned=False) and the AnchorGenerator share; `detector.frames.cell_placement` puts it
in ORIGINAL pixels. Neither map says *why* a class won, only where the evidence sat.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.models.detection.faster_rcnn import FasterRCNN

from detector.explain import DetectionExplanation
from detector.frames import Size, Stride, cell_placement, cells_on_boxes, visible_grid
from detector.inspect import Inspection

METHODS = {
    "gradient": "Grad-CAM (element-wise): gradient of this detection's score x activations",
    "eigen": "EigenCAM: first principal component of the level's activations (no gradient, no class)",
}


@dataclass(frozen=True)
class SaliencyMap:
    """One map over one FPN level's cells, (rows, columns), visible cells only, max 1 (all 0 if flat)."""

    method: str  # a METHODS key
    level: str  # FPN level name (the backbone's key)
    heat: np.ndarray  # (rows, columns) float64 in [0, 1]
    support: np.ndarray  # (rows, columns) bool: cells where the score has a gradient (all True for "eigen")
    stride: Stride  # (x, y) input pixels per cell
    scale: tuple[float, float]  # (sx, sy) input pixels per original pixel
    resized_size: Size  # (W, H) of the model's input

    def mass_near(self, box: np.ndarray | list[float], margin_cells: float = 1.0) -> float:
        """Share of the map's mass in the cells whose tile overlaps `box` ([x1, y1, x2, y2], original
        pixels) grown by `margin_cells` strides on each side; nan for an all-zero map."""
        total = float(self.heat.sum())
        if total <= 0:
            return float("nan")
        placement = cell_placement(self.stride, self.scale)
        mx, my = margin_cells * self.stride[0] / self.scale[0], margin_cells * self.stride[1] / self.scale[1]
        x1, y1, x2, y2 = (float(v) for v in np.asarray(box, dtype=float).reshape(4))
        grid = (self.heat.shape[1], self.heat.shape[0])
        near = cells_on_boxes(placement, grid, [[x1 - mx, y1 - my, x2 + mx, y2 + my]])
        return float(self.heat[near].sum()) / total


def _level_frame(inspection: Inspection, image: int, level: str) -> tuple[torch.Tensor, Stride, tuple[int, int]]:
    """The level's features for one image (C, rows, columns) and its stride, visible grid (columns, rows)."""
    stage = inspection.stage
    lvl = next(lv for lv in stage.levels if lv.name == level)
    frame = inspection.frames[image]
    return stage.features[level][image], lvl.stride, visible_grid(lvl.grid, lvl.stride, frame.resized_size)


def _scaled(heat: torch.Tensor) -> np.ndarray:
    heat = heat.detach().double().cpu().numpy()
    top = heat.max() if heat.size else 0.0
    return heat / top if top > 0 else heat


def detection_score(model: FasterRCNN, features: "OrderedDict[str, torch.Tensor]", det: DetectionExplanation,
                    image_size: tuple[int, int]) -> torch.Tensor:
    """The detection's score recomputed from FPN features (one image, batch of 1) through the model's own
    RoI pooler, box head and predictor: softmax(class logits)[label] at its RoI (input frame)."""
    heads = model.roi_heads
    roi = det.roi.box_input.to(next(iter(features.values())).device)[None]
    pooled = heads.box_roi_pool(features, [roi], [image_size])
    logits, _ = heads.box_predictor(heads.box_head(pooled))
    return F.softmax(logits, -1)[0, det.label]


def gradient_map(model: FasterRCNN, inspection: Inspection, det: DetectionExplanation, image: int = 0) -> SaliencyMap:
    """HiResCAM of `det`'s score on the FPN level its RoI was pooled from (see the module docstring)."""
    frame = inspection.frames[image]
    level = det.roi.level
    features = OrderedDict((k, v[image:image + 1].detach()) for k, v in inspection.stage.features.items())
    leaf = features[level].clone().requires_grad_(True)
    features[level] = leaf
    with torch.enable_grad():
        score = detection_score(model, features, det, (frame.resized_size[1], frame.resized_size[0]))
        (grad,) = torch.autograd.grad(score, leaf)
    _, stride, (cols, rows) = _level_frame(inspection, image, level)
    cam = F.relu((grad[0] * leaf[0].detach()).sum(0))[:rows, :cols]
    support = (grad[0] != 0).any(0)[:rows, :cols].cpu().numpy()
    return SaliencyMap("gradient", level, _scaled(cam), support, stride, frame.scale, frame.resized_size)


def eigen_map(inspection: Inspection, level: str, image: int = 0) -> SaliencyMap:
    """EigenCAM of one FPN level over the cells that show the image (see the module docstring)."""
    frame = inspection.frames[image]
    feats, stride, (cols, rows) = _level_frame(inspection, image, level)
    acts = feats[:, :rows, :cols].detach().double().cpu()
    x = acts.reshape(acts.shape[0], -1).T  # (cells, channels)
    x = x - x.mean(0)
    _, _, vt = torch.linalg.svd(x, full_matrices=False)
    projection = (x @ vt[0]).reshape(rows, cols)
    energy = acts.mean(0) - acts.mean()
    if float((projection * energy).sum()) < 0:  # an SVD's sign is arbitrary: agree with the mean activation
        projection = -projection
    heat = _scaled(F.relu(projection))
    return SaliencyMap("eigen", level, heat, np.ones_like(heat, dtype=bool), stride, frame.scale, frame.resized_size)
