"""detector.viz.diagnosis: the figures carry the report's figures (checked by their data)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from detector.diagnosis.report import diagnosis_report
from detector.diagnosis.stage_blame import STAGE_LABELS, STAGES
from detector.viz import diagnosis as viz
from tests.unit.diagnosis.conftest import make_trail, trail_set

BOX, OTHER = [0, 0, 100, 100], [150, 0, 250, 100]


def _report():
    trails = [
        make_trail("a.jpg", [BOX, OTHER], [1, 2], [BOX, OTHER], [0.9, 0.8], [1, 3]),
        make_trail("b.jpg", [BOX], [3], [[300, 200, 350, 250]], [0.7], [2], pre=[0.1], anchor=[0.1]),
        make_trail("c.jpg", [BOX], [1], [BOX], [0.3], [1], refined_score=[[0.3]], roi_top_label=[0]),
    ]
    return diagnosis_report(trail_set(trails), 0.5, 0.5)


def test_confusion_heatmap_shows_the_counts_and_row_shares():
    report = _report()
    fig = viz.confusion_figure(report["confusion"])
    heat = fig.data[0]
    assert np.array_equal(np.asarray(heat.text), np.asarray(report["confusion"]["matrix"]))
    assert list(heat.x) == list(heat.y) == report["confusion"]["labels"]
    rows = np.asarray(heat.z)
    assert np.allclose(rows[:3].sum(axis=1), 1.0)  # each ground-truth row as shares (every row has a box)


def test_stage_chart_stacks_to_the_missed_count_per_stage():
    report = _report()
    for by in ("class", "size"):
        fig = viz.stage_figure(report["missed"], by)
        totals = np.sum([np.asarray(t.x) for t in fig.data], axis=0)
        assert list(totals) == [report["missed"]["by_stage"][s] for s in STAGES]
        assert list(fig.data[0].y) == [STAGE_LABELS[s] for s in STAGES]
    assert report["missed"]["total"] == 3


def test_error_bars_and_pr_curves_carry_the_report():
    report = _report()
    bars = viz.errors_figure(report["errors"]).data[0]
    assert list(bars.x) == [report["errors"][k] for k in ("Cls", "Loc", "Both", "Dupe", "Bkg", "Miss",
                                                         "FalsePos", "FalseNeg")]
    fig = viz.pr_figure(report, "0.5")
    curves = [t for t in fig.data if t.mode == "lines"]
    assert {t.name for t in curves} == set(report["pr_curves"])
    circle = next(t for t in curves if t.name == "circle")
    assert list(circle.x) == report["pr_curves"]["circle"]["0.5"]["recall"]


def test_missed_box_and_tuner_figures():
    report = _report()
    box = report["missed"]["boxes"][0]
    fig = viz.missed_box_figure(Image.new("RGB", (400, 300)), box["box"], box["stage"], box["class"], others=[OTHER])
    assert any(t.name == "missed box" for t in fig.data)
    points = [{"knobs": {"box_score_thresh": v}, "mAP": m, "mAP50": m, "recall": 0.5}
              for v, m in ((0.1, 0.6), (0.5, 0.5))]
    tuner = viz.tuner_figure(points, "box_score_thresh")
    assert list(tuner.data[0].x) == [0.1, 0.5] and list(tuner.data[0].y) == [0.6, 0.5]
