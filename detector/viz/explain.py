"""Figures of one detection's explanation: the chain anchor -> proposal (RoI) -> detection, the box
head's class distribution, and the saliency maps (detector.saliency).

Image figures are in ORIGINAL-image pixels, boxes [x1, y1, x2, y2], drawn through the one overlay
path (`detector.viz.boxes.add_boxes`) in the proposal trace's colours (`detector.viz.rpn.trace_figure`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image

from detector.explain import DetectionExplanation
from detector.saliency import METHODS, SaliencyMap
from detector.viz.boxes import add_boxes, class_color
from detector.viz.rpn import objectness_figure, trace_figure

# Transparent where nothing was found, so the image shows through (viridis' colours above it).
SALIENCY_SCALE = [
    [0.0, "rgba(68,1,84,0)"], [0.15, "rgba(59,82,139,0.35)"], [0.4, "rgba(33,145,140,0.75)"],
    [0.7, "rgb(94,201,98)"], [1.0, "rgb(253,231,37)"],
]


def _centre(box: np.ndarray) -> tuple[float, float]:
    return float(box[0] + box[2]) / 2, float(box[1] + box[3]) / 2


def chain_figure(image: Image.Image, det: DetectionExplanation, title: str | None = None,
                 show_suppressed: bool = True) -> go.Figure:
    """anchor -> proposal (= the RoI) -> detection on the image, arrows for the RPN's and the box
    head's regressions, the candidates this detection's NMS suppressed dashed (score and IoU on hover)."""
    a = det.anchor
    fig = trace_figure(
        image, a.box.numpy(), a.regressed.numpy(), det.roi.box.numpy(), title=title,
        anchor_label=f"anchor (level {a.level}, row {a.row}, column {a.column}, shape {a.shape})",
        proposal_label=f"RoI #{det.roi.index}",
    )
    if show_suppressed and det.suppressed:
        boxes = np.stack([c.box.numpy() for c in det.suppressed])
        add_boxes(fig, boxes, style="suppressed", show_labels=False,
                  name=f"suppressed by NMS ({len(det.suppressed)})",
                  hover=[f"{det.label_name} {c.score:.3f} from RoI #{c.roi}<br>IoU {c.iou:.2f} with the detection"
                         for c in det.suppressed])
    box = det.box.numpy()
    add_boxes(fig, [box], style="prediction", labels=[det.label_name], scores=[det.score],
              name=f"detection {det.index}")
    rc, dc = _centre(det.roi.box.numpy()), _centre(box)
    fig.add_annotation(x=dc[0], y=dc[1], ax=rc[0], ay=rc[1], xref="x", yref="y", axref="x", ayref="y",
                       showarrow=True, arrowhead=3, arrowwidth=2, arrowcolor=class_color(det.label_name), text="")
    return fig


def class_distribution_figure(names: Sequence[str], probs: Sequence[float], logits: Sequence[float],
                              label: int, title: str | None = None, most: int = 15) -> go.Figure:
    """The box head's softmax over all classes at one RoI, sorted, background included; the
    detection's class (index `label`) in its colour, the others grey; logits on hover."""
    probs = np.asarray(probs, dtype=float)
    logits = np.asarray(logits, dtype=float)
    order = np.argsort(-probs, kind="stable")[:most]
    shown = [("background" if i == 0 else names[i]) for i in order]
    colours = [class_color(names[i]) if i == label else ("#455a64" if i == 0 else "#b0bec5") for i in order]
    fig = go.Figure(go.Bar(
        x=probs[order], y=shown, orientation="h", marker_color=colours, text=[f"{p:.3f}" for p in probs[order]],
        textposition="auto", customdata=logits[order],
        hovertemplate="%{y}: probability %{x:.4f}<br>logit %{customdata:.3f}<extra></extra>",
    ))
    fig.update_xaxes(title_text="softmax probability (box head, this RoI)", range=[0, 1])
    fig.update_yaxes(title_text="class", autorange="reversed")
    more = f" (top {most} of {len(probs)})" if len(probs) > most else ""
    fig.update_layout(title=title or f"class distribution{more}", height=80 + 26 * len(order),
                      margin=dict(l=10, r=10, t=40, b=10))
    return fig


def saliency_figure(image: Image.Image, smap: SaliencyMap, det: DetectionExplanation, opacity: float = 0.6,
                    title: str | None = None) -> go.Figure:
    """A saliency map over the image (its level's cells, as the objectness maps are placed), with the
    detection and its RoI outlined."""
    fig = objectness_figure(image, smap.heat, smap.stride, smap.scale, smap.resized_size, opacity=opacity,
                            title=title, colorscale=SALIENCY_SCALE)
    what = "Grad-CAM" if smap.method == "gradient" else "EigenCAM"
    fig.update_traces(selector=dict(type="heatmap"), name=what,
                      colorbar=dict(title=dict(text=f"{what}<br>(max 1)"), thickness=12),
                      hovertemplate=f"x %{{x:.0f}}, y %{{y:.0f}}<br>{what} %{{z:.3f}}<extra></extra>")
    add_boxes(fig, [det.roi.box.numpy()], style="highlight", labels=[f"RoI #{det.roi.index}"], name="RoI")
    add_boxes(fig, [det.box.numpy()], style="prediction", labels=[det.label_name], scores=[det.score],
              name=f"detection {det.index}")
    return fig


def saliency_caption(smap: SaliencyMap) -> str:
    """What the map shows and what it does not, in the paper's terms."""
    if smap.method == "gradient":
        return (f"{METHODS['gradient']}, on FPN level {smap.level} (the level RoIAlign pooled this RoI from). "
                "Bright cells are where features pushed this detection's score up. The score sees the image only "
                "through RoIAlign of its one RoI, so the map is zero outside the RoI's cells: it cannot say what "
                "else in the image the model saw, nor why the other classes lost.")
    return (f"{METHODS['eigen']}, on FPN level {smap.level}. It is the same for every detection on this level: "
            "where the level's features vary most, whatever the class; nothing here depends on this detection's "
            "score.")
