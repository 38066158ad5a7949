"""The data flow in headless Chromium: upload a zip on /data, see the validation report and images."""

from __future__ import annotations

import pytest

from detector.data.synthetic import write_synthetic
from tests.browser.conftest import assert_no_exception, upload_dataset, wait_for_app, zip_folder

pytestmark = pytest.mark.browser


def test_upload_zip_and_see_report(app_url, page, tmp_path, session_tmp):
    folder = write_synthetic(tmp_path / "browser-shapes", images=6, seed=11, format="coco", width=96, height=72)
    upload_dataset(page, app_url, zip_folder(folder, tmp_path / "browser-shapes.zip"))
    assert page.get_by_text("Usable for training").first.is_visible()
    metrics = page.locator("[data-testid='stMetric']")
    texts = [metrics.nth(i).inner_text() for i in range(metrics.count())]
    assert any("COCO" in t for t in texts) and any(t.startswith("Images") and "6" in t for t in texts), texts
    assert "dataset=browser-shapes" in page.url
    page.get_by_text("Browse images").scroll_into_view_if_needed()
    assert page.locator("[data-testid='stPlotlyChart']").count() >= 5  # 4 statistics figures + images
    page.screenshot(path=str(session_tmp / "data-flow.png"), full_page=True)


def test_register_a_folder_by_path_and_refuse_one_outside(app_url, page, tmp_path):
    from detector.workspace import workspace_root
    from tests.unit.data.exports import cvat_voc, ultralytics_yolo

    export = cvat_voc(workspace_root() / "exports" / "browser-cvat-voc")  # the workspace is always allowed
    outside = ultralytics_yolo(tmp_path / "private-yolo")
    page.goto(f"{app_url}/data")
    wait_for_app(page)
    page.get_by_role("tab", name="Path on this machine").click()
    box = page.get_by_role("textbox", name="Folder or zip on the machine the app runs on")
    box.fill(str(outside.root))
    box.press("Enter")
    wait_for_app(page)
    page.get_by_role("button", name="Register").click()
    wait_for_app(page)
    alert = page.get_by_text("not under a folder datasets may be registered from")
    assert alert.first.is_visible() and str(tmp_path) not in page.inner_text("body")
    box.fill(str(export.root))
    box.press("Enter")
    wait_for_app(page)
    page.get_by_role("button", name="Register").click()
    page.get_by_text("VOC coordinates: zero-based").first.wait_for(timeout=120_000)
    wait_for_app(page)
    assert "dataset=browser-cvat-voc" in page.url
    metrics = page.locator("[data-testid='stMetric']")
    texts = [metrics.nth(i).inner_text() for i in range(metrics.count())]
    assert any("VOC" in t for t in texts) and any(t.startswith("Images") and "3" in t for t in texts), texts
