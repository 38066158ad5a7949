"""The training flow in headless Chromium: start a short run on a synthetic dataset from /train,
watch the curves update live (a zoom survives the refresh), stop it, reopen the page, resume it."""

from __future__ import annotations

import re
import time

import pytest

from detector import runs
from detector.data.store import store_upload
from detector.data.synthetic import write_synthetic
from detector.workspace import runs_dir
from tests.browser.conftest import assert_no_exception, wait_for_app

pytestmark = pytest.mark.browser

POINTS_JS = """() => {
  const g = document.querySelector("[data-testid='stPlotlyChart'] .js-plotly-plot");
  if (!g || !g._fullData || !g._fullData.length) return 0;
  return g._fullData[0]._length || (g.data[0].x ? g.data[0].x.length : 0);
}"""
RANGE_JS = """() => {
  const g = document.querySelector("[data-testid='stPlotlyChart'] .js-plotly-plot");
  return g ? [g.layout.xaxis.range || null, g._fullLayout.xaxis.autorange] : null;
}"""


@pytest.fixture
def stop_everything():
    """Whatever happens in the test, ask every run still training to stop."""
    yield
    for summary in runs.list_runs():
        if summary.state in runs.ACTIVE_STATES:
            runs.request_stop(summary.run_dir)
            runs.wait_for(lambda: runs.read_status(summary.run_dir).state not in runs.ACTIVE_STATES, 60)


def _step(page) -> int:
    text = page.locator("[data-testid='stMetric']").filter(has_text="Step").first.inner_text()
    match = re.search(r"Step\s+(\d+)", text)
    return int(match.group(1)) if match else 0


def _wait(predicate, timeout_s: float, what: str) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            if predicate():
                return
        except Exception:  # an element being replaced by a rerun
            pass
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def _set_number(page, label: str, value: int) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Enter")
    wait_for_app(page)


def _header(page) -> str:
    return page.locator("h3").filter(has_text=" · ").first.inner_text()


def test_start_watch_stop_resume(app_url, page, tmp_path, session_tmp, stop_everything):
    folder = write_synthetic(tmp_path / "browser-train", images=8, seed=5, width=96, height=96)
    name = store_upload("browser-train", folder).name

    page.goto(f"{app_url}/train")
    wait_for_app(page)
    assert_no_exception(page)
    if not page.get_by_label("Epochs", exact=True).is_visible():
        page.get_by_text("Start a new run").click()
    # the form: our dataset, the default (small demo) architecture, a short run at 96 px
    page.get_by_label("Epochs", exact=True).wait_for()
    dataset_box = page.locator("[data-testid='stSelectbox']").filter(has_text="Dataset").first
    if name not in dataset_box.inner_text():
        dataset_box.click()
        page.get_by_role("option", name=re.compile(re.escape(name))).click()
        wait_for_app(page)
    _set_number(page, "Epochs", 40)
    _set_number(page, "Batch size", 1)
    _set_number(page, "Short side (px, 0 = model's)", 96)
    _set_number(page, "Long side max (px, 0 = model's)", 128)
    page.get_by_text("More settings").click()
    _set_number(page, "Data workers", 0)
    _set_number(page, "RPN snapshot images", 1)
    page.get_by_role("button", name="Start training").click()
    wait_for_app(page)
    _wait(lambda: "run=run-" in page.url, 30, "the run id in the URL")
    run_name = re.search(r"run=([^&]+)", page.url).group(1)
    run_dir = runs_dir() / run_name
    assert runs.read_config(run_dir)["data"] == name

    # live: the fragment re-reads metrics and the chart grows without a reload
    _wait(lambda: _step(page) >= 2 and page.evaluate(POINTS_JS) >= 2, 180, "the first training steps")
    first_step, first_points = _step(page), page.evaluate(POINTS_JS)
    _wait(lambda: _step(page) > first_step and page.evaluate(POINTS_JS) > first_points, 120, "the chart to update")
    assert_no_exception(page)

    page.screenshot(path=str(session_tmp / "train-flow-live.png"), full_page=True)

    # stop: the engine checkpoints and exits; the page notices on its own
    page.get_by_role("button", name="Stop").click()
    _wait(lambda: "· stopped" in _header(page), 120, "the run to stop")
    assert runs.read_status(run_dir).state == "stopped"
    stopped_at = runs.read_status(run_dir).step

    # a fresh visit without ?run= opens on the most recent run, which can be resumed
    page.goto(f"{app_url}/train")
    wait_for_app(page)
    assert f"run={run_name}" in page.url and "· stopped" in _header(page)
    page.get_by_role("button", name="Resume").click()
    _wait(lambda: runs.read_status(run_dir).step > stopped_at, 180, "steps after resuming")
    _wait(lambda: "· running" in _header(page) and _step(page) > stopped_at, 60, "the page to follow the resumed run")
    assert "resuming after epoch" in "\n".join(runs.log_tail(run_dir, 200))
    assert_no_exception(page)
    page.get_by_role("button", name="Stop").click()
    _wait(lambda: "· stopped" in _header(page), 120, "the resumed run to stop")
