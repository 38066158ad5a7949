"""Every page in the navigation renders in headless Chromium without an exception."""

from __future__ import annotations

import pytest

from tests.browser.conftest import ROOT, assert_no_exception, wait_for_app
from ui.router import PAGES as ROUTER_PAGES

pytestmark = pytest.mark.browser

PAGES = {p.url: p.file for p in ROUTER_PAGES}  # the router's own list (ui.router.PAGES)


def test_every_page_renders(app_url, page, session_tmp):
    listed = [url for url, file in PAGES.items() if (ROOT / file).is_file()]
    assert "" in listed
    page.goto(f"{app_url}/detect")  # a shared link straight to a sub-page, first thing
    wait_for_app(page, 180)
    assert "Run models on" in page.locator("[data-testid='stSidebar']").inner_text()
    page.goto(app_url)
    wait_for_app(page)
    nav_links = page.locator("[data-testid='stSidebarNav'] a")
    if len(listed) > 1:  # a single page has no navigation menu
        assert nav_links.count() == len(listed)
    for url in listed:
        page.goto(f"{app_url}/{url}")
        wait_for_app(page, 180)
        assert_no_exception(page)
        # the shared sidebar (app.py's router) is there on every page, also when opened directly
        assert "Run models on" in page.locator("[data-testid='stSidebar']").inner_text()
        page.screenshot(path=str(session_tmp / f"page-{url or 'home'}.png"), full_page=True)
    page.goto(app_url)
    wait_for_app(page)
    assert page.get_by_text("Faster R-CNN Explorer").first.is_visible()
