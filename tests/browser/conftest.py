"""Browser tests: `streamlit run app.py` on a free loopback port (bench.load.start_app), driven
by Playwright in Debian's headless Chromium (/usr/bin/chromium; never a browser download).

Without Chromium or Playwright these tests skip, except when REQUIRE_BROWSER=1 (CI), where they fail.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from bench.load import CHROMIUM, CHROMIUM_ARGS  # one browser set-up for the tests and the load benchmark
from detector import runs

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = os.environ.get("REQUIRE_BROWSER") == "1"


def _missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"Chromium not found at {CHROMIUM}"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed"
    return None


def pytest_collection_modifyitems(config, items):
    reason = _missing()
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
    if _missing():
        pytest.skip(_missing())
    from bench.load import start_app, stop_process

    proc, url = start_app(None, session_tmp / "streamlit.log", timeout_s=90)
    yield url
    stop_process(proc)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


# Records, in the page, when the app last answered: the time of every message the frontend sends
# (a widget change, a fragment's auto-rerun, the first run on connect) and of every script run
# ending (stApp's data-test-script-state back to notRunning); wait_for_app reads them.
RUN_WATCH_JS = """(() => {
  const w = (window.__runWatch = {lastSend: 0, lastEnd: 0});
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) { w.lastSend = performance.now(); return send.call(this, data); };
  new MutationObserver((records) => {
    for (const r of records)
      if (r.target.getAttribute("data-test-script-state") === "notRunning") w.lastEnd = performance.now();
  }).observe(document, {subtree: true, attributes: true, attributeFilter: ["data-test-script-state"]});
})();"""
APP_STATE_JS = """() => {
  const app = document.querySelector("[data-testid='stApp']");
  const w = window.__runWatch || {lastSend: 1, lastEnd: 0};
  return {busy: !app || app.getAttribute("data-test-script-state") !== "notRunning"
                || !!document.querySelector("[data-testid='stSkeleton']"),
          answered: w.lastEnd > w.lastSend, lastSend: w.lastSend};
}"""
QUIET_S = 1.0  # idle this long with a message unanswered (or none seen): the app is done
SETTLE_S = 0.3  # idle this long after a run answered every message sent: the app is done


def new_page(browser, width: int = 1400, height: int = 1000):
    """A page in a fresh browser context (its own cookies and session), watching the app's runs."""
    context = browser.new_context(viewport={"width": width, "height": height})
    context.add_init_script(RUN_WATCH_JS)
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    return pg


@pytest.fixture
def page(browser):
    pg = new_page(browser)
    yield pg
    pg.context.close()


def wait_for_app(page, timeout_s: float = 120) -> None:
    """Wait until Streamlit has finished running the script and the page's content is rendered:
    stApp's script state is notRunning, no skeleton is left, and that holds for SETTLE_S once a
    finished run has answered every message the frontend sent (the rerun an action asked for came
    and went), else for QUIET_S (a rerun asked for may not have started yet)."""
    from playwright.sync_api import Error as PlaywrightError

    page.wait_for_selector("[data-testid='stApp']", timeout=timeout_s * 1000)
    deadline = time.monotonic() + timeout_s
    quiet_since, last_send = None, None
    while time.monotonic() < deadline:
        try:
            state = page.evaluate(APP_STATE_JS)
        except PlaywrightError:  # a navigation replaced the document: as busy
            state = {"busy": True, "lastSend": None}
        now = time.monotonic()
        if state["busy"] or state["lastSend"] != last_send:  # running, or a new message sent: count again
            quiet_since, last_send = (None if state["busy"] else now), state["lastSend"]
        elif quiet_since is None:
            quiet_since = now
        elif now - quiet_since >= (SETTLE_S if state["answered"] else QUIET_S):
            return
        time.sleep(0.1)
    raise AssertionError("the app was still running after %.0f s" % timeout_s)


def assert_no_exception(page) -> None:
    """No Streamlit exception box and no error alert on the page."""
    exceptions = page.locator("[data-testid='stException']")
    assert exceptions.count() == 0, exceptions.first.inner_text()


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
    """Whatever happens in the test, ask every run still training to stop."""
    yield
    for summary in runs.list_runs():
        if summary.state in runs.ACTIVE_STATES:
            runs.request_stop(summary.run_dir)
            runs.wait_for(lambda: runs.read_status(summary.run_dir).state not in runs.ACTIVE_STATES, 60)


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
