"""GPU training and inference speed in one run, under a time budget: engine and bare loop, before and after.

    python bench/gpu.py --json --out gpu.json            # on a CUDA machine: at most 7.5 minutes
    python bench/gpu.py --cpu-smoke --json               # the same cases at tiny sizes on the CPU

What it measures, by priority (each phase a child process of its own; a phase that would run
past its share of `--budget-s` skips its remaining cases with a note, and the whole script ends
inside the budget whatever happens):

- train: for mobilenet_v3_fpn_lite (320 px) and fasterrcnn_mobilenet_v3_large_fpn at batch 16
  and 32, fasterrcnn_resnet50_fpn_v2 (800 px short side) at batch 16: `detector.engine.train` and
  `bench/bare_loop.py` (torch + torchvision only) with the new recipe ("after": the flags below),
  then both with the old one at the first batch size ("before": the engine until this issue: 2 workers,
  fp16 autocast + GradScaler, NCHW, no cuDNN autotuning, foreach SGD). Per run, after warm-up
  steps: images/s, GPU utilisation (NVML, else nvidia-smi, sampled every 100 ms), peak GPU memory
  (torch.cuda.max_memory_allocated), the share of the window spent waiting in the DataLoader's
  next, and for the engine's "after" runs a torch.profiler capture of a few steps (the engine's
  per-step ranges, the top host ops, GPU kernel time and launches per step);
- inference: latency of one image and images/s of a batch: model(images), detect() and the RPN
  page's stages (run_rpn_stage + run_heads);
- loader: the engine's Dataset through a DataLoader per worker count (images/s, no model), and
  the decoding cost per image (our safe PIL decode, torchvision.io, nvJPEG on the GPU);
- ablations: the new recipe with one switch at a time set back (engine);
- auto_batch: `--batch-size auto` through the engine: the batch chosen, the search's cost;
- compile: the new recipe with torch.compile of the backbone (errors recorded, never fatal).

Ratios are computed from rows of the same run: engine / bare images/s per recipe, after / before.
Children run with streamlit, plotly, pycocotools and defusedxml made unimportable, as on the GPU
machine. Data: synthetic scenes (the demo's data, 320x240) for the 320 px model; noise-textured
640x480 JPEGs of about COCO's file size for the 800 px models (bench/gpu_data.py).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PHASES = ("train", "inference", "loader", "ablations", "auto_batch", "compile")  # by priority
SHARE = {"train": 0.55, "inference": 0.08, "loader": 0.07, "ablations": 0.12, "auto_batch": 0.08, "compile": 0.10}
BLOCKED = ("streamlit", "plotly", "pycocotools", "defusedxml")  # absent on the GPU machine
MODELS = {  # name -> input, batches, data set
    "mobilenet_v3_fpn_lite": ("320 px", (16, 32), "synthetic"),
    "fasterrcnn_mobilenet_v3_large_fpn": ("800 px short side", (16, 32), "coco_like"),
    "fasterrcnn_resnet50_fpn_v2": ("800 px short side", (16,), "coco_like"),
}
SMOKE_KNOBS = {"min_size": 96, "max_size": 128, "rpn_pre_nms_top_n_train": 200, "rpn_post_nms_top_n_train": 100,
               "rpn_pre_nms_top_n_test": 100, "rpn_post_nms_top_n_test": 50, "box_batch_size_per_image": 64,
               "rpn_batch_size_per_image": 64}
# The engine as it was before this benchmark (TrainConfig defaults of commit 7266f78, on CUDA).
BEFORE = {"workers": 2, "pin_memory": True, "persistent_workers": True, "prefetch_factor": None, "amp": "fp16",
          "channels_last": False, "cudnn_benchmark": False, "fused": False, "compile_backbone": False}


def auto_workers() -> int:
    try:
        from detector.train_config import auto_workers as engine_auto
    except ImportError:  # an engine from before "auto" existed
        return max(0, min(len(os.sched_getaffinity(0)) - 1, 12))
    return engine_auto()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print the report as JSON (else a table)")
    p.add_argument("--out", type=Path, help="also write the JSON report here")
    p.add_argument("--budget-s", type=float, default=450.0, help="the whole run ends inside this (default 450 s)")
    p.add_argument("--cpu-smoke", action="store_true", help="tiny sizes and few steps on the CPU: the same JSON shape")
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    p.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated, in order ({','.join(PHASES)})")
    p.add_argument("--models", default=None, help="comma-separated model names (default: all three)")
    p.add_argument("--batch-sizes", default=None, help="comma-separated batch sizes for every model (default: "
                   "16 and 32 for the MobileNets, 16 for ResNet-50; smoke 2)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 5; smoke 1)")
    p.add_argument("--timed", type=int, default=None, help="timed steps (default 30; smoke 2)")
    p.add_argument("--profile-steps", type=int, default=None, help="profiled steps after the timed ones (default 3)")
    p.add_argument("--loader-workers", default=None, help="worker counts for the loader phase (default 0,2,4,8,12,max)")
    p.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one, removed)")
    # the new recipe ("after"); each switch can be set back to see its share
    p.add_argument("--workers", default="auto", help="DataLoader workers: auto (cores - 1, at most 12) or N")
    p.add_argument("--pin-memory", action=argparse.BooleanOptionalAction, default=None, help="default: on for CUDA")
    p.add_argument("--persistent-workers", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--prefetch-factor", type=int, default=4)
    p.add_argument("--amp", choices=("auto", "bf16", "fp16", "off"), default="auto",
                   help="auto: bf16 where the GPU supports it, else fp16 with GradScaler; off on CPU")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--cudnn-benchmark", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--fused", action=argparse.BooleanOptionalAction, default=None, help="fused SGD (default: on for CUDA)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--plan", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--results", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.cpu_smoke:
        args.device = "cpu"
    return args


def cuda_visible() -> bool:
    """Whether a CUDA GPU is there, asked without importing torch here (children own the GPU)."""
    code = "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 3)"
    return subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def make_plan(args: argparse.Namespace, work: Path, deadline: float) -> dict:
    from bench.gpu_data import mean_file_kb, pool_dir, replicated_set

    device = args.device if args.device != "auto" else ("cuda" if cuda_visible() else "cpu")
    cuda = device == "cuda"
    smoke = args.cpu_smoke
    warmup = args.warmup if args.warmup is not None else (1 if smoke else 5)
    timed = args.timed if args.timed is not None else (2 if smoke else 30)
    profile = args.profile_steps if args.profile_steps is not None else (1 if smoke else 3)
    names = [m.strip() for m in args.models.split(",")] if args.models else list(MODELS)
    unknown = set(names) - set(MODELS)
    if unknown:
        raise SystemExit(f"unknown model(s): {', '.join(sorted(unknown))}; known: {', '.join(MODELS)}")
    chosen = tuple(int(b) for b in args.batch_sizes.split(",")) if args.batch_sizes else None
    batches = {m: chosen or ((2,) if smoke else MODELS[m][1]) for m in names}
    steps = warmup + timed + profile + 2
    sets: dict[str, dict] = {}
    for kind in sorted({MODELS[m][2] for m in names}):
        w, h = (128, 96) if smoke else ((320, 240) if kind == "synthetic" else (640, 480))
        need = max(max(batches[m]) for m in names if MODELS[m][2] == kind) * steps
        path = replicated_set(work / "data" / f"{kind}-{w}x{h}", need, w, h, pool=8 if smoke else 48,
                              coco_like=kind == "coco_like")
        sets[kind] = {"path": str(path), "pool": str(pool_dir(path)), "images": need, "size": [w, h],
                      "file_kb": round(mean_file_kb(path), 1),
                      "label": ("demo synthetic scenes" if kind == "synthetic" else "COCO-like textured JPEGs")
                               + f" {w}x{h}"}
    models = {m: {"input": "smoke: 96-128 px" if smoke else MODELS[m][0], "batches": list(batches[m]),
                  "knobs": dict(SMOKE_KNOBS) if smoke else {}, "data": sets[MODELS[m][2]]} for m in names}
    amp = args.amp
    if amp == "auto":
        amp = "auto" if cuda else "off"
    workers = auto_workers() if args.workers == "auto" else int(args.workers)
    after = {"workers": workers, "pin_memory": cuda if args.pin_memory is None else args.pin_memory,
             "persistent_workers": args.persistent_workers, "prefetch_factor": args.prefetch_factor if workers else None,
             "amp": amp, "channels_last": args.channels_last, "cudnn_benchmark": args.cudnn_benchmark and cuda,
             "fused": cuda if args.fused is None else args.fused, "compile_backbone": False}
    before = dict(BEFORE, pin_memory=cuda, amp="fp16" if cuda else "off", workers=0 if smoke else BEFORE["workers"])
    if smoke:
        after["workers"] = min(after["workers"], 1)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    loader_workers = ([int(x) for x in args.loader_workers.split(",")] if args.loader_workers
                      else [0, 1] if smoke else sorted({0, min(4, max(cores - 1, 1)), min(12, max(cores - 1, 1))}))
    first = names[0]
    big = "fasterrcnn_resnet50_fpn_v2" if "fasterrcnn_resnet50_fpn_v2" in names else names[-1]
    return {
        "device": device, "smoke": smoke, "work": str(work), "deadline_wall": deadline, "warmup": warmup,
        "timed": timed, "profile_steps": profile, "models": models, "after": after, "before": before,
        "ablate": [[big, batches[big][0]]] + ([[first, batches[first][-1]]] if first != big else []),
        "auto_models": [big] + ([first] if first != big else []),
        "compile": ([[first, batches[first][-1]]] if first != big else []) + [[big, batches[big][0]]],  # lite compiles fastest
        "inference_batch": 2 if smoke else 16, "inference_repeats": 3 if smoke else 20,
        "loader_workers": loader_workers, "loader_images": 4 if smoke else 320, "loader_batch": 2 if smoke else 16, "decode_images": 4 if smoke else 64,
        "default_run_s": 20.0 if smoke else 25.0, "cores": cores,
    }


# ---------------------------------------------------------------- the parent: phases under a budget


def run_phases(args: argparse.Namespace, plan: dict, phases: list[str], work: Path, deadline: float) -> tuple[list[dict], dict]:
    rows: list[dict] = []
    report: dict[str, dict] = {}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "DETECTOR_WORKSPACE": str(work / "workspace"), "TORCH_HOME": str(work / "torch_home"),
           "PYTHONUNBUFFERED": "1"}
    for i, phase in enumerate(phases):
        left = deadline - time.time()
        share = SHARE[phase] / sum(SHARE[p] for p in phases[i:])
        phase_deadline = time.time() + left * share - (3 if i == len(phases) - 1 else 0)  # room for the report
        if left < 5:
            report[phase] = {"skipped": "time budget spent"}
            rows.append({"kind": "note", "phase": phase, "skipped": "time budget spent before this phase"})
            continue
        plan_file = work / f"plan-{phase}.json"
        plan_file.write_text(json.dumps({**plan, "deadline_wall": phase_deadline}))
        results = work / f"rows-{phase}.jsonl"
        results.unlink(missing_ok=True)
        log = work / f"log-{phase}.txt"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", phase, "--plan", str(plan_file),
               "--results", str(results)]
        t0 = time.time()
        # the child stops itself at its deadline; this is the backstop, never past the whole budget
        timeout = max(min(phase_deadline + 20, deadline - 2) - t0, 1)
        with open(log, "w") as out:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                code = proc.wait(timeout=timeout)
                note = None
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()
                code, note = None, f"killed at the time budget after {time.time() - t0:.0f} s"
        phase_rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()] if results.exists() else []
        rows += phase_rows
        report[phase] = {"wall_s": round(time.time() - t0, 1), "exit": code, "rows": len(phase_rows),
                         "deadline_s": round(phase_deadline - t0, 1)}
        if note or code:
            tail = log.read_text(errors="replace").strip().splitlines()[-8:]
            report[phase].update(note=note or f"exit {code}", log_tail=tail)
            rows.append({"kind": "note", "phase": phase, "error": note or f"child exited {code}: " + " | ".join(tail[-3:])})
        if not args.json:
            print(f"{phase}: {report[phase]['wall_s']} s, {len(phase_rows)} rows" + (f" ({note or code})" if note or code else ""),
                  file=sys.stderr, flush=True)
    return rows, report


def ratios(rows: list[dict]) -> list[dict]:
    """engine / bare per (model, batch, recipe), and after / before per (model, batch, loop)."""
    ok = {(r["loop"], r["model"], r["batch_size"], r["variant"]): r["images_per_s"]
          for r in rows if r.get("kind") == "training" and r.get("images_per_s")}
    out = []
    for (loop, model, batch, variant), ips in ok.items():
        if loop == "engine" and ("bare", model, batch, variant) in ok:
            out.append({"what": "engine_over_bare", "model": model, "batch_size": batch, "variant": variant,
                        "ratio": ips / ok[("bare", model, batch, variant)]})
        if variant == "after" and (loop, model, batch, "before") in ok:
            out.append({"what": "after_over_before", "loop": loop, "model": model, "batch_size": batch,
                        "ratio": ips / ok[(loop, model, batch, "before")]})
        if variant.startswith("after-without-") and ("engine", model, batch, "after") in ok:
            out.append({"what": "after_over_without", "switch": variant.removeprefix("after-without-"), "model": model,
                        "batch_size": batch, "ratio": ok[("engine", model, batch, "after")] / ips})
    return out


def machine(plan: dict, rows: list[dict]) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    def ver(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    info = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "python": platform.python_version(),
            "torch": ver("torch"), "torchvision": ver("torchvision"), "cpu_cores": os.cpu_count(),
            "cpu_affinity": plan["cores"], "platform": platform.platform(),
            "installed": {n: ver(n) for n in ("streamlit", "plotly", "pycocotools", "defusedxml", "nvidia-ml-py")}}
    if shutil.which("nvidia-smi"):
        q = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                           capture_output=True, text=True)
        info["nvidia_smi"] = q.stdout.strip() or q.stderr.strip()[:200]
    child = next((r for r in rows if r.get("kind") == "child"), None)
    if child:
        info["child"] = {k: v for k, v in child.items() if k != "kind"}
    return info


def format_table(report: dict) -> str:
    lines = [f"{report['machine'].get('nvidia_smi') or report['settings']['device']}  torch {report['machine']['torch']}  "
             f"wall {report['wall_s']:.0f} s of {report['settings']['budget_s']:.0f}  load {report['load_1min']}", ""]
    lines.append(f"{'loop':<7}{'model':<36}{'batch':>6}  {'variant':<30}{'img/s':>8}{'util%':>7}{'data%':>7}{'peak MiB':>10}")
    for r in report["training"]:
        head = f"{r['loop']:<7}{r['model']:<36}{str(r['batch_size']):>6}  {r['variant']:<30}"
        if "images_per_s" in r:
            util = f"{r['gpu_util_mean']:.0f}" if r.get("gpu_util_mean") is not None else "-"
            data = f"{100 * r['data_wait_share']:.1f}" if r.get("data_wait_share") is not None else "-"
            peak = f"{r['peak_gpu_mb']:.0f}" if r.get("peak_gpu_mb") else "-"
            lines.append(f"{head}{r['images_per_s']:>8.1f}{util:>7}{data:>7}{peak:>10}")
        else:
            lines.append(f"{head}  {r.get('skipped') or r.get('error')}")
    lines.append("")
    for q in report["ratios"]:
        lines.append(f"{q['what']:<20}{q['model']:<36}{str(q['batch_size']):>6}  "
                     f"{q.get('variant') or q.get('loop') or q.get('switch'):<30}{q['ratio']:>8.3f}")
    for r in report["inference"]:
        if "latency_ms" in r:
            lat = ", ".join(f"{k} {v:.1f} ms" for k, v in r["latency_ms"].items())
            ips = ", ".join(f"{k} {v:.0f}/s" for k, v in r["images_per_s"].items())
            lines.append(f"inference {r['model']}: {lat}; batch {r['batch']}: {ips}")
        else:
            lines.append(f"inference {r['model']}: {r.get('skipped') or r.get('error')}")
    for r in report["loader"]:
        if "images_per_s" in r:
            lines.append(f"loader {r['set']} {r['pixels']} workers {r['workers']}: {r['images_per_s']:.0f} images/s")
    for r in report["decode"]:
        lines.append(f"decode {r['set']}: ours {r['ours_ms_per_image']:.2f} ms, torchvision.io "
                     f"{r['torchvision_io_ms_per_image']:.2f} ms per image")
    for r in report["notes"]:
        lines.append(f"note {r.get('phase')}: {r.get('skipped') or r.get('error')}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    began = time.time()
    deadline = began + args.budget_s
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = set(phases) - set(PHASES)
    if unknown:
        raise SystemExit(f"unknown phase(s): {', '.join(sorted(unknown))}; phases: {', '.join(PHASES)}")
    phases = [p for p in PHASES if p in phases]
    work = args.work or Path(tempfile.mkdtemp(prefix="detector-gpu-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    load_start = round(os.getloadavg()[0], 2)
    try:
        plan = make_plan(args, work, deadline)
        rows, phase_report = run_phases(args, plan, phases, work, deadline)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    report = {
        "machine": machine(plan, rows),
        "settings": {"device": plan["device"], "smoke": plan["smoke"], "budget_s": args.budget_s, "phases": phases,
                     "warmup": plan["warmup"], "timed": plan["timed"], "profile_steps": plan["profile_steps"],
                     "after": plan["after"], "before": plan["before"], "blocked_imports": list(BLOCKED),
                     "models": {m: {k: v for k, v in s.items() if k != "data"} | {"data": s["data"]["label"],
                                "file_kb": s["data"]["file_kb"]} for m, s in plan["models"].items()}},
        "phases": phase_report,
        "training": [r for r in rows if r.get("kind") == "training"],
        "ratios": ratios(rows),
        "inference": [r for r in rows if r.get("kind") == "inference"],
        "loader": [r for r in rows if r.get("kind") == "loader"],
        "decode": [r for r in rows if r.get("kind") == "decode"],
        "notes": [r for r in rows if r.get("kind") == "note"],
        "load_1min": [load_start, round(os.getloadavg()[0], 2)],
        "wall_s": time.time() - began,
    }
    text = json.dumps(report, indent=2, default=str)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(format_table(report), file=sys.stderr if args.json else sys.stdout, flush=True)
    if args.json:
        print(text)
    return 0


# ---------------------------------------------------------------- a child: one phase


class _Blocker:
    """Makes the packages the GPU machine lacks unimportable in this process (and its forked workers)."""

    def find_spec(self, name: str, path=None, target=None):  # noqa: ANN001 - importlib's protocol
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not installed here (bench/gpu.py runs as on the GPU machine)")
        return None


def child_main(args: argparse.Namespace) -> int:
    sys.meta_path.insert(0, _Blocker())
    for name in list(sys.modules):
        if name.split(".")[0] in BLOCKED:
            del sys.modules[name]
    plan = json.loads(args.plan.read_text())
    plan["deadline"] = time.monotonic() + (plan["deadline_wall"] - time.time())
    import torch

    from bench.gpu_cases import PHASES as RUNNERS

    if plan["device"] == "cpu":
        torch.set_flush_denormal(True)
    out = open(args.results, "a", buffering=1)

    def emit(row: dict) -> None:
        out.write(json.dumps(row, default=str) + "\n")

    cuda = plan["device"] == "cuda" and torch.cuda.is_available()
    emit({"kind": "child", "phase": args.child, "torch": torch.__version__, "cuda": torch.version.cuda,
          "device_name": torch.cuda.get_device_name() if cuda else platform.processor() or "cpu",
          "capability": list(torch.cuda.get_device_capability()) if cuda else None,
          "bf16_supported": torch.cuda.is_bf16_supported() if cuda else None,
          "total_memory_gib": torch.cuda.get_device_properties(0).total_memory / 2**30 if cuda else None,
          "torch_threads": torch.get_num_threads()})
    RUNNERS[args.child](plan, emit)
    out.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
