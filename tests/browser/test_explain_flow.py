"""Browser: explain a detection. A click on a detection's centre on /rpn opens its explanation; a
/detect gallery link and a /diagnose false positive's link open the same panel."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import assert_no_exception, open_diagnose_on_tiny_model, wait_for_app

pytestmark = pytest.mark.browser

PANEL = re.compile(r"Why detection \d+: ")


def _panel_shown(page, session_tmp, name: str) -> None:
    main = page.locator("[data-testid='stMain']")
    expect(main.get_by_text(PANEL).first).to_be_visible(timeout=120_000)
    expect(main.locator(".js-plotly-plot").filter(has_text="source anchor").first).to_be_visible(timeout=60_000)
    expect(main.get_by_text(re.compile("softmax over all K \\+ 1 classes")).first).to_be_visible(timeout=60_000)
    saliency = main.locator(".js-plotly-plot").filter(has=page.locator(".heatmaplayer .hm, .heatmaplayer image"))
    expect(saliency.first).to_be_attached(timeout=60_000)
    assert_no_exception(page)
    chain = main.locator(".js-plotly-plot").filter(has_text="source anchor").first
    chain.scroll_into_view_if_needed()
    page.screenshot(path=str(session_tmp / f"explain-{name}.png"))
    saliency.first.scroll_into_view_if_needed()
    page.screenshot(path=str(session_tmp / f"explain-{name}-saliency.png"))


def test_a_click_on_a_detection_opens_its_explanation(app_url, page, session_tmp):
    page.goto(f"{app_url}/rpn?model=demo&sample=10002&view=Detections")
    wait_for_app(page, 240)
    assert_no_exception(page)
    main = page.locator("[data-testid='stMain']")
    expect(main.get_by_text(re.compile(r"\d+ detections with score")).first).to_be_visible(timeout=120_000)
    assert not main.get_by_text(PANEL).count()
    chart = main.locator(".js-plotly-plot").filter(has_text="click a centre to explain it").first
    points = chart.locator(".scatterlayer .trace .points path.point")
    expect(points.first).to_be_attached(timeout=60_000)
    # plotly turns a click into a selection from its last hover: move there, let it hover, then click
    points.last.scroll_into_view_if_needed()
    box = points.last.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.wait_for_timeout(500)
    page.mouse.click(x, y)
    wait_for_app(page)
    _panel_shown(page, session_tmp, "click")
    assert re.search(r"[?&]det=\d+", page.url), page.url  # shareable


def test_a_detect_link_opens_the_explanation(app_url, page, session_tmp):
    page.goto(f"{app_url}/detect?model=demo")
    wait_for_app(page, 240)
    assert_no_exception(page)
    main = page.locator("[data-testid='stMain']")
    link = main.locator("a[href*='view=Detections']").first
    expect(link).to_be_attached(timeout=120_000)
    href = link.get_attribute("href")
    assert "det=" in href and "sample=" in href, href
    page.goto(href if href.startswith("http") else f"{app_url}/{href}")
    wait_for_app(page, 240)
    _panel_shown(page, session_tmp, "from-detect")


def test_a_diagnose_false_positive_opens_the_explanation(app_url, page, session_tmp, tiny_checkpoint):
    # random weights: false positives everywhere
    main, dataset = open_diagnose_on_tiny_model(page, app_url, session_tmp, tiny_checkpoint, "tiny-explain.pt",
                                                "explain-browser", images=4, seed=13)
    # score threshold 0: every detection counts (the tiny model's scores are all under 0.5)
    slider = main.locator("[data-testid='stSlider']").filter(has_text="Score threshold").get_by_role("slider")
    slider.focus()
    page.keyboard.press("Home")
    wait_for_app(page, 240)
    page.get_by_role("tab", name="Confusion").click()
    wait_for_app(page)
    link = main.get_by_role("link", name="Explain this detection in the RPN inspector")
    expect(link).to_be_visible(timeout=60_000)
    href = link.get_attribute("href")
    assert "det=" in href and f"dataset={dataset}" in href, href
    page.goto(href if href.startswith("http") else f"{app_url}/{href}")
    wait_for_app(page, 240)
    _panel_shown(page, session_tmp, "from-diagnose")
