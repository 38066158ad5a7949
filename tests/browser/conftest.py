"""Browser tests: `streamlit run app.py` on a free loopback port, driven by Playwright in Debian's
headless Chromium (/usr/bin/chromium; never a browser download), through bench.harness: the one
server start, browser set-up and page-finished wait of the tests, the benchmarks and the scripts.

Without Chromium or Playwright these tests skip, except when REQUIRE_BROWSER=1 (CI), where they fail.
"""

from __future__ import annotations

import os
import re
import time

import pytest

from bench.harness import ROOT, browser_missing, launch_options, new_page, start_app, stop_process, wait_for_app
from detector import runs
from tests.polling import wait_for

__all__ = ["ROOT", "new_page", "wait_for_app"]  # the tests import them from here too
REQUIRED = os.environ.get("REQUIRE_BROWSER") == "1"


def pytest_collection_modifyitems(config, items):
    reason = browser_missing()
    if reason is None:
        return
    for item in items:
        if "browser" in item.keywords:
            if REQUIRED:
                item.add_marker(pytest.mark.xfail(reason=reason, run=False, strict=True))
                raise pytest.UsageError(f"browser tests are required (REQUIRE_BROWSER=1) but {reason}")
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def app_url(session_tmp):
    """URL of the app served by a real `streamlit run app.py` (shared by the session)."""
    if browser_missing():
        pytest.skip(browser_missing())
    proc, url = start_app(None, session_tmp / "streamlit.log", timeout_s=90)
    yield url
    stop_process(proc)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(**launch_options())
        yield b
        b.close()


@pytest.fixture
def page(browser):
    pg = new_page(browser)
    yield pg
    pg.context.close()


def assert_no_exception(page) -> None:
    """No Streamlit exception box and no error alert on the page."""
    exceptions = page.locator("[data-testid='stException']")
    assert exceptions.count() == 0, exceptions.first.inner_text()


def open_diagnose_on_tiny_model(page, app_url: str, session_tmp, tiny_checkpoint, model: str, dataset: str,
                                images: int, seed: int):
    """Upload the random-weight tiny model as models/`model` (every score under 0.5) and a synthetic set
    stored as `dataset` (160 x 120 images, half validation), open /diagnose on both and wait for its AP
    figures. Returns (the page's main area, the stored dataset's name)."""
    import shutil

    from playwright.sync_api import expect

    from detector.data import store
    from detector.data.synthetic import write_synthetic
    from ui.links import models_dir

    models_dir().mkdir(parents=True, exist_ok=True)
    shutil.copy(tiny_checkpoint, models_dir() / model)
    folder = write_synthetic(session_tmp / dataset, images=images, seed=seed, width=160, height=120, val_fraction=0.5)
    stored = store.store_upload(dataset, folder)
    page.goto(f"{app_url}/diagnose?model=upload:{model}&dataset={stored.name}")
    wait_for_app(page, 240)
    assert_no_exception(page)
    main = page.locator("[data-testid='stMain']")
    expect(main.get_by_text(re.compile("AP figures: pycocotools"))).to_be_visible(timeout=120_000)
    return main, stored.name


def zip_folder(folder, out):
    """A zip of `folder`'s files, paths relative to it (as a download of an export is)."""
    import zipfile

    with zipfile.ZipFile(out, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(folder).as_posix())
    return out


def upload_dataset(page, app_url: str, archive) -> None:
    """Upload a dataset archive on /data and wait for its validation report."""
    page.goto(f"{app_url}/data")
    wait_for_app(page)
    uploader = page.locator("[data-testid='stFileUploader']").filter(has_text="Dataset archive")
    uploader.locator("input[type='file']").set_input_files(str(archive))
    page.get_by_text("Validation report").wait_for(timeout=120_000)
    wait_for_app(page, 180)
    assert_no_exception(page)


def wait_until(predicate, timeout_s: float, what: str) -> None:
    """Poll `predicate` (Python, reading the page or the run folder) until it is true."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            if predicate():
                return
        except Exception:  # an element being replaced by a rerun
            pass
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


# ---- the Train page

# points in the first trace of the first plotly chart (on /train: the training loss curve)
POINTS_JS = """() => {
  const g = document.querySelector("[data-testid='stPlotlyChart'] .js-plotly-plot");
  if (!g || !g._fullData || !g._fullData.length) return 0;
  return g._fullData[0]._length || (g.data[0].x ? g.data[0].x.length : 0);
}"""


@pytest.fixture
def stop_everything():
    """Whatever happens in the test, ask every run it started that is still training to stop.

    Only the runs that appeared during the test: earlier tests leave run folders made without a
    process (status queued, no pid), which no stop request ends (waiting on three of them cost three
    minutes a test)."""
    before = {summary.run_dir for summary in runs.list_runs()}
    yield
    for summary in runs.list_runs():
        if summary.run_dir not in before and summary.state in runs.ACTIVE_STATES:
            runs.request_stop(summary.run_dir)
            wait_for(lambda: runs.read_status(summary.run_dir).shown_state not in runs.ACTIVE_STATES, 60)


def open_form(page, first_field: str, expander: str) -> None:
    """Open a page's collapsed form (its `expander`) unless its `first_field` shows already."""
    if not page.get_by_label(first_field, exact=True).is_visible():
        page.get_by_text(expander).click()
    page.get_by_label(first_field, exact=True).wait_for()


def choose_dataset(page, name: str) -> None:
    """Pick stored dataset `name` in the first 'Dataset' selectbox, unless it is chosen already."""
    dataset_box = page.locator("[data-testid='stSelectbox']").filter(has_text="Dataset").first
    if name not in dataset_box.inner_text():
        dataset_box.click()
        page.get_by_role("option", name=re.compile(re.escape(name))).click()
        wait_for_app(page)


def set_number(page, label: str, value: int) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Enter")
    wait_for_app(page)


def fill_short_run(page, epochs: int, batch: int, short_side: int, long_side: int, snapshots: int | None = None) -> None:
    """On /train's open form: a short CPU run (epochs, batch size, image sides in px, no data
    workers; the number of RPN snapshot images if given)."""
    set_number(page, "Epochs", epochs)
    set_number(page, "Batch size", batch)
    set_number(page, "Short side (px, 0 = model's)", short_side)
    set_number(page, "Long side max (px, 0 = model's)", long_side)
    page.get_by_text("More settings").click()
    set_number(page, "Data workers", 0)
    if snapshots is not None:
        set_number(page, "RPN snapshot images", snapshots)


def train_step(page) -> int:
    """The step the run's Step metric shows (0 before the first)."""
    text = page.locator("[data-testid='stMetric']").filter(has_text="Step").first.inner_text()
    match = re.search(r"Step\s+(\d+)", text)
    return int(match.group(1)) if match else 0


def run_header(page) -> str:
    """The selected run's heading: `<run> · <state>`."""
    return page.locator("h3").filter(has_text=" · ").first.inner_text()
