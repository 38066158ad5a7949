"""Figures of the diagnosis page, built from the diagnosis report (the JSON of
`detector.diagnosis.report.diagnosis_report`, as written to diagnosis.json): PR curves, the
confusion heatmap, TIDE's error bars, the stage-blame chart, a missed box on its image, the
tuner's curve. Image boxes are [x1, y1, x2, y2] in original pixels.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image

from detector.diagnosis.stage_blame import STAGE_LABELS, STAGES
from detector.diagnosis.tide import MAIN_ERRORS, SPECIAL_ERRORS
from detector.viz.boxes import add_boxes, class_color, image_figure

ERROR_NAMES = {"Cls": "classification", "Loc": "localisation", "Both": "both (cls + loc)", "Dupe": "duplicate",
               "Bkg": "background", "Miss": "missed", "FalsePos": "all false positives",
               "FalseNeg": "all false negatives"}
SIZE_COLORS = {"small": "#f58231", "medium": "#4363d8", "large": "#3cb44b"}


def _margins(fig: go.Figure, height: int, title: str | None) -> go.Figure:
    fig.update_layout(title=title, height=height, margin=dict(l=10, r=10, t=40 if title else 10, b=10))
    return fig


def pr_figure(report: dict[str, Any], iou: str = "0.5", title: str | None = None) -> go.Figure:
    """Precision against recall per class at IoU `iou` ("0.5" or "0.75"), the operating point
    at the report's score threshold marked on each curve."""
    fig = go.Figure()
    for name, curves in report["pr_curves"].items():
        curve = curves[iou]
        color = class_color(name)
        fig.add_trace(go.Scatter(
            x=curve["recall"], y=curve["precision"], mode="lines", name=name, line=dict(color=color),
            customdata=curve["score"], hovertemplate=f"{name}<br>recall %{{x:.3f}}, precision %{{y:.3f}}"
                                                     "<br>score >= %{customdata:.3f}<extra></extra>",
        ))
        op = curve["operating_point"]
        if op["precision"] is not None and op["recall"] is not None:
            fig.add_trace(go.Scatter(
                x=[op["recall"]], y=[op["precision"]], mode="markers", showlegend=False,
                marker=dict(size=11, color=color, symbol="diamond", line=dict(width=1, color="black")),
                hovertemplate=f"{name} at score >= {report['score_threshold']:g}: recall %{{x:.3f}}, "
                              "precision %{y:.3f}<extra></extra>",
            ))
    fig.update_xaxes(title_text="recall", range=[0, 1.02])
    fig.update_yaxes(title_text="precision", range=[0, 1.02])
    return _margins(fig, 360, title or f"PR curves at IoU {iou} (diamond: score threshold {report['score_threshold']:g})")


def confusion_figure(confusion: dict[str, Any], title: str | None = None) -> go.Figure:
    """The confusion matrix as a heatmap: rows ground truth, columns prediction, background last."""
    labels = confusion["labels"]
    matrix = np.asarray(confusion["matrix"], dtype=float)
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)  # colour: share of the row
    fig = go.Figure(go.Heatmap(
        z=share, x=labels, y=labels, text=matrix.astype(int), texttemplate="%{text}", colorscale="Blues",
        zmin=0, zmax=1, colorbar=dict(title="share of row"),
        hovertemplate="ground truth %{y}, predicted %{x}: %{text}<extra></extra>",
    ))
    fig.update_xaxes(title_text="predicted class", side="bottom")
    fig.update_yaxes(title_text="ground-truth class", autorange="reversed")
    return _margins(fig, 120 + 42 * len(labels),
                    title or f"Confusion at IoU {confusion['iou']:g}, score >= {confusion['score_threshold']:g}")


def errors_figure(errors: dict[str, float], title: str | None = None) -> go.Figure:
    """TIDE's errors: AP50 points gained by fixing each type alone, then the two special figures."""
    names = list(MAIN_ERRORS) + list(SPECIAL_ERRORS)
    values = [float(errors[n]) for n in names]
    colors = ["#e6194b"] * len(MAIN_ERRORS) + ["#9e9e9e"] * len(SPECIAL_ERRORS)
    fig = go.Figure(go.Bar(
        x=values, y=[f"{n}: {ERROR_NAMES[n]}" for n in names], orientation="h", marker_color=colors,
        text=[f"{v:.2f}" for v in values], textposition="auto",
        hovertemplate="%{y}: +%{x:.2f} AP50 when fixed<extra></extra>",
    ))
    fig.update_xaxes(title_text="AP50 points gained by fixing it (TIDE, 0-100)")
    fig.update_yaxes(autorange="reversed")
    return _margins(fig, 340, title)


def stage_figure(missed: dict[str, Any], by: str = "class", title: str | None = None) -> go.Figure:
    """Missed boxes per stage (pipeline order), stacked by class or by COCO size (`by`)."""
    groups = missed["by_class"] if by == "class" else missed["by_size"]
    keys = sorted({k for stage in groups.values() for k in stage}) if by == "class" else list(SIZE_COLORS)
    stages = [STAGE_LABELS[s] for s in STAGES]
    fig = go.Figure()
    for key in keys:
        color = class_color(key) if by == "class" else SIZE_COLORS[key]
        fig.add_trace(go.Bar(x=[groups[s].get(key, 0) for s in STAGES], y=stages, orientation="h", name=key,
                             marker_color=color, hovertemplate=f"{key}, %{{y}}: %{{x}}<extra></extra>"))
    fig.update_layout(barmode="stack")
    fig.update_xaxes(title_text=f"missed ground-truth boxes ({missed['total']} in all)")
    fig.update_yaxes(autorange="reversed")
    return _margins(fig, 340, title or "Where each missed box was lost")


def missed_box_figure(image: Image.Image, box: Sequence[float], stage: str, class_name: str,
                      others: Sequence[Sequence[float]] = (), title: str | None = None) -> go.Figure:
    """One missed ground-truth box (highlighted) on its image, the image's other boxes dashed."""
    fig = image_figure(image, max_side=640, title=title)
    if len(others):
        add_boxes(fig, np.asarray(others, dtype=float), style="ground_truth", show_labels=False)
    add_boxes(fig, np.asarray([box], dtype=float), style="highlight", labels=[f"{class_name}: {STAGE_LABELS[stage]}"],
              name="missed box")
    return fig


def tuner_figure(points: Sequence[dict[str, Any]], knob: str, title: str | None = None) -> go.Figure:
    """mAP, mAP50 and recall against the values of one knob (the others fixed)."""
    xs = [p["knobs"][knob] for p in points]
    fig = go.Figure()
    for key, color in (("mAP", "#4363d8"), ("mAP50", "#3cb44b"), ("recall", "#f58231")):
        fig.add_trace(go.Scatter(x=xs, y=[p[key] for p in points], mode="lines+markers", name=key,
                                 line=dict(color=color)))
    fig.update_xaxes(title_text=knob)
    fig.update_yaxes(title_text="value", range=[0, 1.02])
    return _margins(fig, 320, title)
