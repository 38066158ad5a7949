"""bench/load.py's concurrent sessions: N headless Chromium sessions at once, each visiting the pages
in order, while one more session stays on /train (its live refresh running) and a CPU training runs;
per page median / worst seconds and errors, server and browser CPU per session, the server's RSS."""

from __future__ import annotations

import asyncio
import os
import statistics
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.harness import launch_options, new_context_async, wait_for_app_async
from bench.load_training import TRAIN_ARGS, first_step_s, start_training, stop_training
from bench.load_visits import Visit, visit
from bench.procfs import BrowserCPU, cpu_seconds, rss_mb

@dataclass
class Session:
    index: int
    visits: list[Visit] = field(default_factory=list)
    seconds: float = 0.0


async def one_session(pw, index: int, url: str, pages: list[str], timeout_s: float) -> Session:
    session = Session(index)
    browser = await pw.chromium.launch(**launch_options())
    start = time.monotonic()
    try:
        context = await new_context_async(browser)
        for path in pages:
            session.visits.append(await visit(context, url, path, timeout_s, start))
        await context.close()
    finally:
        session.seconds = time.monotonic() - start
        await browser.close()
    return session


async def train_watcher(pw, url: str, stop: asyncio.Event, timeout_s: float) -> Visit:
    """One session opens /train and stays on it (its live refresh keeps running) until `stop`."""
    browser = await pw.chromium.launch(**launch_options())
    try:
        context = await new_context_async(browser)
        page = await context.new_page()
        start = time.monotonic()
        try:
            await page.goto(f"{url}/train", timeout=timeout_s * 1000)
            await wait_for_app_async(page, timeout_s)
            v = Visit("train", time.monotonic() - start)
        except Exception as exc:
            v = Visit("train", None, f"{type(exc).__name__}: {str(exc)[:300]}")
        await stop.wait()
        if v.error is None and await page.locator("[data-testid='stException']").count():
            v = Visit("train", None, "exception on the page")
        return v
    finally:
        await browser.close()


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


def training_alone(workspace: Path, dataset: Path) -> dict:
    """The CPU training alone, timed to its first step, then stopped."""
    run_dir, pid, t0 = start_training(workspace, dataset, "bench-lone")
    info: dict = {}
    try:
        first = first_step_s(run_dir, pid, t0, 300, info)
    finally:
        stop_training(pid)
    print(f"  training alone: first step after {first} s", flush=True)
    return {"first_step_alone_s": first, "first_step_cpu_alone_s": info.get("cpu_s"), "args": TRAIN_ARGS}


def sessions_under_training(url: str, server_pid: int, cpu: BrowserCPU, args, pages: list[str], rss: dict,
                            workspace: Path, dataset: Path) -> tuple[dict, dict | None]:
    """The load (load_phase) with, unless --no-training, a CPU training started just before it and timed to
    its first step under load against alone; (load figures, training figures or None)."""
    from detector import runs  # imported late: torch comes with it

    if args.no_training:
        print(f"  {args.sessions} sessions over {pages} ...", flush=True)
        return asyncio.run(load_phase(url, args.sessions, pages, server_pid, cpu, args.page_timeout, False, rss)), None
    training = training_alone(workspace, dataset)
    run_dir, pid, t0 = start_training(workspace, dataset, "bench-load")
    try:
        under_load: list[float | None] = []
        load_info: dict = {}
        watcher = threading.Thread(target=lambda: under_load.append(
            first_step_s(run_dir, pid, t0, args.timeout, load_info)), daemon=True)
        watcher.start()
        print(f"  {args.sessions} sessions over {pages} ...", flush=True)
        load = asyncio.run(load_phase(url, args.sessions, pages, server_pid, cpu, args.page_timeout, True, rss))
        load_end_s = time.monotonic() - t0  # seconds from the training's start to the sessions' end
        training["cpu_at_load_end_s"] = cpu_seconds(pid)
        status = runs.read_status(run_dir)
        training["status_after_load"] = {"state": status.state, "step": status.step, "error": status.error}
        lone_first = training["first_step_alone_s"]
        watcher.join(max(1.0, 4 * (lone_first or 60)))  # a first step not reached under load: wait, alone
        first = under_load[0] if under_load else None
        training["first_step_under_load_s"] = first
        training["first_step_cpu_under_load_s"] = load_info.get("cpu_s")
        training["load_ended_after_s"] = load_end_s
        # a first step after the sessions ended was not taken under load all the way: the ratio is then
        # a lower bound of what load costs the training (the report says so)
        training["first_step_within_load"] = bool(first and first <= load_end_s)
        training["first_step_ratio"] = (first / lone_first) if first and lone_first else None
    finally:
        stop_training(pid)
    return load, training


def compare_with_lone(load: dict, lone: dict, sessions: int, pages: list[str], rss: dict) -> None:
    """Adds to `load` each page's fair share (worst session time under load / (N x lone warm time / cores))
    and the server's CPU per session against the lone warm visits; to `rss` the MB per extra session."""
    rss["per_extra_session_mb"] = (rss["peak_mb"] - rss["before_mb"]) / sessions
    cores = os.cpu_count() or 1
    for path, figures in load["pages"].items():
        warm = (lone.get(path) or {}).get("warm", {}).get("seconds")
        figures["lone_warm_s"] = warm
        figures["fair_share"] = (figures["worst_s"] / (sessions * warm / cores)
                                 if warm and figures["worst_s"] else None)
    lone_server = sum((lone.get(p) or {}).get("warm", {}).get("server_cpu_s") or 0 for p in pages)
    load["server_cpu_ratio_to_lone"] = load["server_cpu_s_per_session"] / lone_server if lone_server else None
