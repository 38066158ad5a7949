"""Image frames and the geometry shared by every stage: one vocabulary, said once.

Three frames of one image:
- *original*: the image as loaded (what pages show and users give boxes in).
- *resized* (the model's input): after `GeneralizedRCNNTransform`'s resize; anchors, proposals
  and RoIs live here (torchvision's `image_sizes`).
- *padded*: the batch tensor, the resized image padded below and to the right, so padded and
  resized coordinates coincide; the AnchorGenerator's image size and the feature-map strides
  come from it.

Vocabulary (the same on every page and in every result):
- sizes are (width, height), written "W x H"; grids are (columns, rows), written "columns x rows";
  strides, scales and points are (x, y).
- boxes are [x1, y1, x2, y2] in pixel edges (torchvision's "xyxy"), unless a name says "xywh"
  (COCO's [x, y, width, height]); `box_convert` converts.
- cell (column c, row r) of a level is the anchor centre (c * stride_x, r * stride_y) in the
  input frame, as torchvision's AnchorGenerator shifts its cell anchors; the cells whose centre
  lies in the padding (c * stride_x >= resized width) show nothing of the image (`visible_grid`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from torch import Tensor

# torch is imported where boxes are mapped, not here: the run-folder reader (detector.runs) places
# snapshot cells with this module and must stay light.

Size = tuple[int, int]  # (width, height)
Grid = tuple[int, int]  # (columns, rows)
Stride = tuple[int, int]  # (x, y) input pixels between neighbouring cells


def _as_boxes(boxes: Any) -> Tensor:
    """(N, 4) float32 tensor from a tensor, array or nested list of [x1, y1, x2, y2]."""
    import torch

    if isinstance(boxes, torch.Tensor):
        return boxes.detach().to(torch.float32).reshape(-1, 4)
    return torch.as_tensor(np.asarray(boxes, dtype=np.float32).reshape(-1, 4))


@dataclass(frozen=True)
class ImageFrame:
    """The three sizes of one image, each (width, height) in pixels; boxes mapped both ways."""

    original_size: Size  # as loaded
    resized_size: Size  # after the transform's resize (the model's input frame)
    padded_size: Size  # the batch tensor (shared by the batch)

    @property
    def scale(self) -> tuple[float, float]:
        """(sx, sy): input pixels per original pixel, with torchvision's float32 ratio (resize_boxes)."""
        return (float(np.float32(self.resized_size[0]) / np.float32(self.original_size[0])),
                float(np.float32(self.resized_size[1]) / np.float32(self.original_size[1])))

    def to_input(self, boxes: Any) -> Tensor:
        """(N, 4) xyxy boxes from the original frame to the input frame, float32 (as the transform resizes targets)."""
        from torchvision.models.detection.transform import resize_boxes

        (w, h), (rw, rh) = self.original_size, self.resized_size
        return resize_boxes(_as_boxes(boxes), [h, w], [rh, rw])

    def to_original(self, boxes: Any) -> Tensor:
        """(N, 4) xyxy boxes from the input frame to the original frame, float32 (as torchvision's postprocess)."""
        from torchvision.models.detection.transform import resize_boxes

        (w, h), (rw, rh) = self.original_size, self.resized_size
        return resize_boxes(_as_boxes(boxes), [rh, rw], [h, w])


def size_text(size: Size) -> str:
    """'W x H' of a (width, height) size."""
    return f"{size[0]} x {size[1]}"


def grid_text(grid: Grid) -> str:
    """'columns x rows' of a (columns, rows) grid."""
    return f"{grid[0]} x {grid[1]}"


def level_stride(padded_size: Size, grid: Grid) -> Stride:
    """(x, y) stride of a level: padded size // grid, as torchvision's AnchorGenerator computes it."""
    return (int(padded_size[0]) // int(grid[0]), int(padded_size[1]) // int(grid[1]))


def cell_centre(col: int, row: int, stride: Stride) -> tuple[float, float]:
    """(x, y) input-frame centre of cell (col, row): the anchors there are centred on it."""
    return (float(col * stride[0]), float(row * stride[1]))


def nearest_cell(x: float, y: float, grid: Grid, stride: Stride) -> tuple[int, int]:
    """(column, row) of the cell whose centre is nearest to the input-frame point (x, y)."""
    col = int(np.clip(round(x / stride[0]), 0, grid[0] - 1))
    row = int(np.clip(round(y / stride[1]), 0, grid[1] - 1))
    return col, row


def visible_grid(grid: Grid, stride: Stride, resized_size: Size) -> Grid:
    """(columns, rows) of the cells whose centre lies inside the resized image (the rest is padding).

    A cell c shows the image when c * stride < resized side, so ceil(side / stride) cells, at
    least one, at most the grid.
    """
    return tuple(min(int(g), max(1, math.ceil(int(side) / int(s))))  # type: ignore[return-value]
                 for g, s, side in zip(grid, stride, resized_size))


def iou_matrix(a: Any, b: Any) -> np.ndarray:
    """(N, M) IoU of two sets of [x1, y1, x2, y2] boxes in one frame, by torchvision's box_iou in float64
    (for the numpy side of the tree: scene generation, TIDE's matching)."""
    import torch
    from torchvision.ops import box_iou

    return box_iou(torch.as_tensor(np.asarray(a, dtype=np.float64).reshape(-1, 4)),
                   torch.as_tensor(np.asarray(b, dtype=np.float64).reshape(-1, 4))).numpy()


def xyxy_to_xywh(boxes: Any) -> np.ndarray:
    """(N, 4) [x1, y1, x2, y2] -> COCO's [x, y, width, height] by torchvision's box_convert, in float64
    (exact for float32 input: the widths are the ones float(x2) - float(x1) gives)."""
    import torch
    from torchvision.ops import box_convert

    b = torch.as_tensor(np.asarray(boxes, dtype=np.float64).reshape(-1, 4))
    return box_convert(b, "xyxy", "xywh").numpy()


# ---------------------------------------------------------------- feature-map cells drawn over the image


@dataclass(frozen=True)
class CellPlacement:
    """Where a level's (maybe pooled) cells sit in ORIGINAL pixels: cell (c, r) is centred at
    (x0 + c * dx, y0 + r * dy). Every objectness map (the RPN page, the training snapshots) is drawn
    from one of these, so the same level lines up wherever it is shown."""

    x0: float
    dx: float
    y0: float
    dy: float

    def to_list(self) -> list[float]:
        return [self.x0, self.dx, self.y0, self.dy]

    def edges(self, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
        """(x edges, y edges) in original pixels of a (columns, rows) grid of these cells, columns + 1
        and rows + 1 values: cell (c, r) spans x0 + (c -/+ 1/2) dx by y0 + (r -/+ 1/2) dy, the tile a
        heatmap draws around its centre."""
        cols, rows = grid
        return (self.x0 + (np.arange(cols + 1) - 0.5) * self.dx, self.y0 + (np.arange(rows + 1) - 0.5) * self.dy)


def cells_on_boxes(placement: CellPlacement, grid: Grid, boxes: Any) -> np.ndarray:
    """(rows, columns) mask of the cells whose tile (`CellPlacement.edges`) overlaps any of the
    [x1, y1, x2, y2] boxes, original pixels; touching an edge is no overlap."""
    xs, ys = placement.edges(grid)
    mask = np.zeros((grid[1], grid[0]), dtype=bool)
    for x1, y1, x2, y2 in np.asarray(boxes, dtype=float).reshape(-1, 4):
        cols = (xs[1:] > x1) & (xs[:-1] < x2)
        rows = (ys[1:] > y1) & (ys[:-1] < y2)
        mask |= rows[:, None] & cols[None, :]
    return mask


def cell_placement(stride: Stride, scale: tuple[float, float], factor: int = 1) -> CellPlacement:
    """Centres of a level's cells in original pixels, torchvision's (c * stride_x, r * stride_y) in
    the input frame divided by the (sx, sy) scale; a pooled cell covering factor x factor cells sits
    at the mean of their centres."""
    sx, sy = stride
    kx, ky = scale
    return CellPlacement((factor - 1) / 2 * sx / kx, factor * sx / kx, (factor - 1) / 2 * sy / ky, factor * sy / ky)


def pool_factor(shape: tuple[int, ...], max_side: int) -> int:
    """The integer block size that brings a map's longest side down to at most max_side cells."""
    return max(1, math.ceil(max(shape) / max(max_side, 1)))


def max_pool_cells(heat: np.ndarray, factor: int) -> np.ndarray:
    """Max over factor x factor blocks of a (rows, columns) map (peaks survive); edges padded with -inf."""
    heat = np.asarray(heat, dtype=float)
    if factor <= 1:
        return heat
    h, w = heat.shape
    ph, pw = math.ceil(h / factor) * factor, math.ceil(w / factor) * factor
    padded = np.full((ph, pw), -np.inf, dtype=float)
    padded[:h, :w] = heat
    return padded.reshape(ph // factor, factor, pw // factor, factor).max(axis=(1, 3))


def visible_cells(heat: np.ndarray, stride: Stride, resized_size: Size) -> np.ndarray:
    """A level's (rows, columns) map without the cells whose centre lies in the padding."""
    cols, rows = visible_grid((heat.shape[1], heat.shape[0]), stride, resized_size)
    return heat[:rows, :cols]
