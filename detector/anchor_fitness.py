"""Anchor fitness: how well an anchor set covers a dataset's boxes, and fitted what-ifs.

Best anchor IoU of every ground-truth box after the model's resize, recall at 0.3 / 0.5 / 0.7,
breakdowns by COCO size and aspect ratio, k-means sizes and ratios, and the recall of another
anchor set on the same boxes. Grids come from `detector.anchor_grids`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from detector.anchor_grids import AnchorGrid, AnchorSource, anchor_grid
from detector.data.records import COCO_MEDIUM, COCO_SMALL  # COCO's size buckets, original-frame area


RECALL_THRESHOLDS = (0.3, 0.5, 0.7)
# Aspect-ratio buckets (height / width) for the fitness breakdown.
RATIO_BUCKETS: tuple[tuple[str, float, float], ...] = (
    ("wide (h/w < 1/3)", 0.0, 1 / 3),
    ("landscape (1/3..2/3)", 1 / 3, 2 / 3),
    ("square-ish (2/3..3/2)", 2 / 3, 3 / 2),
    ("portrait (3/2..3)", 3 / 2, 3.0),
    ("tall (h/w >= 3)", 3.0, math.inf),
)


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
        """The JSON of `python -m detector anchors --dataset`."""
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
        inp = grid.frame.to_input(boxes)
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
