"""Browser: open the RPN inspector, upload an image, see heatmaps and proposals, click a proposal
to trace it."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from detector.scenes import make_scene
from tests.browser.conftest import assert_no_exception, wait_for_app

pytestmark = pytest.mark.browser


def _open_view(page, name: str) -> None:
    page.locator("[data-testid='stMain'] [data-testid='stButtonGroup'] button").filter(has_text=name).first.click()
    wait_for_app(page)


def test_upload_shows_heatmap_and_proposals_and_a_click_traces(app_url, page, session_tmp):
    image_path = session_tmp / "rpn-upload.png"
    make_scene(21, 240, 180).image.save(image_path)

    page.goto(f"{app_url}/rpn")
    wait_for_app(page, 180)
    assert_no_exception(page)
    main = page.locator("[data-testid='stMain']")
    # it opens on a sample: the heatmap is already on screen
    expect(main.get_by_text(re.compile("Objectness p = sigmoid")).first).to_be_visible(timeout=60_000)

    main.locator("[data-testid='stRadio'] label").filter(has_text="Upload").first.click()
    wait_for_app(page)
    main.locator("[data-testid='stFileUploader'] input[type='file']").set_input_files(str(image_path))
    wait_for_app(page, 180)
    assert_no_exception(page)
    expect(main.get_by_text(re.compile(r"Frames \(W x H\): original 240 x 180"))).to_have_count(1, timeout=120_000)

    # the objectness heatmap is drawn over the image
    heat_chart = main.locator(".js-plotly-plot").filter(has=page.locator(".heatmaplayer .hm, .heatmaplayer image"))
    expect(heat_chart.first).to_be_visible(timeout=60_000)
    expect(main.get_by_text(re.compile("Objectness p = sigmoid.*FPN level")).first).to_be_visible(timeout=60_000)
    heat_chart.first.screenshot(path=str(session_tmp / "rpn-heatmap.png"))

    # one view at a time: only its charts are on the page (the funnel and the heatmap)
    assert main.locator(".js-plotly-plot").count() == 2

    # an upload has no boxes: the recall view says so
    _open_view(page, "Recall")
    expect(main.get_by_text("Recall needs ground truth")).to_have_count(1, timeout=60_000)
    assert "view=Recall" in page.url  # the view is kept in the URL

    # proposals before and after NMS
    _open_view(page, "Proposals")
    expect(main.get_by_text(re.compile(r"After NMS .* the top \d+ of \d+ proposals")).first).to_be_visible(timeout=60_000)
    expect(main.get_by_text(re.compile(r"Before NMS: \d+ proposals?")).first).to_be_visible(timeout=60_000)
    page.screenshot(path=str(session_tmp / "rpn-proposals.png"), full_page=True)

    # clicking a proposal's centre selects it in the trace (its widget twin follows)
    points = main.locator(".js-plotly-plot .scatterlayer .trace .points path.point")
    expect(points.nth(3)).to_be_attached(timeout=60_000)
    # plotly turns a click into a selection from its last hover: move there, let it hover, then click
    points.nth(3).scroll_into_view_if_needed()
    box = points.nth(3).bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.wait_for_timeout(500)
    page.mouse.click(x, y)
    wait_for_app(page)  # the click opens the Trace view on the clicked proposal
    assert_no_exception(page)
    # markers drawn later lie on top: the click lands on rank 3 or on a later proposal with the same centre
    caption = main.get_by_text(re.compile(r"Proposal \d+ \(objectness")).first
    expect(caption).not_to_contain_text("Proposal 0 (", timeout=60_000)
    rank = int(re.search(r"Proposal (\d+) \(", caption.inner_text()).group(1))
    assert rank >= 3
    assert main.locator("[data-testid='stNumberInput'] input").last.input_value() == str(rank)
    trace_chart = main.locator(".js-plotly-plot").filter(has_text="source anchor").first
    trace_chart.screenshot(path=str(session_tmp / "rpn-trace.png"))
