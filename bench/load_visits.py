"""bench/load.py's lone visits: one browser, one page at a time, each page cold (the server's first
visit), warm (a fresh browser context, the server's caches filled) and by the sidebar's link from /,
with the page's wall seconds and the server's and the browser's CPU seconds for the visit; the
--baselines mode (bench/blank_page.py on a server of its own) and model(images) for scale."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.harness import ROOT, launch_options, new_context_async, start_app, stop_process, wait_for_app_async
from bench.procfs import BrowserCPU, cpu_seconds

@dataclass
class Visit:
    page: str
    seconds: float | None  # None: error
    error: str | None = None
    server_cpu_s: float | None = None
    browser_cpu_s: float | None = None


async def visit(context, url: str, path: str, timeout_s: float, t_ref: float) -> Visit:
    page = await context.new_page()
    start = time.monotonic()
    try:
        await page.goto(f"{url}/{path}", timeout=timeout_s * 1000)
        await wait_for_app_async(page, max(1.0, timeout_s - (time.monotonic() - start)))
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


async def lone_visits(url: str, pages: list[str], server_pid: int, cpu: BrowserCPU,
                      timeout_s: float, navigate_too: bool = True) -> dict:
    """Each page cold then warm (then by the sidebar's link), one at a time, with server and browser CPU
    for the visit; page -> kind -> Visit as a dict."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(**launch_options())
        try:
            return await _visit_each(browser, url, pages, server_pid, cpu, timeout_s, navigate_too)
        finally:
            await browser.close()


async def _visit_each(browser, url: str, pages: list[str], server_pid: int, cpu: BrowserCPU, timeout_s: float,
                      navigate_too: bool) -> dict:
    out: dict[str, dict] = {}
    for path in pages:
        for kind in ("cold", "warm"):
            context = await new_context_async(browser)
            s0, b0 = cpu_seconds(server_pid), cpu.total()
            v = await visit(context, url, path, timeout_s, time.monotonic())
            await asyncio.sleep(2.0)  # let the browser finish drawing before reading its CPU
            v.server_cpu_s, v.browser_cpu_s = cpu_seconds(server_pid) - s0, cpu.total() - b0
            await context.close()
            out.setdefault(path, {})[kind] = asdict(v)
            _print_lone(kind, path, v)
        if path and navigate_too:  # in-app: from / by the sidebar's link, the way a user moves between pages
            context = await new_context_async(browser)
            v = await navigate(context, url, path, server_pid, cpu, timeout_s)
            await context.close()
            out[path]["nav"] = asdict(v)
            _print_lone("nav", path, v)
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
        await wait_for_app_async(page, timeout_s)
        await asyncio.sleep(2.0)
        s0, b0, start = cpu_seconds(server_pid), cpu.total(), time.monotonic()
        await page.locator(f"[data-testid='stSidebarNav'] a[href$='/{path}']").first.click()
        await asyncio.sleep(0.5)  # the click's rerun starts
        await wait_for_app_async(page, timeout_s)
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
    blank, blank_url = start_app(None, tmp / "blank.log", script="bench/blank_page.py")
    try:
        return asyncio.run(lone_visits(blank_url, ["?w=text", "?w=chart"], blank.pid, cpu, timeout_s,
                                       navigate_too=False))
    finally:
        stop_process(blank)


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
