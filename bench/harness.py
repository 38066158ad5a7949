"""The one Streamlit + Chromium harness of the browser tests, the benchmarks and the screenshot script.

- `start_app` / `stop_process`: `streamlit run app.py` (or another script) on a free loopback port in
  its own process group, returned once its health check answers; stopped with the whole group.
- `CHROMIUM`, `CHROMIUM_ARGS`, `launch_options()`: Debian's headless Chromium (/usr/bin/chromium, or
  $CHROMIUM_PATH); a browser is never downloaded.
- The one "page finished" rule, for sync (`wait_for_app`) and async (`wait_for_app_async`) Playwright
  pages: RUN_WATCH_JS, added to every browser context (`new_page`, `new_context_async`), records in
  the page when the frontend last sent a websocket message (a widget change, a fragment's
  auto-rerun, the first run on connect) or finished an HTTP request (a file upload), and when a
  script run last ended; the page is finished when stApp's script state is notRunning, no skeleton
  is left, every plotly chart on the page is drawn, no HTTP request is in flight, and that holds for
  SETTLE_S once a finished run has answered every message sent (the rerun an action asked for came
  and went), else for QUIET_S (a rerun asked for may not have started yet). The seconds returned do
  not count that settling time.

It lives in bench/ beside the benchmarks that drive the app from outside (tests/ and scripts/ import
it as `bench.harness`); it imports neither streamlit nor the app, only starts them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]
VIEWPORT = {"width": 1400, "height": 1000}


def launch_options(executable: str | None = None) -> dict:
    """Keyword arguments of Playwright's `chromium.launch` (sync or async) for our headless Chromium."""
    return {"executable_path": executable or CHROMIUM, "headless": True, "args": CHROMIUM_ARGS}


def use_chromium(executable: str) -> None:
    """Every later launch_options() starts this executable (bench/load.py --browser-nice's wrapper)."""
    global CHROMIUM
    CHROMIUM = executable


def browser_missing() -> str | None:
    """Why the browser cannot run here (no Chromium, no Playwright), or None."""
    if not Path(CHROMIUM).exists():
        return f"Chromium not found at {CHROMIUM}"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed"
    return None


# ---------------------------------------------------------------- the app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(workspace: Path | None, log: Path, timeout_s: float = 120,
              script: str = "app.py") -> tuple[subprocess.Popen, str]:
    """`streamlit run <script>` on a free loopback port, in its own session; (process, URL) once healthy.

    workspace: its DETECTOR_WORKSPACE (None: this process's). Raises RuntimeError (the log's tail)
    when the server exits or is not healthy within timeout_s."""
    port = free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if workspace is not None:
        env["DETECTOR_WORKSPACE"] = str(workspace)
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", script, "--server.port", str(port), "--server.address",
         "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.5)
    stop_process(proc)
    raise RuntimeError(f"streamlit did not start within {timeout_s:.0f} s")


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM to the process's group (it leads its own session), SIGKILL after 15 s."""
    if proc.poll() is not None:
        return
    signal_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        signal_group(proc.pid, signal.SIGKILL)
        proc.wait(5)


def signal_group(pid: int, sig: int) -> None:
    """os.killpg, quiet when the group is gone or not ours."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# ---------------------------------------------------------------- the page-finished rule

# Records, in the page, when the app last answered: the time of every message the frontend sends
# (and of every HTTP request it made ending: an upload, whose rerun message follows), the requests
# still in flight, and the time of every script run ending (stApp's data-test-script-state back to
# notRunning).
RUN_WATCH_JS = """(() => {
  const w = (window.__runWatch = {lastSend: 0, lastEnd: 0, pending: 0});
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) { w.lastSend = performance.now(); return send.call(this, data); };
  const xhrSend = XMLHttpRequest.prototype.send;  // a file upload: a request, then the rerun's message
  XMLHttpRequest.prototype.send = function (body) {
    w.pending += 1;
    this.addEventListener("loadend", () => { w.pending -= 1; w.lastSend = performance.now(); });
    return xhrSend.call(this, body);
  };
  new MutationObserver((records) => {
    for (const r of records)
      if (r.target.getAttribute("data-test-script-state") === "notRunning") w.lastEnd = performance.now();
  }).observe(document, {subtree: true, attributes: true, attributeFilter: ["data-test-script-state"]});
})();"""
APP_STATE_JS = """() => {
  const app = document.querySelector("[data-testid='stApp']");
  const w = window.__runWatch || {lastSend: 1, lastEnd: 0, pending: 0};
  const undrawn = [...document.querySelectorAll("[data-testid='stPlotlyChart']")].some(c => !c.querySelector(".main-svg"));
  return {busy: !app || app.getAttribute("data-test-script-state") !== "notRunning"
                || !!document.querySelector("[data-testid='stSkeleton']") || undrawn || w.pending > 0,
          answered: w.lastEnd > w.lastSend, lastSend: w.lastSend};
}"""
QUIET_S = 1.0  # idle this long with a message unanswered (or none seen): the app is done
SETTLE_S = 0.3  # idle this long after a run answered every message sent: the app is done
POLL_S = 0.1
APP_SELECTOR = "[data-testid='stApp']"


@dataclass
class FinishWatch:
    """The page-finished rule over successive APP_STATE_JS readings (None: the document was being
    replaced, read as busy)."""

    start: float
    quiet_since: float | None = None
    last_send: float | None = None

    def done(self, state: dict | None, now: float) -> bool:
        state = state or {"busy": True, "lastSend": None}
        if state["busy"] or state["lastSend"] != self.last_send:  # running, or a new message sent: count again
            self.quiet_since, self.last_send = (None if state["busy"] else now), state["lastSend"]
            return False
        if self.quiet_since is None:
            self.quiet_since = now
            return False
        return now - self.quiet_since >= (SETTLE_S if state["answered"] else QUIET_S)

    def seconds(self) -> float:
        """From the start of the wait to the moment the page went quiet (the settling not counted)."""
        return (self.quiet_since or self.start) - self.start


def wait_for_app(page, timeout_s: float = 120) -> float:
    """Wait until the app has finished (the rule above) on a sync Playwright page; the seconds it took.
    Raises AssertionError past timeout_s."""
    from playwright.sync_api import Error as PlaywrightError

    watch = FinishWatch(time.monotonic())
    page.wait_for_selector(APP_SELECTOR, timeout=timeout_s * 1000)
    deadline = watch.start + timeout_s
    while time.monotonic() < deadline:
        try:
            state = page.evaluate(APP_STATE_JS)
        except PlaywrightError:  # a navigation replaced the document: as busy
            state = None
        if watch.done(state, time.monotonic()):
            return watch.seconds()
        time.sleep(POLL_S)
    raise AssertionError("the app was still running after %.0f s" % timeout_s)


async def wait_for_app_async(page, timeout_s: float = 120) -> float:
    """wait_for_app for an async Playwright page."""
    from playwright.async_api import Error as PlaywrightError

    watch = FinishWatch(time.monotonic())
    await page.wait_for_selector(APP_SELECTOR, timeout=timeout_s * 1000)
    deadline = watch.start + timeout_s
    while time.monotonic() < deadline:
        try:
            state = await page.evaluate(APP_STATE_JS)
        except PlaywrightError:
            state = None
        if watch.done(state, time.monotonic()):
            return watch.seconds()
        await asyncio.sleep(POLL_S)
    raise AssertionError("the app was still running after %.0f s" % timeout_s)


def new_page(browser, width: int = VIEWPORT["width"], height: int = VIEWPORT["height"]):
    """A sync page in a fresh browser context (its own cookies and session), watching the app's runs."""
    context = browser.new_context(viewport={"width": width, "height": height})
    context.add_init_script(RUN_WATCH_JS)
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    return pg


async def new_context_async(browser, width: int = VIEWPORT["width"], height: int = VIEWPORT["height"]):
    """An async browser context (its own cookies and session) whose pages watch the app's runs."""
    context = await browser.new_context(viewport={"width": width, "height": height})
    await context.add_init_script(RUN_WATCH_JS)
    return context
