"""Load benchmark: N headless Chromium sessions at once against one `streamlit run app.py`.

    python -m bench.load [--sessions 4] [--pages rpn,detect] [--lone-pages rpn,anchors,detect]
                         [--no-training] [--timeout 1200] [--json OUT.json]
    python -m bench.load --watch-train 60     # one open /train page while a CPU training runs

What it does, all on loopback, in a temporary workspace (DETECTOR_WORKSPACE), bounded by --timeout:
1. starts the app on a free 127.0.0.1 port and waits for its health check;
2. lone visits, one browser, one page at a time: each page of --lone-pages cold (first visit of
   the server) then warm (a fresh browser context, the server's caches filled), then nav (from /
   by the sidebar's link, no page load), with the page's wall seconds, the server's CPU seconds
   and the browser's CPU seconds for that visit;
3. (unless --no-training) a CPU training started the way the Train page starts one
   (detector.runs.start_training) alone, timed to its first step, then stopped;
4. the load: a CPU training started again, one session that opens /train and stays on it, and
   N sessions at once, each in its own Chromium, visiting --pages in order;
5. reports per page median / worst seconds and errors, server and browser CPU seconds per session,
   the fair-share ratio (worst session time under load / (N x lone warm time / cores)), the
   training's first step under load against alone, and the server's RSS at start / after the
   lone visits (before) / peak / after the sessions closed.

--watch-train S instead measures what one open /train page costs while a CPU training runs: after the
training's first step, one browser opens /train and stays S seconds; the server's and the browser's CPU
per second (cores), the websocket KB/s the browser received, and the steps and snapshots that arrived.

CPU seconds come from /proc/PID/stat (utime + stime): the server process for the server, every
Chromium process below this one for the browser (sampled every 0.2 s, so processes that exit are
still counted up to their last sample). A page visit is done when Streamlit's script state is
notRunning, no skeleton is left, every plotly chart on the page is drawn, and that holds for 1 s
(the second is not counted); a visit with an exception box or past --page-timeout is an error.
Needs Playwright and Debian's Chromium (/usr/bin/chromium); never downloads a browser.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]
TICK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


# ---------------------------------------------------------------- /proc readings


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of one process (all its threads), seconds; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK  # fields 14 and 15 of stat(5)


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * PAGE_SIZE / 2**20
    except OSError:
        return float("nan")


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                ppid = int(fh.read().rsplit(b")", 1)[1].split()[1])
        except OSError:
            continue
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as fh:
            return fh.read().strip()
    except OSError:
        return ""


class BrowserCPU:
    """Cumulative CPU seconds of every Chromium process below this process, sampled in a thread."""

    def __init__(self, interval_s: float = 0.2):
        self.interval_s = interval_s
        self.seen: dict[tuple[int, float], float] = {}  # (pid, start tick) -> last cpu seconds
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> BrowserCPU:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval_s)

    def sample(self) -> None:
        kids = _children()
        todo, found = [os.getpid()], []
        while todo:
            pid = todo.pop()
            for child in kids.get(pid, []):
                todo.append(child)
                if _comm(child).startswith("chrom"):
                    found.append(child)
        with self._lock:
            for pid in found:
                try:
                    with open(f"/proc/{pid}/stat", "rb") as fh:
                        fields = fh.read().rsplit(b")", 1)[1].split()
                except OSError:
                    continue
                self.seen[(pid, float(fields[19]))] = (int(fields[11]) + int(fields[12])) / TICK

    def total(self) -> float:
        self.sample()
        with self._lock:
            return sum(self.seen.values())


# ---------------------------------------------------------------- the app and the training


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(workspace: Path | None, log: Path, timeout_s: float = 120,
              script: str = "app.py") -> tuple[subprocess.Popen, str]:
    """`streamlit run app.py` on a free loopback port, in its own session; (process, URL) once healthy.

    workspace: its DETECTOR_WORKSPACE (None: this process's). The browser tests start it this way too."""
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
    if proc.poll() is not None:
        return
    with _suppress():
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        with _suppress():
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return exc[0] is not None and issubclass(exc[0], (ProcessLookupError, PermissionError))


TRAIN_ARGS = ["--init", "demo", "--epochs", "1000", "--batch-size", "2", "--workers", "0", "--device", "cpu"]


def start_training(workspace: Path, dataset: Path, name: str) -> tuple[Path, int, float]:
    """A CPU training started as the Train page starts one; (run dir, pid, start time)."""
    os.environ["DETECTOR_WORKSPACE"] = str(workspace)
    from detector import runs

    run_dir = runs.create_run(name=name)
    t0 = time.monotonic()
    pid = runs.start_training(run_dir, ["--data", str(dataset), *TRAIN_ARGS])
    return run_dir, pid, t0


def first_step_s(run_dir: Path, pid: int, t0: float, timeout_s: float, info: dict | None = None) -> float | None:
    """Seconds from start until the first train line in metrics.jsonl (None: not within timeout).

    info: gets `cpu_s`, the training process's CPU seconds by then (wall >> CPU: it waited for a core)."""
    from detector import runs

    metrics = run_dir / runs.METRICS
    deadline = t0 + timeout_s
    while time.monotonic() < deadline:
        used = cpu_seconds(pid)
        if used is not None and info is not None:
            info["cpu_s"] = used
        if metrics.exists() and '"train"' in metrics.read_text(errors="replace"):
            return time.monotonic() - t0
        if used is None or _ended(run_dir):
            return None
        time.sleep(0.25)
    return None


def _ended(run_dir: Path) -> bool:
    from detector import runs

    return runs.read_status(run_dir).state in ("done", "failed", "stopped")


def stop_training(pid: int) -> None:
    with _suppress():
        os.killpg(pid, signal.SIGTERM)
    deadline = time.time() + 20
    while time.time() < deadline and cpu_seconds(pid) is not None:
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
        except ChildProcessError:
            pass
        time.sleep(0.2)
    with _suppress():
        os.killpg(pid, signal.SIGKILL)


# ---------------------------------------------------------------- browser sessions


@dataclass
class Visit:
    page: str
    seconds: float | None  # None: error
    error: str | None = None
    server_cpu_s: float | None = None
    browser_cpu_s: float | None = None


@dataclass
class Session:
    index: int
    visits: list[Visit] = field(default_factory=list)
    seconds: float = 0.0


async def wait_done(page, timeout_s: float) -> float:
    """Seconds until the page is done (see the module docstring); raises TimeoutError."""
    start = time.monotonic()
    deadline = start + timeout_s
    quiet_since = None
    await page.wait_for_selector("[data-testid='stApp']", timeout=timeout_s * 1000)
    while time.monotonic() < deadline:
        busy = await page.evaluate("""() => {
            const app = document.querySelector("[data-testid='stApp']");
            if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return true;
            if (document.querySelector("[data-testid='stSkeleton']")) return true;
            const charts = document.querySelectorAll("[data-testid='stPlotlyChart']");
            for (const c of charts) if (!c.querySelector('.main-svg')) return true;
            return false;
        }""")
        now = time.monotonic()
        if busy:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = now
        elif now - quiet_since >= 1.0:
            return quiet_since - start
        await asyncio.sleep(0.1)
    raise TimeoutError(f"still running after {timeout_s:.0f} s")


async def visit(context, url: str, path: str, timeout_s: float, t_ref: float) -> Visit:
    page = await context.new_page()
    start = time.monotonic()
    try:
        await page.goto(f"{url}/{path}", timeout=timeout_s * 1000)
        await wait_done(page, max(1.0, timeout_s - (time.monotonic() - start)))
        seconds = time.monotonic() - start
        n_exc = await page.locator("[data-testid='stException']").count()
        if n_exc:
            text = (await page.locator("[data-testid='stException']").first.inner_text())[:300]
            return Visit(path, None, f"exception on the page: {text}")
        return Visit(path, seconds)
    except Exception as exc:  # a timeout or a browser failure is this visit's error
        return Visit(path, None, f"{type(exc).__name__}: {str(exc)[:300]}")
    finally:
        await page.close()


async def lone_visits(pw, url: str, pages: list[str], server_pid: int, cpu: BrowserCPU,
                      timeout_s: float, navigate_too: bool = True) -> dict:
    """Each page cold then warm, one at a time, with server and browser CPU for the visit."""
    browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    out: dict[str, dict] = {}
    try:
        for path in pages:
            for kind in ("cold", "warm"):
                context = await browser.new_context(viewport={"width": 1400, "height": 1000})
                s0, b0 = cpu_seconds(server_pid), cpu.total()
                v = await visit(context, url, path, timeout_s, time.monotonic())
                await asyncio.sleep(2.0)  # let the browser finish drawing before reading its CPU
                v.server_cpu_s, v.browser_cpu_s = cpu_seconds(server_pid) - s0, cpu.total() - b0
                await context.close()
                out.setdefault(path, {})[kind] = asdict(v)
                _print_lone(kind, path, v)
            if path and navigate_too:  # in-app: from / by the sidebar's link, the way a user moves between pages
                context = await browser.new_context(viewport={"width": 1400, "height": 1000})
                v = await navigate(context, url, path, server_pid, cpu, timeout_s)
                await context.close()
                out[path]["nav"] = asdict(v)
                _print_lone("nav", path, v)
    finally:
        await browser.close()
    return out


def _print_lone(kind: str, path: str, v: Visit) -> None:
    print(f"  lone {kind:4s} /{path}: {v.seconds if v.seconds is None else round(v.seconds, 2)} s, "
          f"server {v.server_cpu_s or float('nan'):.2f} s CPU, browser {v.browser_cpu_s or float('nan'):.2f} s CPU"
          + (f"  ERROR {v.error}" if v.error else ""), flush=True)


async def navigate(context, url: str, path: str, server_pid: int, cpu: BrowserCPU, timeout_s: float) -> Visit:
    """Open / (not counted), then click the sidebar's link to `path`: the visit Streamlit makes without
    reloading its JavaScript (what a user moving between pages costs; plotly.js loads on the first chart)."""
    page = await context.new_page()
    s0 = b0 = None
    try:
        await page.goto(f"{url}/", timeout=timeout_s * 1000)
        await wait_done(page, timeout_s)
        await asyncio.sleep(2.0)
        s0, b0, start = cpu_seconds(server_pid), cpu.total(), time.monotonic()
        await page.locator(f"[data-testid='stSidebarNav'] a[href$='/{path}']").first.click()
        await asyncio.sleep(0.5)  # the click's rerun starts
        await wait_done(page, timeout_s)
        v = Visit(path, time.monotonic() - start)
        if await page.locator("[data-testid='stException']").count():
            v = Visit(path, None, "exception on the page")
    except Exception as exc:
        v = Visit(path, None, f"{type(exc).__name__}: {str(exc)[:300]}")
    finally:
        await asyncio.sleep(2.0)  # let the browser finish drawing before reading its CPU
        await page.close()
    if s0 is not None:
        v.server_cpu_s, v.browser_cpu_s = cpu_seconds(server_pid) - s0, cpu.total() - b0
    return v


def baselines(tmp: Path, cpu: BrowserCPU, timeout_s: float) -> dict:
    """Lone cold / warm visits of bench/blank_page.py (?w=text, ?w=chart) on a server of its own."""
    from playwright.async_api import async_playwright

    blank, blank_url = start_app(None, tmp / "blank.log", script="bench/blank_page.py")

    async def run() -> dict:
        async with async_playwright() as pw:
            return await lone_visits(pw, blank_url, ["?w=text", "?w=chart"], blank.pid, cpu, timeout_s,
                                     navigate_too=False)

    try:
        return asyncio.run(run())
    finally:
        stop_process(blank)


async def one_session(pw, index: int, url: str, pages: list[str], timeout_s: float) -> Session:
    session = Session(index)
    browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    start = time.monotonic()
    try:
        context = await browser.new_context(viewport={"width": 1400, "height": 1000})
        for path in pages:
            session.visits.append(await visit(context, url, path, timeout_s, start))
        await context.close()
    finally:
        session.seconds = time.monotonic() - start
        await browser.close()
    return session


async def train_watcher(pw, url: str, stop: asyncio.Event, timeout_s: float) -> Visit:
    """One session opens /train and stays on it (its live refresh keeps running) until `stop`."""
    browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    try:
        context = await browser.new_context(viewport={"width": 1400, "height": 1000})
        page = await context.new_page()
        start = time.monotonic()
        try:
            await page.goto(f"{url}/train", timeout=timeout_s * 1000)
            await wait_done(page, timeout_s)
            v = Visit("train", time.monotonic() - start)
        except Exception as exc:
            v = Visit("train", None, f"{type(exc).__name__}: {str(exc)[:300]}")
        await stop.wait()
        if v.error is None and await page.locator("[data-testid='stException']").count():
            v = Visit("train", None, "exception on the page")
        return v
    finally:
        await browser.close()


async def watch_train_page(url: str, run_dir: Path, train_pid: int, t0: float, server_pid: int, cpu: BrowserCPU,
                           seconds: float, timeout_s: float) -> dict:
    """One session on /train while a CPU training runs: the live refresh's cost per second of watching.

    Waits for the training's first step (so the curves are drawn), opens /train, waits until the page is
    done, then counts over `seconds`: the server's and the browser's CPU seconds, the websocket bytes the
    browser received, and the training's steps and snapshot epochs that arrived meanwhile."""
    from playwright.async_api import async_playwright

    from detector import runs

    first = await asyncio.to_thread(first_step_s, run_dir, train_pid, t0, timeout_s)
    received = [0, 0]  # bytes, frames

    def on_ws(ws):
        def on_frame(payload):
            received[0] += len(payload)
            received[1] += 1
        ws.on("framereceived", on_frame)

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("websocket", on_ws)
            await page.goto(f"{url}/train", timeout=timeout_s * 1000)
            await wait_done(page, timeout_s)
            await asyncio.sleep(2)
            steps0 = len(runs.read_metrics(run_dir)[0])
            epochs0 = len(runs.list_snapshots(run_dir))
            s0, b0, w0 = cpu_seconds(server_pid), cpu.total(), list(received)
            start = time.monotonic()
            await asyncio.sleep(seconds)
            wall = time.monotonic() - start
            server, browser_cpu = cpu_seconds(server_pid) - s0, cpu.total() - b0
            got = [received[0] - w0[0], received[1] - w0[1]]
            exc = await page.locator("[data-testid='stException']").count()
        finally:
            await browser.close()
    steps = len(runs.read_metrics(run_dir)[0]) - steps0
    return {"first_step_s": first, "seconds": wall, "server_cpu_s": server, "server_cores": server / wall,
            "browser_cpu_s": browser_cpu, "browser_cores": browser_cpu / wall,
            "websocket_kb_per_s": got[0] / 1024 / wall, "websocket_frames": got[1], "steps": steps,
            "snapshot_epochs": len(runs.list_snapshots(run_dir)) - epochs0,
            "server_cpu_ms_per_step": 1000 * server / steps if steps else None, "exception": bool(exc)}


# ---------------------------------------------------------------- memory per uploaded MB


def make_dataset_zip(tmp: Path, images: int, width: int, height: int) -> Path:
    """A synthetic COCO dataset of `images` images, zipped (stored, not deflated: PNGs do not shrink)."""
    import zipfile

    folder = tmp / f"upload-{images}"
    subprocess.run([sys.executable, "-m", "detector", "synth", str(folder), "--images", str(images), "--width",
                    str(width), "--height", str(height)], cwd=ROOT, check=True, capture_output=True)
    out = tmp / f"upload-{images}.zip"
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(folder))
    return out


async def upload_phase(url: str, archive: Path, server_pid: int, timeout_s: float) -> dict:
    """Upload `archive` on /data in one browser; the server's RSS before, at its peak, and after."""
    from playwright.async_api import async_playwright

    peak, done = [0.0], asyncio.Event()

    async def watch():
        while not done.is_set():
            peak[0] = max(peak[0], rss_mb(server_pid))
            await asyncio.sleep(0.1)

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        task = asyncio.create_task(watch())
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 1000})
            await page.goto(f"{url}/data", timeout=timeout_s * 1000)
            await wait_done(page, timeout_s)
            await asyncio.sleep(2)
            before = rss_mb(server_pid)  # the page loaded (torch and the app imported): only the upload is left
            peak[0] = before
            start = time.monotonic()
            await page.get_by_test_id("stMainBlockContainer").locator(  # the page body's, not the sidebar's model-file uploader
                "[data-testid='stFileUploader'] input[type='file']").first.set_input_files(str(archive))
            await asyncio.sleep(1.0)
            await wait_done(page, timeout_s)
            seconds = time.monotonic() - start
            exc = await page.locator("[data-testid='stException']").count()
        finally:
            done.set()
            await task
            await browser.close()
    await asyncio.sleep(2)
    mb = archive.stat().st_size / 2**20
    after = rss_mb(server_pid)
    return {"archive_mb": mb, "rss_before_mb": before, "rss_peak_mb": peak[0], "rss_after_mb": after,
            "peak_mb_per_uploaded_mb": (peak[0] - before) / mb, "kept_mb_per_uploaded_mb": (after - before) / mb,
            "seconds": seconds, "exception": bool(exc)}


# ---------------------------------------------------------------- the run


def summarize_pages(sessions: list[Session]) -> dict:
    pages: dict[str, dict] = {}
    for s in sessions:
        for v in s.visits:
            p = pages.setdefault(v.page, {"seconds": [], "errors": 0, "error_messages": []})
            if v.error:
                p["errors"] += 1
                p["error_messages"].append(v.error)
            else:
                p["seconds"].append(v.seconds)
    for p in pages.values():
        secs = p.pop("seconds")
        p["median_s"] = statistics.median(secs) if secs else None
        p["worst_s"] = max(secs) if secs else None
        p["error_messages"] = p["error_messages"][:3]
    return pages


async def load_phase(url: str, n: int, pages: list[str], server_pid: int, cpu: BrowserCPU, timeout_s: float,
                     with_train_page: bool, rss: dict) -> dict:
    from playwright.async_api import async_playwright

    stop = asyncio.Event()
    peak = [rss_mb(server_pid)]

    async def watch_rss():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_mb(server_pid))
            await asyncio.sleep(0.5)

    async with async_playwright() as pw:
        watcher = asyncio.create_task(train_watcher(pw, url, stop, timeout_s)) if with_train_page else None
        rss_task = asyncio.create_task(watch_rss())
        s0, b0, t0 = cpu_seconds(server_pid), cpu.total(), time.monotonic()
        sessions = await asyncio.gather(*(one_session(pw, i, url, pages, timeout_s) for i in range(n)))
        wall = time.monotonic() - t0
        server_cpu, browser_cpu = cpu_seconds(server_pid) - s0, cpu.total() - b0
        stop.set()
        train_visit = await watcher if watcher else None
        await rss_task
    rss["peak_mb"] = max(peak[0], rss.get("peak_mb", 0.0))
    return {
        "sessions": n, "wall_s": wall, "pages": summarize_pages(list(sessions)),
        "session_seconds": [s.seconds for s in sessions],
        "server_cpu_s_per_session": server_cpu / n, "browser_cpu_s_per_session": browser_cpu / n,
        "train_page": asdict(train_visit) if train_visit else None,
        "note": "server CPU includes the /train session's live refresh" if with_train_page else "",
    }


def main(argv: list[str] | None = None) -> int:
    global CHROMIUM  # --browser-nice wraps it
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=4,
                    help="concurrent browser sessions (default 4); 0: only the lone visits, with model(images)")
    ap.add_argument("--pages", default="rpn,detect", help="pages each session visits, in order")
    ap.add_argument("--lone-pages", default="rpn,detect", help="pages visited alone, cold then warm (home: /)")
    ap.add_argument("--no-training", action="store_true", help="no CPU training and no /train session")
    ap.add_argument("--page-timeout", type=float, default=420.0, help="seconds one page visit may take")
    ap.add_argument("--timeout", type=float, default=1500.0, help="seconds the whole benchmark may take")
    ap.add_argument("--upload-images", type=int, default=0, metavar="N",
                    help="instead of sessions: upload a zip of N synthetic 1280x960 images on /data and report "
                         "the server's memory per uploaded MB")
    ap.add_argument("--watch-train", type=float, default=0.0, metavar="S",
                    help="instead of sessions: one browser on /train for S seconds while a CPU training runs; "
                         "the live refresh's server and browser CPU per second and websocket bytes")
    ap.add_argument("--baselines", action="store_true",
                    help="also visit bench/blank_page.py (a line of text; the same with one tiny plotly chart), "
                         "served alone with the app's config, cold then warm: what Streamlit itself costs")
    ap.add_argument("--browser-nice", type=int, default=0, metavar="N",
                    help="run every Chromium at this nice level (e.g. 19): the browsers stand in for the users' "
                         "own machines, so on this shared machine they take only the CPU the server and the "
                         "training leave (default 0: they compete as equals)")
    ap.add_argument("--json", type=Path, help="write the figures to this file")
    args = ap.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"Chromium not found at {CHROMIUM}", file=sys.stderr)
        return 2
    pages = [p.strip("/") for p in args.pages.split(",") if p.strip()]
    lone = ["" if p.strip() == "home" else p.strip("/") for p in args.lone_pages.split(",") if p.strip()]

    # bound the whole run: SIGALRM ends it with everything it started stopped
    def _timeout(*_):
        raise TimeoutError(f"the benchmark ran past --timeout {args.timeout:.0f} s")

    def _ended(signum, frame):
        raise KeyboardInterrupt(f"ended by {signal.Signals(signum).name}")

    signal.signal(signal.SIGALRM, _timeout)
    signal.signal(signal.SIGTERM, _ended)  # end as on a timeout: the app, training and browsers stopped
    signal.alarm(int(args.timeout))

    tmp = Path(tempfile.mkdtemp(prefix="bench-load-"))
    if args.browser_nice:
        # Playwright starts each browser in its own session, so with autogroup scheduling on (sched(7)) each
        # browser is a group that shares the CPU with the server's and the training's as an equal whatever
        # its nice: the wrapper sets its autogroup's nice too. exec keeps the name (BrowserCPU finds the
        # processes); as root Chromium raises its browser and GPU processes to nice -8 itself, so setpriv
        # drops CAP_SYS_NICE: every process stays at the level
        wrapper = tmp / "chromium"
        drop = "setpriv --bounding-set -sys_nice --inh-caps -sys_nice " if shutil.which("setpriv") else ""
        wrapper.write_text(f'#!/bin/sh\n[ -w /proc/self/autogroup ] && echo {args.browser_nice} > /proc/self/autogroup\n'
                           f'exec {drop}nice -n {args.browser_nice} {CHROMIUM} "$@"\n')
        wrapper.chmod(0o755)
        CHROMIUM = str(wrapper)
    workspace = tmp / "workspace"
    workspace.mkdir()
    result: dict = {"command": "python -m bench.load " + " ".join(argv if argv is not None else sys.argv[1:]),
                    "cores": os.cpu_count(), "loadavg_start": os.getloadavg(), "browser_nice": args.browser_nice, "torch_threads_env":
                    os.environ.get("OMP_NUM_THREADS")}
    dataset = tmp / "shapes"
    subprocess.run([sys.executable, "-m", "detector", "synth", str(dataset), "--images", "24"], cwd=ROOT,
                   check=True, capture_output=True, env=dict(os.environ, DETECTOR_WORKSPACE=str(workspace)))
    app = None
    train_pid = None
    cpu = BrowserCPU().start()
    try:
        app, url = start_app(workspace, tmp / "streamlit.log")
        rss = {"start_mb": rss_mb(app.pid)}
        print(f"app at {url} (pid {app.pid}), workspace {workspace}", flush=True)
        if args.upload_images:
            archive = make_dataset_zip(tmp, args.upload_images, 1280, 960)
            result["upload"] = asyncio.run(upload_phase(url, archive, app.pid, args.page_timeout))
            print(json.dumps(result, indent=1, default=str))
            if args.json:
                args.json.write_text(json.dumps(result, indent=1, default=str))
            return 0

        if args.watch_train:
            run_dir, train_pid, t0 = start_training(workspace, dataset, "bench-watch")
            result["watch_train"] = asyncio.run(watch_train_page(url, run_dir, train_pid, t0, app.pid, cpu,
                                                                 args.watch_train, args.page_timeout))
            result["watch_train"]["training_args"] = TRAIN_ARGS
            return _report(result, args, errors=int(result["watch_train"]["exception"]))

        async def _lone():
            from playwright.async_api import async_playwright

            async with async_playwright() as pw:
                return await lone_visits(pw, url, lone, app.pid, cpu, args.page_timeout)

        result["lone"] = asyncio.run(_lone())
        if args.baselines:
            result["baselines"] = baselines(tmp, cpu, args.page_timeout)
        rss["before_mb"] = rss_mb(app.pid)
        if args.sessions == 0:  # lone visits only: page latency against model(images), same threads
            result["model_images_ms"] = model_images_ms()
            for path, kinds in result["lone"].items():
                for kind, v in kinds.items():
                    if v.get("seconds"):
                        v["per_model_images"] = v["seconds"] * 1000 / result["model_images_ms"]
            result["rss"] = rss
            return _report(result, args, errors=0)

        if not args.no_training:
            run_dir, train_pid, t0 = start_training(workspace, dataset, "bench-lone")
            lone_info: dict = {}
            lone_first = first_step_s(run_dir, train_pid, t0, 300, lone_info)
            stop_training(train_pid)
            train_pid = None
            print(f"  training alone: first step after {lone_first} s", flush=True)
            run_dir, train_pid, t0 = start_training(workspace, dataset, "bench-load")
            result["training"] = {"first_step_alone_s": lone_first, "first_step_cpu_alone_s": lone_info.get("cpu_s"),
                                  "args": TRAIN_ARGS}
            under_load: list[float | None] = []
            load_info: dict = {}
            watcher = threading.Thread(target=lambda: under_load.append(
                first_step_s(run_dir, train_pid, t0, args.timeout, load_info)), daemon=True)
            watcher.start()

        print(f"  {args.sessions} sessions over {pages} ...", flush=True)
        load = asyncio.run(load_phase(url, args.sessions, pages, app.pid, cpu, args.page_timeout,
                                      not args.no_training, rss))
        if train_pid is not None:
            from detector import runs

            load_end_s = time.monotonic() - t0  # seconds from the training's start to the sessions' end
            result["training"]["cpu_at_load_end_s"] = cpu_seconds(train_pid)
            status = runs.read_status(run_dir)
            result["training"]["status_after_load"] = {"state": status.state, "step": status.step,
                                                       "error": status.error}
            watcher.join(max(1.0, 4 * (lone_first or 60)))  # a first step not reached under load: wait, alone
            first = under_load[0] if under_load else None
            result["training"]["first_step_under_load_s"] = first
            result["training"]["first_step_cpu_under_load_s"] = load_info.get("cpu_s")
            result["training"]["load_ended_after_s"] = load_end_s
            # a first step after the sessions ended was not taken under load all the way: the ratio is then
            # a lower bound of what load costs the training (the report says so)
            result["training"]["first_step_within_load"] = bool(first and first <= load_end_s)
            result["training"]["first_step_ratio"] = (first / lone_first) if first and lone_first else None
            stop_training(train_pid)
            train_pid = None
        time.sleep(3)
        rss["after_mb"] = rss_mb(app.pid)
        rss["per_extra_session_mb"] = (rss["peak_mb"] - rss["before_mb"]) / args.sessions
        cores = os.cpu_count() or 1
        for path, figures in load["pages"].items():
            warm = (result["lone"].get(path) or {}).get("warm", {}).get("seconds")
            figures["lone_warm_s"] = warm
            figures["fair_share"] = (figures["worst_s"] / (args.sessions * warm / cores)
                                     if warm and figures["worst_s"] else None)
        lone_server = sum((result["lone"].get(p) or {}).get("warm", {}).get("server_cpu_s") or 0 for p in pages)
        load["server_cpu_ratio_to_lone"] = load["server_cpu_s_per_session"] / lone_server if lone_server else None
        result["load"] = load
        result["rss"] = rss
    finally:
        signal.alarm(0)
        if train_pid is not None:
            stop_training(train_pid)
        if app is not None:
            stop_process(app)
        cpu.stop()
        result["loadavg_end"] = os.getloadavg()
        shutil.rmtree(tmp, ignore_errors=True)

    return _report(result, args, errors=sum(p["errors"] for p in result["load"]["pages"].values()))


def _report(result: dict, args: argparse.Namespace, errors: int) -> int:
    print(json.dumps(result, indent=1, default=str))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str))
    return 1 if errors else 0


MODEL_IMAGES = """
import os, statistics, time, torch
from detector import checkpoints, scenes
from detector.images import to_tensor
threads = os.environ.get("DETECTOR_TORCH_THREADS", "").strip()
torch.set_num_threads(int(threads) if threads.isdigit() else 1)
model = checkpoints.load_model("demo", "cpu").model
x = [to_tensor(scenes.make_scene(10_001, 480, 360).image)]
times = []
with torch.inference_mode():
    for i in range(12):
        t = time.perf_counter(); model(x); times.append(time.perf_counter() - t)
print(statistics.median(times[2:]) * 1000)
"""


def model_images_ms() -> float:
    """Median ms of the demo model's model(images) on the sample scene, the thread policy the app uses."""
    out = subprocess.run([sys.executable, "-c", MODEL_IMAGES], cwd=ROOT, check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    raise SystemExit(main())
