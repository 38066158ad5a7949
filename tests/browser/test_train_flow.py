"""The training flow in headless Chromium: start a short run on a synthetic dataset from /train,
watch the curves update live (a zoom survives the refresh), stop it, reopen the page, resume it."""

from __future__ import annotations

import re

import pytest

from detector import runs
from detector.data.store import store_upload
from detector.data.synthetic import write_synthetic
from detector.workspace import runs_dir
from tests.browser.conftest import (
    POINTS_JS, assert_no_exception, choose_dataset, fill_short_run, open_form, run_header, train_step, wait_for_app,
    wait_until,
)

pytestmark = pytest.mark.browser

def test_start_watch_stop_resume(app_url, page, tmp_path, session_tmp, stop_everything):
    folder = write_synthetic(tmp_path / "browser-train", images=8, seed=5, width=96, height=96)
    name = store_upload("browser-train", folder).name

    page.goto(f"{app_url}/train")
    wait_for_app(page)
    assert_no_exception(page)
    # the form: our dataset, the default (small demo) architecture, a short run at 96 px
    open_form(page, "Epochs", "Start a new run")
    choose_dataset(page, name)
    fill_short_run(page, epochs=40, batch=1, short_side=96, long_side=128, snapshots=1)
    page.get_by_role("button", name="Start training").click()
    wait_for_app(page)
    wait_until(lambda: "run=run-" in page.url, 30, "the run id in the URL")
    run_name = re.search(r"run=([^&]+)", page.url).group(1)
    run_dir = runs_dir() / run_name
    assert runs.read_config(run_dir)["data"] == name

    # live: the fragment re-reads metrics and the chart grows without a reload
    wait_until(lambda: train_step(page) >= 2 and page.evaluate(POINTS_JS) >= 2, 180, "the first training steps")
    first_step, first_points = train_step(page), page.evaluate(POINTS_JS)
    wait_until(lambda: train_step(page) > first_step and page.evaluate(POINTS_JS) > first_points, 120, "the chart to update")
    assert_no_exception(page)

    page.screenshot(path=str(session_tmp / "train-flow-live.png"), full_page=True)

    # stop: the engine checkpoints and exits; the page notices on its own
    page.get_by_role("button", name="Stop").click()
    wait_until(lambda: "· stopped" in run_header(page), 120, "the run to stop")
    assert runs.read_status(run_dir).state == "stopped"
    stopped_at = runs.read_status(run_dir).step

    # a fresh visit without ?run= opens on the most recent run, which can be resumed
    page.goto(f"{app_url}/train")
    wait_for_app(page)
    assert f"run={run_name}" in page.url and "· stopped" in run_header(page)
    page.get_by_role("button", name="Resume").click()
    wait_until(lambda: runs.read_status(run_dir).step > stopped_at, 180, "steps after resuming")
    wait_until(lambda: "· running" in run_header(page) and train_step(page) > stopped_at, 60, "the page to follow the resumed run")
    assert "resuming after epoch" in "\n".join(runs.log_tail(run_dir, 200))
    assert_no_exception(page)
    page.get_by_role("button", name="Stop").click()
    wait_until(lambda: "· stopped" in run_header(page), 120, "the resumed run to stop")
