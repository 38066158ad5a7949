"""The data flow in headless Chromium: upload a zip on /data, see the validation report and images."""

from __future__ import annotations

import zipfile

import pytest

from detector.data.synthetic import write_synthetic
from tests.browser.conftest import assert_no_exception, wait_for_app

pytestmark = pytest.mark.browser


def test_upload_zip_and_see_report(app_url, page, tmp_path, session_tmp):
    folder = write_synthetic(tmp_path / "browser-shapes", images=6, seed=11, format="coco", width=96, height=72)
    archive = tmp_path / "browser-shapes.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(folder).as_posix())
    page.goto(f"{app_url}/data")
    wait_for_app(page)
    uploader = page.locator("[data-testid='stFileUploader']").filter(has_text="Dataset archive")
    uploader.locator("input[type='file']").set_input_files(str(archive))
    page.get_by_text("Validation report").wait_for(timeout=120_000)
    wait_for_app(page, 180)
    assert_no_exception(page)
    assert page.get_by_text("Usable for training").first.is_visible()
    metrics = page.locator("[data-testid='stMetric']")
    texts = [metrics.nth(i).inner_text() for i in range(metrics.count())]
    assert any("COCO" in t for t in texts) and any(t.startswith("Images") and "6" in t for t in texts), texts
    assert "dataset=browser-shapes" in page.url
    page.get_by_text("Browse images").scroll_into_view_if_needed()
    assert page.locator("[data-testid='stPlotlyChart']").count() >= 5  # 4 statistics figures + images
    page.screenshot(path=str(session_tmp / "data-flow.png"), full_page=True)
