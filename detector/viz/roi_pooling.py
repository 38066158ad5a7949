"""Figures of RoIPool beside RoIAlign for one RoI (detector.roi_pooling): the bins each uses, drawn on
the image around the RoI, and the two pooled features.

Feature coordinate f (cell centres at whole f, as RoIAlign samples them) is input pixel f / scale,
original pixel f / scale / s (s the frame's input pixels per original pixel); a cell spans
f -/+ 1/2. Image figures are in ORIGINAL pixels, boxes [x1, y1, x2, y2].
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from plotly.subplots import make_subplots

from detector.frames import ImageFrame
from detector.roi_pooling import PoolingComparison
from detector.viz.boxes import STYLES, add_boxes, image_figure

POOL_COLOR, ALIGN_COLOR, GRID_COLOR = "#ffab00", "#ff00ff", "rgba(255,255,255,0.45)"


def _to_original(values: np.ndarray, cmp: PoolingComparison, frame: ImageFrame, axis: int) -> np.ndarray:
    return np.asarray(values, dtype=float) / cmp.spatial_scale / frame.scale[axis]


def _zoomed(image: Image.Image, cmp: PoolingComparison, frame: ImageFrame, title: str) -> go.Figure:
    """The image around the RoI, two cells of margin, with the level's cell edges as a grid."""
    fig = image_figure(image, max_side=960, title=title, height=380)
    x1, y1, x2, y2 = cmp.roi_feature
    cols = np.arange(max(0, int(np.floor(x1)) - 2), min(cmp.grid[0], int(np.ceil(x2)) + 3) + 1) - 0.5
    rows = np.arange(max(0, int(np.floor(y1)) - 2), min(cmp.grid[1], int(np.ceil(y2)) + 3) + 1) - 0.5
    xs, ys = _to_original(cols, cmp, frame, 0), _to_original(rows, cmp, frame, 1)
    gx: list = []
    gy: list = []
    for x in xs:
        gx += [x, x, None]
        gy += [ys[0], ys[-1], None]
    for y in ys:
        gx += [xs[0], xs[-1], None]
        gy += [y, y, None]
    fig.add_trace(go.Scatter(x=gx, y=gy, mode="lines", line=dict(color=GRID_COLOR, width=1),
                             name=f"feature cells (level {cmp.level})", hoverinfo="skip"))
    fig.update_xaxes(range=[xs[0], xs[-1]])
    fig.update_yaxes(range=[ys[-1], ys[0]])
    return fig


def roi_pool_bins_figure(image: Image.Image, cmp: PoolingComparison, frame: ImageFrame) -> go.Figure:
    """RoIPool: the RoI rounded to whole cells and its S x S bins, each the cells it takes the max of."""
    fig = _zoomed(image, cmp, frame, "RoIPool: quantised bins")
    bins = cmp.pool_bins.reshape(-1, 4).astype(float)
    edges = np.stack([_to_original(bins[:, 0] - 0.5, cmp, frame, 0), _to_original(bins[:, 1] - 0.5, cmp, frame, 1),
                      _to_original(bins[:, 2] - 0.5, cmp, frame, 0), _to_original(bins[:, 3] - 0.5, cmp, frame, 1)], 1)
    add_boxes(fig, edges, style="pre_nms", color=POOL_COLOR, name="RoIPool bins (cells max-pooled)", show_labels=False)
    add_boxes(fig, [frame.to_original(cmp.roi_input).numpy()[0]], style="highlight", name="RoI (exact)",
              show_labels=False)
    return fig


def roi_align_points_figure(image: Image.Image, cmp: PoolingComparison, frame: ImageFrame) -> go.Figure:
    """RoIAlign: the exact RoI's S x S bins and the bilinear sampling points averaged in each."""
    fig = _zoomed(image, cmp, frame, "RoIAlign: sampling points")
    size = cmp.pool_bins.shape[0]
    x1, y1, x2, y2 = cmp.roi_feature
    bw, bh = max(x2 - x1, 1.0) / size, max(y2 - y1, 1.0) / size
    bins = np.array([[x1 + pw * bw, y1 + ph * bh, x1 + (pw + 1) * bw, y1 + (ph + 1) * bh]
                     for ph in range(size) for pw in range(size)])
    edges = np.stack([_to_original(bins[:, k], cmp, frame, k % 2) for k in range(4)], 1)
    add_boxes(fig, edges, style="pre_nms", color=ALIGN_COLOR, name="RoIAlign bins (exact)", show_labels=False)
    pts = cmp.align_points.reshape(-1, 2)
    fig.add_trace(go.Scatter(
        x=_to_original(pts[:, 0], cmp, frame, 0), y=_to_original(pts[:, 1], cmp, frame, 1), mode="markers",
        marker=dict(size=4, color=STYLES["proposal"]["color"]), name="sampling points (bilinear)",
        hovertemplate="x %{x:.1f}, y %{y:.1f}<extra>sampling point</extra>"))
    return fig


def pooled_pair_figure(cmp: PoolingComparison) -> go.Figure:
    """The two S x S pooled features (channel mean) side by side, each on its own colour scale (a
    maximum runs higher than a mean of bilinear samples)."""
    maps = [("roi_pool (max)", cmp.pooled_pool.mean(0).numpy()), ("roi_align (bilinear mean)",
                                                                   cmp.pooled_align.mean(0).numpy())]
    fig = make_subplots(rows=1, cols=2, subplot_titles=[m[0] for m in maps], horizontal_spacing=0.18)
    for i, (name, m) in enumerate(maps, start=1):
        fig.add_trace(go.Heatmap(z=m, colorscale="Viridis", name=name,
                                 colorbar=dict(title=dict(text="channel<br>mean"), thickness=10,
                                               x=0.41 if i == 1 else 1.0),
                                 hovertemplate=f"{name}<br>bin (row %{{y}}, column %{{x}}): %{{z:.3f}}<extra></extra>"),
                      row=1, col=i)
        fig.update_yaxes(autorange="reversed", scaleanchor=f"x{i if i > 1 else ''}", title_text="bin row", row=1, col=i)
        fig.update_xaxes(title_text="bin column", row=1, col=i)
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=40, b=10))
    return fig
