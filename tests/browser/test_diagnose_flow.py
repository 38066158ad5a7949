"""Browser: diagnose a stored dataset, see the charts, follow a missed box to /rpn, where it is drawn."""

from __future__ import annotations

import re
from urllib.parse import unquote

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import assert_no_exception, open_diagnose_on_tiny_model, wait_for_app

pytestmark = pytest.mark.browser


def test_diagnose_a_stored_dataset_and_follow_a_missed_box_to_rpn(app_url, page, session_tmp, tiny_checkpoint):
    # a random-weight model (every score under 0.5: every box is missed somewhere) as an uploaded model
    main, _ = open_diagnose_on_tiny_model(page, app_url, session_tmp, tiny_checkpoint, "tiny-browser.pt",
                                          "diag-browser", images=6, seed=12)
    expect(main.locator(".js-plotly-plot").first).to_be_visible(timeout=60_000)  # PR curves

    page.get_by_role("tab", name="Confusion").click()
    wait_for_app(page)
    expect(main.locator(".js-plotly-plot .heatmaplayer").first).to_be_attached(timeout=60_000)
    page.get_by_role("tab", name="Where missed").click()
    wait_for_app(page)
    expect(main.get_by_text(re.compile("no anchor shape fits them"))).to_be_visible(timeout=60_000)
    page.screenshot(path=str(session_tmp / "diagnose-stages.png"), full_page=True)

    page.get_by_role("tab", name="Missed boxes").click()
    wait_for_app(page)
    link = main.get_by_role("link", name="Open this box in the RPN inspector")
    expect(link).to_be_visible(timeout=60_000)
    href = link.get_attribute("href")
    assert href.startswith("rpn?model=upload:tiny-browser.pt&dataset=") and "&box=" in href, href
    image = re.search(r"image=([^&]+)", href).group(1)

    page.goto(f"{app_url}/{href}")
    wait_for_app(page, 240)
    assert_no_exception(page)
    expect(main.get_by_text(re.compile("Magenta: the box from the link"))).to_be_visible(timeout=120_000)
    url = unquote(page.url)  # Streamlit re-encodes the query string it keeps in step with the page
    assert f"image={image}" in url and "box=" in url
    page.screenshot(path=str(session_tmp / "rpn-linked-box.png"), full_page=True)
