"""The detection flow in headless Chromium: upload two images on /detect, see the table and boxes."""

from __future__ import annotations

import re

import pytest

from detector.scenes import make_scene
from tests.browser.conftest import assert_no_exception, wait_for_app

pytestmark = pytest.mark.browser


def test_upload_two_images_and_see_table_and_boxes(app_url, page, tmp_path, session_tmp):
    files = []
    for seed in (424_242, 424_243):
        path = tmp_path / f"upload-{seed}.png"
        make_scene(seed).image.save(path)
        files.append(str(path))
    page.goto(f"{app_url}/detect?model=demo")
    wait_for_app(page, 180)
    # the page body's uploader (the sidebar has one too, for model files)
    page.get_by_test_id("stMainBlockContainer").locator("[data-testid='stFileUploader'] input[type='file']").set_input_files(files)
    page.get_by_text(re.compile(r"\d+ detections? in 2 images")).wait_for(timeout=120_000)
    wait_for_app(page, 180)
    assert_no_exception(page)
    # the table lists detections of both uploads (the demo model finds the shapes)
    grid = page.locator("[data-testid='stDataFrame']").first
    assert grid.is_visible()
    heading = page.get_by_text(re.compile(r"\d+ detections? in 2 images")).first.inner_text()
    assert int(heading.split()[0]) > 0, heading
    # one figure per upload with its boxes: plotly draws each class's boxes as a scatter trace
    figures = page.locator("[data-testid='stPlotlyChart']")
    assert figures.count() == 2
    titles = page.locator("[data-testid='stPlotlyChart'] .gtitle").all_text_contents()
    assert sorted(t.split(":")[0] for t in titles) == ["upload-424242.png", "upload-424243.png"]
    assert page.locator("[data-testid='stPlotlyChart'] .scatterlayer .trace").count() >= 2
    page.screenshot(path=str(session_tmp / "detect-flow.png"), full_page=True)
