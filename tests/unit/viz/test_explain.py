"""detector.viz.explain: the explanation's figures checked by their data, on the demo model's explanation of a scene."""

from __future__ import annotations

import numpy as np
import pytest

from detector import checkpoints
from detector.explain import explain_image
from detector.saliency import eigen_map, gradient_map
from detector.viz import explain as viz

pytestmark = pytest.mark.skipif(not checkpoints.DEMO_CHECKPOINT.is_file(), reason="no demo checkpoint")


@pytest.fixture(scope="module")
def explained(demo_scene):
    demo, scene, insp = demo_scene
    expl = explain_image(demo.model, insp, 0, demo.class_names)
    det = next(d for d in expl.detections if d.suppressed)
    return demo, scene, insp, expl, det


def _outline(trace):
    xs = [v for v in trace.x if v is not None]
    ys = [v for v in trace.y if v is not None]
    return [min(xs), min(ys), max(xs), max(ys)]


def test_chain_draws_anchor_roi_detection_and_dashed_suppressed(explained):
    _, scene, _, _, det = explained
    fig = viz.chain_figure(scene.image, det)
    lines = {t.name: t for t in fig.data if t.type == "scatter" and t.mode == "lines"}
    anchor = next(t for n, t in lines.items() if n == "source anchor")
    assert np.allclose(_outline(anchor), det.anchor.box.numpy(), atol=1e-4)
    assert np.allclose(_outline(lines[f"RoI #{det.roi.index}"]), det.roi.box.numpy(), atol=1e-4)
    assert np.allclose(_outline(lines[f"detection {det.index}"]), det.box.numpy(), atol=1e-4)
    (dashed,) = [t for t in fig.data if t.type == "scatter" and t.mode == "lines" and t.line.dash == "dash"]
    assert dashed.name == f"suppressed by NMS ({len(det.suppressed)})"
    assert sum(v is None for v in dashed.x) == len(det.suppressed)
    assert len(fig.layout.annotations) == 2  # the RPN's regression and the box head's, as arrows


def test_class_distribution_is_sorted_with_background(explained):
    _, _, _, expl, det = explained
    fig = viz.class_distribution_figure(expl.class_names, det.class_probs.tolist(), det.class_logits.tolist(), det.label)
    (bar,) = fig.data
    assert list(bar.x) == sorted(det.class_probs.tolist(), reverse=True)
    assert set(bar.y) == {"background", "circle", "rectangle", "triangle"} and bar.y[0] == det.label_name
    assert list(bar.customdata) == [float(det.class_logits[expl.class_names.index(n if n != "background" else
                                                                                  "__background__")]) for n in bar.y]


def test_saliency_figure_places_the_levels_cells(explained):
    demo, scene, insp, _, det = explained
    for smap in (gradient_map(demo.model, insp, det), eigen_map(insp, det.roi.level)):
        fig = viz.saliency_figure(scene.image, smap, det, opacity=0.3)
        (hm,) = [t for t in fig.data if t.type == "heatmap"]
        assert np.array_equal(np.asarray(hm.z), smap.heat) and hm.opacity == 0.3
        assert hm.dx == pytest.approx(smap.stride[0] / smap.scale[0]) and hm.x0 == 0
        assert viz.saliency_caption(smap)
