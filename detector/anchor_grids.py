"""Anchor grids: the anchors a Faster R-CNN lays over its input, and their counts.

Built from torchvision's own pieces: the model's `GeneralizedRCNNTransform` resize and padding
rule, its backbone's feature-map shapes (run on the meta device: shapes only) and
`AnchorGenerator` for the boxes themselves. Matching to ground truth is `detector.anchor_matching`,
fitness to a dataset `detector.anchor_fitness`; frames and cell arithmetic are `detector.frames`.

Anchors live in the *input* frame (resized, padded); sizes are (width, height), grids
(columns, rows), strides (x, y), as `detector.frames` says.

Anchor order (torchvision 0.29): flat index over (level, y, x, a) with
`a = ratio_index * len(sizes) + size_index`; the anchors of cell (y, x) are centred at
`(x * stride_x, y * stride_y)`, with stride = padded_size // grid.
"""

from __future__ import annotations

import copy
import math
import weakref
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList

from detector import frames
from detector.frames import ImageFrame
from detector.wording import counted


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
            raise ValueError(f"{counted(len(sizes_t), 'level')} of sizes given; this source has {counted(self.num_levels, 'level')}")
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
        raise ValueError(f"{counted(len(sizes_t), 'level')} of sizes but {counted(len(ratios_t), 'level')} of ratios")
    return sizes_t, ratios_t


def parse_numbers(text: str, what: str = "values", kind: type = float) -> list:
    """'0.5,1,2' -> [0.5, 1.0, 2.0]: comma-separated numbers (the anchors command's `--ratios`, `--strides`).

    ValueError naming `what` for text that is not numbers or holds none.
    """
    try:
        values = [kind(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{what}: expected comma-separated numbers, got {text!r}") from None
    if not values:
        raise ValueError(f"{what}: no values in {text!r}")
    return values


def parse_sizes(text: str, what: str = "sizes") -> list[list[int]]:
    """Anchor sizes as the anchors command's `--sizes` writes them: '/' between levels, ',' within one
    ('32/64/128/256/512', or '128,256,512' for one level). The one parser: CLI and page alike."""
    return [parse_numbers(level, what, int) for level in str(text).split("/")]


def sizes_text(sizes: Sequence[Sequence[int]]) -> str:
    """The inverse of parse_sizes, spaced for reading: '32 / 64 / 128'."""
    return " / ".join(",".join(map(str, level)) for level in sizes)


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
    then padded to a multiple of the largest stride, as `anchors --strides` does.
    """
    strides_t = tuple(int(s) for s in strides)
    if not strides_t or any(s <= 0 for s in strides_t):
        raise ValueError("strides must be positive integers, one per level")
    sizes_l = [list(level) for level in sizes]
    if len(sizes_l) == 1 and len(strides_t) > 1:
        sizes_l = sizes_l * len(strides_t)
    sizes_t, ratios_t = _normalise_anchor_set(sizes_l, ratios)
    if len(sizes_t) != len(strides_t):
        raise ValueError(f"{counted(len(sizes_t), 'level')} of sizes but {counted(len(strides_t), 'stride')}")
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
    def frame(self) -> ImageFrame:
        """The image's original, resized and padded sizes: maps boxes between the frames."""
        return ImageFrame(self.image_size, self.resized_size, self.padded_size)

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
        """The JSON of `python -m detector anchors`: sizes are [width, height]."""
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
    """(columns, rows) of each level's feature map for a padded input of (width, height).

    A model's grids come from running a copy of its backbone on the meta device (shapes only, no
    arithmetic, about 40 ms); a custom set's are padded_size // stride.
    """
    pw, ph = padded_size
    if source.strides is not None:
        return tuple((pw // s, ph // s) for s in source.strides)
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
    grids = tuple(zip(cache[("x", pw)], cache[("y", ph)]))
    if len(grids) != source.num_levels:
        raise ValueError(
            f"{source.name}: the backbone gives {counted(len(grids), 'feature map')} but the anchor set has "
            f"{counted(source.num_levels, 'level')} of sizes"
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
        feature_maps = [torch.empty(1, 0, gh, gw) for gw, gh in grids]
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
    for i, ((gw, gh), sizes, ratios) in enumerate(zip(grids, source.sizes, source.ratios)):
        a = len(sizes) * len(ratios)
        count = gh * gw * a
        base = tuple(tuple(b) for b in generator.cell_anchors[i].to(torch.float32).cpu().tolist())
        shapes = tuple((b[2] - b[0], b[3] - b[1]) for b in base)
        stride = frames.level_stride(padded, (gw, gh))
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
    sx, sy = lv.stride
    n_cols, n_rows = frames.visible_grid(lv.grid, lv.stride, grid.resized_size)
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
    return AnchorsAt(li, row, col, frames.cell_centre(col, row, lv.stride), idx, boxes, labels)


def nearest_cell(grid: AnchorGrid, level: int | str, x: float, y: float) -> tuple[int, int]:
    """(column, row) of the cell whose anchor centre is nearest to (x, y) in the *input* frame, in
    `frames.nearest_cell`'s order."""
    lv = grid.levels[grid.level_index(level)]
    return frames.nearest_cell(x, y, lv.grid, lv.stride)


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
