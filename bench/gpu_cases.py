"""The measurements of bench/gpu.py, run in a child process per phase (bench/gpu.py starts them).

Each phase function takes the plan (a dict the parent wrote) and `emit(row)`, which appends one
JSON line to the phase's result file at once, so a child stopped at the time budget leaves every
finished row behind. Rows carry `kind` (training, inference, loader, decode, note) and either
figures, `error` (the case failed: the message) or `skipped` (why it did not run).
"""

from __future__ import annotations

import contextlib
import itertools
import dataclasses
import math
import os
import shutil
import statistics
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import torch

Emit = Callable[[dict], None]
# the engine's per-step profiler ranges (detector/engine.py): the host time of each part of a step
ENGINE_RANGES = ("train.data", "train.forward", "train.readback", "train.backward", "train.optimizer",
                 "train.bookkeeping")


# ---------------------------------------------------------------- the recipe


@dataclass(frozen=True)
class Recipe:
    """The switchable optimisations, as one set; `engine_fields` / `bare_kwargs` hand them to each loop."""

    workers: int
    pin_memory: bool
    persistent_workers: bool
    prefetch_factor: int | None
    amp: str  # "off", "fp16" (autocast + GradScaler) or "bf16" (autocast)
    channels_last: bool
    cudnn_benchmark: bool
    fused: bool  # fused SGD (else torch's default: foreach on CUDA)
    compile_backbone: bool = False

    def engine_fields(self) -> dict[str, Any]:
        return {"workers": self.workers, "pin_memory": self.pin_memory, "persistent_workers": self.persistent_workers,
                "prefetch_factor": self.prefetch_factor, "amp": self.amp != "off",
                "amp_dtype": {"fp16": "float16", "bf16": "bfloat16"}.get(self.amp, "auto"),
                "channels_last": self.channels_last, "cudnn_benchmark": self.cudnn_benchmark,
                "fused_optimizer": self.fused, "compile_backbone": self.compile_backbone}

    def bare_kwargs(self) -> dict[str, Any]:
        return {"amp": self.amp, "channels_last": self.channels_last, "pin_memory": self.pin_memory,
                "persistent_workers": self.persistent_workers, "prefetch_factor": self.prefetch_factor,
                "fused": self.fused, "cudnn_benchmark": self.cudnn_benchmark,
                "compile_backbone": self.compile_backbone}

    def differences(self, other: "Recipe") -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if asdict(other)[k] != v}


def recipe(d: dict) -> Recipe:
    """A Recipe from the plan; amp "auto" becomes bf16 where this GPU supports it, else fp16 (off on CPU)."""
    d = dict(d)
    if d["amp"] == "auto":
        cuda = torch.cuda.is_available()
        d["amp"] = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "off"
    return Recipe(**d)


# ---------------------------------------------------------------- GPU utilisation


class UtilSampler:
    """GPU utilisation (%) sampled every 100 ms while running: NVML (pynvml) if importable, else
    `nvidia-smi --query-gpu=utilization.gpu -lms 100` in a subprocess. Nothing on CPU."""

    def __init__(self, device: torch.device, interval_s: float = 0.1):
        self.device = device
        self.interval_s = interval_s
        self.samples: list[float] = []
        self.source: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._proc: subprocess.Popen | None = None

    def start(self) -> None:
        if self.device.type != "cuda":
            return
        self.samples, self._stop = [], threading.Event()
        handle = _nvml_handle(self.device)
        if handle is not None:
            import pynvml

            self.source = "nvml"

            def poll() -> None:
                while not self._stop.wait(self.interval_s):
                    with contextlib.suppress(Exception):
                        self.samples.append(float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu))

            self._thread = threading.Thread(target=poll, daemon=True)
            self._thread.start()
            return
        if shutil.which("nvidia-smi") is None:
            return
        self.source = "nvidia-smi"
        index = self.device.index or 0
        self._proc = subprocess.Popen(["nvidia-smi", f"--id={index}", "--query-gpu=utilization.gpu",
                                       "--format=csv,noheader,nounits", "-lms", "100"],
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

        def read() -> None:
            assert self._proc is not None and self._proc.stdout is not None
            for line in self._proc.stdout:
                with contextlib.suppress(ValueError):
                    self.samples.append(float(line.strip()))

        self._thread = threading.Thread(target=read, daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        if self._proc is not None:
            self._proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=2)
        if self._thread is not None:
            self._thread.join(timeout=2)
        samples = list(self.samples)
        if self.source == "nvidia-smi" and len(samples) > 1:
            samples = samples[1:]  # the first reading describes the time before sampling began
        return {"gpu_util_mean": statistics.fmean(samples) if samples else None,
                "gpu_util_median": statistics.median(samples) if samples else None,
                "gpu_util_samples": len(samples), "gpu_util_source": self.source}


def _nvml_handle(device: torch.device) -> Any:
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # not installed, or no driver library
        return None
    with contextlib.suppress(Exception):
        uuid = str(torch.cuda.get_device_properties(device).uuid)
        return pynvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}")
    with contextlib.suppress(Exception):
        return pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)
    return None


# ---------------------------------------------------------------- profiles


def profiler(device: torch.device) -> torch.profiler.profile:
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    return torch.profiler.profile(activities=activities)


def summarize_profile(prof: torch.profiler.profile, steps: int, wall_s: float, top: int = 15) -> dict[str, Any]:
    """Per step: host ms of the engine's ranges, the top host ops by self CPU time, GPU kernel time and launches."""
    steps = max(steps, 1)
    events = prof.key_averages()

    def dev_self(e: Any) -> float:
        return float(getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0) or 0)

    ranges = {e.key: e.cpu_time_total / 1000 / steps for e in events if e.key in ENGINE_RANGES}
    ops = [e for e in events if e.key not in ENGINE_RANGES and not e.key.startswith("ProfilerStep")]
    host = sorted(ops, key=lambda e: -e.self_cpu_time_total)[:top]
    kernel_ms = sum(dev_self(e) for e in events) / 1000 / steps
    launches = sum(e.count for e in events if "LaunchKernel" in e.key) / steps
    wall_ms = wall_s * 1000 / steps
    return {
        "steps": steps, "wall_ms_per_step": wall_ms,
        "engine_ranges_ms_per_step": {k: round(ranges[k], 3) for k in ENGINE_RANGES if k in ranges},
        "top_host_ops": [{"name": e.key, "calls_per_step": e.count / steps,
                          "self_cpu_ms_per_step": round(e.self_cpu_time_total / 1000 / steps, 3),
                          "gpu_ms_per_step": round(dev_self(e) / 1000 / steps, 3)} for e in host],
        "gpu_kernel_ms_per_step": round(kernel_ms, 3),
        "gpu_busy_share": round(kernel_ms / wall_ms, 4) if wall_ms > 0 and kernel_ms > 0 else None,
        "kernel_launches_per_step": launches,
    }


# ---------------------------------------------------------------- training runs


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    import gc

    gc.collect()  # the previous run's model, optimizer and loader workers go first
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


class Window:
    """Which steps are warm-up, timed and profiled, and what was seen in them."""

    def __init__(self, warmup: int, timed: int, profile: int, device: torch.device, deadline: float):
        self.warmup, self.timed, self.profile = warmup, timed, profile
        self.device = device
        self.deadline = deadline
        self.marks: list[float] = []  # perf_counter at each step's start (hook) or end (bare)
        self.t_start = self.t_end = None
        self.sampler = UtilSampler(device)
        self.util: dict[str, Any] = {}
        self.prof: torch.profiler.profile | None = None
        self.prof_t0 = 0.0
        self.profile_summary: dict[str, Any] | None = None
        self.cut: str | None = None
        self.first_step_s: float | None = None

    def fit(self, steps_available: int) -> None:
        """Shorten the timed window to what one epoch holds (warm-up and profile kept)."""
        room = steps_available - self.warmup - self.profile - 1
        if room < self.timed:
            self.timed = max(room, 1)

    def mark(self, k: int) -> bool:
        """Called at boundary k (k steps done); returns False when the run should end now."""
        now = time.perf_counter()
        if k == 1 and self.marks:
            self.first_step_s = now - self.marks[0]
        if k == self.warmup:
            _sync(self.device)
            self.t_start = time.perf_counter()
            self.sampler.start()
        elif k == self.warmup + self.timed:
            _sync(self.device)
            self.t_end = time.perf_counter()
            self.util = self.sampler.stop()
            if self.profile:
                self.prof = profiler(self.device)
                self.prof.__enter__()
                self.prof_t0 = time.perf_counter()
        elif self.profile and k == self.warmup + self.timed + self.profile and self.prof is not None:
            _sync(self.device)
            wall = time.perf_counter() - self.prof_t0
            self.prof.__exit__(None, None, None)
            self.profile_summary = summarize_profile(self.prof, self.profile, wall)
            self.prof = None
        self.marks.append(time.perf_counter())
        if time.monotonic() > self.deadline and self.t_end is None:
            self.cut = "stopped at the time budget before the timed steps ended"
            return False
        return k < self.warmup + self.timed + self.profile

    def figures(self, batch: int) -> dict[str, Any]:
        if self.t_start is None or self.t_end is None:
            return {"error": self.cut or "the run ended before its timed steps"}
        wall = self.t_end - self.t_start
        steps = self.marks[self.warmup : self.warmup + self.timed + 1]
        step_ms = [(b - a) * 1000 for a, b in zip(steps, steps[1:])]
        return {"images_per_s": batch * self.timed / wall, "timed_steps": self.timed, "warmup_steps": self.warmup,
                "step_ms_median": statistics.median(step_ms) if step_ms else None,
                "first_step_s": self.first_step_s, "window_s": wall, **self.util,
                **({"profile": self.profile_summary} if self.profile_summary else {})}


def _base_row(plan: dict, loop: str, model: str, batch: int | str, variant: str, rec: Recipe) -> dict[str, Any]:
    return {"kind": "training", "loop": loop, "model": model, "batch_size": batch, "variant": variant,
            "recipe": asdict(rec), "device": plan["device"], "input": plan["models"][model]["input"]}


def run_engine(plan: dict, model: str, batch: int | str, rec: Recipe, variant: str, profile: int = 0,
               timed: int | None = None, warmup: int | None = None) -> dict[str, Any]:
    """detector.engine.train for warm-up + timed (+ profiled) steps, then a STOP file ends it cleanly."""
    from detector import runs
    from detector.engine import train
    from detector.train_config import TrainConfig

    device = torch.device(plan["device"])
    spec = plan["models"][model]
    data = spec["data"]
    run_dir = Path(plan["work"]) / "runs" / f"{model}-{batch}-{variant}-{time.monotonic_ns()}"
    config = TrainConfig(data=data["path"], val_data=data["pool"], model=model, weights="none", epochs=1,
                         batch_size=batch, device=plan["device"], decode_check=False, snapshot_images=0,
                         max_val_images=0, model_kwargs=spec["knobs"])
    row = _base_row(plan, "engine", model, batch, variant, rec)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    wanted = rec.engine_fields()
    config = config.replace(**{k: v for k, v in wanted.items() if k in known})
    if set(wanted) - known:  # an engine from before a switch existed: measured without it, and said so
        row["engine_lacks"] = sorted(set(wanted) - known)
    window = Window(plan["warmup"] if warmup is None else warmup, timed or plan["timed"], profile, device,
                    plan["deadline"])
    seen = {"k": 0, "batch": None}

    def hook(step: int, core: Any, images: Any) -> None:
        k = seen["k"]
        if k == 0:
            seen["batch"] = len(images)
            window.fit(math.ceil(data["images"] / len(images)))
        seen["k"] += 1
        if not window.mark(k):
            runs.request_stop(run_dir)

    _reset_peak(device)
    t0 = time.perf_counter()
    try:
        result = train(config, run_dir, on_step=hook)
    except Exception as exc:  # a failed run is a figure too: record it and go on
        row.update(error=f"{type(exc).__name__}: {exc}"[:800], wall_s=time.perf_counter() - t0)
        return row
    row.update(window.figures(seen["batch"] or 0), wall_s=time.perf_counter() - t0, peak_gpu_mb=_peak_mb(device),
               state=result.state, batch_size_used=seen["batch"])
    if result.state == "failed":
        row["error"] = result.message
    train_rows, _ = runs.read_metrics(run_dir)
    lo, hi = window.warmup + 1, window.warmup + window.timed + 1  # the fetches inside the timed window
    waits = [r.get("data_s") for r in train_rows if lo < r["step"] <= hi]
    if waits and all(w is not None for w in waits) and row.get("window_s"):
        row["data_wait_share"] = sum(waits) / row["window_s"]
    status = runs.read_status(run_dir)
    if "batch_size_search" in status.extra:
        row["batch_size_search"] = status.extra["batch_size_search"]
    if not plan.get("keep_runs"):
        shutil.rmtree(run_dir, ignore_errors=True)
    return row


def run_bare(plan: dict, model: str, batch: int, rec: Recipe, variant: str) -> dict[str, Any]:
    """bench/bare_loop.py (torch + torchvision only) with the same model, data, batch and recipe."""
    from bench import bare_loop
    from detector.data import resolve_dataset
    from detector.models import build_model
    from detector.train_config import TrainConfig

    device = torch.device(plan["device"])
    spec = plan["models"][model]
    data = spec["data"]
    dataset, _, _ = resolve_dataset(data["path"])
    files = [r.file.removeprefix("images/") for r in dataset.records]
    lr = TrainConfig(batch_size=batch).base_lr()
    row = _base_row(plan, "bare", model, batch, variant, rec)
    window = Window(plan["warmup"], plan["timed"], 0, device, plan["deadline"])  # epochs follow each other
    waits: list[float] = []
    _reset_peak(device)
    t0 = time.perf_counter()
    try:
        gen = bare_loop.steps(lambda: build_model(model, dataset.class_names, weights="none", **spec["knobs"]),
                              data["path"], files, batch, rec.workers, lr, device=plan["device"], **rec.bare_kwargs())
        window.mark(0)
        for k, step in enumerate(gen, start=1):
            if window.warmup < k <= window.warmup + window.timed:
                waits.append(step.data_seconds)
            if not window.mark(k):
                break
        gen.close()
    except Exception as exc:
        row.update(error=f"{type(exc).__name__}: {exc}"[:800], wall_s=time.perf_counter() - t0)
        return row
    row.update(window.figures(batch), wall_s=time.perf_counter() - t0, peak_gpu_mb=_peak_mb(device))
    if row.get("window_s"):
        row["data_wait_share"] = sum(waits) / row["window_s"]
    return row


def _after(plan: dict) -> Recipe:
    return recipe(plan["after"])


def _before(plan: dict) -> Recipe:
    return recipe(plan["before"])


def _configs(plan: dict) -> list[tuple[str, int]]:
    return [(m, b) for m in plan["models"] for b in plan["models"][m]["batches"]]


def _fits(plan: dict, estimate_s: float) -> bool:
    return time.monotonic() + estimate_s < plan["deadline"]


def _skip(emit: Emit, what: dict, reason: str) -> None:
    emit({**what, "skipped": reason})


class Estimates:
    """Wall seconds of the last run per (model, batch, loop), to skip a run that cannot end in time."""

    def __init__(self, default_s: float):
        self.default_s = default_s
        self.seen: dict[tuple, float] = {}

    def get(self, *key: Any) -> float:
        if key in self.seen:
            return self.seen[key]
        return max(self.seen.values()) if self.seen else self.default_s

    def put(self, row: dict, *key: Any) -> None:
        if "wall_s" in row:
            self.seen[key] = row["wall_s"]


def phase_train(plan: dict, emit: Emit) -> None:
    """Per model at its first batch size: engine and bare loop with the new recipe (engine profiled),
    then both with the old one; then the other batch sizes with the new recipe. The before/after
    table for every model comes first, so a tight budget cuts the extra batch sizes."""
    est = Estimates(plan["default_run_s"])
    after, before = _after(plan), _before(plan)
    order = [(m, spec["batches"][0], v, r) for m, spec in plan["models"].items()
             for v, r in (("after", after), ("before", before))]
    order += [(m, b, "after", after) for m, spec in plan["models"].items() for b in spec["batches"][1:]]
    for model, batch, variant, rec in order:
        for loop in ("engine", "bare"):
            what = _base_row(plan, loop, model, batch, variant, rec)
            if not _fits(plan, est.get(model, batch, loop)):
                _skip(emit, what, "time budget: not enough left for this run")
                continue
            if loop == "engine":
                row = run_engine(plan, model, batch, rec, variant, profile=plan["profile_steps"] if variant == "after" else 0)
            else:
                row = run_bare(plan, model, batch, rec, variant)
            est.put(row, model, batch, loop)
            emit(row)


def phase_ablations(plan: dict, emit: Emit) -> None:
    """The new recipe with one switch at a time set back to the old value (engine only)."""
    after, before = _after(plan), _before(plan)
    est = Estimates(plan["default_run_s"])
    changed = after.differences(before)
    for model, batch in plan["ablate"]:
        for name in changed:
            rec = replace(after, **{name: getattr(before, name)})
            variant = f"after-without-{name}"
            what = _base_row(plan, "engine", model, batch, variant, rec)
            if not _fits(plan, est.get(model, batch)):
                _skip(emit, what, "time budget: not enough left for this run")
                continue
            row = run_engine(plan, model, batch, rec, variant)
            est.put(row, model, batch)
            emit(row)


def phase_auto_batch(plan: dict, emit: Emit) -> None:
    """--batch-size auto through the engine: the batch it chose, the search's cost, then a few timed steps."""
    after = _after(plan)
    for model in plan["auto_models"]:
        what = _base_row(plan, "engine", model, "auto", "after-batch-auto", after)
        if not _fits(plan, plan["default_run_s"] * 2):
            _skip(emit, what, "time budget: not enough left for this run")
            continue
        emit(run_engine(plan, model, "auto", after, "after-batch-auto", timed=max(3, plan["timed"] // 4),
                        warmup=min(2, plan["warmup"])))


def phase_compile(plan: dict, emit: Emit) -> None:
    """The new recipe plus torch.compile of the backbone (first_step_s includes the compilation)."""
    rec = replace(_after(plan), compile_backbone=True)
    for model, batch in plan["compile"]:
        what = _base_row(plan, "engine", model, batch, "after-compile", rec)
        if not _fits(plan, plan["default_run_s"] * 3):
            _skip(emit, what, "time budget: not enough left to compile and run")
            continue
        emit(run_engine(plan, model, batch, rec, "after-compile"))


# ---------------------------------------------------------------- inference


def _timed(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        out.append(time.perf_counter() - t0)
    return out


def phase_inference(plan: dict, emit: Emit) -> None:
    """Per model: latency of one image and images/s of a batch, for model(images), detector.detection.detect
    and the RPN page's stages (run_rpn_stage + run_heads), in the same process on the same images."""
    from detector.data import resolve_dataset
    from detector.detection import detect
    from detector.images import load_image, to_tensor
    from detector.inspect import run_heads, run_rpn_stage
    from detector.checkpoints import LoadedModel
    from detector.models import build_model

    device = torch.device(plan["device"])
    for model_name, spec in plan["models"].items():
        what = {"kind": "inference", "model": model_name, "device": plan["device"], "input": spec["input"]}
        if not _fits(plan, plan["default_run_s"]):
            _skip(emit, what, "time budget: not enough left")
            continue
        try:
            dataset, _, _ = resolve_dataset(spec["data"]["pool"])
            n = plan["inference_batch"]
            pil = [load_image(dataset.root / r.file) for r in dataset.records[:n]]
            while len(pil) < n:
                pil = pil + pil[: n - len(pil)]
            model = build_model(model_name, dataset.class_names, weights="none", **spec["knobs"]).to(device).eval()
            loaded = LoadedModel(model, model_name, model_name, tuple(dataset.class_names), dict(spec["knobs"]),
                                 "random", f"{model_name} (random weights)")
            one = [to_tensor(pil[0]).to(device)]
            batch = [to_tensor(im).to(device) for im in pil]
            reps = plan["inference_repeats"]
            paths: dict[str, Callable[[], Any]] = {
                "model": lambda: model(one),
                "detect": lambda: detect(loaded, pil[:1], batch_size=1),
                "rpn_page_stages": lambda: run_heads(model, run_rpn_stage(model, one)),
            }
            batched: dict[str, Callable[[], Any]] = {
                "model": lambda: model(batch),
                "detect": lambda: detect(loaded, pil, batch_size=n),
            }
            if device.type == "cuda":
                def bf16() -> Any:
                    with torch.autocast("cuda", dtype=torch.bfloat16):
                        return model(batch)
                batched["model_bf16_autocast"] = bf16
            row = dict(what, batch=n, repeats=reps, detections_per_image=None, latency_ms={}, images_per_s={})
            with torch.inference_mode():
                row["detections_per_image"] = statistics.fmean(len(o["boxes"]) for o in model(batch))
                for name, fn in paths.items():
                    row["latency_ms"][name] = statistics.median(_timed(fn, device, reps)) * 1000
                for name, fn in batched.items():
                    row["images_per_s"][name] = n / statistics.median(_timed(fn, device, max(3, reps // 3), 1))
                stage = run_rpn_stage(model, one)
                row["rpn_page_stage_ms"] = {k: v * 1000 for k, v in run_heads(model, stage).timings.items()}
            lat = row["latency_ms"]
            row["detect_over_model"] = lat["detect"] / lat["model"]
            row["rpn_page_over_model"] = lat["rpn_page_stages"] / lat["model"]
            del model, loaded, one, batch
            _reset_peak(device)
            emit(row)
        except Exception as exc:
            emit({**what, "error": f"{type(exc).__name__}: {exc}"[:800]})


# ---------------------------------------------------------------- the data loader alone


def phase_loader(plan: dict, emit: Emit) -> None:
    """The engine's Dataset through a DataLoader, per worker count (images/s, batch of 16, no model),
    and decoding cost per image: our safe decode (PIL) vs torchvision.io, and nvJPEG on the GPU."""
    import torchvision
    from torch.utils.data import DataLoader

    from detector.data import DetectionDataset, collate, resolve_dataset
    from detector.images import load_image, to_tensor

    device = torch.device(plan["device"])
    sets = {spec["data"]["path"]: spec["data"] for spec in plan["models"].values()}
    for data in sets.values():
        dataset, _, _ = resolve_dataset(data["path"])
        torch_ds = DetectionDataset(dataset.records, dataset.root, train=True)
        base = {"kind": "loader", "set": data["label"], "image_size": data["size"], "file_kb": data["file_kb"]}
        # decode cost per image, in this process, one thread
        files = [dataset.root / r.file for r in dataset.records[: plan["decode_images"]]]
        ours = _per_image(lambda p: to_tensor(load_image(p)), files)
        tv = _per_image(lambda p: torchvision.io.decode_image(torchvision.io.read_file(str(p)),
                                                              mode=torchvision.io.ImageReadMode.RGB).float().div_(255), files)
        decode = {**base, "kind": "decode", "ours_ms_per_image": ours * 1000, "torchvision_io_ms_per_image": tv * 1000,
                  "images": len(files), "torch_threads": torch.get_num_threads()}
        if device.type == "cuda":
            with contextlib.suppress(Exception):
                datas = [torchvision.io.read_file(str(p)) for p in files]
                times = _timed(lambda: torchvision.io.decode_jpeg(datas, device=device), device, 3, 1)
                decode["nvjpeg_batch_ms_per_image"] = statistics.median(times) * 1000 / len(datas)
        emit(decode)
        for (pixels, ds), workers in itertools.product((("float32", torch_ds), ("uint8", Uint8Images(torch_ds))),
                                                       plan["loader_workers"]):
            what = {**base, "workers": workers, "batch_size": plan["loader_batch"], "pixels": pixels}
            if not _fits(plan, 10):
                _skip(emit, what, "time budget")
                continue
            loader = DataLoader(ds, batch_size=plan["loader_batch"], shuffle=True, num_workers=workers, collate_fn=collate,
                                pin_memory=device.type == "cuda", prefetch_factor=4 if workers else None)
            it = iter(loader)
            t_start = time.perf_counter()
            next(it)  # worker start-up and the first batch
            first = time.perf_counter() - t_start
            t0 = time.perf_counter()
            count = 0
            for images, _ in it:
                count += len(images)
                if count >= plan["loader_images"]:
                    break
            wall = time.perf_counter() - t0
            del it, loader
            emit({**what, "images": count, "images_per_s": count / wall if wall > 0 else None, "first_batch_s": first,
                  "load_1min": round(os.getloadavg()[0], 2)})


class Uint8Images(torch.utils.data.Dataset):
    """The engine's images as uint8 (3, H, W), decoded the same safe way, not yet divided to float:
    a quarter of the bytes through the workers' shared memory and the copy to the GPU."""

    def __init__(self, base: Any):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict]:
        import numpy as np

        from detector.images import load_image

        record = self.base.records[i]
        image = load_image(self.base.root / record.file, name=record.file)
        pixels = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)
        return pixels, {"boxes": torch.tensor(record.boxes, dtype=torch.float32).reshape(-1, 4)}


def _per_image(fn: Callable[[Path], Any], files: list[Path]) -> float:
    fn(files[0])
    t0 = time.perf_counter()
    for p in files:
        fn(p)
    return (time.perf_counter() - t0) / len(files)


PHASES: dict[str, Callable[[dict, Emit], None]] = {
    "loader": phase_loader,
    "train": phase_train,
    "inference": phase_inference,
    "ablations": phase_ablations,
    "auto_batch": phase_auto_batch,
    "compile": phase_compile,
}
