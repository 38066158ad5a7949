"""Browser: on /anchors' Study section, start a short study (two anchor sets, one epoch, 64 px) from a
stored dataset, see it go run by run, then its table and figures beside the paper's Table 8; its
runs open on /train like any other."""

from __future__ import annotations

import re

import pytest

from detector import anchor_study
from detector.data.store import store_upload
from detector.data.synthetic import write_synthetic
from detector.workspace import studies_dir
from tests.browser.conftest import (
    assert_no_exception, choose_dataset, open_form, run_header, set_number, wait_for_app, wait_until,
)

pytestmark = pytest.mark.browser

SETS = ("1s1r-128", "3s3r")


def _body(page) -> str:
    return page.get_by_test_id("stMainBlockContainer").inner_text()


@pytest.mark.timeout(1200)  # two trainings one after the other: up to 9 minutes on a busy 2-core machine
def test_start_a_short_study_and_see_its_table(app_url, page, tmp_path, session_tmp):
    folder = write_synthetic(tmp_path / "browser-study", images=4, seed=6, width=128, height=96)
    name = store_upload("browser-study", folder).name

    page.goto(f"{app_url}/anchors?section=study")
    wait_for_app(page, 180)
    assert_no_exception(page)
    open_form(page, "Epochs per run", "Start a new study")
    choose_dataset(page, name)
    set_number(page, "Epochs per run", 1)
    set_number(page, "Short side (px, 0 = model's)", 64)
    # the anchor sets: clear the default (all seven), then pick two by typing their keys
    sets_box = page.locator("[data-testid='stMultiSelect']").filter(has_text="Anchor sets")
    sets_box.locator("[aria-label='Clear all'], [data-baseweb='select'] svg[title='Clear all']").first.click()
    wait_for_app(page)
    for key in SETS:
        sets_box.locator("input").fill(key)
        page.get_by_role("option", name=re.compile(re.escape(key))).first.click()
        wait_for_app(page)
    assert all(key in sets_box.inner_text() for key in SETS)
    page.keyboard.press("Escape")
    page.get_by_role("button", name="Start study").click()
    shown = re.compile(r"(study-\d{8}-\d{6}(?:-\d+)?): ")
    found: list[str] = []

    def study_shown() -> bool:  # the name kept as seen: the section redraws every 3 s, a second read may miss it
        match = shown.search(_body(page))
        if match:
            found.append(match.group(1))
        return bool(found)

    wait_until(study_shown, 120, "the new study shown")
    study_name = found[0]
    wait_until(lambda: f"study={study_name}" in page.url, 30, "the study's name in the URL")
    study_dir = studies_dir() / study_name
    try:
        # run by run: the page follows it on its own (no reload)
        wait_until(lambda: f"training {SETS[0]}" in _body(page) or "1 of 2 runs done" in _body(page), 240,
                   "the first run training")
        wait_until(lambda: "done, 2 of 2 runs done" in _body(page), 600, "the study to finish")
    finally:
        if (anchor_study.read_study(study_dir) or {}).get("shown_state") in ("running", "stopping"):
            anchor_study.request_stop(study_dir)
    wait_for_app(page, 120)
    assert_no_exception(page)
    assert anchor_study.read_study(study_dir)["state"] == "done"

    # the table and the figures: our sets beside the paper's rows
    assert "Our sets beside the paper's Table 8" in _body(page)
    charts = page.locator("[data-testid='stPlotlyChart']")
    wait_until(lambda: charts.count() == 2, 60, "the mAP bars and the recall curves")
    bars = charts.first
    assert sorted(t.strip() for t in bars.locator(".xtick text").all_text_contents()) == sorted(SETS)
    assert "paper, Table 8 (VOC07 mAP)" in " ".join(bars.locator(".legendtext").all_text_contents())
    curves = charts.nth(1)
    assert sorted(curves.locator(".legendtext").all_text_contents()) == sorted(SETS)
    page.screenshot(path=str(session_tmp / "anchors-study-flow.png"), full_page=True)

    # each set's run is an ordinary run on /train
    page.goto(f"{app_url}/train?run={study_name}-{SETS[1]}")
    wait_for_app(page, 180)
    assert_no_exception(page)
    assert f"{study_name}-{SETS[1]} · done" in run_header(page)
