"""The newcomer's path in headless Chromium, on a dataset laid out as Roboflow exports COCO:
upload it on /data, fine-tune from the training form's defaults on /train (the demo model, since no
COCO weights are cached), watch the curves and the RPN snapshots update live, Stop, Resume, finish,
then /detect with that run's model chosen in the sidebar, then the hardest validation image on /rpn
through its link. Screenshots of each step go to screenshots/ (git-ignored)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from detector import runs
from detector.scenes import make_scene
from detector.workspace import runs_dir
from tests.browser.conftest import (
    POINTS_JS, ROOT, assert_no_exception, fill_short_run, new_page, run_header, train_step, upload_dataset,
    wait_for_app, wait_until, zip_folder,
)

pytestmark = pytest.mark.browser

SHOTS = ROOT / "screenshots"
RUN = "newcomer-run"
# the demo model's shapes under other names: its box predictor is replaced, the rest still helps
CLASSES = {1: "ball", 2: "brick", 3: "wedge"}  # scenes' circle, rectangle, triangle
SPLITS = {"train": range(100, 116), "valid": range(116, 122)}


def roboflow_coco_export(root: Path) -> dict:
    """Write a Roboflow COCO download: `train/` and `valid/`, each with its JPEGs and
    `_annotations.coco.json`; category 0 is the project's parent (supercategory "none", no boxes),
    the classes name it as their supercategory; Roboflow's file names (`<stem>_jpg.rf.<hash>.jpg`),
    README.dataset.txt and README.roboflow.txt at the top. Returns what the report must say."""
    cats = [{"id": 0, "name": "shapes", "supercategory": "none"}] + [
        {"id": k, "name": n, "supercategory": "shapes"} for k, n in CLASSES.items()]
    root.mkdir(parents=True, exist_ok=True)
    (root / "README.dataset.txt").write_text("# Shapes > 2026-12-01\nhttps://universe.roboflow.com/newcomer/shapes\n")
    (root / "README.roboflow.txt").write_text("This dataset was exported via roboflow.com on December 1, 2026\n")
    totals = {"images": 0, "boxes": 0, "empty": 0}
    for split, seeds in SPLITS.items():
        doc = {"info": {"year": "2026", "version": "1", "description": "Exported from roboflow.com",
                        "contributor": "", "url": "https://public.roboflow.com/object-detection/undefined",
                        "date_created": "2026-12-01T00:00:00+00:00"},
               "licenses": [{"id": 1, "url": "https://creativecommons.org/licenses/by/4.0/", "name": "CC BY 4.0"}],
               "categories": cats, "images": [], "annotations": []}
        (root / split).mkdir()
        for i, seed in enumerate(seeds):
            scene = make_scene(seed, 160, 120)
            name = f"shape_{seed:05d}_jpg.rf.{seed * 7919 % 65536:04x}.jpg"
            scene.image.save(root / split / name, quality=92)
            doc["images"].append({"id": i, "license": 1, "file_name": name, "height": 120, "width": 160,
                                  "date_captured": "2026-12-01T00:00:00+00:00"})
            for (x1, y1, x2, y2), label in zip(scene.boxes, scene.labels):
                w, h = round(x2 - x1, 1), round(y2 - y1, 1)
                doc["annotations"].append({"id": len(doc["annotations"]), "image_id": i, "category_id": int(label),
                                           "bbox": [round(x1, 1), round(y1, 1), w, h], "area": round(w * h, 2),
                                           "segmentation": [], "iscrowd": 0})
            totals["images"] += 1
            totals["boxes"] += len(scene.boxes)
            totals["empty"] += not len(scene.boxes)
        (root / split / "_annotations.coco.json").write_text(json.dumps(doc))
    return totals


def _metric(page, label: str) -> str:
    box = page.locator("[data-testid='stMetric']").filter(has_text=label).first
    return box.locator("[data-testid='stMetricValue']").inner_text().strip()


# every plotly chart on the page drawn (its SVG there), checked after two animation frames
CHARTS_DRAWN_JS = """() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(() => done(
  [...document.querySelectorAll("[data-testid='stPlotlyChart']")].every((c) => c.querySelector(".main-svg"))))))"""


def _shot(page, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    page.set_viewport_size({"width": 1400, "height": 3000})  # Streamlit scrolls inside its main block
    page.wait_for_function(CHARTS_DRAWN_JS)  # let plotly draw the charts a rerun replaced
    page.screenshot(path=str(SHOTS / name))
    page.set_viewport_size({"width": 1400, "height": 1100})


def _snapshot_epoch(page) -> int:
    """The epoch the 'Watch the RPN learn' panels show (-1 while there is none; the newest when a
    rerun briefly shows the old and the new element)."""
    captions = page.locator("[data-testid='stCaptionContainer']").filter(has_text="of the snapshots 0 to")
    found = [re.search(r"epoch (\d+) of the snapshots 0 to", captions.nth(i).inner_text()) for i in range(captions.count())]
    return max((int(m.group(1)) for m in found if m), default=-1)


def test_newcomer_path(app_url, browser, tmp_path, stop_everything):
    page = new_page(browser, 1400, 1100)
    try:
        _walk(page, app_url, tmp_path)
    finally:
        page.context.close()


def _walk(page, app_url: str, tmp_path: Path) -> None:
    # ---- /data: upload the export as downloaded; the report counts what the export holds
    expected = roboflow_coco_export(tmp_path / "shapes-roboflow")
    upload_dataset(page, app_url, zip_folder(tmp_path / "shapes-roboflow", tmp_path / "Shapes.v1i.coco.zip"))
    assert _metric(page, "Format") == "COCO"
    assert _metric(page, "Images") == str(expected["images"])
    assert _metric(page, "Boxes") == str(expected["boxes"])
    assert _metric(page, "Empty images") == str(expected["empty"])
    assert _metric(page, "Classes") == "3"  # Roboflow's parent category 0 is not a class
    dataset = re.search(r"dataset=([^&]+)", page.url).group(1)
    _shot(page, "01-data-report.png")

    # ---- /train: the form opens on our dataset and on the best start available here
    page.goto(f"{app_url}/train")
    wait_for_app(page)
    if not page.get_by_label("Epochs", exact=True).is_visible():
        page.get_by_text("Start a new run").click()
    page.get_by_label("Epochs", exact=True).wait_for()
    assert f"{dataset}: coco, {expected['images']} images" in page.inner_text("body")  # the form's dataset
    assert page.get_by_role("radio", name="The demo model (fine-tune it)").is_checked()
    body = page.inner_text("body")
    assert "No COCO weights are cached here" in body and "its box predictor is replaced" in body
    fill_short_run(page, epochs=5, batch=2, short_side=128, long_side=160)
    name_box = page.get_by_role("textbox", name="Run name (optional)")
    name_box.fill(RUN)
    name_box.press("Enter")
    wait_for_app(page)
    assert "Schedule: 8 steps per epoch, 40 in all: warm-up over" in page.inner_text("body")
    _shot(page, "02-train-form.png")
    page.get_by_role("button", name="Start training").click()
    wait_for_app(page)
    wait_until(lambda: f"run={RUN}" in page.url, 30, "the named run in the URL")
    run_dir = runs_dir() / RUN
    config = runs.read_config(run_dir)
    assert config["init"] == "demo" and config["data"] == dataset and config["weights"] == "none"

    # ---- live: curves grow and RPN snapshots appear without a reload, the slider on the latest
    wait_until(lambda: train_step(page) >= 2 and page.evaluate(POINTS_JS) >= 2, 180, "the first training steps")
    page.get_by_role("tab", name="Watch the RPN learn").click()
    wait_until(lambda: _snapshot_epoch(page) >= 0, 120, "the epoch-0 RPN snapshot")
    wait_until(lambda: _snapshot_epoch(page) >= 1, 240, "the epoch-1 snapshot, picked up live")
    assert "· running" in run_header(page)
    _shot(page, "03-train-live-snapshots.png")

    # ---- Stop: the page and the log count the same epoch
    page.get_by_role("button", name="Stop").click(force=True)  # the live page reflows as charts redraw
    wait_until(lambda: "· stopped" in run_header(page), 120, "the stop")
    epoch_shown = _metric(page, "Epoch").split("/")[0]
    line = next(x for x in reversed(runs.log_tail(run_dir, 400)) if "stopped at epoch" in x)
    assert f"stopped at epoch {epoch_shown}," in line, (epoch_shown, line)
    _shot(page, "04-train-stopped.png")
    page.get_by_role("button", name="Resume").click()
    wait_until(lambda: runs.read_status(run_dir).state == "done", 300, "the resumed run to finish")
    wait_until(lambda: "· done" in run_header(page), 60, "the page to see done")
    wait_for_app(page)
    assert _metric(page, "Epoch") == "5/5"
    wait_until(lambda: _snapshot_epoch(page) == 5, 60, "the slider on the last epoch")
    assert_no_exception(page)
    _shot(page, "05-train-done.png")

    # ---- /detect: switch to the run's model while on the page; the class filter follows it
    page.goto(f"{app_url}/detect")
    wait_for_app(page, 180)
    sidebar = page.locator("[data-testid='stSidebar']")
    sidebar.locator("[data-testid='stSelectbox']").first.click()
    page.get_by_role("option", name=f"run {RUN}").click()
    wait_for_app(page, 180)
    slider = page.get_by_role("slider").first
    slider.focus()
    for _ in range(8):  # 0.50 -> 0.10 in steps of 0.05
        slider.press("ArrowLeft")
    wait_for_app(page, 120)
    assert_no_exception(page)
    heading = page.locator("h3").filter(has_text=re.compile(r"\d+ detections? in")).first.inner_text()
    found = int(re.match(r"(\d+) detection", heading).group(1))
    assert found > 0 and "no class selected" not in heading, heading
    classes = page.locator("[data-testid='stMultiSelect']").filter(has_text="Classes").first.inner_text()
    assert all(n in classes for n in CLASSES.values()) and "circle" not in classes, classes
    _shot(page, "06-detect-run-model.png")

    # ---- the hardest validation image, opened on /rpn by its link
    page.goto(f"{app_url}/train?run={RUN}")
    wait_for_app(page)
    page.get_by_role("tab", name="Hardest validation images").click()
    page.get_by_role("button", name="Score the validation images").click()
    link = page.locator("a").filter(has_text="in the RPN inspector").filter(has_text="Open valid").first
    link.wait_for(timeout=180_000)
    wait_for_app(page)
    _shot(page, "07-train-hardest.png")
    href = link.get_attribute("href")
    image = re.search(r"image=([^&]+)", href).group(1)
    assert f"model=run:{RUN}" in href and f"dataset={dataset}" in href and image.startswith("valid/")
    page.goto(f"{app_url}/{href.lstrip('./')}" if not href.startswith("http") else href)
    wait_for_app(page, 240)
    assert_no_exception(page)
    body = page.inner_text("body")
    assert f"{image} from dataset {dataset}" in body, body[:2000]
    assert f"run {RUN}" in page.locator("[data-testid='stSidebar']").inner_text()
    _shot(page, "08-rpn-hardest-image.png")
