"""bench/load.py's CPU training, started the way the Train page starts one (detector.runs.start_training),
timed to its first step and stopped; and the --watch-train mode: what one open /train page costs
the server and the browser per second while that training runs."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

from bench.harness import launch_options, new_context_async, signal_group, wait_for_app_async
from bench.procfs import BrowserCPU, cpu_seconds

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
    signal_group(pid, signal.SIGTERM)
    deadline = time.time() + 20
    while time.time() < deadline and cpu_seconds(pid) is not None:
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
        except ChildProcessError:
            pass
        time.sleep(0.2)
    signal_group(pid, signal.SIGKILL)


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
        browser = await pw.chromium.launch(**launch_options())
        try:
            page = await (await new_context_async(browser)).new_page()
            page.on("websocket", on_ws)
            await page.goto(f"{url}/train", timeout=timeout_s * 1000)
            await wait_for_app_async(page, timeout_s)
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
