"""detector.viz.rpn: figures checked by their data (coordinates, downsampling, click payloads)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from detector.viz import rpn as viz


def _heatmaps(fig):
    return [t for t in fig.data if t.type == "heatmap"]


def test_objectness_heatmap_is_placed_at_anchor_centres_in_original_pixels():
    image = Image.new("RGB", (200, 100))
    heat = np.zeros((4, 7))
    heat[2, 3] = 0.9
    # input frame is twice the original; stride 32 -> 16 original pixels per cell; padded grid column 6 is dropped
    fig = viz.objectness_figure(image, heat, stride=(32, 32), scale=(2.0, 2.0), resized_size=(180, 200))
    (hm,) = _heatmaps(fig)
    z = np.asarray(hm.z)
    assert z.shape == (4, 6)  # ceil(180 / 32) = 6 columns whose centre lies in the image
    assert hm.x0 == 0 and hm.dx == 16 and hm.y0 == 0 and hm.dy == 16
    assert z[2, 3] == 0.9 and hm.zmin == 0 and hm.zmax == 1


def test_large_heatmaps_are_max_pooled_for_the_browser():
    heat = np.random.default_rng(0).random((300, 250)) * 0.5
    heat[123, 201] = 0.99
    fig = viz.objectness_figure(Image.new("RGB", (1000, 1200)), heat, (4, 4), (1.0, 1.0), (1000, 1200))
    (hm,) = _heatmaps(fig)
    z = np.asarray(hm.z)
    assert max(z.shape) <= viz.MAX_HEAT_CELLS
    assert z.max() == 0.99  # the peak survives
    factor = 300 // z.shape[0] if 300 % z.shape[0] == 0 else int(np.ceil(300 / z.shape[0]))
    assert hm.dx == factor * 4 and hm.x0 == (factor - 1) / 2 * 4


def test_clickable_proposals_carry_their_rank():
    boxes = np.array([[0, 0, 10, 10], [20, 20, 40, 60], [5, 5, 15, 25]], dtype=float)
    fig = viz.proposals_figure(Image.new("RGB", (64, 64)), boxes, [0.9, 0.8, 0.7], clickable=True)
    markers = [t for t in fig.data if t.type == "scatter" and t.mode == "markers"]
    assert len(markers) == 1
    assert list(markers[0].customdata) == [0, 1, 2]
    assert list(markers[0].x) == [5, 30, 10] and list(markers[0].y) == [5, 40, 15]


def test_trace_figure_shows_anchor_and_proposal_and_widens_the_view():
    fig = viz.trace_figure(Image.new("RGB", (100, 80)), np.array([-30, 10, 50, 40]), np.array([-10, 12, 60, 44]),
                           np.array([0, 12, 60, 44]))
    names = {t.name for t in fig.data}
    assert {"source anchor", "proposal", "regressed box (before clipping)"} <= names
    assert fig.layout.xaxis.range[0] < -30  # the anchor reaches outside the image and stays in view
    assert len(fig.layout.annotations) == 1


def test_recall_funnel_and_level_figures():
    fig = viz.recall_figure([1, 10, 100], {0.5: [0.2, 0.6, 0.9], 0.7: [0.1, 0.3, 0.5]}, marker_k=50)
    assert [t.name for t in fig.data] == ["IoU >= 0.5", "IoU >= 0.7", "post_nms_top_n = 50"]
    assert list(fig.data[2].x) == [50, 50]  # in data coordinates, right on a log axis
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.title.text.startswith("recall")
    fig = viz.funnel_figure({"anchors": 1000, "post_nms": 100, "detections": 0})
    assert list(fig.data[0].text) == ["1,000", "100", "0"]
    fig = viz.level_counts_figure({"0": 5, "1": 2})
    assert list(fig.data[0].y) == [5, 2]
    pooled = np.random.default_rng(1).random((8, 7, 7))
    fig = viz.pooled_features_figure(Image.new("RGB", (30, 20)), pooled, [2, 5])
    heat = _heatmaps(fig)
    assert len(heat) == 3 and np.allclose(np.asarray(heat[0].z), pooled.mean(axis=0))
    assert np.allclose(np.asarray(heat[2].z), pooled[5])


def test_only_the_centre_markers_answer_clicks():
    boxes = np.array([[0, 0, 10, 10], [2, 2, 12, 12]], dtype=float)
    fig = viz.proposals_figure(Image.new("RGB", (64, 64)), boxes, [0.9, 0.8], clickable=True,
                               gt_boxes=np.array([[1, 1, 9, 9]]))
    hoverable = [t for t in fig.data if t.type == "scatter" and t.hoverinfo != "skip"]
    assert len(hoverable) == 1 and hoverable[0].customdata is not None
