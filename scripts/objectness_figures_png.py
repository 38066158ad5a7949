"""Draw docs/objectness-rpn-and-train.png: one objectness level of the demo model as /rpn draws it
and as /train's RPN snapshot draws it, side by side, rendered by plotly.js in headless Chromium.

    python scripts/objectness_figures_png.py                      # level 1 of scene 7, 320x240
    python scripts/objectness_figures_png.py --level 0 --seed 11 --out /tmp/level0.png

Both figures come from the pages' own code paths on one synthetic scene (detector.scenes):
/rpn's is `viz.rpn.objectness_figure` over `inspect.run_rpn_stage` (as ui/rpn/inspection.py and
ui/rpn/views.py's Objectness view run it: best anchor shape per cell); /train's is
`viz.training.snapshot_objectness_figure` over the snapshot that `snapshots.rpn_snapshot` builds from
the same image (saved as PNG, read back through the project's DetectionDataset, as training reads its
validation images), written and read back with `runs.write_snapshot` / `runs.read_snapshot`.
The page embeds plotly.js from the installed plotly package: no network. Needs playwright and
/usr/bin/chromium; not kaleido.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import plotly.graph_objects as go  # noqa: E402
import torch  # noqa: E402
from plotly.io import to_html  # noqa: E402

from bench.harness import launch_options  # noqa: E402
from detector import runs  # noqa: E402
from detector.checkpoints import load_model  # noqa: E402
from detector.data.records import ImageRecord  # noqa: E402
from detector.data.torchdata import DetectionDataset  # noqa: E402
from detector.images import load_image, to_tensor  # noqa: E402
from detector.inspect import run_rpn_stage  # noqa: E402
from detector.scenes import make_scene  # noqa: E402
from detector.snapshots import rpn_snapshot  # noqa: E402
from detector.viz.rpn import objectness_figure  # noqa: E402
from detector.viz.training import snapshot_objectness_figure  # noqa: E402

RPN_WIDTH = 560  # px: the /rpn figure (it fills the page's width there; narrowed to sit beside the other)
TRAIN_WIDTH = 480  # px: one of /train's three snapshot columns in a wide window
GAP = 16  # px between the two figures


def build_figures(level: int, seed: int, width: int, height: int) -> tuple[go.Figure, go.Figure]:
    """The /rpn and the /train objectness figures of `level` for make_scene(seed, width, height)."""
    loaded = load_model("demo", "cpu")
    scene = make_scene(seed, width, height)
    # /rpn: the stage of the image, best anchor shape per cell ("max over shapes")
    stage = run_rpn_stage(loaded.model, [to_tensor(scene.image)])
    if not 0 <= level < len(stage.levels):
        raise SystemExit(f"--level {level}: the demo model has levels 0..{len(stage.levels) - 1}")
    frame, info = stage.frames[0], stage.levels[level]
    heat = stage.objectness_prob(0, level).numpy().max(axis=0)
    with tempfile.TemporaryDirectory() as tmp:
        # /train: the image as a validation record, its snapshot written and read back as the page does
        scene.image.save(Path(tmp) / "scene.png")
        record = ImageRecord("scene.png", width, height, scene.boxes, scene.labels, 0)
        dataset = DetectionDataset([record], tmp)
        built = rpn_snapshot(loaded.model, dataset, [0], torch.device("cpu"), loaded.class_names, epoch=0)
        runs.write_snapshot(Path(tmp), built)
        snap = runs.read_snapshot(Path(tmp), 0).images[0]
        image = load_image(Path(tmp) / "scene.png")  # PNG: the pixels /rpn's stage saw
    on_rpn = objectness_figure(image, heat, info.stride, frame.scale, frame.resized_size,
                               title=f"/rpn, Objectness view: level {info.name}, stride {info.stride[0]}, "
                                     "max over shapes")
    on_train = snapshot_objectness_figure(image, snap, level,
                                          title=f"/train, RPN snapshot: objectness, level {snap.level_names[level]}")
    return on_rpn, on_train


def render_png(figures: Sequence[go.Figure], widths: Sequence[int], out: Path) -> None:
    """Both figures in one HTML page (plotly.js inlined from the plotly package), screenshot by Chromium."""
    from playwright.sync_api import sync_playwright

    divs = []
    for n, (fig, w) in enumerate(zip(figures, widths)):
        div = to_html(fig, include_plotlyjs=(n == 0), full_html=False, div_id=f"fig{n}", default_width=f"{w}px",
                      default_height=f"{fig.layout.height}px", config={"displaylogo": False, "displayModeBar": False})
        divs.append(f'<div style="display:inline-block;vertical-align:top;margin-right:{GAP}px">{div}</div>')
    html = ("<html><head><meta charset='utf-8'></head><body style='margin:8px;background:white'>"
            f"<div id='both' style='display:inline-block;white-space:nowrap'>{''.join(divs)}</div></body></html>")
    with sync_playwright() as p:
        browser = p.chromium.launch(**launch_options())
        try:
            page = browser.new_page(viewport={"width": sum(widths) + GAP * len(widths) + 16, "height": 800})
            page.set_content(html)
            page.wait_for_function(f"document.querySelectorAll('.main-svg').length >= {2 * len(figures)}")
            page.locator("#both").screenshot(path=str(out))
        finally:
            browser.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--level", type=int, default=1, help="FPN level index (0 is the finest)")
    p.add_argument("--seed", type=int, default=7, help="detector.scenes.make_scene seed")
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--out", default=str(ROOT / "docs" / "objectness-rpn-and-train.png"))
    args = p.parse_args()
    figures = build_figures(args.level, args.seed, args.width, args.height)
    render_png(figures, (RPN_WIDTH, TRAIN_WIDTH), Path(args.out))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
