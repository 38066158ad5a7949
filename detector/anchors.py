"""Anchors: the grids a Faster R-CNN lays over its input, their matching to ground truth, fitness.

Everything is built from torchvision's own pieces: the model's `GeneralizedRCNNTransform` resize
and padding rule, its backbone's feature-map shapes (run on the meta device: shapes only),
`AnchorGenerator` for the boxes themselves, `Matcher` + `box_iou` for the RPN labels and
`BalancedPositiveNegativeSampler` for the 256-anchor minibatch.

Frames. Two coordinate frames appear, and every box function says which it takes or returns:
- *original*: the image as loaded, pixels, [x1, y1, x2, y2] (pixel edges).
- *input*: the model's resized and padded input, where anchors live. The image occupies
  [0, resized_w] x [0, resized_h]; the padding extends it to the padded size.
Sizes are (width, height) everywhere, as in `detector.images`.

Anchor order (torchvision 0.29): flat index over (level, y, x, a) with
`a = ratio_index * len(sizes) + size_index`; the anchors of cell (y, x) are centred at
`(x * stride_x, y * stride_y)`, with stride = padded_size // grid.
"""

from __future__ import annotations

import copy
import math
import weakref
from dataclasses import dataclass, field, replace
from typing import Iterable, Sequence

import numpy as np
import torch
from torchvision.models.detection._utils import BalancedPositiveNegativeSampler, Matcher
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.transform import resize_boxes
from torchvision.ops import box_iou

# RPN training defaults of the paper and torchvision.
FG_IOU = 0.7
BG_IOU = 0.3
RPN_BATCH = 256
RPN_POSITIVE_FRACTION = 0.5
RECALL_THRESHOLDS = (0.3, 0.5, 0.7)
# COCO's size buckets by box area in original pixels.
COCO_SMALL = 32 * 32
COCO_MEDIUM = 96 * 96
# Aspect-ratio buckets (height / width) for the fitness breakdown.
RATIO_BUCKETS: tuple[tuple[str, float, float], ...] = (
    ("wide (h/w < 1/3)", 0.0, 1 / 3),
    ("landscape (1/3..2/3)", 1 / 3, 2 / 3),
    ("square-ish (2/3..3/2)", 2 / 3, 3 / 2),
    ("portrait (3/2..3)", 3 / 2, 3.0),
    ("tall (h/w >= 3)", 3.0, math.inf),
)


# ----------------------------------------------------------------------------- anchor sources


@dataclass(frozen=True, eq=False)
class AnchorSource:
    """Where anchors come from: a model's transform + backbone + generator, or a custom set.

    With a model, grids come from its backbone's feature-map shapes; with a custom set, the
    image is padded to a multiple of the largest stride and each grid is padded_size / stride.
    min_size/max_size: the resize rule (short side to min_size, long side at most max_size);
    None means no resize.
    """

    name: str
    sizes: tuple[tuple[int, ...], ...]  # anchor sizes (sqrt of area, input pixels), per level
    ratios: tuple[tuple[float, ...], ...]  # aspect ratios height / width, per level
    strides: tuple[int, ...] | None  # custom: one per level; None: grids from the model's backbone
    min_size: int | None = None
    max_size: int | None = None
    size_divisible: int = 32
    fixed_size: tuple[int, int] | None = None  # torchvision's fixed (width, height) resize
    level_names: tuple[str, ...] = ()
    model: torch.nn.Module | None = field(default=None, repr=False)  # a FasterRCNN, for its backbone
    generator: AnchorGenerator | None = field(default=None, repr=False)  # the model's own generator

    @property
    def anchors_per_location(self) -> tuple[int, ...]:
        return tuple(len(s) * len(r) for s, r in zip(self.sizes, self.ratios))

    @property
    def num_levels(self) -> int:
        return len(self.sizes)

    def anchor_generator(self) -> AnchorGenerator:
        """The torchvision AnchorGenerator for these sizes and ratios (a copy of the model's own when
        unchanged: calling it moves its cell anchors to the caller's device, which must not touch a
        model another page may be running on a GPU)."""
        if self.generator is not None:
            return copy.deepcopy(self.generator)
        return AnchorGenerator(self.sizes, self.ratios)

    def with_anchors(self, sizes: Sequence[Sequence[int]], ratios: Sequence[Sequence[float]] | Sequence[float],
                     name: str | None = None) -> "AnchorSource":
        """The same transform and grids with other anchor sizes/ratios (a what-if)."""
        sizes_t, ratios_t = _normalise_anchor_set(sizes, ratios)
        if len(sizes_t) != self.num_levels:
            raise ValueError(f"{len(sizes_t)} levels of sizes given; this source has {self.num_levels} levels")
        return replace(self, name=name or f"{self.name} (what-if)", sizes=sizes_t, ratios=ratios_t, generator=None)


def _normalise_anchor_set(sizes: Sequence[Sequence[int]], ratios) -> tuple[tuple[tuple[int, ...], ...], tuple[tuple[float, ...], ...]]:
    sizes_t = tuple(tuple(int(s) for s in level) for level in sizes)
    if not sizes_t or any(not level for level in sizes_t):
        raise ValueError("anchor sizes: give at least one size per level")
    if any(s <= 0 for level in sizes_t for s in level):
        raise ValueError("anchor sizes must be positive")
    if ratios and not isinstance(ratios[0], (list, tuple)):
        ratios = [ratios]
    ratios_t = tuple(tuple(float(r) for r in level) for level in ratios)
    if not ratios_t or any(not level for level in ratios_t):
        raise ValueError("aspect ratios: give at least one ratio")
    if any(r <= 0 for level in ratios_t for r in level):
        raise ValueError("aspect ratios (height / width) must be positive")
    if len(ratios_t) == 1 and len(sizes_t) > 1:
        ratios_t = ratios_t * len(sizes_t)
    if len(ratios_t) != len(sizes_t):
        raise ValueError(f"{len(sizes_t)} levels of sizes but {len(ratios_t)} levels of ratios")
    return sizes_t, ratios_t


def custom_source(
    sizes: Sequence[Sequence[int]],
    ratios: Sequence[float] | Sequence[Sequence[float]],
    strides: Sequence[int],
    min_size: int | None = None,
    max_size: int | None = None,
    name: str = "custom",
) -> AnchorSource:
    """A custom anchor set: sizes per level (one group applies to every level), ratios, strides.

    The image is resized only when min_size is given (max_size defaults to 1000/600 * min_size),
    then padded to a multiple of the largest stride, as DESIGN's `anchors --strides` says.
    """
    strides_t = tuple(int(s) for s in strides)
    if not strides_t or any(s <= 0 for s in strides_t):
        raise ValueError("strides must be positive integers, one per level")
    sizes_l = [list(level) for level in sizes]
    if len(sizes_l) == 1 and len(strides_t) > 1:
        sizes_l = sizes_l * len(strides_t)
    sizes_t, ratios_t = _normalise_anchor_set(sizes_l, ratios)
    if len(sizes_t) != len(strides_t):
        raise ValueError(f"{len(sizes_t)} levels of sizes but {len(strides_t)} strides")
    if min_size is not None and max_size is None:
        max_size = int(round(min_size * 1000 / 600))
    return AnchorSource(
        name=name, sizes=sizes_t, ratios=ratios_t, strides=strides_t, min_size=min_size, max_size=max_size,
        size_divisible=max(strides_t), level_names=tuple(f"stride {s}" for s in strides_t),
    )


def paper_source() -> AnchorSource:
    """The paper's preset (Ren et al. 2015, section 3.1): one level at stride 16 (VGG-16 conv5),
    sizes 128, 256, 512 x ratios 1:2, 1:1, 2:1 = 9 anchors per location, images rescaled so the
    short side is 600 pixels (long side at most 1000)."""
    return custom_source(((128, 256, 512),), (0.5, 1.0, 2.0), (16,), min_size=600, max_size=1000, name="paper")


def model_source(model: torch.nn.Module, name: str = "model") -> AnchorSource:
    """The anchors of a torchvision FasterRCNN: its transform's resize/padding, backbone grids and
    its own `rpn.anchor_generator`."""
    transform = model.transform
    generator: AnchorGenerator = model.rpn.anchor_generator
    sizes_t = tuple(tuple(int(s) for s in level) for level in generator.sizes)
    ratios_t = tuple(tuple(float(r) for r in level) for level in generator.aspect_ratios)
    fixed = tuple(transform.fixed_size) if transform.fixed_size is not None else None
    return AnchorSource(
        name=name, sizes=sizes_t, ratios=ratios_t, strides=None,
        min_size=int(transform.min_size[-1]), max_size=int(transform.max_size),
        size_divisible=int(transform.size_divisible), fixed_size=fixed,  # type: ignore[arg-type]
        model=model, generator=generator,
    )


# ----------------------------------------------------------------------------- grids


@dataclass(frozen=True)
class AnchorLevel:
    """One feature-map level: its grid, stride and anchor shapes. Sizes are (x, y) / (width, height)."""

    name: str
    stride: tuple[int, int]  # (x, y) input pixels between neighbouring cells
    grid: tuple[int, int]  # (columns, rows) of the feature map
    sizes: tuple[int, ...]
    ratios: tuple[float, ...]
    anchors_per_location: int
    count: int
    inside_image: int
    offset: int  # index of this level's first anchor in the flat order
    shapes: tuple[tuple[float, float], ...]  # (width, height) of each anchor a at this level, input pixels
    base: tuple[tuple[float, float, float, float], ...] = ()  # the generator's cell anchors, centred on (0, 0)

    def shape_label(self, a: int) -> str:
        """'size 128, ratio 0.5' for anchor index a (a = ratio_index * len(sizes) + size_index)."""
        r, s = divmod(a, len(self.sizes))
        return f"size {self.sizes[s]}, ratio {self.ratios[r]:g}"

    def to_dict(self) -> dict:
        return {
            "name": self.name, "stride": list(self.stride), "grid": list(self.grid),
            "sizes": list(self.sizes), "ratios": list(self.ratios),
            "anchors_per_location": self.anchors_per_location, "count": self.count,
            "inside_image": self.inside_image,
        }


@dataclass(frozen=True, eq=False)
class AnchorGrid:
    """Every anchor for one image size, as the model's AnchorGenerator builds them.

    anchors: (N, 4) float32 xyxy in the *input* frame (resized, padded), flat order (level, y, x, a).
    inside: (N,) bool, anchor fully inside the resized, unpadded image.
    Both are None in a layout-only grid (`anchor_grid(..., with_anchors=False)`): levels, counts and
    sizes without the boxes, which is all the fitness report needs.
    """

    source_name: str
    image_size: tuple[int, int]  # original (width, height)
    resized_size: tuple[int, int]  # (width, height) after the transform's resize
    padded_size: tuple[int, int]  # (width, height) after padding: the AnchorGenerator's image size
    levels: tuple[AnchorLevel, ...]
    anchors: torch.Tensor | None = field(repr=False)
    inside: torch.Tensor | None = field(repr=False)

    @property
    def total(self) -> int:
        return sum(lv.count for lv in self.levels)

    @property
    def inside_image(self) -> int:
        return sum(lv.inside_image for lv in self.levels)

    @property
    def scale(self) -> tuple[float, float]:
        """(x, y) factors from the original frame to the input frame (torchvision's resize_boxes)."""
        return (float(np.float32(self.resized_size[0]) / np.float32(self.image_size[0])),
                float(np.float32(self.resized_size[1]) / np.float32(self.image_size[1])))

    def level_index(self, level: int | str) -> int:
        if isinstance(level, str):
            for i, lv in enumerate(self.levels):
                if lv.name == level:
                    return i
            raise ValueError(f"no level named {level!r}; levels: {', '.join(lv.name for lv in self.levels)}")
        if not 0 <= level < len(self.levels):
            raise ValueError(f"level {level} out of range 0..{len(self.levels) - 1}")
        return level

    def to_dict(self) -> dict:
        """The JSON of `python -m detector anchors` (DESIGN): sizes are [width, height]."""
        return {
            "source": self.source_name,
            "image_size": list(self.image_size),
            "resized_size": list(self.resized_size),
            "padded_size": list(self.padded_size),
            "total": self.total,
            "inside_image": self.inside_image,
            "levels": [lv.to_dict() for lv in self.levels],
        }


def input_sizes(source: AnchorSource, image_size: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """(resized, padded) (width, height) of an image of `image_size`, by torchvision's own rule.

    The eval-mode resize of `GeneralizedRCNNTransform` (`_resize_image_and_masks`): scale =
    min(min_size / short side, max_size / long side), and `interpolate(recompute_scale_factor=True)`
    makes each side floor(side * scale); `batch_images` pads up to a multiple of size_divisible.
    """
    width, height = int(image_size[0]), int(image_size[1])
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if source.fixed_size is not None:
        rw, rh = int(source.fixed_size[0]), int(source.fixed_size[1])
    elif source.min_size is None:
        rw, rh = width, height
    else:
        scale = min(source.min_size / min(height, width), source.max_size / max(height, width))
        rw, rh = int(math.floor(width * scale)), int(math.floor(height * scale))
    d = float(source.size_divisible)
    padded = (int(math.ceil(rw / d) * d), int(math.ceil(rh / d) * d))
    return (rw, rh), padded


# backbone -> ({("x" | "y", padded length): cells per level}, level names, its copy on the meta
# device). A conv/pool backbone's output length along one axis depends only on the input length
# along that axis, so one shape-only run serves every padded size that reuses its lengths.
# Weak keys: a dropped model leaves nothing behind.
_BACKBONE_GRIDS: "weakref.WeakKeyDictionary[torch.nn.Module, tuple[dict, tuple[str, ...], torch.nn.Module]]" = (
    weakref.WeakKeyDictionary()
)


def feature_grids(source: AnchorSource, padded_size: tuple[int, int]) -> tuple[tuple[int, int], ...]:
    """(rows, columns) of each level's feature map for a padded input of (width, height).

    A model's grids come from running a copy of its backbone on the meta device (shapes only, no
    arithmetic, about 40 ms); a custom set's are padded_size // stride.
    """
    pw, ph = padded_size
    if source.strides is not None:
        return tuple((ph // s, pw // s) for s in source.strides)
    if source.model is None:
        raise ValueError("an anchor source without strides needs a model")
    backbone = source.model.backbone
    if backbone not in _BACKBONE_GRIDS:
        _BACKBONE_GRIDS[backbone] = ({}, (), copy.deepcopy(backbone).to("meta").eval())
    cache, names, meta = _BACKBONE_GRIDS[backbone]
    if ("x", pw) not in cache or ("y", ph) not in cache:
        with torch.no_grad():
            features = meta(torch.empty(1, 3, ph, pw, device="meta"))
        if isinstance(features, torch.Tensor):
            features = {"0": features}
        cache[("y", ph)] = tuple(int(f.shape[-2]) for f in features.values())
        cache[("x", pw)] = tuple(int(f.shape[-1]) for f in features.values())
        _BACKBONE_GRIDS[backbone] = (cache, tuple(str(k) for k in features.keys()), meta)
    grids = tuple(zip(cache[("y", ph)], cache[("x", pw)]))
    if len(grids) != source.num_levels:
        raise ValueError(
            f"{source.name}: the backbone gives {len(grids)} feature maps but the anchor set has "
            f"{source.num_levels} levels of sizes"
        )
    return grids


def _inside_count(base: Sequence[Sequence[float]], grid: tuple[int, int], stride: tuple[int, int],
                  resized: tuple[int, int]) -> int:
    """Anchors of one level fully inside the resized image, counted per shape without building them:
    column c qualifies when c * stride_x + x1 >= 0 and c * stride_x + x2 <= width (rows alike)."""
    total = 0
    for x1, y1, x2, y2 in base:
        n = 1
        for lo_edge, hi_edge, cells, step, size in ((x1, x2, grid[0], stride[0], resized[0]),
                                                    (y1, y2, grid[1], stride[1], resized[1])):
            lo = max(0, math.ceil(-lo_edge / step))
            hi = min(cells - 1, math.floor((size - hi_edge) / step))
            n *= max(0, hi - lo + 1)
        total += n
    return total


def anchor_grid(source: AnchorSource, image_size: tuple[int, int], with_anchors: bool = True) -> AnchorGrid:
    """Every anchor for an original image of (width, height), from torchvision's AnchorGenerator.

    Anchors are in the input frame (resized, padded); the generator is called with an ImageList of
    the padded size and empty feature maps of the backbone's grid shapes, exactly as the RPN does.
    with_anchors=False skips the boxes (anchors and inside are None; counts are computed per shape).
    """
    resized, padded = input_sizes(source, image_size)
    grids = feature_grids(source, padded)
    generator = source.anchor_generator()
    pw, ph = padded
    rw, rh = resized
    anchors = inside = None
    if with_anchors:
        image_list = ImageList(torch.empty(1, 3, ph, pw), [(rh, rw)])
        feature_maps = [torch.empty(1, 0, gh, gw) for gh, gw in grids]
        with torch.no_grad():
            anchors = generator(image_list, feature_maps)[0]
        inside = (anchors[:, 0] >= 0) & (anchors[:, 1] >= 0) & (anchors[:, 2] <= rw) & (anchors[:, 3] <= rh)
    if source.level_names:
        names = source.level_names
    elif source.model is not None and source.model.backbone in _BACKBONE_GRIDS:
        names = _BACKBONE_GRIDS[source.model.backbone][1]
    else:
        names = tuple(str(i) for i in range(len(grids)))
    levels = []
    offset = 0
    for i, ((gh, gw), sizes, ratios) in enumerate(zip(grids, source.sizes, source.ratios)):
        a = len(sizes) * len(ratios)
        count = gh * gw * a
        base = tuple(tuple(b) for b in generator.cell_anchors[i].to(torch.float32).cpu().tolist())
        shapes = tuple((b[2] - b[0], b[3] - b[1]) for b in base)
        stride = (pw // gw, ph // gh)
        n_inside = (int(inside[offset:offset + count].sum()) if inside is not None
                    else _inside_count(base, (gw, gh), stride, resized))
        levels.append(AnchorLevel(
            name=names[i], stride=stride, grid=(gw, gh), sizes=sizes, ratios=ratios, anchors_per_location=a,
            count=count, inside_image=n_inside, offset=offset, shapes=shapes, base=base,
        ))
        offset += count
    return AnchorGrid(source.name, (int(image_size[0]), int(image_size[1])), resized, padded, tuple(levels),
                      anchors, inside)


def _anchors(grid: AnchorGrid) -> torch.Tensor:
    if grid.anchors is None:
        raise ValueError("this anchor grid was built without its anchors (with_anchors=False)")
    return grid.anchors


# ----------------------------------------------------------------------------- frames


def to_input_frame(boxes, grid: AnchorGrid) -> torch.Tensor:
    """(N, 4) xyxy boxes from the *original* frame to the *input* frame (torchvision's resize_boxes)."""
    b = torch.as_tensor(np.asarray(boxes, dtype=np.float32).reshape(-1, 4))
    (w, h), (rw, rh) = grid.image_size, grid.resized_size
    return resize_boxes(b, [h, w], [rh, rw])


def to_original_frame(boxes, grid: AnchorGrid) -> np.ndarray:
    """(N, 4) xyxy boxes from the *input* frame back to the *original* frame (inverse of resize)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    sx, sy = grid.scale
    return b / np.array([sx, sy, sx, sy])


# ----------------------------------------------------------------------------- locations


@dataclass(frozen=True)
class CellCentres:
    """Centres of a level's cells, maybe subsampled by `step` in each direction.

    xs/ys: centres in the *input* frame; rows/cols: the cell of each point.
    """

    level: int
    rows: np.ndarray
    cols: np.ndarray
    xs: np.ndarray
    ys: np.ndarray
    step: int  # 1 = every cell


def cell_centres(grid: AnchorGrid, level: int | str, max_points: int = 20_000) -> CellCentres:
    """The anchor centres of one level, (x * stride_x, y * stride_y) in the *input* frame.

    Only cells whose centre lies inside the resized image are kept (the rest is padding); when
    more than max_points remain, every step-th row and column is kept.
    """
    li = grid.level_index(level)
    lv = grid.levels[li]
    (gw, gh), (sx, sy) = lv.grid, lv.stride
    rw, rh = grid.resized_size
    n_cols = min(gw, int(math.floor((rw - 1e-9) / sx)) + 1) if rw > 0 else gw
    n_rows = min(gh, int(math.floor((rh - 1e-9) / sy)) + 1) if rh > 0 else gh
    step = max(1, int(math.ceil(math.sqrt(n_cols * n_rows / max(max_points, 1)))))
    rows, cols = np.meshgrid(np.arange(0, n_rows, step), np.arange(0, n_cols, step), indexing="ij")
    rows, cols = rows.ravel(), cols.ravel()
    return CellCentres(li, rows, cols, (cols * sx).astype(float), (rows * sy).astype(float), step)


@dataclass(frozen=True)
class AnchorsAt:
    """The anchors centred at one feature-map cell. boxes: (A, 4) xyxy in the *input* frame."""

    level: int
    row: int
    col: int
    centre: tuple[float, float]  # (x, y) input frame
    indices: np.ndarray  # flat indices into AnchorGrid.anchors
    boxes: np.ndarray
    labels: tuple[str, ...]  # "#index size S ratio R" per anchor


def anchors_at(grid: AnchorGrid, level: int | str, row: int, col: int) -> AnchorsAt:
    """Every anchor centred at cell (row, col) of `level`, with its size, ratio and flat index."""
    li = grid.level_index(level)
    lv = grid.levels[li]
    gw, gh = lv.grid
    if not (0 <= row < gh and 0 <= col < gw):
        raise ValueError(f"cell (row {row}, column {col}) is outside level {lv.name}'s {gh} x {gw} grid")
    a = lv.anchors_per_location
    start = lv.offset + (row * gw + col) * a
    idx = np.arange(start, start + a)
    boxes = _anchors(grid)[start:start + a].numpy().astype(float)
    labels = tuple(f"#{i} {lv.shape_label(k)}" for k, i in enumerate(idx.tolist()))
    return AnchorsAt(li, row, col, (float(col * lv.stride[0]), float(row * lv.stride[1])), idx, boxes, labels)


def nearest_cell(grid: AnchorGrid, level: int | str, x: float, y: float) -> tuple[int, int]:
    """(row, col) of the cell whose anchor centre is nearest to (x, y) in the *input* frame."""
    lv = grid.levels[grid.level_index(level)]
    col = int(np.clip(round(x / lv.stride[0]), 0, lv.grid[0] - 1))
    row = int(np.clip(round(y / lv.stride[1]), 0, lv.grid[1] - 1))
    return row, col


def anchors_of_shape(grid: AnchorGrid, level: int | str, shape_index: int, max_boxes: int = 400) -> tuple[np.ndarray, int]:
    """All anchors of one shape (index a) on a level, every step-th row/column so at most about
    max_boxes remain: ((K, 4) xyxy in the *input* frame, step)."""
    li = grid.level_index(level)
    lv = grid.levels[li]
    if not 0 <= shape_index < lv.anchors_per_location:
        raise ValueError(f"shape index {shape_index} out of range 0..{lv.anchors_per_location - 1}")
    gw, gh = lv.grid
    block = _anchors(grid)[lv.offset:lv.offset + lv.count].view(gh, gw, lv.anchors_per_location, 4)
    step = max(1, int(math.ceil(math.sqrt(gw * gh / max(max_boxes, 1)))))
    return block[::step, ::step, shape_index].reshape(-1, 4).numpy().astype(float), step


# ----------------------------------------------------------------------------- matching


@dataclass(frozen=True, eq=False)
class Matching:
    """RPN training labels of every anchor for one image's ground truth (torchvision's rule).

    labels: (N,) int8, 1 positive / 0 negative / -1 ignored, as `rpn.assign_targets_to_anchors`.
    matched_gt: (N,) index of the ground-truth box each anchor is matched to (-1 / -2: none).
    best_iou_per_gt: (M,) best IoU over all anchors; best_anchor_per_gt: (M,) its flat index.
    positives_per_gt: (M,) positive anchors assigned to each box; a 0 means no positive anchor.
    gt_boxes: (M, 4) xyxy in the *input* frame.
    """

    labels: torch.Tensor
    matched_gt: torch.Tensor
    anchor_iou: torch.Tensor  # (N,) each anchor's best IoU with any ground-truth box
    best_iou_per_gt: torch.Tensor
    best_anchor_per_gt: torch.Tensor
    positives_per_gt: torch.Tensor
    gt_boxes: torch.Tensor
    fg_iou: float
    bg_iou: float

    @property
    def counts(self) -> dict[str, int]:
        return {"positive": int((self.labels == 1).sum()), "negative": int((self.labels == 0).sum()),
                "ignored": int((self.labels == -1).sum())}

    @property
    def gt_without_positive(self) -> np.ndarray:
        """Indices of ground-truth boxes that got no positive anchor."""
        return np.flatnonzero(self.positives_per_gt.numpy() == 0)


def _overlap_pairs(grid: AnchorGrid, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """(box index, anchor index, IoU) of every (ground-truth box, anchor) pair that overlaps; None
    when that is not worth it (most pairs overlap).

    Anchors of one shape on one level form a grid whose columns share x1, x2 and rows share y1, y2,
    so the x and y overlaps are computed per column and per row (M x A x W and M x A x H) and only
    pairs with both positive are expanded. Each IoU is `box_iou`'s float32 arithmetic, step for
    step, so the values are bit-identical; every pair left out has IoU exactly 0.
    """
    anchors = _anchors(grid)
    area_gt = (gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1])
    area_anchor = (anchors[:, 2] - anchors[:, 0]) * (anchors[:, 3] - anchors[:, 1])
    out_m, out_n, out_iou = [], [], []
    total = 0
    for lv in grid.levels:
        (gw, gh), a_n = lv.grid, lv.anchors_per_location
        block = anchors[lv.offset:lv.offset + lv.count].view(gh, gw, a_n, 4)
        x1, x2 = block[0, :, :, 0].T, block[0, :, :, 2].T  # (A, W): shared by every row
        y1, y2 = block[:, 0, :, 1].T, block[:, 0, :, 3].T  # (A, H): shared by every column
        # box_iou: wh = (min(x2, X2) - max(x1, X1)).clamp(min=0), per axis
        wx = (torch.min(gt[:, None, None, 2], x2) - torch.max(gt[:, None, None, 0], x1)).clamp(min=0)  # (M, A, W)
        wy = (torch.min(gt[:, None, None, 3], y2) - torch.max(gt[:, None, None, 1], y1)).clamp(min=0)  # (M, A, H)
        kx, ky = (wx > 0).sum(-1).flatten(), (wy > 0).sum(-1).flatten()  # per (box, shape) group
        cols, rows = torch.nonzero(wx > 0)[:, 2], torch.nonzero(wy > 0)[:, 2]  # grouped, in (box, shape) order
        count = kx * ky
        total += int(count.sum())
        if total * 4 > grid.total * len(gt):
            return None
        # expand each group's columns x rows; group = box * A + shape
        group = torch.repeat_interleave(torch.arange(len(count)), count)
        j = torch.arange(len(group)) - (torch.cumsum(count, 0) - count).index_select(0, group)
        kxg = kx.index_select(0, group)
        jy = torch.div(j, kxg, rounding_mode="floor")
        col = cols.index_select(0, (torch.cumsum(kx, 0) - kx).index_select(0, group) + (j - jy * kxg))
        row = rows.index_select(0, (torch.cumsum(ky, 0) - ky).index_select(0, group) + jy)
        m = torch.div(group, a_n, rounding_mode="floor")
        n = lv.offset + (row * gw + col) * a_n + (group - m * a_n)
        inter = wx.reshape(-1).index_select(0, group * gw + col) * wy.reshape(-1).index_select(0, group * gh + row)
        union = area_gt.index_select(0, m) + area_anchor.index_select(0, n) - inter
        out_m.append(m)
        out_n.append(n)
        out_iou.append(inter / union)
    return torch.cat(out_m), torch.cat(out_n), torch.cat(out_iou)


def _match_sparse(grid: AnchorGrid, gt: torch.Tensor, fg_iou: float, bg_iou: float,
                  allow_low_quality_matches: bool):
    """torchvision's Matcher over the overlapping pairs only: (matched, anchor_iou, best_iou_per_gt,
    best_anchor_per_gt), equal to the dense computation; None where the dense one must run (a
    box that overlaps no anchor: there torchvision's low-quality rule would touch every anchor)."""
    if not bool(((gt[:, 2] > gt[:, 0]) & (gt[:, 3] > gt[:, 1])).all()):
        return None
    pairs = _overlap_pairs(grid, gt)
    if pairs is None:
        return None
    m, n, iou = pairs
    if not bool(torch.isfinite(iou).all()):
        return None
    n_anchors, n_gt = grid.total, len(gt)
    best_iou = torch.zeros(n_gt).scatter_reduce_(0, m, iou, "amax")
    if bool((best_iou <= 0).any()):
        return None
    # Matcher: each anchor's best box (the first on ties, as max(dim=0)); thresholds
    anchor_iou = torch.zeros(n_anchors).scatter_reduce_(0, n, iou, "amax")
    top = iou == anchor_iou[n]
    all_matches = torch.zeros(n_anchors, dtype=torch.int64).scatter_reduce_(
        0, n[top], m[top], "amin", include_self=False)
    matched = all_matches.clone()
    matched[anchor_iou < bg_iou] = Matcher.BELOW_LOW_THRESHOLD
    matched[(anchor_iou >= bg_iou) & (anchor_iou < fg_iou)] = Matcher.BETWEEN_THRESHOLDS
    # each box's best anchors (ties included) keep their best box: set_low_quality_matches_
    best = iou == best_iou[m]
    if allow_low_quality_matches:
        matched[n[best]] = all_matches[n[best]]
    best_anchor = torch.full((n_gt,), n_anchors, dtype=torch.int64).scatter_reduce_(
        0, m[best], n[best], "amin", include_self=True)
    return matched, anchor_iou, best_iou, best_anchor


def match_anchors(
    grid: AnchorGrid,
    gt_boxes_input,
    fg_iou: float = FG_IOU,
    bg_iou: float = BG_IOU,
    allow_low_quality_matches: bool = True,
) -> Matching:
    """Label every anchor against ground-truth boxes (xyxy, *input* frame) by the RPN's rule.

    torchvision's `Matcher(fg_iou, bg_iou, allow_low_quality_matches=True)` over `box_iou`:
    IoU >= fg_iou positive, < bg_iou negative, between ignored, and each box's best anchors
    (ties included) kept positive. All anchors take part, cross-boundary ones included, as in
    torchvision (the paper ignored cross-boundary anchors during training).
    """
    gt = torch.as_tensor(np.asarray(gt_boxes_input, dtype=np.float32).reshape(-1, 4))
    n = grid.total
    if len(gt) == 0:  # background image: every anchor negative
        zeros = torch.zeros(0)
        return Matching(torch.zeros(n, dtype=torch.int8), torch.full((n,), -1, dtype=torch.int64),
                        torch.zeros(n), zeros, zeros.long(), zeros.long(), gt, fg_iou, bg_iou)
    sparse = _match_sparse(grid, gt, fg_iou, bg_iou, allow_low_quality_matches)
    if sparse is not None:  # the same result from the overlapping pairs only (about 10x faster)
        matched, anchor_iou, best_iou, best_anchor = sparse
    else:
        # IoU of every (box, anchor) pair, M x N
        iou = box_iou(gt, _anchors(grid))
        # torchvision's matcher: best box per anchor, thresholds, low-quality matches
        matched = Matcher(fg_iou, bg_iou, allow_low_quality_matches=allow_low_quality_matches)(iou)
        best_iou, best_anchor = iou.max(dim=1)
        anchor_iou = iou.max(dim=0).values
    labels = torch.zeros(n, dtype=torch.int8)
    labels[matched >= 0] = 1
    labels[matched == Matcher.BETWEEN_THRESHOLDS] = -1
    positives = torch.bincount(matched[matched >= 0], minlength=len(gt))
    return Matching(labels, matched, anchor_iou, best_iou, best_anchor, positives, gt, fg_iou, bg_iou)


@dataclass(frozen=True)
class Minibatch:
    """The anchors the RPN's sampler draws for one training step: flat indices."""

    positive: np.ndarray
    negative: np.ndarray
    seed: int


def sample_minibatch(matching: Matching, batch_size: int = RPN_BATCH, positive_fraction: float = RPN_POSITIVE_FRACTION,
                     seed: int = 0) -> Minibatch:
    """The minibatch torchvision's BalancedPositiveNegativeSampler draws (positives up to
    positive_fraction, the rest negatives), seeded without touching the global RNG."""
    sampler = BalancedPositiveNegativeSampler(batch_size, positive_fraction)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pos, neg = sampler([matching.labels.to(torch.float32)])
    return Minibatch(np.flatnonzero(pos[0].numpy()), np.flatnonzero(neg[0].numpy()), seed)


# ----------------------------------------------------------------------------- fitness


def best_anchor_iou(grid: AnchorGrid, boxes_input) -> np.ndarray:
    """Best IoU over *all* anchors of `grid` for each box (xyxy, *input* frame): (M,) float.

    Exact and fast: for one anchor shape on one level, IoU with a box depends on the offset
    between centres only through the x and y overlaps, each largest when the centres are nearest,
    so the best anchor of each (level, shape) is the one at the cell nearest the box centre.
    That is M x levels x shapes IoUs instead of M x all anchors (equal to `box_iou(...).max(1)`).
    """
    b = np.asarray(boxes_input, dtype=np.float32).reshape(-1, 4)
    if len(b) == 0:
        return np.zeros(0)
    cx = (b[:, 0] + b[:, 2]) / np.float32(2)
    cy = (b[:, 1] + b[:, 3]) / np.float32(2)
    area_b = ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))[:, None]
    best = np.zeros(len(b), dtype=np.float32)
    for lv in grid.levels:
        gw, gh = lv.grid
        col = np.clip(np.round(cx / lv.stride[0]), 0, gw - 1).astype(np.int64)
        row = np.clip(np.round(cy / lv.stride[1]), 0, gh - 1).astype(np.int64)
        # the A anchors at each box's nearest cell, (M, A, 4): integer shift + cell anchor, as torchvision adds them
        shift = np.stack([col * lv.stride[0], row * lv.stride[1], col * lv.stride[0], row * lv.stride[1]], axis=1)
        cand = shift[:, None, :].astype(np.float32) + np.asarray(lv.base, dtype=np.float32)[None, :, :]
        # IoU of each box with its A candidates, float32 as torchvision's box_iou
        lt = np.maximum(b[:, None, :2], cand[..., :2])
        rb = np.minimum(b[:, None, 2:], cand[..., 2:])
        wh = np.clip(rb - lt, 0, None)
        inter = wh[..., 0] * wh[..., 1]
        area_c = (cand[..., 2] - cand[..., 0]) * (cand[..., 3] - cand[..., 1])
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.nan_to_num(inter / (area_b + area_c - inter))
        best = np.maximum(best, iou.max(axis=1))
    return best.astype(float)


@dataclass(frozen=True)
class FitnessImage:
    """One image for the fitness report: original size and its boxes (xyxy, *original* frame)."""

    width: int
    height: int
    boxes: np.ndarray


@dataclass(frozen=True)
class Bucket:
    name: str
    boxes: int
    recall: dict[str, float]  # threshold "0.3"/"0.5"/"0.7" -> share of boxes reaching it
    mean_best_iou: float

    def to_dict(self) -> dict:
        return {"name": self.name, "boxes": self.boxes, "recall": self.recall, "mean_best_iou": self.mean_best_iou}


@dataclass(frozen=True)
class Fitness:
    """How well an anchor set covers a dataset's ground truth after the model's resize.

    best_iou: (M,) per box, its best IoU over all anchors of its image. box_wh: (M, 2) width and
    height in the *input* frame; area: (M,) area in the *original* frame (for COCO's buckets).
    """

    source_name: str
    images: int
    best_iou: np.ndarray = field(repr=False)
    box_wh: np.ndarray = field(repr=False)
    area: np.ndarray = field(repr=False)
    recall: dict[str, float]
    by_size: tuple[Bucket, ...]
    by_ratio: tuple[Bucket, ...]
    histogram: tuple[tuple[float, ...], tuple[int, ...]]  # (bin edges, counts), 20 bins over [0, 1]
    anchors_per_location: tuple[int, ...]

    @property
    def boxes(self) -> int:
        return int(len(self.best_iou))

    def to_dict(self) -> dict:
        """The JSON of `python -m detector anchors --dataset` (DESIGN)."""
        edges, counts = self.histogram
        return {
            "source": self.source_name, "images": self.images, "boxes": self.boxes,
            "recall": self.recall,
            "mean_best_iou": float(self.best_iou.mean()) if self.boxes else 0.0,
            "by_size": {b.name: b.to_dict() for b in self.by_size},
            "by_ratio": {b.name: b.to_dict() for b in self.by_ratio},
            "best_iou": {"bin_edges": list(edges), "counts": list(counts)},
            "anchors_per_location": list(self.anchors_per_location),
        }


def _recall(best: np.ndarray) -> dict[str, float]:
    return {f"{t:g}": (float((best >= t).mean()) if len(best) else 0.0) for t in RECALL_THRESHOLDS}


def _bucket(name: str, best: np.ndarray) -> Bucket:
    return Bucket(name, int(len(best)), _recall(best), float(best.mean()) if len(best) else 0.0)


def fitness(source: AnchorSource, images: Iterable[FitnessImage | tuple]) -> Fitness:
    """Best anchor IoU of every ground-truth box (after the model's resize), recall at 0.3 / 0.5 /
    0.7, and breakdowns by COCO size (original-frame area) and by aspect ratio (height / width).

    images: FitnessImage or (width, height, boxes) with boxes xyxy in the *original* frame.
    Grids are built once per distinct image size.
    """
    grids: dict[tuple[int, int], AnchorGrid] = {}
    best_parts, wh_parts, area_parts = [], [], []
    n_images = 0
    for item in images:
        if not isinstance(item, FitnessImage):
            item = FitnessImage(int(item[0]), int(item[1]), np.asarray(item[2], dtype=float).reshape(-1, 4))
        n_images += 1
        boxes = np.asarray(item.boxes, dtype=float).reshape(-1, 4)
        if len(boxes) == 0:
            continue
        size = (item.width, item.height)
        if size not in grids:
            grids[size] = anchor_grid(source, size, with_anchors=False)
        grid = grids[size]
        inp = to_input_frame(boxes, grid)
        best_parts.append(best_anchor_iou(grid, inp))
        wh_parts.append((inp[:, 2:] - inp[:, :2]).numpy().astype(float))
        area_parts.append((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    best = np.concatenate(best_parts) if best_parts else np.zeros(0)
    wh = np.concatenate(wh_parts) if wh_parts else np.zeros((0, 2))
    area = np.concatenate(area_parts) if area_parts else np.zeros(0)
    by_size = (
        _bucket("small", best[area < COCO_SMALL]),
        _bucket("medium", best[(area >= COCO_SMALL) & (area < COCO_MEDIUM)]),
        _bucket("large", best[area >= COCO_MEDIUM]),
    )
    ratio = wh[:, 1] / np.maximum(wh[:, 0], 1e-9) if len(wh) else np.zeros(0)
    by_ratio = tuple(_bucket(name, best[(ratio >= lo) & (ratio < hi)]) for name, lo, hi in RATIO_BUCKETS)
    counts, edges = np.histogram(best, bins=20, range=(0.0, 1.0))
    return Fitness(source.name, n_images, best, wh, area, _recall(best), by_size, by_ratio,
                   (tuple(float(e) for e in edges), tuple(int(c) for c in counts)), source.anchors_per_location)


def _kmeans_1d(values: np.ndarray, k: int, iters: int = 50) -> np.ndarray:
    """Sorted centres of 1-D k-means (quantile start, deterministic); k <= number of values."""
    v = np.sort(np.asarray(values, dtype=float))
    k = max(1, min(k, len(np.unique(v))))
    centres = np.quantile(v, (np.arange(k) + 0.5) / k)
    for _ in range(iters):
        assign = np.abs(v[:, None] - centres[None, :]).argmin(1)
        new = np.array([v[assign == j].mean() if np.any(assign == j) else centres[j] for j in range(k)])
        if np.allclose(new, centres):
            break
        centres = new
    return np.sort(centres)


@dataclass(frozen=True)
class Suggestion:
    """A what-if anchor set for the same model and its recall on the same boxes."""

    name: str
    sizes: tuple[tuple[int, ...], ...]
    ratios: tuple[tuple[float, ...], ...]
    recall: dict[str, float]
    mean_best_iou: float
    anchors_per_location: tuple[int, ...]
    fits_pretrained_head: bool  # same anchors per location as the source: the RPN head still fits

    def to_dict(self) -> dict:
        return {"name": self.name, "sizes": [list(s) for s in self.sizes], "ratios": [list(r) for r in self.ratios],
                "recall": self.recall, "mean_best_iou": self.mean_best_iou,
                "anchors_per_location": list(self.anchors_per_location),
                "fits_pretrained_head": self.fits_pretrained_head}


def suggest_anchor_sets(fit: Fitness, source: AnchorSource) -> tuple[tuple[tuple[int, ...], ...], tuple[float, ...]]:
    """Sizes and ratios fitted to the boxes, keeping the source's counts (levels x sizes, ratios).

    k-means with an IoU distance on box shapes, split into its two factors: for two centred boxes
    of one shape, IoU = (small / large)^2 of their sizes, and for two of one area it falls with the
    gap between their log aspect ratios; so 1-D k-means on log sqrt(w h) (levels x sizes-per-level
    centres, smallest to the finest level; one shared set when every level has the same sizes) and
    on log(h / w) (ratios-per-level centres).
    """
    wh = fit.box_wh[(fit.box_wh > 0).all(1)]
    if len(wh) == 0:
        return source.sizes, source.ratios[0]
    shared = len(set(source.sizes)) == 1  # every level has the same sizes (MobileNet FPN): keep that
    n_sizes = [len(source.sizes[0])] if shared else [len(s) for s in source.sizes]
    total = sum(n_sizes)
    size_c = np.exp(_kmeans_1d(np.log(np.sqrt(wh[:, 0] * wh[:, 1])), total))
    if len(size_c) < total:  # too few distinct boxes: spread geometrically over their range
        size_c = np.geomspace(size_c.min(), max(size_c.max(), size_c.min() * 2), total)
    sizes_flat = [max(1, int(round(s))) for s in size_c]
    sizes, i = [], 0
    for n in n_sizes:
        sizes.append(tuple(sizes_flat[i:i + n]))
        i += n
    if shared:
        sizes = sizes * source.num_levels
    n_ratios = len(source.ratios[0])
    ratio_c = np.exp(_kmeans_1d(np.log(wh[:, 1] / wh[:, 0]), n_ratios))
    if len(ratio_c) < n_ratios:
        ratio_c = np.concatenate([ratio_c, np.geomspace(0.5, 2.0, n_ratios)[len(ratio_c):]])
    ratios = tuple(sorted(round(float(r), 2) for r in ratio_c))
    return tuple(sizes), ratios


def what_if(fit: Fitness, source: AnchorSource, images: Sequence[FitnessImage | tuple],
            sizes, ratios, name: str = "what-if") -> Suggestion:
    """Recall of another anchor set (same transform and grids) on the same images."""
    alt = source.with_anchors(sizes, ratios, name=name)
    f = fitness(alt, images)
    return Suggestion(name, alt.sizes, alt.ratios, f.recall, float(f.best_iou.mean()) if f.boxes else 0.0,
                      alt.anchors_per_location, alt.anchors_per_location == source.anchors_per_location)


def suggestions(fit: Fitness, source: AnchorSource, images: Sequence[FitnessImage | tuple]) -> tuple[Suggestion, ...]:
    """What-ifs from the fitted sizes and ratios: new ratios, new sizes, both; each with its
    recall on the same boxes, best recall at 0.7 first. Counts per location are kept."""
    sizes, ratios = suggest_anchor_sets(fit, source)
    candidates = [
        ("fitted ratios", source.sizes, ratios),
        ("fitted sizes", sizes, source.ratios),
        ("fitted sizes and ratios", sizes, ratios),
    ]
    out = [what_if(fit, source, images, s, r, name) for name, s, r in candidates]
    return tuple(sorted(out, key=lambda s: (-s.recall["0.7"], -s.mean_best_iou)))


# ----------------------------------------------------------------------------- the paper's figures


@dataclass(frozen=True)
class PaperCounts:
    """The paper's anchor counts for an image beside the original code's (py-faster-rcnn)."""

    paper_total: int  # "about 20000" (~60 x 40 x 9) for a typical 1000 x 600 image
    paper_inside: int  # "about 6000" left after ignoring cross-boundary anchors
    original_code_total: int
    original_code_inside: int


def original_code_counts(image_size: tuple[int, int], stride: int = 16,
                         scales: Sequence[float] = (8, 16, 32), ratios: Sequence[float] = (0.5, 1.0, 2.0)) -> PaperCounts:
    """Anchor counts of the paper's original code (py-faster-rcnn `generate_anchors` + the
    anchor-target layer with allowed_border = 0) for an image of (width, height), *input* frame.

    Its base anchor is the 16 x 16 cell [0, 0, 15, 15] (centre 7.5, 7.5), widths and heights are
    rounded per ratio and then scaled, corners are inclusive pixel indices, and an anchor is kept
    when x1 >= 0, y1 >= 0, x2 < W, y2 < H. The grid is conv5's: ceil(size / 16) cells (Caffe's
    ceil-mode pooling). Only for comparing counts; this project's anchors are torchvision's.
    """
    width, height = image_size
    cx = cy = (stride - 1) / 2
    base_area = float(stride * stride)
    shapes = []
    for r in ratios:  # py-faster-rcnn's _ratio_enum then _scale_enum
        ws = np.round(np.sqrt(base_area / r))
        hs = np.round(ws * r)
        for s in scales:
            shapes.append((ws * s, hs * s))
    wh = np.array(shapes)
    base = np.stack([cx - 0.5 * (wh[:, 0] - 1), cy - 0.5 * (wh[:, 1] - 1),
                     cx + 0.5 * (wh[:, 0] - 1), cy + 0.5 * (wh[:, 1] - 1)], axis=1)
    gw, gh = math.ceil(width / stride), math.ceil(height / stride)
    sx, sy = np.meshgrid(np.arange(gw) * stride, np.arange(gh) * stride)
    shifts = np.stack([sx.ravel(), sy.ravel(), sx.ravel(), sy.ravel()], axis=1)
    boxes = (shifts[:, None, :] + base[None, :, :]).reshape(-1, 4)
    inside = (boxes[:, 0] >= 0) & (boxes[:, 1] >= 0) & (boxes[:, 2] < width) & (boxes[:, 3] < height)
    return PaperCounts(20_000, 6_000, int(len(boxes)), int(inside.sum()))
