"""The benchmarks. Each `case_*` runs in a process of its own (bench/run.py starts it) and returns
a dict of figures; times are seconds unless a key says ms. A and B alternate in the same process.

Ratios: the headline is the median over repeats of A_i / B_i, each pair run back to back, so
load from other processes that comes and goes hits both sides of a pair alike; `*_medians` is
median(A) / median(B), which a machine switching between busy and quiet spells can skew when
the two medians fall in different spells. Both are reported.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.timing import Comparison, alternate, peak_rss_mb, repeat, timed

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_SEED = 10_001  # the pages' first sample scene (ui.inputs.SAMPLE_SEEDS[0]), 480x360
TRAIN_ARCH = "fasterrcnn_mobilenet_v3_large_320_fpn"  # a plain torchvision builder: the bare loop builds it too


@dataclass(frozen=True)
class Options:
    quick: bool
    workdir: Path
    repeats: int | None = None  # override the case's default number of repeats

    def n(self, quick: int, full: int) -> int:
        return self.repeats or (quick if self.quick else full)


def sample_image():
    from detector.scenes import make_scene

    scene = make_scene(SAMPLE_SEED, 480, 360)
    return scene.image, np.asarray(scene.boxes, dtype=float).reshape(-1, 4)


def demo_model():
    from detector.checkpoints import load_model

    return load_model("demo", "cpu").model.eval()


def resnet50_model():
    from detector.models import build_model

    return build_model("fasterrcnn_resnet50_fpn", weights="none").eval()


def streamlit_payload(fig) -> str:
    """What st.plotly_chart does to a figure before it goes to the browser (streamlit 1.67)."""
    import plotly.io
    import plotly.tools

    figure = plotly.tools.return_figure_from_figure_or_data(fig, validate_figure=True)
    return plotly.io.to_json(figure, validate=False)


# ---------------------------------------------------------------- introspection_overhead


def _compared_models(opts: Options, image) -> list[tuple]:
    """(name, builder, image, repeats): the demo model, plus resnet50-FPN on 640x480 in full runs."""
    models = [("demo", demo_model, image, opts.n(21, 31))]
    if not opts.quick:
        models.append(("fasterrcnn_resnet50_fpn", resnet50_model, image.resize((640, 480)), 5))
    return models


def case_introspection(opts: Options) -> dict:
    """detector.inspect.inspect (every intermediate kept) / model(images), same model and image."""
    import torch

    from detector.images import to_tensor
    from detector.inspect import inspect

    out = {}
    image, _ = sample_image()
    models = _compared_models(opts, image)
    for name, build, img, n in models:
        model = build()
        x = to_tensor(img)

        cpu: dict[str, list[float]] = {"a": [], "b": []}

        def ours() -> float:
            c0 = time.process_time()
            wall = timed(lambda: inspect(model, [x]))
            cpu["a"].append(time.process_time() - c0)
            return wall

        def plain() -> float:
            c0 = time.process_time()
            with torch.no_grad():
                wall = timed(lambda: model([x]))
            cpu["b"].append(time.process_time() - c0)
            return wall

        cmp = alternate(ours, plain, n, warmup=2)
        # CPU time of this process: less sensitive than wall time to other processes on the machine
        cpu_ratio = statistics.median(cpu["a"][-n:]) / statistics.median(cpu["b"][-n:])
        out[name] = {"image": list(img.size), **cmp.summary(), "cpu_time_ratio": cpu_ratio}
    first = out["demo"]
    return {"introspection_overhead": first["pair_ratio"], "introspection_overhead_medians": first["ratio"],
            "introspection_cpu_time_ratio": first["cpu_time_ratio"],
            "inspect_ms": first["a_median"], "forward_ms": first["b_median"], "models": out}


# ---------------------------------------------------------------- rpn_page_ratio


def case_rpn_page(opts: Options) -> dict:
    """The RPN page from image to its objectness heatmap (both stages, as the page computes them
    before drawing, then the default level's figure as st.plotly_chart serialises it) / model(image)."""
    import torch

    from detector.images import to_tensor
    from detector.inspect import run_heads, run_rpn_stage
    from detector.proposals import ProposalSettings
    from detector.viz import rpn as viz

    out = {}
    image, _ = sample_image()
    models = _compared_models(opts, image)
    for name, build, img, n in models:
        model = build()
        settings = ProposalSettings.from_rpn(model.rpn)
        parts: dict[str, list[float]] = {"compute": [], "figure": [], "payload": []}
        sizes: list[int] = []

        def page() -> float:
            t0 = time.perf_counter()
            stage = run_rpn_stage(model, [to_tensor(img)])
            result = run_heads(model, stage, settings)
            t1 = time.perf_counter()
            level, frame = stage.levels[0], result.frames[0]
            heat = stage.objectness_prob(0, 0).numpy().max(axis=0)
            fig = viz.objectness_figure(img, heat, level.stride, frame.scale, frame.resized_size, 0.55)
            t2 = time.perf_counter()
            sizes.append(len(streamlit_payload(fig)))
            t3 = time.perf_counter()
            for key, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2)):
                parts[key].append(dt)
            return t3 - t0

        def plain() -> float:
            with torch.no_grad():
                return timed(lambda: model([to_tensor(img)]))

        cmp = alternate(page, plain, n, warmup=2)
        out[name] = {"image": list(img.size), **cmp.summary(),
                     **{f"{k}_ms": statistics.median(v[-n:]) * 1000 for k, v in parts.items()},
                     "payload_kb": sizes[-1] / 1024}
    first = out["demo"]
    return {"rpn_page_ratio": first["pair_ratio"], "rpn_page_ratio_medians": first["ratio"], "rpn_page_ms": first["a_median"], "forward_ms": first["b_median"],
            "models": out}


# ---------------------------------------------------------------- anchors_ms


def case_anchors(opts: Options) -> dict:
    """Build every anchor of resnet50-FPN for a 1333x800 image and match them to 50 boxes
    (detector.anchor_grids + anchor_matching) / torchvision's own AnchorGenerator + rpn.assign_targets_to_anchors."""
    import torch
    from torchvision.models.detection.image_list import ImageList

    from detector import anchor_grids, anchor_matching

    model = resnet50_model()
    source = anchor_grids.model_source(model, "fasterrcnn_resnet50_fpn")
    size = (1333, 800)
    rng = np.random.default_rng(0)
    xy = rng.uniform([0, 0], [1233, 700], size=(50, 2))
    wh = rng.uniform(16, 400, size=(50, 2))
    boxes = np.concatenate([xy, np.minimum(xy + wh, size)], axis=1)

    def ours() -> float:
        t0 = time.perf_counter()
        grid = anchor_grids.anchor_grid(source, size)
        anchor_matching.match_anchors(grid, grid.frame.to_input(boxes))
        return time.perf_counter() - t0

    cold = ours()  # the first call also runs the backbone on the meta device for the grid shapes
    repeat(ours, 2, warmup=0)
    ours_rss = peak_rss_mb()  # before torchvision's dense M x N matrices run in this process

    grid = anchor_grids.anchor_grid(source, size)
    (pw, ph), (rw, rh) = grid.padded_size, grid.resized_size
    shapes = [(lv.grid[1], lv.grid[0]) for lv in grid.levels]
    gt = grid.frame.to_input(boxes)

    def torchvision_own() -> float:
        t0 = time.perf_counter()
        with torch.no_grad():
            image_list = ImageList(torch.empty(1, 3, ph, pw), [(rh, rw)])
            anchors = model.rpn.anchor_generator(image_list, [torch.empty(1, 0, h, w) for h, w in shapes])
            model.rpn.assign_targets_to_anchors(anchors, [{"boxes": gt}])
        return time.perf_counter() - t0

    cmp = alternate(ours, torchvision_own, opts.n(7, 15), warmup=1)
    return {"anchors_ms": cmp.summary()["a_median"], "anchors_first_call_ms": cold * 1000,
            "torchvision_ms": cmp.summary()["b_median"], "anchors_vs_torchvision": cmp.ratio,
            "anchors": grid.total, "padded_size": list(grid.padded_size), "boxes": len(boxes),
            "peak_rss_mb": ours_rss, "peak_rss_mb_with_torchvision": peak_rss_mb()}


# ---------------------------------------------------------------- anchor_click_ms


def case_anchor_click(opts: Options) -> dict:
    """A click on the anchor page's cell-centre scatter to its figure, as pages/anchors.py calls it
    (the grid is cached by the page): nearest_cell, cell_centres, anchors_at, anchor_cell_figure,
    to_original_frame, then st.plotly_chart's serialisation. `rerun_ms` adds what the same rerun
    rebuilds for the matching section (sampler and figure; the matching itself is cached)."""
    from detector import anchor_grids, anchor_matching
    from detector.viz import anchors as V

    out = {}
    image, gt = sample_image()
    cases = [("demo", demo_model, image, gt)]
    if not opts.quick:
        big = image.resize((1333, 800))
        cases.append(("fasterrcnn_resnet50_fpn", resnet50_model, big, gt * np.array([1333 / 480, 800 / 360] * 2)))
    for name, build, img, boxes in cases:
        model = build()
        source = anchor_grids.model_source(model, name)
        grid = anchor_grids.anchor_grid(source, img.size)
        match = anchor_matching.match_anchors(grid, grid.frame.to_input(boxes).numpy())
        level = 0
        sx, sy = grid.frame.scale
        sizes: list[int] = []
        clicks = iter(np.random.default_rng(1).uniform(0, 1, size=(1000, 2)) * np.array(img.size))

        def click() -> float:
            x, y = next(clicks)
            t0 = time.perf_counter()
            col, row = anchor_grids.nearest_cell(grid, level, x * sx, y * sy)
            centres = anchor_grids.cell_centres(grid, level, max_points=6_000)
            at = anchor_grids.anchors_at(grid, level, row, col)
            fig = V.anchor_cell_figure(img, grid, centres, at, boxes, None)
            grid.frame.to_original(at.boxes).numpy()
            sizes.append(len(streamlit_payload(fig)))
            return time.perf_counter() - t0

        def matching_section() -> float:
            t0 = time.perf_counter()
            batch = anchor_matching.sample_minibatch(match, seed=0)
            streamlit_payload(V.matching_figure(img, grid, match, batch, boxes, max_per_kind=150,
                                                show=["positive", "negative"]))
            return time.perf_counter() - t0

        n = opts.n(9, 21)
        clicks_s = repeat(click, n, warmup=2)
        rest = repeat(matching_section, n, warmup=1)
        out[name] = {"image": list(img.size), "click_ms": statistics.median(clicks_s) * 1000,
                     "rerun_ms": (statistics.median(clicks_s) + statistics.median(rest)) * 1000,
                     "payload_kb": statistics.median(sizes) / 1024,
                     "centres_level0": int(len(anchor_grids.cell_centres(grid, level, max_points=6_000).xs))}
    first = out["demo"]
    return {"anchor_click_ms": first["click_ms"], "anchor_click_rerun_ms": first["rerun_ms"], "models": out}


# ---------------------------------------------------------------- validate_10k_s


def write_coco_10k(root: Path, images: int = 10_000) -> Path:
    """A COCO dataset of `images` tiny JPEGs (32x24), one to three boxes each, three classes."""
    from PIL import Image

    (root / "images").mkdir(parents=True, exist_ok=True)
    buf = root / "tile.jpg"
    Image.new("RGB", (32, 24), (120, 80, 40)).save(buf, format="JPEG")
    data = buf.read_bytes()
    buf.unlink()
    rng = np.random.default_rng(0)
    doc = {"images": [], "annotations": [], "categories": [{"id": i + 1, "name": n} for i, n in
                                                            enumerate(("circle", "rectangle", "triangle"))]}
    ann = 1
    for i in range(images):
        name = f"img_{i:05d}.jpg"
        (root / "images" / name).write_bytes(data)
        doc["images"].append({"id": i + 1, "file_name": name, "width": 32, "height": 24})
        for _ in range(int(rng.integers(1, 4))):
            x, y = rng.uniform(0, 20), rng.uniform(0, 14)
            w, h = rng.uniform(2, 32 - x), rng.uniform(2, 24 - y)
            doc["annotations"].append({"id": ann, "image_id": i + 1, "category_id": int(rng.integers(1, 4)),
                                       "bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)],
                                       "area": round(w * h, 2), "iscrowd": 0})
            ann += 1
    (root / "annotations.json").write_text(json.dumps(doc))
    return root


PROBE = ("import resource, subprocess, sys, time; t = time.perf_counter(); p = subprocess.run(sys.argv[1:]); "
         "sys.stderr.write(f'BENCH {time.perf_counter() - t} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}\\n'); "
         "sys.exit(p.returncode)")


def case_validate(opts: Options) -> dict:
    """`python -m detector validate DIR --json` on 10,000 tiny images (wall time, a process of its own,
    start-up included), and the floor any validator pays: json.load + each image's header (PIL)."""
    from PIL import Image

    data = write_coco_10k(opts.workdir / "coco10k")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "detector", "validate", str(data), "--json"]
    walls, rss = [], []
    report = None
    n = opts.n(3, 5)
    for _ in range(n + 1):  # the first run warms the page cache
        # a small probe process starts the CLI and reports its wall time and peak RSS (a child forked
        # straight from this process would start its peak RSS at this process's size)
        proc = subprocess.run([sys.executable, "-c", PROBE, *cmd], cwd=ROOT, env=env, capture_output=True)
        if proc.returncode not in (0, 1):
            raise RuntimeError(f"validate failed: {proc.stderr.decode()[-300:]}")
        wall, peak_kb = proc.stderr.decode().rsplit("BENCH ", 1)[1].split()[:2]
        walls.append(float(wall))
        rss.append(int(peak_kb) / 1024)
        report = json.loads(proc.stdout)

    def floor() -> float:
        t0 = time.perf_counter()
        doc = json.loads((data / "annotations.json").read_text())
        for im in doc["images"]:
            with Image.open(data / "images" / im["file_name"]) as f:
                f.size  # noqa: B018
        return time.perf_counter() - t0

    floors = repeat(floor, n, warmup=0)
    return {"validate_10k_s": statistics.median(walls[1:]), "peak_rss_mb": max(rss), "floor_s": statistics.median(floors),
            "images": report["images"], "boxes": report["boxes"], "problems": len(report["problems"]),
            "command": " ".join(cmd[1:])}


# ---------------------------------------------------------------- trainer_overhead


def case_trainer(opts: Options, batch_size: int = 2, workers: int | None = None, skip: int = 2) -> dict:
    """Seconds per training iteration: detector.engine.train (metrics line, status, STOP check and
    loss read-back every step, its Dataset and batch sampler) / bench.bare_loop (torch +
    torchvision only), same model and knobs, data, batch size, DataLoader workers, optimizer and
    schedule, in lockstep: the engine's per-step hook runs one bare iteration, so A and B
    iterations alternate a second or so apart and load on the machine hits both alike.
    The engine's iteration is the time from the end of one hook call to the start of the next.
    The first `skip` iterations of each are warm-up; validation and checkpoints come after the
    last step, so they are left out."""
    import torch
    import torchvision

    from bench import bare_loop
    from detector.data import resolve_dataset
    from detector.data.synthetic import write_synthetic
    from detector.engine import train
    from detector.train_config import CPU_MODEL_KWARGS, TrainConfig

    workers = (0 if opts.quick else 2) if workers is None else workers
    images = 60 if opts.quick else 100
    data = write_synthetic(opts.workdir / "synth", images=images, seed=3, width=320, height=240)
    dataset, train_idx, _ = resolve_dataset(data)
    files = [dataset.records[i].file.removeprefix("images/") for i in train_idx]
    knobs = dict(CPU_MODEL_KWARGS)
    config = TrainConfig(data=str(data), model=TRAIN_ARCH, weights="none", epochs=opts.n(1, 2),
                         batch_size=batch_size, workers=workers, device="cpu", decode_check=False,
                         snapshot_images=0, max_val_images=1, model_kwargs=knobs)
    builder = getattr(torchvision.models.detection, TRAIN_ARCH)
    bare = bare_loop.steps(lambda: builder(weights=None, weights_backbone=None, num_classes=4, **knobs),
                           data, files, batch_size, workers, config.base_lr(), seed=config.seed)
    torch.set_flush_denormal(True)  # the engine does this on CPU; a process-wide switch, so both get it
    engine_s: list[float] = []
    bare_s: list[float] = []
    last: dict[str, float | None] = {"end": None}

    def hook(step: int, model, images) -> None:
        now = time.perf_counter()
        if last["end"] is not None:
            engine_s.append(now - last["end"])
        bare_s.append(next(bare).seconds)
        last["end"] = time.perf_counter()

    result = train(config, opts.workdir / "run", on_step=hook)
    if result.state != "done":
        raise RuntimeError(f"engine run ended {result.state}: {result.message}")
    iters_per_epoch = -(-len(files) // batch_size)
    # engine_s[k] is iteration k (0-based); the step that ends an epoch also includes validation: drop it
    keep = [k for k in range(len(engine_s)) if k % iters_per_epoch >= skip and (k + 1) % iters_per_epoch != 0]
    a = [engine_s[k] for k in keep]
    b = [bare_s[k] for k in keep]
    cmp = Comparison(a, b)
    return {"trainer_overhead": cmp.pair_ratio, "trainer_overhead_medians": cmp.ratio,
            "engine_iter_ms": cmp.summary()["a_median"], "bare_iter_ms": cmp.summary()["b_median"],
            "timed_iterations": len(a), "batch_size": batch_size, "workers": workers, "model": TRAIN_ARCH,
            "model_kwargs": knobs, "train_images": len(files), "epochs": config.epochs,
            "engine_ms": [round(x * 1000, 1) for x in a], "bare_ms": [round(x * 1000, 1) for x in b]}


def case_baseline(opts: Options) -> dict:
    """Peak RSS of a process that only imports torch and torchvision: the floor under every case."""
    import torch  # noqa: F401
    import torchvision  # noqa: F401

    return {}


# ---------------------------------------------------------------- diagnose


def case_diagnose(opts: Options) -> dict:
    """`diagnose` over N synthetic images / `evaluate` over the same N (the CLI's two paths after the
    model is loaded: one forward per image each); then one tuner setting over the cached images /
    one evaluate of them: a box-knob setting (post-processing alone, the common case) and an
    RPN-knob setting (proposal filtering + RoI heads). Demo model, `python -m detector synth` data."""
    import torch

    from detector.checkpoints import load_model
    from detector.data import DetectionDataset, collate
    from detector.data.synthetic import write_synthetic
    from detector.diagnosis import collect_trails, diagnosis_report, evaluate_setting
    from detector.evaluation import evaluate_model, evaluation_images

    n_images = 20 if opts.quick else 100
    root = write_synthetic(opts.workdir / "held", images=n_images, seed=7, format="coco")
    loaded = load_model("demo", "cpu")
    chosen = evaluation_images(root, "all", loaded.class_names)

    def evaluate() -> float:
        loader = torch.utils.data.DataLoader(DetectionDataset(list(chosen.records), chosen.root, train=False),
                                             batch_size=2, collate_fn=collate)
        return timed(lambda: evaluate_model(loaded.model, loader, loaded.class_names))

    def diagnose() -> float:
        return timed(lambda: diagnosis_report(collect_trails(loaded.model, chosen.records, chosen.root,
                                                             loaded.class_names)))

    n = opts.n(2, 3)
    whole = alternate(diagnose, evaluate, n, warmup=1)
    trails = collect_trails(loaded.model, chosen.records, chosen.root, loaded.class_names, keep_pool=True)
    box_knob = alternate(lambda: timed(lambda: evaluate_setting(loaded.model, trails, {"box_score_thresh": 0.3})),
                         evaluate, n, warmup=1)
    rpn_knob = alternate(lambda: timed(lambda: evaluate_setting(loaded.model, trails,
                                                                {"rpn_post_nms_top_n_test": 50})),
                         evaluate, n, warmup=1)
    pool = trails.pools[0]
    return {**diagnose_scale(opts),
        "images": n_images, "diagnose_ratio": whole.pair_ratio, "diagnose_ratio_medians": whole.ratio,
        "diagnose_s": statistics.median(whole.a),
        "evaluate_s": statistics.median(whole.b),
        "tuner_box_knob_ratio": box_knob.pair_ratio, "tuner_box_knob_s": statistics.median(box_knob.a),
        "tuner_rpn_knob_ratio": rpn_knob.pair_ratio, "tuner_rpn_knob_s": statistics.median(rpn_knob.a),
        "cached_mb_per_image": (trails.held_bytes() + trails.pool_bytes()) / len(trails) / 2**20,
        "input_size_wh": list(pool.image_sizes[0][::-1]), "level_anchors": list(pool.level_anchors),
    }


def diagnose_scale(opts: Options) -> dict:
    """The tuner-ready pass at two sizes (4 and 12 images quick, 8 and 32 full) for resnet50-FPN,
    random weights as a bare state_dict, 3 classes, synthetic 1066x800 images (800 px input):
    each size's pass and `evaluate` in processes of their own (bench/diagnose_scale.py), for their
    own peak RSS. Peak RSS per image: the slope between the two sizes; 5,000 images extrapolated
    from the larger size along the bytes the pass holds per image. Ratios at the larger size: the pass (plan excluded) / evaluate, a tuner setting / evaluate."""
    import torch

    from detector.data.synthetic import write_synthetic
    from detector.models import build_model

    sizes = (4, 12) if opts.quick else (8, 32)
    data = write_synthetic(opts.workdir / "r50data", images=sizes[1], seed=7, format="coco", width=1066, height=800)
    torch.manual_seed(0)
    checkpoint = opts.workdir / "r50-state-dict.pt"
    torch.save(build_model("fasterrcnn_resnet50_fpn", ("circle", "rectangle", "triangle"), weights="none").state_dict(),
               checkpoint)
    runs: dict[tuple[str, int], dict] = {}
    for n in sizes:
        for what in ("evaluate", "pass"):
            out = opts.workdir / f"scale-{what}-{n}.json"
            subprocess.run([sys.executable, str(ROOT / "bench" / "diagnose_scale.py"), "--what", what, "--images", str(n),
                            "--data", str(data), "--checkpoint", str(checkpoint), "--out", str(out),
                            "--threads", str(torch.get_num_threads())], check=True, cwd=ROOT)
            runs[(what, n)] = json.loads(out.read_text())
    return scale_figures(runs, sizes)


def scale_figures(runs: dict[tuple[str, int], dict], sizes: tuple[int, int]) -> dict:
    """The diagnose scale figures from each size's `bench/diagnose_scale.py` JSON ((what, images) -> figures)."""
    small, large = sizes
    slope = (runs[("pass", large)]["peak_rss_mb"] - runs[("pass", small)]["peak_rss_mb"]) / (large - small)
    big, evaluate = runs[("pass", large)], runs[("evaluate", large)]
    return {
        "scale_sizes": list(sizes),
        "scale_pass_peak_rss_mb": {n: runs[("pass", n)]["peak_rss_mb"] for n in sizes},
        "scale_evaluate_peak_rss_mb": {n: runs[("evaluate", n)]["peak_rss_mb"] for n in sizes if ("evaluate", n) in runs},
        "scale_peak_rss_mb_per_image": slope,
        # what the pass keeps per image is its trails (TrailSet.held_bytes): the slope between two small
        # sizes is mostly the allocator's noise, so 5,000 images extrapolate along the held bytes
        "scale_5000_images_peak_rss_mb": big["peak_rss_mb"] + big["held_bytes_per_image"] * (5000 - large) / 2**20,
        "scale_held_kib_per_image": big["held_bytes_per_image"] / 1024,
        "scale_5000_images_held_mb": big["held_bytes_per_image"] * 5000 / 2**20,
        "scale_disk_kib_per_image": big["disk_bytes_per_image"] / 1024,
        "scale_pool_rows_per_image": big["pool_rows_per_image"],
        "scale_pass_ratio": big["pass_s"] / evaluate["evaluate_s"],
        "scale_pass_cpu_ratio": big["pass_cpu_s"] / evaluate["evaluate_cpu_s"],
        "scale_plan_s": big["plan_s"],
        "scale_setting_box_ratio": big["setting_box_s"] / evaluate["evaluate_s"],
        "scale_setting_rpn_ratio": big["setting_rpn_s"] / evaluate["evaluate_s"],
        "scale_setting_box_cpu_ratio": big["setting_box_cpu_s"] / evaluate["evaluate_cpu_s"],
        "scale_setting_rpn_cpu_ratio": big["setting_rpn_cpu_s"] / evaluate["evaluate_cpu_s"],
        "scale_runs": {f"{what}-{n}": figures for (what, n), figures in runs.items()},
    }


def case_export(opts: Options) -> dict:
    """The demo model exported (detector.export, checked when made) at 640x480: onnxruntime on CPU /
    model(images), and the TorchScript file / model(images), same image, alternated; file sizes."""
    import onnxruntime as ort
    import torch

    from detector.checkpoints import load_model
    from detector.export import export_model
    from detector.images import to_tensor

    size = (640, 480)
    loaded = load_model("demo", "cpu")
    model = loaded.model.eval()
    image, _ = sample_image()
    x = to_tensor(image.resize(size))
    onnx_result = export_model(loaded, "onnx", opts.workdir / "demo.onnx", size)
    ts_result = export_model(loaded, "torchscript", opts.workdir / "demo.torchscript.pt", size)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # the same threads as torch
    session = ort.InferenceSession(str(onnx_result.path), options, providers=["CPUExecutionProvider"])
    scripted = torch.jit.load(str(ts_result.path), map_location="cpu")
    feed = {"image": x.numpy()}
    n = opts.n(5, 20)

    def plain() -> float:
        with torch.no_grad():
            return timed(lambda: model([x]))

    def onnx() -> float:
        return timed(lambda: session.run(None, feed))

    def script() -> float:
        with torch.no_grad():
            return timed(lambda: scripted([x]))

    onnx_cmp = alternate(onnx, plain, n, warmup=2)
    ts_cmp = alternate(script, plain, n, warmup=2)
    return {"export_onnx_ratio": onnx_cmp.summary()["pair_ratio"], "onnx": onnx_cmp.summary(),
            "torchscript": ts_cmp.summary(), "onnx_mb": onnx_result.size_bytes / 1e6,
            "torchscript_mb": ts_result.size_bytes / 1e6, "threads": torch.get_num_threads(),
            "onnx_check": {"max_box_px": onnx_result.check.max_box_diff, "max_score": onnx_result.check.max_score_diff,
                           "detections": onnx_result.check.detections},
            "torchscript_check": {"max_box_px": ts_result.check.max_box_diff,
                                  "max_score": ts_result.check.max_score_diff}}


CASES = {
    "introspection": case_introspection,
    "trainer": case_trainer,
    "anchors": case_anchors,
    "rpn_page": case_rpn_page,
    "anchor_click": case_anchor_click,
    "validate": case_validate,
    "baseline": case_baseline,
    "diagnose": case_diagnose,
    "export": case_export,
}


def run_case(name: str, opts: Options) -> dict:
    """A case's figures; `peak_rss_mb` is this process's peak unless the case measured its own."""
    figures = CASES[name](opts)
    figures.setdefault("peak_rss_mb", peak_rss_mb())
    return figures
