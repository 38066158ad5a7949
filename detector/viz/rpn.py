"""Figures of the RPN inspector: objectness heatmaps, proposals, the anchor trace, recall, the
funnel, RoIAlign levels and pooled features.

Every image figure is in ORIGINAL-image pixels (as `image_figure`); callers map input-frame boxes
with `detector.frames.ImageFrame.to_original` first. Heatmaps and box sets are downsampled here so the browser
gets small messages.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from plotly.subplots import make_subplots

from detector.frames import CellPlacement, cell_placement, max_pool_cells, pool_factor, visible_cells
from detector.viz.boxes import STYLES, add_boxes, class_color, image_data_uri, image_figure

MAX_SIDE = 640  # longest side of the image sent with each figure
MAX_HEAT_CELLS = 96  # longest side of a heatmap sent to the browser (max-pooled beyond it)
# Inferno's colours with a transparent low end: where objectness is low the image shows through.
OBJECTNESS_SCALE = [
    [0.0, "rgba(0,0,4,0)"], [0.1, "rgba(40,11,84,0.25)"], [0.3, "rgba(101,21,110,0.7)"],
    [0.5, "rgb(159,42,99)"], [0.7, "rgb(237,105,37)"], [0.85, "rgb(251,180,26)"], [1.0, "rgb(252,255,164)"],
]


def add_objectness(fig: go.Figure, heat: np.ndarray, placement: CellPlacement, opacity: float = 0.55,
                   colorscale: list | str | None = None, colorbar: dict | None = None) -> go.Figure:
    """sigmoid(objectness) cells (rows, columns) over an image figure, each at its cell centre, in the
    one objectness colour scale (0..1). Used by the RPN page and the training snapshots alike."""
    fig.add_trace(go.Heatmap(
        z=np.asarray(heat, dtype=float), x0=placement.x0, dx=placement.dx, y0=placement.y0, dy=placement.dy,
        zmin=0.0, zmax=1.0, colorscale=colorscale or OBJECTNESS_SCALE, opacity=opacity,
        colorbar=colorbar or dict(title=dict(text="objectness<br>(sigmoid)"), thickness=12),
        hovertemplate="x %{x:.0f}, y %{y:.0f}<br>objectness %{z:.3f}<extra></extra>", name="objectness",
    ))
    return fig


def objectness_figure(
    image: Image.Image,
    heat: np.ndarray,
    stride: tuple[int, int],
    scale: tuple[float, float],
    resized_size: tuple[int, int],
    opacity: float = 0.55,
    title: str | None = None,
    colorscale: list | str | None = None,
) -> go.Figure:
    """sigmoid(objectness) of one level, (rows, columns) cells, over the image in original pixels.

    Cell (c, r) is the anchor centre (c * stride_x, r * stride_y) of the input frame, as
    torchvision's AnchorGenerator places it; cells whose centre falls in the padding are dropped;
    `stride` and `scale` (input pixels per original pixel) are (x, y), `resized_size` (W, H).
    """
    heat = visible_cells(np.asarray(heat, dtype=float), stride, resized_size)
    factor = pool_factor(heat.shape, MAX_HEAT_CELLS)
    fig = image_figure(image, max_side=MAX_SIDE, title=title)
    return add_objectness(fig, max_pool_cells(heat, factor), cell_placement(stride, scale, factor), opacity, colorscale)


def proposals_figure(
    image: Image.Image,
    boxes: np.ndarray,
    scores: Sequence[float],
    style: str = "proposal",
    title: str | None = None,
    hover: Sequence[str] | None = None,
    clickable: bool = False,
    gt_boxes: np.ndarray | None = None,
    highlight: Sequence[float] | None = None,
) -> go.Figure:
    """Proposals (original pixels, in rank order) on the image, scores on hover.

    clickable: a marker at each box centre carrying its rank (customdata), so a click selects it.
    highlight: one box drawn over everything (a link's box=, e.g. a missed object).
    """
    boxes = np.round(np.asarray(boxes, dtype=float).reshape(-1, 4), 1)  # tenth of a pixel: small messages
    scores = [float(s) for s in scores]
    fig = image_figure(image, max_side=MAX_SIDE, title=title)
    if gt_boxes is not None and len(gt_boxes):
        add_boxes(fig, gt_boxes, style="ground_truth", show_labels=False)
    hover = list(hover) if hover is not None else [
        f"rank {i}, objectness {s:.3f}<br>[{b[0]:.0f}, {b[1]:.0f}, {b[2]:.0f}, {b[3]:.0f}]" if clickable
        else f"objectness {s:.2f}"
        for i, (b, s) in enumerate(zip(boxes, scores))
    ]
    add_boxes(fig, boxes, style=style, hover=hover, show_labels=False)
    _highlight(fig, highlight)
    if clickable and len(boxes):
        # only the centre markers answer the mouse, so a click always carries a rank
        fig.update_traces(hoverinfo="skip", selector=dict(mode="lines"))
        fig.add_trace(go.Scatter(
            x=(boxes[:, 0] + boxes[:, 2]) / 2, y=(boxes[:, 1] + boxes[:, 3]) / 2, mode="markers",
            marker=dict(size=7, color=STYLES[style]["color"], line=dict(width=1, color="white")),
            customdata=np.arange(len(boxes)), text=hover, hoverinfo="text",
            name="click a centre to trace it",
        ))
        fig.update_layout(clickmode="event+select")
    return fig


def trace_figure(
    image: Image.Image,
    anchor: np.ndarray,
    regressed: np.ndarray,
    proposal: np.ndarray,
    title: str | None = None,
    anchor_label: str = "anchor",
    proposal_label: str = "proposal",
) -> go.Figure:
    """One proposal traced back to its anchor: the anchor, the box it was regressed to, the clipped proposal.

    All three [x1, y1, x2, y2] in original pixels; an arrow joins the anchor's centre to the proposal's.
    """
    fig = image_figure(image, max_side=MAX_SIDE, title=title)
    anchor = np.asarray(anchor, dtype=float).reshape(4)
    regressed = np.asarray(regressed, dtype=float).reshape(4)
    proposal = np.asarray(proposal, dtype=float).reshape(4)
    if not np.allclose(regressed, proposal):
        add_boxes(fig, [regressed], style="pre_nms", name="regressed box (before clipping)", show_labels=False,
                  color="#90a4ae")
    add_boxes(fig, [proposal], style="highlight", labels=[proposal_label], name=proposal_label)
    # the anchor on top, so it stays visible where the regression barely moved it
    add_boxes(fig, [anchor], style="anchor", labels=[anchor_label], name="source anchor")
    ac = ((anchor[0] + anchor[2]) / 2, (anchor[1] + anchor[3]) / 2)
    pc = ((proposal[0] + proposal[2]) / 2, (proposal[1] + proposal[3]) / 2)
    fig.add_annotation(x=pc[0], y=pc[1], ax=ac[0], ay=ac[1], xref="x", yref="y", axref="x", ayref="y",
                       showarrow=True, arrowhead=3, arrowwidth=2, arrowcolor="#ff00ff", text="")
    # the view covers the image and both boxes, however far outside the anchor reaches
    x_lo = min(0.0, anchor[0], regressed[0]) - 4
    x_hi = max(image.width, anchor[2], regressed[2]) + 4
    y_lo = min(0.0, anchor[1], regressed[1]) - 4
    y_hi = max(image.height, anchor[3], regressed[3]) + 4
    fig.update_xaxes(range=[x_lo, x_hi])
    fig.update_yaxes(range=[y_hi, y_lo])
    return fig


def recall_figure(
    ks: Sequence[int], recalls: dict[float, Sequence[float]], title: str | None = None, marker_k: int | None = None
) -> go.Figure:
    """Proposal recall against the number of top proposals K, one line per IoU threshold.

    marker_k: a vertical line there (e.g. post_nms_top_n, the number of RoIs the heads get).
    """
    fig = go.Figure()
    for t, values in sorted(recalls.items()):
        fig.add_trace(go.Scatter(x=list(ks), y=list(values), mode="lines+markers", name=f"IoU >= {t:g}"))
    if marker_k:  # a data trace, not a shape: shapes on a log axis take log10 coordinates
        fig.add_trace(go.Scatter(x=[marker_k, marker_k], y=[0, 1], mode="lines", line=dict(dash="dot", color="#888"),
                                 name=f"post_nms_top_n = {marker_k}", hoverinfo="name"))
    fig.update_xaxes(title_text="K (top proposals by objectness, after NMS)", type="log")
    fig.update_yaxes(title_text="recall (share of ground-truth boxes covered)", range=[0, 1.02])
    fig.update_layout(title=title, height=340, margin=dict(l=10, r=10, t=40 if title else 10, b=10))
    return fig


def funnel_figure(counts: dict[str, int], labels: dict[str, str] | None = None, title: str | None = None) -> go.Figure:
    """How many boxes survive each stage, anchors to detections (log scale)."""
    names = list(counts)
    values = [int(counts[n]) for n in names]
    text = [labels.get(n, n) if labels else n for n in names]
    fig = go.Figure(go.Bar(
        x=[max(v, 0.9) for v in values], y=text, orientation="h", text=[f"{v:,}" for v in values],
        textposition="auto", marker_color="#2979ff", hovertemplate="%{y}: %{text}<extra></extra>",
    ))
    fig.update_xaxes(title_text="boxes (log scale)", type="log")
    fig.update_yaxes(title_text="stage", autorange="reversed")
    fig.update_layout(title=title, height=60 + 32 * len(names), margin=dict(l=10, r=10, t=40 if title else 10, b=10))
    return fig


def level_counts_figure(counts: dict[str, int], title: str | None = None, what: str = "RoIs") -> go.Figure:
    """A bar per FPN level: how many `what` it holds."""
    fig = go.Figure(go.Bar(x=[f"level {k}" for k in counts], y=list(counts.values()), text=list(counts.values()),
                           textposition="auto", marker_color="#ffab00"))
    fig.update_xaxes(title_text="FPN level (RoIAlign's choice, FPN eq. 1)")
    fig.update_yaxes(title_text=what)
    fig.update_layout(title=title, height=300, margin=dict(l=10, r=10, t=40 if title else 10, b=10))
    return fig


def pooled_features_figure(
    crop: Image.Image, pooled: np.ndarray, channels: Sequence[int] = (), title: str | None = None
) -> go.Figure:
    """The image crop of one RoI beside its RoIAlign output (C, S, S): the channel mean and chosen channels."""
    pooled = np.asarray(pooled, dtype=float)
    maps = [("channel mean", pooled.mean(axis=0))] + [(f"channel {c}", pooled[c]) for c in channels]
    fig = make_subplots(rows=1, cols=1 + len(maps), subplot_titles=["image crop"] + [m[0] for m in maps],
                        horizontal_spacing=0.07)
    uri, _, _ = image_data_uri(crop, max_side=160)  # a JPEG, not a pixel array: a small message
    fig.add_trace(go.Image(source=uri, hoverinfo="skip"), row=1, col=1)
    s = pooled.shape[-1]
    for i, (name, m) in enumerate(maps, start=2):
        fig.add_trace(go.Heatmap(z=m, colorscale="Viridis", showscale=i == 2, name=name,
                                 colorbar=dict(thickness=10, x=1.0),
                                 hovertemplate=f"{name}<br>bin (%{{y}}, %{{x}}): %{{z:.3f}}<extra></extra>"),
                      row=1, col=i)
        fig.update_yaxes(autorange="reversed", scaleanchor=f"x{i}", row=1, col=i)
        fig.update_xaxes(title_text=f"bin column (rows down), {s}x{s}", row=1, col=i)
    fig.update_xaxes(showticklabels=False, row=1, col=1)
    fig.update_yaxes(showticklabels=False, scaleanchor="x", row=1, col=1)
    fig.update_layout(title=title, height=280, margin=dict(l=10, r=10, t=60, b=10))
    return fig


def detections_figure(
    image: Image.Image,
    boxes: np.ndarray,
    labels: Sequence[str],
    scores: Sequence[float],
    gt_boxes: np.ndarray | None = None,
    title: str | None = None,
    max_side: int = MAX_SIDE,
    height: int | None = None,
    highlight: Sequence[float] | None = None,
    clickable: bool = False,
) -> go.Figure:
    """Final detections (original pixels) with class and score, ground truth dashed when known;
    `highlight` one box drawn over them (a link's box=). clickable: a marker at each box centre
    carrying the detection's index (customdata), so a click selects it."""
    fig = image_figure(image, max_side=max_side, title=title, height=height)
    if gt_boxes is not None and len(gt_boxes):
        add_boxes(fig, gt_boxes, style="ground_truth", show_labels=False)
    add_boxes(fig, boxes, style="prediction", labels=list(labels), scores=[float(s) for s in scores])
    _highlight(fig, highlight)
    boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
    if clickable and len(boxes):
        fig.add_trace(go.Scatter(
            x=(boxes[:, 0] + boxes[:, 2]) / 2, y=(boxes[:, 1] + boxes[:, 3]) / 2, mode="markers",
            marker=dict(size=9, color=[class_color(n) for n in labels], line=dict(width=1, color="white")),
            customdata=np.arange(len(boxes)), hoverinfo="text", name="click a centre to explain it",
            text=[f"detection {k}: {n} {float(s):.3f}" for k, (n, s) in enumerate(zip(labels, scores))],
        ))
        fig.update_layout(clickmode="event+select")
    return fig


def _highlight(fig: go.Figure, box: Sequence[float] | None) -> go.Figure:
    if box is not None:
        add_boxes(fig, np.asarray([box], dtype=float), style="highlight", name="box from the link", show_labels=False,
                  hover=["the box this link points at"])
    return fig
