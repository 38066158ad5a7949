"""Interaction benchmark: how long the app takes to answer a knob, in headless Chromium.

    python -m bench.interaction [--model demo] [--repeats 3] [--only rpn,anchors,detect,diagnose]
                                [--json OUT.json] [--timeout 900]

For each interaction (every proposal knob and the K / detection-threshold sliders on /rpn, the switch to
each of /rpn's views, a click on a detection (its explanation panel), /anchors' controls with its "Show" switch, /detect's score slider, a tuner knob
on /diagnose), repeated --repeats times with a new value each time (so no cached result is reused
unless the app would reuse it for a user too), the time from the user's action to the page being
idle and drawn, and the CPU seconds the server and the browser spent on it; also each page's first
load. Median per interaction.

"Idle and drawn": the app has finished by bench.harness's one rule (the run that answers the widget's
message has ended, no skeleton, every plotly chart drawn, no request in flight; wait_for_app), and
nothing in the document has changed for 0.5 s since. The time is from just before the action
(performance.now() in the page) to the document's last change (a MutationObserver over the whole
document: plotly's drawing included), so neither the polling nor the quiet periods are counted. A
first load is timed from the navigation's start.

CPU seconds from /proc (bench.procfs): the Streamlit server process, and every Chromium process below
this one, from just before the action to the end of the quiet period.

Runs in a temporary workspace (DETECTOR_WORKSPACE) holding one small synthetic dataset for /diagnose,
on a free loopback port. Needs Playwright and Debian's Chromium (/usr/bin/chromium).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import CHROMIUM, CHROMIUM_ARGS, new_page, start_app, stop_process, wait_for_app  # noqa: E402
from bench.procfs import BrowserCPU, cpu_seconds  # noqa: E402

# Records, in the page, the last change anywhere in the document (plotly's drawing included): the end
# of an interaction. When the page is finished is bench.harness's one rule (wait_for_app).
LAST_CHANGE_JS = """(() => {
  const w = (window.__lastChange = {at: 0});
  new MutationObserver(() => { w.at = performance.now(); })
    .observe(document, {subtree: true, childList: true, attributes: true, characterData: true});
})();"""
CHANGE_JS = """() => ({now: performance.now(), lastChange: window.__lastChange.at,
                     lastSend: (window.__runWatch || {lastSend: 0}).lastSend,
                     exception: document.querySelectorAll("[data-testid='stException']").length})"""
QUIET_MS = 500.0  # and nothing in the document changed for this long


@dataclass
class Sample:
    seconds: float
    server_cpu_s: float
    browser_cpu_s: float


@dataclass
class Interaction:
    name: str
    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        med = (lambda key: round(statistics.median(getattr(s, key) for s in self.samples), 3)) if self.samples else (
            lambda key: None)
        return {"name": self.name, "n": len(self.samples), "median_s": med("seconds"),
                "server_cpu_s": med("server_cpu_s"), "browser_cpu_s": med("browser_cpu_s"),
                "samples_s": [round(s.seconds, 3) for s in self.samples], "errors": self.errors}


class Bench:
    """One app, one browser; `measure` times one action on the current page."""

    def __init__(self, page, server_pid: int, cpu: BrowserCPU, timeout_s: float):
        self.page, self.server_pid, self.cpu, self.timeout_s = page, server_pid, cpu, timeout_s
        self.results: dict[str, Interaction] = {}

    def _wait(self, t0_ms: float) -> float:
        """Page-clock ms of the document's last change once the app has finished (bench.harness's
        rule) after an action taken at t0_ms and nothing has changed for QUIET_MS."""
        deadline = time.monotonic() + self.timeout_s
        wait_for_app(self.page, self.timeout_s)
        while True:
            s = self.page.evaluate(CHANGE_JS)
            if s["exception"]:
                raise RuntimeError(self.page.locator("[data-testid='stException']").first.inner_text()[:300])
            if s["lastSend"] <= t0_ms:
                raise RuntimeError("the action sent nothing to the server")
            if s["now"] - s["lastChange"] >= QUIET_MS:
                return s["lastChange"]
            if time.monotonic() > deadline:
                raise TimeoutError(f"the page still changed after {self.timeout_s:.0f} s")
            time.sleep(0.05)

    def measure(self, name: str, action: Callable[[], None], load: bool = False) -> None:
        """Time `action` (a navigation when load) and record it under `name`."""
        entry = self.results.setdefault(name, Interaction(name))
        server0, browser0 = cpu_seconds(self.server_pid) or 0.0, self.cpu.total()
        try:
            t0 = 0.0 if load else self.page.evaluate("performance.now()")
            action()
            end = self._wait(t0)
            seconds = (end - t0) / 1000
        except Exception as exc:  # one failed sample is reported, the run goes on
            entry.errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")
            print(f"  {name}: ERROR {entry.errors[-1]}", flush=True)
            return
        sample = Sample(seconds, (cpu_seconds(self.server_pid) or 0.0) - server0, self.cpu.total() - browser0)
        entry.samples.append(sample)
        print(f"  {name}: {sample.seconds:.3f} s (server CPU {sample.server_cpu_s:.2f} s, browser CPU "
              f"{sample.browser_cpu_s:.2f} s)", flush=True)

    def load(self, name: str, url: str) -> None:
        self.measure(f"load {name}", lambda: self.page.goto(url), load=True)

    # ---- widgets, found by their label as a user finds them

    def main(self):
        return self.page.locator("[data-testid='stMain']")

    def number(self, label: str, value: int) -> Callable[[], None]:
        def act():
            box = self.main().get_by_label(label, exact=True)
            box.fill(str(value))
            box.press("Enter")
        return act

    def slider_key(self, label: str, key: str) -> Callable[[], None]:
        def act():
            self.main().locator("[data-testid='stSlider']").filter(has_text=label).get_by_role("slider").press(key)
        return act

    def click_option(self, testid: str, text: str) -> Callable[[], None]:
        def act():
            self.main().locator(f"[data-testid='{testid}']").get_by_text(text, exact=True).first.click()
        return act

    def click_point(self, point) -> Callable[[], None]:
        """A click on a plotly marker: plotly turns a click into a selection from its last hover, so
        the mouse moves there first (not timed), then clicks (timed)."""
        point.scroll_into_view_if_needed()
        box = point.bounding_box()
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        self.page.mouse.move(x, y)
        self.page.wait_for_timeout(400)
        return lambda: self.page.mouse.click(x, y)

    def settle(self) -> None:
        """Wait until the page is idle (nothing recorded)."""
        self._wait(-1.0)


def rpn(b: Bench, url: str, model: str, repeats: int) -> None:
    b.load("/rpn", f"{url}/rpn?model={model}")
    pre = int(b.main().get_by_label("pre_nms_top_n (per level)", exact=True).input_value())
    post = int(b.main().get_by_label("post_nms_top_n", exact=True).input_value())
    for i in range(1, repeats + 1):
        b.measure("/rpn pre_nms_top_n", b.number("pre_nms_top_n (per level)", max(2, round(pre * (1 - 0.1 * i)))))
    for i in range(1, repeats + 1):
        b.measure("/rpn post_nms_top_n", b.number("post_nms_top_n", max(2, round(post * (1 - 0.1 * i)))))
    for _ in range(repeats):
        b.measure("/rpn nms_thresh", b.slider_key("nms_thresh (IoU)", "ArrowLeft"))
    for _ in range(repeats):
        b.measure("/rpn score_thresh", b.slider_key("score_thresh (objectness)", "ArrowRight"))
    for _ in range(repeats):
        for view in ("Proposals", "Detections", "RoIAlign", "Trace", "Recall", "Objectness"):
            b.measure(f"/rpn view -> {view}", b.click_option("stButtonGroup", view))
            if view == "Proposals":
                b.measure("/rpn K slider (Proposals)", b.slider_key("K: top proposals shown after NMS", "ArrowRight"))
            if view == "Detections":
                b.measure("/rpn detection threshold", b.slider_key("Detection score threshold", "ArrowLeft"))
    b.click_option("stButtonGroup", "Detections")()
    b.settle()
    for _ in range(repeats):
        b.measure("/rpn nms_thresh (Detections view)", b.slider_key("nms_thresh (IoU)", "ArrowRight"))
    # a click on a detection's centre opens its explanation (where the page has one: issue 24)
    points = b.main().locator(".st-key-rpn_detections .scatterlayer .trace .points path.point")
    if points.count():
        for i in range(repeats):
            b.measure("/rpn detection click (explanation)", b.click_point(points.nth(i % points.count())))




def anchors(b: Bench, url: str, model: str, repeats: int) -> None:
    b.load("/anchors", f"{url}/anchors?model={model}")
    for _ in range(repeats):
        b.measure("/anchors Show -> one shape", b.click_option("stRadio", "all anchors of one shape"))
        b.measure("/anchors Show -> at the cell", b.click_option("stRadio", "anchors at the cell"))
    for i in range(1, repeats + 1):
        b.measure("/anchors row", b.number(b.main().locator("[data-testid='stNumberInput']").filter(
            has_text="Row (").locator("label").inner_text(), i))
    for i in range(1, repeats + 1):
        b.measure("/anchors sampler seed", b.number("Sampler seed", i))


def detect(b: Bench, url: str, model: str, repeats: int) -> None:
    b.load("/detect", f"{url}/detect?model={model}")
    for _ in range(repeats):
        b.measure("/detect score threshold", b.slider_key("Score threshold", "ArrowLeft"))


def diagnose(b: Bench, url: str, model: str, repeats: int, dataset: str) -> None:
    b.load("/diagnose", f"{url}/diagnose?model={model}&dataset={dataset}")
    slider = b.main().locator("[data-testid='stSlider']").filter(has_text="box_score_thresh")
    for _ in range(repeats):
        if not slider.is_visible():  # a rerun may show the first tab again
            b.main().get_by_role("tab", name="Tuner").click()
            slider.wait_for()
        b.measure("/diagnose tuner box_score_thresh", b.slider_key("box_score_thresh", "ArrowRight"))


PAGES = ("rpn", "anchors", "detect", "diagnose")


def make_dataset(tmp: Path) -> str:
    """A small synthetic dataset stored in the workspace (DETECTOR_WORKSPACE must point at it)."""
    from detector.data import store
    from detector.data.synthetic import write_synthetic

    folder = write_synthetic(tmp / "bench-data", images=6, seed=12, width=160, height=120, val_fraction=0.5)
    return store.store_upload("bench-diagnose", folder).name


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="demo", help="model source as the picker names it (demo, a builder, ...)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", default=",".join(PAGES), help=f"pages to measure, of {','.join(PAGES)}")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--timeout", type=float, default=120, help="seconds one action may take")
    args = ap.parse_args(argv)
    pages = [p for p in args.only.split(",") if p]

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="bench-interaction-") as tmp_name:
        tmp = Path(tmp_name)
        os.environ["DETECTOR_WORKSPACE"] = str(tmp / "workspace")
        dataset = make_dataset(tmp) if "diagnose" in pages else ""
        proc, url = start_app(tmp / "workspace", tmp / "streamlit.log", timeout_s=120)
        cpu = BrowserCPU().start()
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
                page = new_page(browser)
                page.context.add_init_script(LAST_CHANGE_JS)
                page.set_default_timeout(args.timeout * 1000)
                bench = Bench(page, proc.pid, cpu, args.timeout)
                for name in pages:
                    print(f"{name} ({args.model})", flush=True)
                    try:
                        if name == "diagnose":
                            diagnose(bench, url, args.model, args.repeats, dataset)
                        else:
                            {"rpn": rpn, "anchors": anchors, "detect": detect}[name](bench, url, args.model, args.repeats)
                    except Exception as exc:  # a page that cannot be driven: say so, go on with the next
                        bench.results.setdefault(f"/{name}", Interaction(f"/{name}")).errors.append(
                            f"{type(exc).__name__}: {str(exc)[:300]}")
                        print(f"  /{name}: ERROR {exc}", flush=True)
                browser.close()
        finally:
            cpu.stop()
            stop_process(proc)
    rows = [i.summary() for i in bench.results.values()]
    print(f"\n{'interaction':44s} {'median s':>9s} {'server CPU s':>13s} {'browser CPU s':>14s}  n")
    for r in rows:
        fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        print(f"{r['name']:44s} {fmt(r['median_s']):>9s} {fmt(r['server_cpu_s']):>13s} {fmt(r['browser_cpu_s']):>14s}"
              f"  {r['n']}" + (f"  errors: {len(r['errors'])}" if r["errors"] else ""))
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "repeats": args.repeats, "cores": os.cpu_count(),
                                         "interactions": rows}, indent=1))
    return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
