"""Figures of the training page: loss and learning-rate curves, validation per epoch, run
comparison, the RPN snapshots over epochs, and the hardest validation images.

Curves take the rows of metrics.jsonl as `runs.MetricsTail` keeps them (one per step / epoch).
Every figure carries a `uirevision`, so a user's zoom and legend choices survive when the page
redraws it with new points. Long runs are thinned to at most MAX_POINTS per trace (smoothing is
computed on every step first). Snapshot and hard-example figures are in ORIGINAL image pixels.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from plotly.subplots import make_subplots

from detector.data.records import class_name
from detector.frames import cells_on_boxes
from detector.viz.boxes import PALETTE, add_boxes, image_figure
from detector.viz.rpn import add_objectness

MAX_POINTS = 1500  # per trace sent to the browser
IMAGE_SIDE = 480  # longest side of snapshot images sent to the browser

# The four losses of Faster R-CNN, in the paper's terms (torchvision's keys).
LOSSES: dict[str, str] = {
    "loss_objectness": "RPN objectness (object vs background, log loss)",
    "loss_rpn_box_reg": "RPN box regression (anchor to box, smooth L1)",
    "loss_classifier": "Detector classification (K+1 softmax)",
    "loss_box_reg": "Detector box regression (proposal to box, smooth L1)",
}
LOSS_COLORS = {"loss": "#263238", "loss_objectness": "#1e88e5", "loss_rpn_box_reg": "#00897b",
               "loss_classifier": "#e53935", "loss_box_reg": "#fb8c00", "lr": "#6d4c41"}
# What the comparison chart can plot: key -> (label, kind) with kind "train" (per step) or "val" (per epoch).
COMPARABLE: dict[str, tuple[str, str]] = {
    "loss": ("total training loss", "train"),
    **{k: (v, "train") for k, v in LOSSES.items()},
    "lr": ("learning rate", "train"),
    "val_loss": ("total validation loss", "val"),
    "mAP": ("validation mAP@[.5:.95]", "val"),
    "mAP50": ("validation mAP@.5", "val"),
}


# ---------------------------------------------------------------- series helpers


def ema(values: Sequence[float | None], weight: float) -> np.ndarray:
    """TensorBoard's debiased exponential moving average; missing values are skipped (kept NaN).

    weight 0 returns the values as they are; 0.9 averages over roughly the last 10 steps.
    """
    y = np.asarray([np.nan if v is None else float(v) for v in values], dtype=float)
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight must be in [0, 1), not {weight}")
    out = np.full_like(y, np.nan)
    acc, norm = 0.0, 0.0
    for i, v in enumerate(y):
        if not math.isfinite(v):
            continue
        acc = weight * acc + (1 - weight) * v
        norm = weight * norm + (1 - weight)
        out[i] = acc / norm
    return out


def _column(rows: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    return np.asarray([float(r[key]) if isinstance(r.get(key), (int, float)) else np.nan for r in rows], dtype=float)


def _thin(x: np.ndarray, *ys: np.ndarray, max_points: int = MAX_POINTS) -> tuple[np.ndarray, ...]:
    """Every k-th point (always the last one), so a trace sends at most `max_points`."""
    n = len(x)
    if n <= max_points:
        return (x, *ys)
    idx = np.unique(np.r_[np.arange(0, n, math.ceil(n / max_points)), n - 1])
    return (x[idx], *(y[idx] for y in ys))


def _base_layout(fig: go.Figure, uirevision: str, height: int, title: str | None = None) -> go.Figure:
    fig.update_layout(
        uirevision=uirevision, height=height, title=title, hovermode="x unified",
        margin=dict(l=10, r=10, t=60 if title else 30, b=10),
        legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="left", x=0),
    )
    return fig


# ---------------------------------------------------------------- live curves


def loss_figure(train: Sequence[Mapping[str, Any]], smoothing: float = 0.6, uirevision: str = "losses",
                log_y: bool = False, step_range: tuple[float, float] | None = None) -> go.Figure:
    """Total loss, the four losses and the learning rate against the global step.

    Raw values are drawn faint, the smoothed curve (`ema` with `smoothing`) solid on top.
    `step_range` (first, last step) zooms every panel to those steps, each y axis fitted to the
    values inside the window.
    """
    panels = [("loss", "total loss (sum of the four)")] + list(LOSSES.items()) + [("lr", "learning rate")]
    fig = make_subplots(rows=2, cols=3, subplot_titles=[t for _, t in panels], horizontal_spacing=0.06,
                        vertical_spacing=0.16)
    steps = _column(train, "step")
    for i, (key, label) in enumerate(panels):
        row, col = divmod(i, 3)
        raw = _column(train, key)
        color = LOSS_COLORS[key]
        if key == "lr":
            x, y = _thin(steps, raw)
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name="learning rate", line=dict(color=color, width=2),
                                     showlegend=False, hovertemplate="%{y:.3g}"), row=row + 1, col=col + 1)
        else:
            smooth = ema(raw, smoothing) if smoothing > 0 else raw
            x, y, s = _thin(steps, raw, smooth)
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name="raw", legendgroup="raw", showlegend=i == 0,
                                     line=dict(color=color, width=1), opacity=0.3, hovertemplate="%{y:.4f}"),
                          row=row + 1, col=col + 1)
            fig.add_trace(go.Scatter(x=x, y=s, mode="lines", name=f"smoothed ({smoothing:g})", legendgroup="smooth",
                                     showlegend=i == 0, line=dict(color=color, width=2.2), hovertemplate="%{y:.4f}"),
                          row=row + 1, col=col + 1)
        fig.update_xaxes(title_text="step" if row == 1 else None, row=row + 1, col=col + 1,
                         range=list(step_range) if step_range else None)
        y_range = _window_range(steps, raw, step_range, log_y and key != "lr") if step_range else None
        fig.update_yaxes(type="log" if log_y and key != "lr" else None, range=y_range, row=row + 1, col=col + 1)
    fig.update_yaxes(title_text="loss", row=1, col=1)
    fig.update_yaxes(title_text="loss", row=2, col=1)
    fig.update_annotations(font_size=12)
    _base_layout(fig, uirevision, height=540)
    fig.update_layout(legend=dict(orientation="h", yanchor="bottom", y=1.06, xanchor="right", x=1),
                      margin=dict(l=10, r=10, t=50, b=10))
    return fig


def _window_range(x: np.ndarray, y: np.ndarray, window: tuple[float, float], log: bool) -> list[float] | None:
    """A y range fitting the finite values whose x lies in `window` (5 % margin; log10 for log axes)."""
    lo, hi = min(window), max(window)
    inside = y[(x >= lo) & (x <= hi) & np.isfinite(y)]
    if log:
        inside = np.log10(inside[inside > 0])
    if inside.size == 0:
        return None
    a, b = float(inside.min()), float(inside.max())
    pad = (b - a) * 0.05 or abs(a) * 0.05 or 0.05
    return [a - pad, b + pad]


def validation_figure(val: Sequence[Mapping[str, Any]], train: Sequence[Mapping[str, Any]] = (),
                      uirevision: str = "validation") -> go.Figure:
    """Per epoch: the four validation losses and their total beside the mean training loss (left),
    COCO mAP@[.5:.95], mAP@.5 and mAP@.75 on the validation split (right)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=["validation losses per epoch", "validation mAP per epoch"],
                        horizontal_spacing=0.08)
    epochs = _column(val, "epoch")
    total = _column(val, "val_loss")
    fig.add_trace(go.Scatter(x=epochs, y=total, mode="lines+markers", name="validation total",
                             line=dict(color=LOSS_COLORS["loss"], width=2.5)), row=1, col=1)
    for key in LOSSES:
        fig.add_trace(go.Scatter(x=epochs, y=_column(val, f"val_{key}"), mode="lines+markers",
                                 name=f"val {key.removeprefix('loss_')}", line=dict(color=LOSS_COLORS[key], width=1.5)),
                      row=1, col=1)
    if train:
        by_epoch: dict[int, list[float]] = {}
        for r in train:
            if isinstance(r.get("loss"), (int, float)):
                by_epoch.setdefault(int(r["epoch"]), []).append(float(r["loss"]))
        xs = sorted(by_epoch)
        fig.add_trace(go.Scatter(x=xs, y=[float(np.mean(by_epoch[e])) for e in xs], mode="lines+markers",
                                 name="training total (epoch mean)",
                                 line=dict(color=LOSS_COLORS["loss"], width=1.5, dash="dot")), row=1, col=1)
    for key, dash, name in (("mAP", "solid", "mAP@[.5:.95]"), ("mAP50", "dash", "mAP@.5"), ("mAP75", "dot", "mAP@.75")):
        fig.add_trace(go.Scatter(x=epochs, y=_column(val, key), mode="lines+markers", name=name,
                                 line=dict(color="#7b1fa2", width=2, dash=dash)), row=1, col=2)
    fig.update_xaxes(title_text="epoch", dtick=1 if len(epochs) <= 20 else None)
    fig.update_yaxes(title_text="loss", row=1, col=1)
    fig.update_yaxes(title_text="AP", range=[0, 1], row=1, col=2)
    fig.update_annotations(font_size=12)
    _base_layout(fig, uirevision, height=400)
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.2, xanchor="left", x=0),
                      margin=dict(l=10, r=10, t=30, b=10))
    return fig


def comparison_figure(series: Mapping[str, Sequence[Mapping[str, Any]]], metric: str, smoothing: float = 0.6,
                      uirevision: str = "compare") -> go.Figure:
    """One curve per run (name -> its train rows for per-step metrics, its val rows for per-epoch
    ones) of `metric`, a key of COMPARABLE."""
    if metric not in COMPARABLE:
        raise ValueError(f"metric must be one of {', '.join(COMPARABLE)}, not {metric!r}")
    label, kind = COMPARABLE[metric]
    fig = go.Figure()
    for i, (name, rows) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        x = _column(rows, "step" if kind == "train" else "epoch")
        y = _column(rows, metric)
        if kind == "train" and metric != "lr" and smoothing > 0:
            y = ema(y, smoothing)
        x, y = _thin(x, y)
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines" if kind == "train" else "lines+markers", name=name,
                                 line=dict(color=color, width=2)))
    fig.update_xaxes(title_text="step" if kind == "train" else "epoch")
    fig.update_yaxes(title_text=label, type="log" if metric == "lr" else None)
    return _base_layout(fig, uirevision, height=420, title=f"{label} by run" + (
        f" (smoothed {smoothing:g})" if kind == "train" and metric != "lr" and smoothing > 0 else ""))


# ---------------------------------------------------------------- watching the RPN learn


SNAPSHOT_BAR_ROOM = 72  # screen pixels right of every snapshot panel's plot, where the objectness bar sits


def _canvas(image: Image.Image | None, width: int, height: int) -> Image.Image:
    if image is not None and image.size == (width, height):
        return image
    return Image.new("RGB", (max(1, width), max(1, height)), (90, 90, 90))


def _snapshot_panel(image: Image.Image | None, snap: Any, title: str | None) -> go.Figure:
    """The image frame of one snapshot panel. All three panels keep the same right margin, the
    objectness colour bar's room, so their images are drawn at one size side by side."""
    fig = image_figure(_canvas(image, snap.width, snap.height), max_side=IMAGE_SIDE, title=title, height=380)
    fig.layout.margin.r = SNAPSHOT_BAR_ROOM
    return fig


def snapshot_objectness_figure(image: Image.Image | None, snap: Any, level: int, title: str | None = None,
                               opacity: float = 0.6) -> go.Figure:
    """One FPN level's objectness (sigmoid, best anchor shape per cell) over the image, ground truth
    dashed. `snap` is a runs.SnapshotImage; its cells sit at `snap.cell_placement(level)`, the centres `/rpn`
    draws the same level at, in the same colour scale (`viz.rpn.add_objectness`)."""
    fig = _snapshot_panel(image, snap, title)
    # the colour bar sits in the right margin, beside the plot (the image never reaches past the
    # plot's right edge): inside the plot it covered a wide image's right side
    add_objectness(fig, snap.objectness[level], snap.cell_placement(level), opacity,
                   colorbar=dict(title=dict(text="objectness (sigmoid)", side="right"), thickness=8, len=0.6, x=1.0,
                                 xanchor="left", xref="paper", xpad=4, ypad=0))
    add_boxes(fig, snap.gt_boxes, "ground_truth", show_labels=False)
    fig.update_layout(showlegend=False)
    return fig


def snapshot_proposals_figure(image: Image.Image | None, snap: Any, top: int = 20, title: str | None = None) -> go.Figure:
    """The RPN's top proposals after NMS (best first) beside the ground truth."""
    fig = _snapshot_panel(image, snap, title)
    add_boxes(fig, snap.gt_boxes, "ground_truth", show_labels=False)
    boxes = np.asarray(snap.proposals, dtype=float).reshape(-1, 4)[:top]
    scores = np.asarray(snap.proposal_scores, dtype=float)[:top]
    hover = [f"rank {i}, objectness {s:.3f}" for i, s in enumerate(scores)]
    add_boxes(fig, boxes, "proposal", hover=hover, show_labels=False)
    fig.update_layout(showlegend=False)
    return fig


def snapshot_detections_figure(image: Image.Image | None, snap: Any, class_names: Sequence[str],
                               threshold: float = 0.3, title: str | None = None) -> go.Figure:
    """Final detections scoring at least `threshold`, ground truth dashed."""
    fig = _snapshot_panel(image, snap, title)
    add_boxes(fig, snap.gt_boxes, "ground_truth", show_labels=False)
    scores = np.asarray(snap.scores, dtype=float)
    keep = scores >= threshold
    labels = [class_name(class_names, int(l)) for l in np.asarray(snap.labels)[keep]]
    add_boxes(fig, np.asarray(snap.boxes, dtype=float).reshape(-1, 4)[keep], "prediction", labels=labels,
              scores=scores[keep].tolist())
    fig.update_layout(showlegend=False)
    return fig


def objectness_contrast(snap: Any, level: int | None = None) -> tuple[float, float]:
    """(mean objectness of cells that overlap a ground-truth box, mean of the other cells).

    Over every level when `level` is None. The cells are the heatmaps' (`snap.cell_placement`):
    each a stride-wide tile centred on its anchors' centre (`frames.cells_on_boxes`). As the RPN
    learns, the first rises and the second falls.
    """
    inside, outside = [], []
    levels = range(len(snap.objectness)) if level is None else [level]
    for k in levels:
        heat = np.asarray(snap.objectness[k], dtype=float)
        mask = cells_on_boxes(snap.cell_placement(k), (heat.shape[1], heat.shape[0]), snap.gt_boxes)
        inside.append(heat[mask])
        outside.append(heat[~mask])
    ins = np.concatenate(inside) if inside else np.array([])
    outs = np.concatenate(outside) if outside else np.array([])
    return (float(ins.mean()) if ins.size else float("nan"), float(outs.mean()) if outs.size else float("nan"))


def contrast_figure(epochs: Sequence[int], inside: Sequence[float], outside: Sequence[float], current: int | None = None,
                    uirevision: str = "contrast") -> go.Figure:
    """Mean objectness on the objects and off them, per epoch (the RPN separating the two)."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=list(epochs), y=list(inside), mode="lines+markers", name="cells on ground-truth boxes",
                             line=dict(color="#00c853", width=2)))
    fig.add_trace(go.Scatter(x=list(epochs), y=list(outside), mode="lines+markers", name="other cells (background)",
                             line=dict(color="#757575", width=2)))
    if current is not None:
        fig.add_vline(x=current, line=dict(color="#ff00ff", width=1, dash="dot"))
    fig.update_xaxes(title_text="epoch (0 = before training)", dtick=1 if len(epochs) <= 20 else None)
    fig.update_yaxes(title_text="mean objectness", range=[0, 1])
    return _base_layout(fig, uirevision, height=300)


# ---------------------------------------------------------------- hardest validation images


def hard_example_figure(image: Image.Image | None, scored: Any, class_names: Sequence[str], threshold: float = 0.3,
                        title: str | None = None) -> go.Figure:
    """A scored validation image (hard_examples.ScoredImage): ground truth dashed, detections above
    `threshold` in their class colours."""
    fig = image_figure(_canvas(image, scored.width, scored.height), max_side=IMAGE_SIDE, title=title, height=360)
    gt_names = [class_name(class_names, int(l)) for l in np.asarray(scored.gt_labels)]
    add_boxes(fig, scored.gt_boxes, "ground_truth", labels=gt_names, show_labels=False,
              hover=[f"ground truth: {n}" for n in gt_names])
    scores = np.asarray(scored.scores, dtype=float)
    keep = scores >= threshold
    labels = [class_name(class_names, int(l)) for l in np.asarray(scored.labels)[keep]]
    add_boxes(fig, np.asarray(scored.boxes, dtype=float).reshape(-1, 4)[keep], "prediction", labels=labels,
              scores=scores[keep].tolist())
    return fig
