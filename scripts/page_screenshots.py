"""Screenshot every page of the running app: docs/page-<url>.png (README's pictures of today's pages).

    python scripts/page_screenshots.py                       # every page, into docs/
    python scripts/page_screenshots.py --pages rpn,detect --out-dir /tmp/shots

A real `streamlit run app.py` (bench.harness: a free loopback port, the browser tests' page-finished
wait) over a fresh workspace in a temporary folder holding one stored synthetic dataset
(detector.data.synthetic, 24 images), so /data, /anchors' fitness and /diagnose have data; the model
is the sidebar's default, the shipped demo model, on the CPU. Each page is opened in headless
Chromium at 1400 x 2400 (Streamlit's main area scrolls inside the page, so a tall viewport shows what
a long page holds), trimmed below what the page draws and saved as a 256-colour PNG. Needs
playwright and /usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PIL import Image, ImageChops  # noqa: E402

from bench.harness import launch_options, new_page, start_app, stop_process, wait_for_app  # noqa: E402
from ui.router import PAGES  # noqa: E402

WIDTH, HEIGHT = 1400, 2400
SIDEBAR_PX = 320  # the sidebar's width at WIDTH (its grey runs the whole height)
MARGIN_PX = 48  # kept below the main area's last drawn row
DATASET_IMAGES = 24


def page_name(url: str) -> str:
    """The file name of a page's screenshot: page-<url>.png (the overview is page-overview.png)."""
    return f"page-{url or 'overview'}.png"


def seed_workspace(workspace: Path) -> None:
    """One stored synthetic dataset in `workspace`, as the Data page's 'Synthetic' button stores one."""
    code = ("from pathlib import Path\nfrom detector.data import store_upload\n"
            "from detector.data.synthetic import write_synthetic\n"
            f"folder = write_synthetic(Path({str(workspace / 'tmp')!r}) / 'shapes', images={DATASET_IMAGES}, seed=0)\n"
            "store_upload('shapes', folder)\n")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True,
                   env=dict(os.environ, DETECTOR_WORKSPACE=str(workspace)))


def trim_bottom(im: Image.Image) -> Image.Image:
    """The screenshot down to MARGIN_PX below the last row the main area draws on (a short page leaves
    the tall viewport's lower part blank)."""
    main = im.crop((SIDEBAR_PX, 0, im.width, im.height))
    blank = Image.new(main.mode, main.size, main.getpixel((main.width - 1, main.height - 1)))
    drawn = ImageChops.difference(main, blank).getbbox()
    return im.crop((0, 0, im.width, min(im.height, (drawn[3] if drawn else im.height) + MARGIN_PX)))


def shrink(png: Path, out: Path) -> int:
    """`png` trimmed and as a 256-colour PNG at `out` (a page's flat colours survive it); the bytes written."""
    with Image.open(png) as im:
        trim_bottom(im.convert("RGB")).quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    return out.stat().st_size


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pages", default=",".join(p.url or "overview" for p in PAGES),
                    help="page URLs to take, comma-separated ('overview' is /)")
    ap.add_argument("--out-dir", type=Path, default=ROOT / "docs")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds one page may take to finish")
    args = ap.parse_args()
    wanted = ["" if p == "overview" else p.strip("/") for p in args.pages.split(",") if p.strip()]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="page-shots-") as tmp:
        workspace = Path(tmp) / "workspace"
        seed_workspace(workspace)
        app, url = start_app(workspace, Path(tmp) / "streamlit.log")
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(**launch_options())
                for path in wanted:
                    page = new_page(browser, WIDTH, HEIGHT)
                    page.goto(f"{url}/{path}")
                    seconds = wait_for_app(page, args.timeout)
                    raw = Path(tmp) / "raw.png"
                    page.screenshot(path=str(raw))
                    page.context.close()
                    out = args.out_dir / page_name(path)
                    print(f"/{path}: finished in {seconds:.1f} s; wrote {out} ({shrink(raw, out) / 1024:.0f} KB)",
                          flush=True)
                browser.close()
        finally:
            stop_process(app)
    return 0


if __name__ == "__main__":
    sys.exit(main())
