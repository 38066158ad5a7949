"""One drawing path for every overlay: an image figure and boxes drawn on it by style.

Ground truth, anchors, proposals and detections all go through `add_boxes`, so they always look
alike across pages. Coordinates are the original image's pixels (pixel edges: the image spans
x in [0, W], y in [0, H], y pointing down), whatever size the image is sent to the browser at.
"""

from __future__ import annotations

import base64
import io
import zlib
from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image

PALETTE = (
    "#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
    "#fabed4", "#469990", "#dcbeff", "#9a6324", "#fffac8", "#800000", "#aaffc3", "#808000",
)

# Line style per kind of box. color None means one colour per class label.
STYLES: dict[str, dict] = {
    "ground_truth": dict(color="#00e676", width=2.5, dash="dash", name="ground truth"),
    "prediction": dict(color=None, width=2.0, dash="solid", name="detection"),
    "anchor": dict(color="#ffab00", width=1.5, dash="solid", name="anchor"),
    "proposal": dict(color="#2979ff", width=1.2, dash="solid", name="proposal (after NMS)"),
    "pre_nms": dict(color="#b0bec5", width=0.7, dash="solid", name="proposal (before NMS)"),
    "positive": dict(color="#00c853", width=1.5, dash="solid", name="positive anchor"),
    "negative": dict(color="#ff1744", width=0.6, dash="solid", name="negative anchor"),
    "ignored": dict(color="#9e9e9e", width=0.8, dash="dot", name="ignored anchor"),
    "highlight": dict(color="#ff00ff", width=3.0, dash="solid", name="selected"),
    "suppressed": dict(color="#ff6d00", width=1.2, dash="dash", name="suppressed by NMS"),
}


def class_color(label: str) -> str:
    """A stable colour per class name, the same in every figure."""
    return PALETTE[zlib.crc32(label.encode("utf-8")) % len(PALETTE)]


def image_data_uri(image: Image.Image, max_side: int = 960, quality: int = 85) -> tuple[str, int, int]:
    """JPEG data URI of `image` downsampled so its longer side is at most `max_side`.

    Returns (uri, sent_width, sent_height). The browser gets a small message; figures keep the
    original pixel frame by scaling the image, never the boxes.
    """
    img = image.convert("RGB")
    scale = min(1.0, max_side / max(img.size))
    if scale < 1.0:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii"), img.width, img.height


def image_figure(image: Image.Image, max_side: int = 960, title: str | None = None, height: int | None = None) -> go.Figure:
    """A figure showing `image` in its original pixel frame (x right, y down, 1:1 aspect)."""
    width, img_height = image.size
    uri, sent_w, sent_h = image_data_uri(image, max_side)
    dx, dy = width / sent_w, img_height / sent_h
    # one constructor call with the whole layout: about 5x faster than update_xaxes / update_yaxes /
    # update_layout on a built figure (plotly re-validates on each), same figure JSON
    layout = dict(
        title=title,
        margin=dict(l=10, r=10, t=40 if title else 10, b=10),
        height=height or int(min(720, max(320, 640 * img_height / max(width, 1)))),
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="left", x=0),
        dragmode="pan",
        xaxis=dict(range=[0, width], showgrid=False, zeroline=False, title_text="x (pixels)", constrain="domain"),
        yaxis=dict(range=[img_height, 0], showgrid=False, zeroline=False, title_text="y (pixels)",
                   scaleanchor="x", scaleratio=1, constrain="domain"),
    )
    return go.Figure(go.Image(source=uri, x0=dx / 2, y0=dy / 2, dx=dx, dy=dy, hoverinfo="skip", name="image"),
                     layout=layout)


def _outline(boxes: np.ndarray) -> tuple[list, list]:
    """x and y of closed rectangles separated by None (one scatter trace for many boxes)."""
    xs: list = []
    ys: list = []
    for x1, y1, x2, y2 in boxes.tolist():
        xs += [x1, x2, x2, x1, x1, None]
        ys += [y1, y1, y2, y2, y1, None]
    return xs, ys


LABEL_PX = 16  # screen pixels a box caption needs above its box


def _label_room(fig: go.Figure) -> float:
    """How many image pixels below the top edge a caption needs to be drawn above its box: the
    caption's screen height in the figure's y units (0 when the figure has no image frame)."""
    y_range = fig.layout.yaxis.range
    if not y_range or y_range[0] is None or y_range[1] is None:
        return 0.0
    top = min(y_range)
    span = abs(y_range[0] - y_range[1])
    margin = fig.layout.margin
    plot_px = (fig.layout.height or 450) - (margin.t or 0) - (margin.b or 0)
    return top + max(LABEL_PX * span / max(plot_px, 1), 0.04 * span)


def add_boxes(
    fig: go.Figure,
    boxes: Sequence[Sequence[float]] | np.ndarray,
    style: str = "prediction",
    labels: Sequence[str] | None = None,
    scores: Sequence[float] | None = None,
    hover: Sequence[str] | None = None,
    name: str | None = None,
    color: str | None = None,
    show_labels: bool = True,
    opacity: float = 1.0,
) -> go.Figure:
    """Draw [x1, y1, x2, y2] boxes (original-image pixels) on `fig` in one of STYLES.

    labels/scores/hover are per box; hover text appears on the box corners. With style
    "prediction" (no colour given) each class gets its own trace and colour; otherwise one trace.
    Captions "label score" are written above each box's top-left corner when show_labels, or just
    inside the box when it touches the image's top edge (there is no room above it).
    """
    if style not in STYLES:
        raise ValueError(f"unknown box style {style!r}; one of {', '.join(STYLES)}")
    arr = np.asarray(boxes, dtype=float).reshape(-1, 4)
    if len(arr) == 0:
        return fig
    spec = STYLES[style]
    n = len(arr)
    labels = list(labels) if labels is not None else [None] * n
    scores = list(scores) if scores is not None else [None] * n
    captions = [
        " ".join(p for p in ((lab or ""), (f"{s:.2f}" if s is not None else "")) if p) for lab, s in zip(labels, scores)
    ]
    hovers = list(hover) if hover is not None else [
        (c + "<br>" if c else "") + f"[{b[0]:.0f}, {b[1]:.0f}, {b[2]:.0f}, {b[3]:.0f}] {b[2]-b[0]:.0f}x{b[3]-b[1]:.0f}"
        for c, b in zip(captions, arr)
    ]
    # group boxes into traces: per class for uncoloured predictions, else one group
    if color is None and spec["color"] is None:
        groups: dict[str, list[int]] = {}
        for i, lab in enumerate(labels):
            groups.setdefault(lab or "object", []).append(i)
        traces = [(lab, idx, class_color(lab)) for lab, idx in groups.items()]
    else:
        traces = [(name or spec["name"], list(range(n)), color or spec["color"])]
    for trace_name, idx, trace_color in traces:
        sub = arr[idx]
        xs, ys = _outline(sub)
        text = []
        for i in idx:
            text += [hovers[i]] * 5 + [None]
        fig.add_trace(
            go.Scatter(
                x=xs, y=ys, mode="lines", name=trace_name if style != "prediction" or name is None else name,
                line=dict(color=trace_color, width=spec["width"], dash=spec["dash"]),
                text=text, hoverinfo="text", opacity=opacity, legendgroup=f"{style}:{trace_name}",
            )
        )
        if show_labels and any(captions[i] for i in idx):
            # above the box's top-left corner, or just inside it when the box touches the image's top
            room = _label_room(fig)
            fig.add_trace(
                go.Scatter(
                    x=sub[:, 0], y=sub[:, 1], mode="text", text=[captions[i] for i in idx],
                    textposition=["bottom right" if y1 < room else "top right" for y1 in sub[:, 1].tolist()],
                    textfont=dict(color=trace_color, size=11),
                    hoverinfo="skip", showlegend=False, legendgroup=f"{style}:{trace_name}",
                )
            )
    return fig


def draw_boxes_on_image(
    image: Image.Image,
    boxes: Sequence[Sequence[float]] | np.ndarray,
    labels: Sequence[str] | None = None,
    scores: Sequence[float] | None = None,
    style: str = "prediction",
) -> Image.Image:
    """A PNG-ready copy of `image` with [x1, y1, x2, y2] boxes (original-image pixels) drawn in the
    same colours as `add_boxes` (for downloads).

    Takes any box the model can return: torchvision drops only boxes under 0.01 px
    (`remove_small_boxes`), so a box narrower than a pixel is drawn as a one-pixel-wide outline.
    """
    from PIL import ImageDraw

    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    spec = STYLES[style]
    arr = np.asarray(boxes, dtype=float).reshape(-1, 4)
    width = max(2, round(max(out.size) / 400))
    for i, (x1, y1, x2, y2) in enumerate(arr.tolist()):
        label = labels[i] if labels is not None else None
        colour = spec["color"] or class_color(label or "object")
        # x2, y2 are pixel edges, PIL's corners are pixels (inclusive): a box under a pixel wide
        # (x2 - 1 < x1) would make PIL raise "x1 must be greater than or equal to x0"
        draw.rectangle([x1, y1, max(x1, x2 - 1), max(y1, y2 - 1)], outline=colour, width=width)
        caption = " ".join(p for p in (label or "", f"{scores[i]:.2f}" if scores is not None else "") if p)
        if caption:
            tx, ty = x1, max(0.0, y1 - 12)
            bbox = draw.textbbox((tx, ty), caption)
            draw.rectangle(bbox, fill=colour)
            draw.text((tx, ty), caption, fill="white")
    return out
