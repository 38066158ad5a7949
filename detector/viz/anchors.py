"""Anchor figures: cell centres to click, the anchors of one cell, RPN labels, fitness charts.

Every figure over the image is in *original* pixels (the frame of `image_figure`); anchors, which
live in the model's input frame, are mapped back with `AnchorGrid.frame.to_original` (`detector.frames`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image

from detector.anchor_fitness import RECALL_THRESHOLDS, Fitness
from detector.anchor_grids import AnchorGrid, AnchorsAt, AnchorSource, CellCentres
from detector.anchor_matching import Matching, Minibatch
from detector.viz.boxes import add_boxes, image_figure
from detector.wording import counted

CENTRES_TRACE = "cell centres"  # name of the clickable scatter trace
CENTRES_CURVE = 1  # its index in anchor_cell_figure (trace 0 is the image)


def _limit(idx: np.ndarray, cap: int, seed: int = 0) -> np.ndarray:
    """At most `cap` of the indices, chosen at random but reproducibly."""
    if len(idx) <= cap:
        return idx
    return np.sort(np.random.default_rng(seed).choice(idx, cap, replace=False))


def add_cell_centres(fig: go.Figure, grid: AnchorGrid, centres: CellCentres) -> go.Figure:
    """The clickable scatter of a level's anchor centres (original frame); customdata [row, col]."""
    lv = grid.levels[centres.level]
    sx, sy = grid.frame.scale
    xs, ys = centres.xs / sx, centres.ys / sy
    size = 7 if len(xs) < 2_000 else 4
    fig.add_trace(go.Scatter(
        x=xs, y=ys, mode="markers", name=CENTRES_TRACE,
        marker=dict(size=size, color="rgba(255,255,255,0.55)", line=dict(color="rgba(0,0,0,0.6)", width=0.5)),
        customdata=np.stack([centres.rows, centres.cols], axis=1),
        hovertemplate=f"level {lv.name}, row %{{customdata[0]}}, column %{{customdata[1]}}<extra></extra>",
    ))
    return fig


def anchor_cell_figure(image: Image.Image, grid: AnchorGrid, centres: CellCentres, at: AnchorsAt | None,
                       gt_boxes: np.ndarray | None = None, shape_boxes: np.ndarray | None = None) -> go.Figure:
    """The image, its ground truth, one level's cell centres (click one) and the anchors of a cell.

    at: the anchors centred at the chosen cell, each labelled "#index size S ratio R".
    shape_boxes: optional (K, 4) anchors of one shape over the level (input frame), drawn faint.
    """
    lv = grid.levels[centres.level]
    fig = image_figure(image, title=f"Anchors of level {lv.name} (stride {lv.stride[0]}, grid {lv.grid[0]}x{lv.grid[1]})")
    # the clickable centres come first, so they are always trace 1 (CENTRES_CURVE)
    add_cell_centres(fig, grid, centres)
    if gt_boxes is not None and len(gt_boxes):
        add_boxes(fig, gt_boxes, style="ground_truth", show_labels=False)
    if shape_boxes is not None and len(shape_boxes):
        add_boxes(fig, grid.frame.to_original(shape_boxes).numpy(), style="pre_nms", name="anchors of one shape",
                  show_labels=False)
    if at is not None:
        add_boxes(fig, grid.frame.to_original(at.boxes).numpy(), style="anchor", labels=list(at.labels),
                  name=f"anchors at row {at.row}, column {at.col}")
        sx, sy = grid.frame.scale
        fig.add_trace(go.Scatter(
            x=[at.centre[0] / sx], y=[at.centre[1] / sy], mode="markers", name="selected cell",
            marker=dict(size=14, color="#ff00ff", symbol="x"), hoverinfo="skip",
        ))
    # anchors reach outside the image: show the whole padded input
    pw, ph = grid.padded_size
    sx, sy = grid.frame.scale
    xmax = max(image.width, pw / sx)
    ymax = max(image.height, ph / sy)
    if at is not None:
        ob = grid.frame.to_original(at.boxes).numpy()
        fig.update_xaxes(range=[min(0.0, ob[:, 0].min()) - 5, max(xmax, ob[:, 2].max()) + 5])
        fig.update_yaxes(range=[max(ymax, ob[:, 3].max()) + 5, min(0.0, ob[:, 1].min()) - 5])
    fig.update_layout(clickmode="event+select")
    return fig


def matching_figure(image: Image.Image, grid: AnchorGrid, matching: Matching, minibatch: Minibatch,
                    gt_boxes: np.ndarray, max_per_kind: int = 300,
                    show: Sequence[str] = ("positive", "ignored", "negative")) -> go.Figure:
    """RPN labels over the image: positive (IoU >= 0.7 or a box's best), ignored (between) and the
    sampled negatives of the 256-anchor minibatch, the kinds in `show`, at most max_per_kind of each;
    ground-truth boxes with no positive anchor highlighted."""
    fig = image_figure(image, title="RPN training labels: positive / ignored / sampled negative anchors")
    labels = matching.labels.numpy()
    neg = _limit(minibatch.negative, max_per_kind)
    ign = _limit(np.flatnonzero(labels == -1), max_per_kind)
    pos = _limit(np.flatnonzero(labels == 1), max_per_kind)
    anchors = grid.anchors.numpy()
    iou = matching.anchor_iou.numpy()
    sampled = set(minibatch.positive.tolist())
    for style, idx, what in (("negative", neg, "sampled negative"), ("ignored", ign, "ignored"),
                             ("positive", pos, "positive")):
        if len(idx) and style in show:
            hover = [f"{what} anchor #{i}, IoU {iou[i]:.2f}" + (" (in the minibatch)" if i in sampled else "")
                     for i in idx.tolist()]
            add_boxes(fig, grid.frame.to_original(anchors[idx]).numpy(), style=style, hover=hover, show_labels=False)
    add_boxes(fig, gt_boxes, style="ground_truth",
              hover=[f"ground truth {k}: best anchor IoU {v:.2f}, {int(n)} positive anchors"
                     for k, (v, n) in enumerate(zip(matching.best_iou_per_gt.tolist(), matching.positives_per_gt.tolist()))],
              show_labels=False)
    missing = matching.gt_without_positive
    if len(missing):
        add_boxes(fig, np.asarray(gt_boxes)[missing], style="highlight", name="no positive anchor",
                  labels=[f"gt {k}: no positive anchor" for k in missing.tolist()])
    return fig


def best_iou_histogram(fit: Fitness, thresholds: Sequence[float] = RECALL_THRESHOLDS) -> go.Figure:
    """Histogram of each ground-truth box's best anchor IoU, with the recall thresholds marked."""
    edges, counts = fit.histogram
    centres = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
    fig = go.Figure(go.Bar(x=centres, y=counts, width=edges[1] - edges[0], name="boxes",
                           marker_color="#4363d8",
                           hovertext=[f"IoU {a:.2f}..{b:.2f}: {counted(int(c), 'box')}" for a, b, c in zip(edges[:-1], edges[1:], counts)],
                           hoverinfo="text"))
    for t in thresholds:
        fig.add_vline(x=t, line_dash="dash", line_color="#e6194b",
                      annotation_text=f"{t:g}: {fit.recall[f'{t:g}']:.0%}", annotation_position="top")
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=30, b=10), bargap=0.05, showlegend=False)
    fig.update_xaxes(title_text="best IoU of a ground-truth box with any anchor", range=[0, 1])
    fig.update_yaxes(title_text="ground-truth boxes")
    return fig


def recall_breakdown(fit: Fitness, threshold: str = "0.7") -> go.Figure:
    """Recall at `threshold` by COCO size and by aspect ratio, with each bucket's box count."""
    sized = [(b, "#3cb44b") for b in fit.by_size if b.boxes] + [(b, "#f58231") for b in fit.by_ratio if b.boxes]
    buckets = [b for b, _ in sized]
    colours = [c for _, c in sized]
    names = [f"{b.name.split(' (')[0]} ({b.boxes})" for b in buckets]  # "square-ish (128)": bucket, boxes
    fig = go.Figure(go.Bar(x=names, y=[b.recall[threshold] for b in buckets], marker_color=colours,
                           hovertext=[f"{b.name}: {counted(b.boxes, 'box')}, recall@{threshold} {b.recall[threshold]:.1%}, "
                                      f"mean best IoU {b.mean_best_iou:.2f}" for b in buckets], hoverinfo="text"))
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=30, b=10), showlegend=False)
    fig.update_xaxes(title_text="COCO size (green), aspect h/w (orange)")
    fig.update_yaxes(title_text=f"recall at IoU {threshold}", range=[0, 1], tickformat=".0%")
    return fig


def box_shape_figure(fit: Fitness, source: AnchorSource, alt: AnchorSource | None = None,
                     max_points: int = 5_000) -> go.Figure:
    """Ground-truth box shapes (width, height in the input frame, log axes) against anchor shapes."""
    wh = fit.box_wh
    idx = _limit(np.arange(len(wh)), max_points)
    fig = go.Figure(go.Scatter(
        x=wh[idx, 0], y=wh[idx, 1], mode="markers", name="ground-truth boxes",
        marker=dict(size=5, color=fit.best_iou[idx], colorscale="RdYlGn", cmin=0, cmax=1,
                    colorbar=dict(title="best IoU", len=0.8)),
        text=[f"{w:.0f}x{h:.0f}, best IoU {v:.2f}" for (w, h), v in zip(wh[idx], fit.best_iou[idx])],
        hoverinfo="text",
    ))
    for src, symbol, colour in ((source, "x", "#222222"), (alt, "diamond-open", "#911eb4")):
        if src is None:
            continue
        shapes = _anchor_shapes(src)
        fig.add_trace(go.Scatter(x=shapes[:, 0], y=shapes[:, 1], mode="markers", name=f"anchors: {src.name}",
                                 marker=dict(size=11, symbol=symbol, color=colour, line=dict(width=2)),
                                 text=[f"anchor {w:.0f}x{h:.0f}" for w, h in shapes], hoverinfo="text"))
    fig.update_xaxes(type="log", title_text="box width (input pixels, after the model's resize)")
    fig.update_yaxes(type="log", title_text="box height (input pixels)")
    fig.update_layout(height=420, margin=dict(l=10, r=10, t=30, b=10),
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0))
    return fig


def _anchor_shapes(source: AnchorSource) -> np.ndarray:
    """(K, 2) distinct (width, height) of a source's anchors, as the AnchorGenerator rounds them."""
    gen = source.anchor_generator()
    cells = np.concatenate([c.numpy() for c in gen.cell_anchors])
    return np.unique(np.stack([cells[:, 2] - cells[:, 0], cells[:, 3] - cells[:, 1]], axis=1), axis=0)


# ---------------------------------------------------------------- the anchor study (Table 8 on your data)


def study_map_figure(sets: Sequence[dict]) -> go.Figure:
    """mAP per anchor set of a study (`detector.anchor_study`'s study.json "sets"): our mAP50 and mAP
    (0.5:0.95) in %, and the paper's Table 8 mAP (VOC 2007, IoU 0.5, %) beside the rows it has."""
    names = [s["key"] for s in sets]
    fig = go.Figure()
    for label, get, colour in (
        ("ours: mAP50", lambda s: (s.get("figures") or {}).get("mAP50"), "#2979ff"),
        ("ours: mAP (0.5:0.95)", lambda s: (s.get("figures") or {}).get("mAP"), "#90caf9"),
    ):
        values = [None if get(s) is None else 100 * get(s) for s in sets]
        fig.add_trace(go.Bar(x=names, y=values, name=label, marker_color=colour,
                             hovertemplate="%{x}: %{y:.1f} %<extra>" + label + "</extra>"))
    paper = [(s.get("paper") or {}).get("mAP") for s in sets]
    fig.add_trace(go.Bar(x=names, y=paper, name="paper, Table 8 (VOC07 mAP)", marker_color="#bdbdbd",
                         hovertemplate="%{x}: %{y:.1f} % on VOC 2007<extra>paper</extra>"))
    fig.update_xaxes(title_text="anchor set")
    fig.update_yaxes(title_text="mAP (%)", rangemode="tozero")
    fig.update_layout(barmode="group", height=340, margin=dict(l=10, r=10, t=10, b=10),
                      legend=dict(orientation="h", y=1.12))
    return fig


def study_recall_figure(sets: Sequence[dict], iou: str = "0.5") -> go.Figure:
    """Proposal recall against the number of proposals per image, one line per anchor set: the share
    of the validation split's ground-truth boxes one of the top k RPN proposals covers at IoU >= `iou`."""
    fig = go.Figure()
    for s in sets:
        pr = (s.get("figures") or {}).get("proposal_recall")
        if not pr:
            continue
        fig.add_trace(go.Scatter(x=pr["ks"], y=pr["at_k"][iou], mode="lines+markers", name=s["key"],
                                 hovertemplate="%{x} proposals: recall %{y:.3f}<extra>" + s["key"] + "</extra>"))
    fig.update_xaxes(title_text="proposals per image (top k by objectness, after NMS)", type="log")
    fig.update_yaxes(title_text=f"recall at IoU >= {iou}", range=[0, 1.02])
    fig.update_layout(height=340, margin=dict(l=10, r=10, t=10, b=10))
    return fig
