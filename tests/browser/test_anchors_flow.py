"""Browser: on /anchors, clicking a cell centre on the plotly scatter draws that cell's anchors and
sets the row / column inputs; typing a row moves the drawn anchors back the other way."""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import assert_no_exception, wait_for_app

pytestmark = pytest.mark.browser


def _inputs(page) -> dict[str, str]:
    """Level / Row / Column number inputs by their label's first word."""
    out = {}
    widgets = page.locator("[data-testid='stNumberInput']")
    for i in range(widgets.count()):
        label = widgets.nth(i).locator("label").inner_text().split(" ")[0]
        out[label] = widgets.nth(i).locator("input").input_value()
    return out


def _drawn_cell(chart) -> tuple[int, int]:
    """(row, column) named by the legend entry of the anchors drawn on the chart."""
    texts = [t.text_content() or "" for t in chart.locator(".legendtext").all()]
    found = [re.search(r"anchors at row (\d+), column (\d+)", t) for t in texts]
    (match,) = [m for m in found if m]
    return int(match.group(1)), int(match.group(2))


def test_click_a_cell_centre_draws_its_anchors(app_url, page):
    page.goto(f"{app_url}/anchors")
    wait_for_app(page, 240)
    assert_no_exception(page)
    chart = page.locator(".js-plotly-plot").first
    chart.scroll_into_view_if_needed()
    before = _inputs(page)
    assert _drawn_cell(chart) == (int(before["Row"]), int(before["Column"]))  # opens with anchors drawn

    # the cell centres are the first scatter trace; click one far from the selected cell
    points = chart.locator(".scatterlayer .trace").first.locator("path.point")
    assert points.count() > 20
    box = points.nth(points.count() - 2).bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_function(
        "([r, c]) => { const i = [...document.querySelectorAll(\"[data-testid='stNumberInput'] input\")];"
        " return i.length >= 3 && (i[1].value !== r || i[2].value !== c); }",
        arg=[before["Row"], before["Column"]], timeout=60_000,
    )
    wait_for_app(page, 120)
    assert_no_exception(page)
    after = _inputs(page)
    assert (after["Row"], after["Column"]) != (before["Row"], before["Column"])
    chart = page.locator(".js-plotly-plot").first
    assert _drawn_cell(chart) == (int(after["Row"]), int(after["Column"]))
    labels = [t.text_content() or "" for t in chart.locator(".textpoint text, text.textpoint").all()]
    assert any(re.match(r"#\d+ size \d+, ratio [\d.]+", t) for t in labels)

    # and back: typing a row redraws the anchors at that row
    row_input = page.locator("[data-testid='stNumberInput']").nth(1).locator("input")
    row_input.fill("0")
    row_input.press("Enter")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.js-plotly-plot .legendtext')].some(t => /anchors at row 0,/.test(t.textContent))",
        timeout=60_000,
    )
    wait_for_app(page, 120)
    assert _drawn_cell(page.locator(".js-plotly-plot").first)[0] == 0
