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

CPU seconds come from /proc/PID/stat (utime + stime; bench/procfs.py): the server process for the
server, every Chromium process below this one for the browser (sampled every 0.2 s, so processes
that exit are still counted up to their last sample). A page visit is done by bench.harness's one
page-finished rule (the browser tests' too): Streamlit's script state is notRunning, no skeleton is
left, every plotly chart on the page is drawn, and that holds for 0.3 s after a finished run
answered every message the page sent, else for 1 s (the settling is not counted); a visit with an
exception box or past --page-timeout is an error. Needs Playwright and Debian's Chromium
(/usr/bin/chromium); never downloads a browser.

The modes live beside this file: bench/load_visits.py (lone visits, --baselines), bench/load_sessions.py
(the concurrent sessions), bench/load_training.py (the CPU training, --watch-train),
bench/load_upload.py (--upload-images); this file holds the command line and the set-up they share.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python bench/load.py`
    sys.path.insert(0, str(ROOT))

from bench import harness  # noqa: E402
from bench.harness import start_app, stop_process  # noqa: E402
from bench.load_sessions import compare_with_lone, sessions_under_training  # noqa: E402
from bench.load_training import TRAIN_ARGS, start_training, stop_training, watch_train_page  # noqa: E402
from bench.load_upload import make_dataset_zip, upload_phase  # noqa: E402
from bench.load_visits import baselines, lone_visits, model_images_ms  # noqa: E402
from bench.procfs import BrowserCPU, rss_mb  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
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
    return ap.parse_args(argv)


def browser_nice_wrapper(tmp: Path, nice: int) -> str:
    """A Chromium launcher at this nice level, for every browser the benchmark starts.

    Playwright starts each browser in its own session, so with autogroup scheduling on (sched(7)) each
    browser is a group that shares the CPU with the server's and the training's as an equal whatever
    its nice: the wrapper sets its autogroup's nice too. exec keeps the name (BrowserCPU finds the
    processes); as root Chromium raises its browser and GPU processes to nice -8 itself, so setpriv
    drops CAP_SYS_NICE: every process stays at the level."""
    wrapper = tmp / "chromium"
    drop = "setpriv --bounding-set -sys_nice --inh-caps -sys_nice " if shutil.which("setpriv") else ""
    wrapper.write_text(f'#!/bin/sh\n[ -w /proc/self/autogroup ] && echo {nice} > /proc/self/autogroup\n'
                       f'exec {drop}nice -n {nice} {harness.CHROMIUM} "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


def bound_run(timeout_s: float) -> None:
    """SIGALRM after timeout_s and SIGTERM end the run as an exception: main's finally stops the app, the
    training and the browsers."""
    def _timeout(*_):
        raise TimeoutError(f"the benchmark ran past --timeout {timeout_s:.0f} s")

    def _ended(signum, frame):
        raise KeyboardInterrupt(f"ended by {signal.Signals(signum).name}")

    signal.signal(signal.SIGALRM, _timeout)
    signal.signal(signal.SIGTERM, _ended)
    signal.alarm(int(timeout_s))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not Path(harness.CHROMIUM).exists():
        print(f"Chromium not found at {harness.CHROMIUM}", file=sys.stderr)
        return 2
    pages = [p.strip("/") for p in args.pages.split(",") if p.strip()]
    lone = ["" if p.strip() == "home" else p.strip("/") for p in args.lone_pages.split(",") if p.strip()]
    bound_run(args.timeout)
    tmp = Path(tempfile.mkdtemp(prefix="bench-load-"))
    if args.browser_nice:
        harness.use_chromium(browser_nice_wrapper(tmp, args.browser_nice))
    workspace = tmp / "workspace"
    workspace.mkdir()
    result: dict = {"command": "python -m bench.load " + " ".join(argv if argv is not None else sys.argv[1:]),
                    "cores": os.cpu_count(), "loadavg_start": os.getloadavg(), "browser_nice": args.browser_nice,
                    "torch_threads_env": os.environ.get("OMP_NUM_THREADS")}
    dataset = tmp / "shapes"
    subprocess.run([sys.executable, "-m", "detector", "synth", str(dataset), "--images", "24"], cwd=ROOT,
                   check=True, capture_output=True, env=dict(os.environ, DETECTOR_WORKSPACE=str(workspace)))
    app = None
    cpu = BrowserCPU().start()
    try:
        app, url = start_app(workspace, tmp / "streamlit.log")
        print(f"app at {url} (pid {app.pid}), workspace {workspace}", flush=True)
        errors = run_mode(args, result, url, app.pid, cpu, tmp, workspace, dataset, pages, lone)
    finally:
        signal.alarm(0)
        if app is not None:
            stop_process(app)
        cpu.stop()
        result["loadavg_end"] = os.getloadavg()
        shutil.rmtree(tmp, ignore_errors=True)
    return _report(result, args, errors)


def run_mode(args: argparse.Namespace, result: dict, url: str, server_pid: int, cpu: BrowserCPU, tmp: Path,
             workspace: Path, dataset: Path, pages: list[str], lone: list[str]) -> int:
    """The mode the flags ask for, its figures added to `result`; the number of errors."""
    rss = {"start_mb": rss_mb(server_pid)}
    if args.upload_images:
        archive = make_dataset_zip(tmp, args.upload_images, 1280, 960)
        result["upload"] = asyncio.run(upload_phase(url, archive, server_pid, args.page_timeout))
        return 0
    if args.watch_train:
        run_dir, train_pid, t0 = start_training(workspace, dataset, "bench-watch")
        try:
            result["watch_train"] = asyncio.run(watch_train_page(url, run_dir, train_pid, t0, server_pid, cpu,
                                                                 args.watch_train, args.page_timeout))
        finally:
            stop_training(train_pid)
        result["watch_train"]["training_args"] = TRAIN_ARGS
        return int(result["watch_train"]["exception"])
    result["lone"] = asyncio.run(lone_visits(url, lone, server_pid, cpu, args.page_timeout))
    if args.baselines:
        result["baselines"] = baselines(tmp, cpu, args.page_timeout)
    rss["before_mb"] = rss_mb(server_pid)
    result["rss"] = rss
    if args.sessions == 0:  # lone visits only: page latency against model(images), same threads
        result["model_images_ms"] = model_images_ms()
        for kinds in result["lone"].values():
            for v in kinds.values():
                if v.get("seconds"):
                    v["per_model_images"] = v["seconds"] * 1000 / result["model_images_ms"]
        return 0
    load, training = sessions_under_training(url, server_pid, cpu, args, pages, rss, workspace, dataset)
    if training is not None:
        result["training"] = training
    time.sleep(3)
    rss["after_mb"] = rss_mb(server_pid)
    compare_with_lone(load, result["lone"], args.sessions, pages, rss)
    result["load"] = load
    return sum(p["errors"] for p in load["pages"].values())


def _report(result: dict, args: argparse.Namespace, errors: int) -> int:
    print(json.dumps(result, indent=1, default=str))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str))
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
