"""/train's snapshot panels drawn by plotly.js in Chromium: the objectness colour bar's box lies
right of the image's box, and the three panels draw their images at one size (the figures' layout
is checked in tests/unit/viz/test_training.py; this measures what the browser drew)."""

from __future__ import annotations

import numpy as np
import plotly.io as pio
import pytest
from plotly.offline import get_plotlyjs

from detector.frames import CellPlacement
from detector.runs import SnapshotImage
from detector.scenes import make_scene
from detector.viz.training import snapshot_detections_figure, snapshot_objectness_figure, snapshot_proposals_figure

pytestmark = pytest.mark.browser


def _snap(w: int, h: int) -> SnapshotImage:
    gt = np.array([[20, 20, 120, 100]], np.float32)
    heat = np.random.default_rng(0).random((h // 8, w // 8)).astype(np.float32)
    return SnapshotImage("a.png", w, h, gt, np.ones(1, np.int64), (heat,), ("0",), gt, np.ones(1, np.float32),
                         gt, np.ones(1, np.float32), np.ones(1, np.int64), cells=(CellPlacement(0, 8, 0, 8),))


@pytest.mark.parametrize("panel_px", [300, 420])  # a Streamlit column of a narrow and of a wide window
def test_colour_bar_beside_the_image_in_every_panel(browser, panel_px):
    sizes = [(320, 240), (600, 200), (240, 320)]  # landscape, wide (the one the bar covered), portrait
    divs, calls = [], []
    for n, (w, h) in enumerate(sizes):
        image, snap = make_scene(3, w, h).image, _snap(w, h)
        figs = [snapshot_objectness_figure(image, snap, 0, title="objectness"),
                snapshot_proposals_figure(image, snap, title="proposals"),
                snapshot_detections_figure(image, snap, ("a",), title="detections")]
        for k, fig in enumerate(figs):
            divs.append(f'<div id="p{n}_{k}" style="width:{panel_px}px;height:380px;display:inline-block"></div>')
            calls.append(f"Plotly.newPlot('p{n}_{k}', {pio.to_json(fig)});")
    html = (f"<html><head><script>{get_plotlyjs()}</script></head><body style='margin:0'>{''.join(divs)}"
            f"<script>{''.join(calls)}</script></body></html>")
    page = browser.new_page(viewport={"width": 3 * panel_px + 40, "height": 1300})
    try:
        page.set_content(html)
        page.wait_for_function(f"document.querySelectorAll('.main-svg').length >= {2 * 3 * len(sizes)}")
        for n, size in enumerate(sizes):
            box = page.evaluate("""n => {
                const r = el => { const b = el.getBoundingClientRect(); return [b.left, b.right, b.top, b.bottom]; };
                const panel = k => document.getElementById(`p${n}_${k}`);
                const image = k => panel(k).querySelector('.layer-subplot image, image');
                return {bar: r(panel(0).querySelector('.colorbar')), panel: r(panel(0)),
                        image_right: r(image(0))[1],
                        images: [0, 1, 2].map(k => r(image(k)))
                                       .map(([l, rt, t, b]) => [rt - l, b - t])};
            }""", n)
            assert box["bar"][0] >= box["image_right"] - 0.5, (size, panel_px, box)  # bar starts right of the image
            assert box["bar"][1] <= box["panel"][1] + 0.5, (size, panel_px, box)  # and ends inside the panel
            widths = {round(w_) for w_, _ in box["images"]}
            assert len(widths) == 1 and min(widths) > 0, (size, panel_px, box)  # one image size in all three
    finally:
        page.close()
