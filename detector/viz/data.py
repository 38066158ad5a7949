"""Dataset figures: class balance, box sizes and shapes, COCO size buckets, an image with its boxes.

Box sizes are in original-image pixels; the model's transform rescales images (min_size), so the
anchors see boxes scaled by the same factor.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image

from detector.data.records import class_name
from detector.data.stats import DatasetStatistics
from detector.viz.boxes import add_boxes, class_color, image_figure

_MAX_POINTS = 20_000  # scatter points sent to the browser; more are subsampled (seeded)


def _layout(fig: go.Figure, title: str, x: str, y: str, height: int = 320) -> go.Figure:
    fig.update_layout(title=title, height=height, margin=dict(l=10, r=10, t=40, b=10))
    fig.update_xaxes(title_text=x)
    fig.update_yaxes(title_text=y)
    return fig


def class_balance_figure(stats: DatasetStatistics) -> go.Figure:
    """Boxes and images per class (bars)."""
    names = list(stats.class_names)
    fig = go.Figure([
        go.Bar(x=names, y=list(stats.boxes_per_class), name="boxes",
               marker_color=[class_color(n) for n in names]),
        go.Bar(x=names, y=list(stats.images_per_class), name="images containing it", marker_color="#90a4ae"),
    ])
    fig.update_layout(barmode="group")
    return _layout(fig, "Boxes per class", "class", "count")


def _sample(n: int) -> np.ndarray:
    if n <= _MAX_POINTS:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, _MAX_POINTS, replace=False))


def box_size_figure(stats: DatasetStatistics, anchor_sizes: Sequence[float] | None = None) -> go.Figure:
    """Box width vs height (log-log, one colour per class), with optional square anchor sizes."""
    idx = _sample(stats.boxes)
    fig = go.Figure()
    for k, name in enumerate(stats.class_names, start=1):
        sel = idx[stats.labels[idx] == k]
        if len(sel):
            fig.add_trace(go.Scattergl(
                x=stats.widths[sel], y=stats.heights[sel], mode="markers", name=name,
                marker=dict(size=5, color=class_color(name), opacity=0.6),
                hovertemplate="%{x:.0f} x %{y:.0f} px<extra>" + name + "</extra>",
            ))
    for s in anchor_sizes or ():
        fig.add_trace(go.Scatter(x=[s], y=[s], mode="markers", marker=dict(symbol="x", size=10, color="black"),
                                 name=f"anchor {s:g}", showlegend=False))
    fig.update_xaxes(type="log")
    fig.update_yaxes(type="log")
    return _layout(fig, "Box width vs height", "box width (pixels, log)", "box height (pixels, log)", height=380)


def aspect_ratio_figure(stats: DatasetStatistics) -> go.Figure:
    """Histogram of log2(height / width): 0 is square, -1 wide (1:2), +1 tall (2:1)."""
    ratios = stats.aspect_ratios
    ratios = ratios[np.isfinite(ratios) & (ratios > 0)]
    fig = go.Figure(go.Histogram(x=np.log2(ratios), nbinsx=40, marker_color="#4363d8", name="boxes"))
    for r, label in ((0.5, "0.5"), (1.0, "1"), (2.0, "2")):
        fig.add_vline(x=np.log2(r), line_dash="dot", line_color="#888", annotation_text=f"ratio {label}")
    return _layout(fig, "Box aspect ratio (height / width)", "log2(height / width)", "boxes")


def size_bucket_figure(stats: DatasetStatistics) -> go.Figure:
    """COCO small (< 32x32), medium (< 96x96), large boxes (by area in original pixels)."""
    keys = ["small", "medium", "large"]
    fig = go.Figure(go.Bar(x=["small (< 32²)", "medium (32²–96²)", "large (≥ 96²)"],
                           y=[stats.size_buckets[k] for k in keys], marker_color=["#f58231", "#3cb44b", "#4363d8"]))
    return _layout(fig, "COCO size buckets", "box area", "boxes")


def record_figure(image: Image.Image, boxes: Sequence[Sequence[float]], labels: Sequence[int],
                  class_names: Sequence[str], title: str | None = None, max_side: int = 640,
                  original_size: tuple[int, int] | None = None) -> go.Figure:
    """An image with its ground-truth boxes, in original-image pixels.

    `image` may be a downsampled thumbnail of an image whose size is `original_size` (width, height):
    the picture is stretched over the original frame, so boxes and axes stay in original pixels.
    """
    fig = image_figure(image, max_side=max_side, title=title)
    if original_size and tuple(original_size) != image.size:
        width, height = original_size
        trace = fig.data[0]
        sx, sy = width / image.width, height / image.height
        fig.update_traces(selector=dict(type="image"), x0=trace.x0 * sx, y0=trace.y0 * sy, dx=trace.dx * sx, dy=trace.dy * sy)
        fig.update_xaxes(range=[0, width])
        fig.update_yaxes(range=[height, 0])
    width, height = original_size or image.size
    fig.update_layout(height=int(min(480, max(240, 40 + 380 * height / max(width, 1)))), showlegend=False)
    names = [class_name(class_names, int(l)) for l in labels]
    add_boxes(fig, boxes, style="ground_truth", labels=names)
    return fig
