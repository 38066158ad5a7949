"""Browser: diagnose a stored dataset, see the charts, follow a missed box to /rpn, where it is drawn."""

from __future__ import annotations

import re
import shutil
from urllib.parse import unquote

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import assert_no_exception, wait_for_app

pytestmark = pytest.mark.browser


def test_diagnose_a_stored_dataset_and_follow_a_missed_box_to_rpn(app_url, page, session_tmp, tiny_checkpoint):
    from detector.data import store
    from detector.data.synthetic import write_synthetic
    from ui.links import models_dir

    # a random-weight model (every score under 0.5: every box is missed somewhere) as an uploaded model
    models_dir().mkdir(parents=True, exist_ok=True)
    shutil.copy(tiny_checkpoint, models_dir() / "tiny-browser.pt")
    folder = write_synthetic(session_tmp / "diag-browser", images=6, seed=12, width=160, height=120, val_fraction=0.5)
    stored = store.store_upload("diag-browser", folder)

    page.goto(f"{app_url}/diagnose?model=upload:tiny-browser.pt&dataset={stored.name}")
    wait_for_app(page, 240)
    assert_no_exception(page)
    main = page.locator("[data-testid='stMain']")
    expect(main.get_by_text(re.compile("AP figures: pycocotools"))).to_be_visible(timeout=120_000)
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
