"""Benchmarks: our code against plain torch/torchvision, side by side in the same run.

    python bench/run.py [--quick] [--json] [--only CASE,...] [--threads N] [--repeats N]

Each case runs in a fresh Python process of its own (so `peak_rss_mb` is that case's peak
resident set size, from getrusage) with DETECTOR_WORKSPACE and TORCH_HOME pointing at a
temporary folder: nothing is downloaded, nothing is written outside it. Inside a case, A and B
alternate (A B B A ...) and each figure is a median over repeats; a ratio is the median of the
per-pair ratios A_i / B_i (median(A) / median(B) is reported beside it as `*_medians`). Cases:
introspection, trainer, anchors, rpn_page, anchor_click, validate, diagnose, baseline, export (see bench/cases.py). `--quick` uses the small settings (a few minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CASE_ORDER = ("introspection", "trainer", "anchors", "rpn_page", "anchor_click", "validate", "diagnose", "baseline", "export")
HEADLINE = {  # figure -> (case, unit, what it means)
    "introspection_overhead": ("introspection", "x", "inspect() / model(images), demo model, 480x360 image"),
    "trainer_overhead": ("trainer", "x", "engine / bare torch loop, s per iteration, in lockstep"),
    "anchors_ms": ("anchors", "ms", "build + match every resnet50-FPN anchor, 1333x800, 50 boxes"),
    "rpn_page_ratio": ("rpn_page", "x", "RPN page image-to-heatmap / model(image)"),
    "anchor_click_ms": ("anchor_click", "ms", "anchor page: click to its figure (serialised)"),
    "validate_10k_s": ("validate", "s", "python -m detector validate, 10,000-image COCO"),
    "diagnose_ratio": ("diagnose", "x", "diagnose / evaluate, same N synthetic images, demo model (goal <= 1.2)"),
    "tuner_box_knob_ratio": ("diagnose", "x", "one box-knob tuner setting, cached images / evaluate (goal <= 0.25)"),
    "tuner_rpn_knob_ratio": ("diagnose", "x", "one RPN-knob tuner setting, cached images / evaluate (goal <= 0.25)"),
    "scale_peak_rss_mb_per_image": ("diagnose", "MiB", "tuner-ready pass, resnet50-FPN 800 px: peak RSS slope per image"),
    "scale_5000_images_peak_rss_mb": ("diagnose", "MiB", "the same pass over 5,000 images, extrapolated (goal <= 4096)"),
    "scale_held_kib_per_image": ("diagnose", "KiB", "held in memory per image by that pass (goal <= 512)"),
    "scale_pass_cpu_ratio": ("diagnose", "x", "that pass / evaluate, same images, CPU seconds (goal <= 1.3)"),
    "scale_setting_rpn_cpu_ratio": ("diagnose", "x", "one RPN-knob setting from the pass / evaluate, CPU s (goal <= 0.05)"),
    "export_onnx_ratio": ("export", "x", "demo model at 640x480: onnxruntime / model(images), CPU"),
}


def machine() -> dict:
    # versions from the package metadata: this process stays small (a child forked from a big
    # process starts its peak RSS at the parent's size), so it never imports torch itself
    from importlib.metadata import version

    return {"date": datetime.datetime.now().isoformat(timespec="seconds"), "python": platform.python_version(),
            "torch": version("torch"), "torchvision": version("torchvision"), "cpu_cores": os.cpu_count(),
            "cpu": _cpu_name(), "platform": platform.platform()}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run_child(name: str, args: argparse.Namespace, tmp: Path) -> dict:
    """Run one case in a process of its own; returns its figures (or {"error": ...})."""
    result = tmp / f"{name}.json"
    work = tmp / name
    work.mkdir()
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--result", str(result),
           "--workdir", str(work), "--threads", str(args.threads)]
    if args.quick:
        cmd.append("--quick")
    if args.repeats:
        cmd += ["--repeats", str(args.repeats)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DETECTOR_WORKSPACE": str(work / "workspace"),
           "TORCH_HOME": str(work / "torch_home"), "OMP_NUM_THREADS": str(args.threads)}
    start = time.monotonic()
    load_before = os.getloadavg()[0]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.monotonic() - start
    if proc.returncode != 0 or not result.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        return {"error": " | ".join(tail) or f"exit {proc.returncode}", "wall_s": wall}
    figures = json.loads(result.read_text())
    figures["wall_s"] = wall
    figures["load_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return figures


def child(args: argparse.Namespace) -> int:
    if args.child != "validate":  # validate needs no torch (and its probe must fork from a small process)
        import torch

        torch.set_num_threads(args.threads)
    from bench.cases import Options, run_case

    figures = run_case(args.child, Options(args.quick, Path(args.workdir), args.repeats))
    Path(args.result).write_text(json.dumps(figures))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small settings: a few minutes on 2 CPU cores")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--only", default=None, help=f"comma-separated cases ({', '.join(CASE_ORDER)})")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads per case (default 1: steadier on a shared machine)")
    parser.add_argument("--repeats", type=int, default=None, help="override each case's number of repeats")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--result", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    cases = [c.strip() for c in args.only.split(",")] if args.only else list(CASE_ORDER)
    unknown = set(cases) - set(CASE_ORDER)
    if unknown:
        parser.error(f"unknown case(s): {', '.join(sorted(unknown))}; cases: {', '.join(CASE_ORDER)}")
    report: dict = {"machine": machine(), "settings": {"quick": args.quick, "threads": args.threads},
                    "load_1min_start": round(os.getloadavg()[0], 2), "cases": {}}
    with tempfile.TemporaryDirectory(prefix="detector-bench-") as tmp:
        for name in cases:
            if not args.json:
                print(f"running {name} ...", file=sys.stderr, flush=True)
            report["cases"][name] = run_child(name, args, Path(tmp))
    report["load_1min_end"] = round(os.getloadavg()[0], 2)
    figures = {}
    for key, (case, _, _) in HEADLINE.items():
        if case in report["cases"]:
            figures[key] = report["cases"][case].get(key)
    figures["peak_rss_mb"] = {c: r.get("peak_rss_mb") for c, r in report["cases"].items()}
    report = {"figures": figures, **report}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
    return 1 if any("error" in r for r in report["cases"].values()) else 0


def format_report(report: dict) -> str:
    m = report["machine"]
    lines = [f"{m['date']}  {m['cpu']} x{m['cpu_cores']}  torch {m['torch']} torchvision {m['torchvision']}  "
             f"threads {report['settings']['threads']}{'  --quick' if report['settings']['quick'] else ''}  "
             f"load {report['load_1min_start']} -> {report['load_1min_end']}", ""]
    for key, (case, unit, what) in HEADLINE.items():
        if case not in report["cases"]:
            continue
        result = report["cases"][case]
        if "error" in result:
            lines.append(f"{key:<24} error: {result['error']}")
            continue
        value = result.get(key)
        shown = f"{value:.3f}{unit}" if unit == "x" else f"{value:.1f} {unit}"
        lines.append(f"{key:<24} {shown:>12}   peak RSS {result['peak_rss_mb']:.0f} MiB   {what}")
    if "baseline" in report["cases"] and "peak_rss_mb" in report["cases"]["baseline"]:
        lines.append(f"{'(import torch alone)':<24} {'':>12}   peak RSS {report['cases']['baseline']['peak_rss_mb']:.0f} MiB")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
