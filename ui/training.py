"""Streamlit glue for the training page: the new-run form (a plain config dict), the run in the
URL, incremental metrics per session, cached scoring of validation images, downloads.

The page only reads run folders through detector.runs; training runs in its own process.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st
import torch
from PIL import Image

from detector import checkpoints, models, runs, weights
from detector.data.records import DatasetError
from detector.data.store import list_datasets, open_dataset
from detector.hard_examples import ScoredRun, score_validation_images, validation_root
from detector.images import ImageError, load_image
from detector.train_config import OPTIMIZERS, SCHEDULES, TrainConfig
from detector.workspace import datasets_dir, runs_dir
from ui.inputs import dataset_select
from ui.links import page_url

RUN_PARAM = "run"  # st.query_params key holding the run's folder name
TAILS_KEY = "train_tails"  # session_state: run name -> runs.MetricsTail
START_ARCH, START_DEMO, START_RUN = "architecture", "demo", "run"
START_LABELS = {
    START_ARCH: "An architecture (random or cached COCO weights)",
    START_DEMO: "The demo model (fine-tune it)",
    START_RUN: "A past run's checkpoint (continue from it)",
}


# ---------------------------------------------------------------- which run


def run_label(summary: runs.RunSummary) -> str:
    """A picker label that never changes while the run trains (Streamlit matches widget values by
    their label: a label that changed would lose the choice)."""
    return f"{summary.name} · {summary.dataset or '?'} · {summary.model or 'default model'}"


def selected_run(all_runs: list[runs.RunSummary]) -> runs.RunSummary | None:
    """The run named in the URL (`?run=NAME`), else the most recent one; the URL is kept in step."""
    if not all_runs:
        return None
    by_name = {r.name: r for r in all_runs}
    wanted = st.query_params.get(RUN_PARAM)
    chosen = by_name.get(wanted) if wanted else None
    if chosen is None:
        chosen = all_runs[0]
        st.query_params[RUN_PARAM] = chosen.name
    return chosen


def _runs_signature() -> tuple:
    """What the runs table depends on: each run folder's status and metrics file versions."""
    root = runs_dir()
    sig = []
    for p in sorted(root.iterdir()) if root.is_dir() else []:
        stamps = []
        for f in (runs.STATUS, runs.CONFIG, runs.METRICS):
            try:
                st_ = (p / f).stat()
                stamps.append((st_.st_mtime_ns, st_.st_size))
            except OSError:
                stamps.append(None)
        sig.append((p.name, tuple(stamps)))
    return tuple(sig)


@st.cache_data(show_spinner=False, max_entries=4, ttl=30)
def _list_runs(signature: tuple) -> list[runs.RunSummary]:
    del signature
    return runs.list_runs()


def list_runs() -> list[runs.RunSummary]:
    """runs.list_runs(), read again only when a run's files changed (or after 30 s, for the
    interrupted check, which depends on time)."""
    return _list_runs(_runs_signature())


def select_run(name: str) -> None:
    st.query_params[RUN_PARAM] = name


def run_folder(name: str) -> Path:
    return runs_dir() / name


# ---------------------------------------------------------------- the user's zoom on the loss chart

ZOOM_KEY = "train_zoom"  # session_state: run name -> (first step, last step)
BOX_SEEN_KEY = "train_zoom_box_seen"


def _selected_box(chart_key: str) -> tuple[float, float] | None:
    event = st.session_state.get(chart_key)
    try:
        boxes = event["selection"]["box"]
        xs = [float(v) for v in boxes[0]["x"]]
    except (TypeError, KeyError, IndexError, ValueError):
        return None
    return (min(xs), max(xs)) if xs and max(xs) > min(xs) else None


def step_zoom(run_name: str, chart_key: str) -> tuple[float, float] | None:
    """The steps the user zoomed the loss chart to, kept in the session so refreshes keep it.

    Streamlit remounts a plotly chart whenever its figure changes (its element id hashes the
    spec), so plotly's own zoom (uirevision) does not survive new points; a box dragged on the
    chart comes back as a selection event instead, and is kept here per run.
    """
    zooms: dict[str, tuple[float, float]] = st.session_state.setdefault(ZOOM_KEY, {})
    box = _selected_box(chart_key)
    if box is not None and box != st.session_state.get(BOX_SEEN_KEY):
        zooms[run_name] = box
        st.session_state[BOX_SEEN_KEY] = box
    return zooms.get(run_name)


def reset_zoom(run_name: str) -> None:
    st.session_state.setdefault(ZOOM_KEY, {}).pop(run_name, None)


# ---------------------------------------------------------------- metrics, read incrementally


def metrics_tail(run_dir: Path) -> runs.MetricsTail:
    """This session's MetricsTail of a run, updated: each call reads only the bytes appended since."""
    tails: dict[str, runs.MetricsTail] = st.session_state.setdefault(TAILS_KEY, {})
    key = str(Path(run_dir).resolve())
    tail = tails.get(key)
    if tail is None:
        tail = tails[key] = runs.MetricsTail(run_dir)
    tail.update()
    return tail


def metrics_csv(train: list[dict[str, Any]], val: list[dict[str, Any]]) -> bytes:
    """Every train and val row as one CSV (a `kind` column tells them apart; nested fields dropped)."""
    rows = [{k: v for k, v in r.items() if not isinstance(v, (dict, list))} for r in (*train, *val)]
    frame = pd.DataFrame(rows)
    if "kind" in frame:
        first = [c for c in ("kind", "epoch", "step") if c in frame]
        frame = frame[first + [c for c in frame.columns if c not in first]]
    return frame.to_csv(index=False).encode("utf-8")


@st.cache_data(show_spinner=False, max_entries=16)
def _train_images(name: str, stamp: float) -> int | None:
    del stamp
    try:
        return len(open_dataset(name).train_indices)
    except (DatasetError, OSError, ValueError, KeyError):
        return None


def steps_per_epoch_hint(config: dict[str, Any]) -> int | None:
    """About how many steps an epoch takes (training images / batch size), for a stored dataset;
    the progress figures use it until the first epoch is complete."""
    name, batch = config.get("data"), config.get("batch_size")
    if not name or not batch or Path(str(name)).exists():
        return None
    doc = datasets_dir() / str(name) / "dataset.json"
    if not doc.is_file():
        return None
    n = _train_images(str(name), doc.stat().st_mtime)
    return math.ceil(n / int(batch)) if n else None


def runs_table(all_runs: list[runs.RunSummary]) -> pd.DataFrame:
    return pd.DataFrame([{
        "run": r.name, "state": r.state, "dataset": r.dataset, "model": r.model,
        "epoch": f"{r.epoch}/{r.epochs}" if r.epochs else str(r.epoch), "step": r.step,
        "best mAP": r.best_map, "error": r.error or "",
    } for r in all_runs], columns=["run", "state", "dataset", "model", "epoch", "step", "best mAP", "error"])


# ---------------------------------------------------------------- images and scoring, cached


@st.cache_data(show_spinner=False, max_entries=64)
def load_val_image(path: str) -> Image.Image | None:
    """A validation image, or None when it cannot be read (figures then draw a grey canvas)."""
    try:
        return load_image(path, name=Path(path).name)
    except (ImageError, OSError):
        return None


@st.cache_data(show_spinner=False, max_entries=16)
def _root(run_dir: str, stamp: float) -> str | None:
    del stamp
    root = validation_root(run_dir)
    return str(root) if root is not None else None


def snapshot_image(run_dir: Path, file: str) -> Image.Image | None:
    """The image behind a snapshot entry (its dataset may be gone: then None)."""
    cfg = Path(run_dir) / runs.CONFIG
    root = _root(str(run_dir), cfg.stat().st_mtime if cfg.exists() else 0.0)
    return load_val_image(str(Path(root) / file)) if root else None


@st.cache_data(show_spinner=False, max_entries=32)
def _snapshot(run_dir: str, epoch: int, stamp: float) -> runs.RpnSnapshot:
    del stamp
    return runs.read_snapshot(Path(run_dir), epoch)


def snapshot(run_dir: Path, epoch: int) -> runs.RpnSnapshot:
    path = runs.snapshot_path(run_dir, epoch)
    return _snapshot(str(run_dir), epoch, path.stat().st_mtime if path.exists() else 0.0)


@st.cache_resource(show_spinner=False, max_entries=4)
def _scored(run_dir: str, stamp: float, device: str, max_images: int) -> ScoredRun:
    del stamp
    return score_validation_images(run_dir, device, max_images=max_images)


def scored_run(run_dir: Path, device: torch.device, max_images: int) -> ScoredRun:
    """The run's validation images scored by its checkpoint (cached per checkpoint file version)."""
    ckpt = checkpoints.checkpoint_path_for(run_dir)
    return _scored(str(run_dir), ckpt.stat().st_mtime, str(device), max_images)


def hard_example_link(run_dir: Path, config: dict[str, Any], file: str) -> str:
    """The /rpn link that opens a validation image of this run with the run's model (the
    dataset is named only when the run trained on a stored dataset, not a folder path)."""
    data = config.get("data")
    stored = data if data and (datasets_dir() / str(data) / "dataset.json").is_file() else None
    return page_url("rpn", model=run_dir, dataset=stored, image=file if stored else None)


def checkpoint_bytes(path: Path) -> bytes:
    return Path(path).read_bytes()


# ---------------------------------------------------------------- the new-run form


def _past_runs_with_checkpoint() -> list[Path]:
    found = []
    for r in list_runs():
        if runs.checkpoint_path(r.run_dir, "best").is_file() or runs.checkpoint_path(r.run_dir, "last").is_file():
            found.append(r.run_dir)
    return found


def new_run_form(device_note: str) -> dict[str, Any] | None:
    """The dataset, the starting model and the main hyper-parameters; returns a TrainConfig dict
    when Start is pressed and the values check out, else None."""
    datasets = list_datasets()
    if not datasets:
        st.info("No stored dataset yet. Add one on the [Data page](data) (a zip, a folder, or a synthetic set), "
                "then come back here.", icon=":material/dataset:")
        return None
    names = [d.name for d in datasets]
    info = {d.name: d for d in datasets}
    c1, c2 = st.columns([2, 3])
    data = dataset_select(c1, "Dataset", names, key="train_data",
                          format_func=lambda n: f"{n} ({info[n].images} images, {len(info[n].classes)} classes)",
                          help="A stored dataset; its own train/val split is used. Add one on the Data page.")
    d = info[data]
    c2.caption(f"**{d.name}**: {d.format}, {d.images} images, {d.boxes} boxes; classes "
               f"{', '.join(d.classes[:8])}{'...' if len(d.classes) > 8 else ''}. "
               "[Upload another dataset](data).")
    if not d.usable:
        c2.warning("This dataset has errors in its validation report: training would refuse it.")

    start = st.radio("Start from", list(START_LABELS), format_func=START_LABELS.get, key="train_start_from",
                     horizontal=True, help="Fine-tuning starts from trained weights (demo, COCO, a past run); "
                     "an architecture without cached weights starts from random weights.")
    config: dict[str, Any] = {"data": data}
    m1, m2 = st.columns([3, 2])
    if start == START_ARCH:
        arch = m1.selectbox("Architecture", list(models.MODEL_NAMES), key="train_arch",
                            index=list(models.MODEL_NAMES).index(models.DEMO_ARCH),
                            format_func=lambda n: f"{n}: {models.ARCHITECTURES[n].description}",
                            help="The Faster R-CNN to build. On a CPU, prefer the small MobileNet ones.")
        status = weights.weights_status(arch)
        coco_ok = status.cached and status.kind == "coco"
        use_coco = m2.toggle("Start from COCO weights", value=coco_ok, disabled=not coco_ok, key="train_coco",
                             help="Transfer learning from torchvision's COCO weights (the box predictor is "
                             "replaced for your classes). Needs the weights in the torch cache.")
        m2.caption(status.message if not coco_ok else f"{models.ARCHITECTURES[arch].on_cpu}.")
        config.update(model=arch, weights="coco" if use_coco and coco_ok else "none")
    elif start == START_DEMO:
        m1.caption("The shipped demo model (mobilenet_v3_fpn_lite, trained on synthetic circles, rectangles and "
                   "triangles). If your classes differ, its box predictor is replaced; the backbone, RPN and "
                   "box head keep what they learnt.")
        config.update(init=checkpoints.DEMO)
    else:
        past = _past_runs_with_checkpoint()
        if not past:
            m1.warning("No past run has a checkpoint yet.")
            return None
        init = m1.selectbox("Run", [str(p) for p in past], key="train_init_run", format_func=lambda p: Path(p).name,
                            help="Its best.pt (else last.pt) initialises the model; this makes a new run.")
        config.update(init=init)

    h1, h2, h3, h4 = st.columns(4)
    config["epochs"] = int(h1.number_input("Epochs", 1, 1000, 12, key="train_epochs",
                                           help="Passes over the training split."))
    config["batch_size"] = int(h2.number_input("Batch size", 1, 64, 4, key="train_batch",
                                               help="Images per step. Lower it if you run out of memory."))
    lr = h3.number_input("Learning rate (0 = auto)", 0.0, 1.0, 0.0, step=0.001, format="%.4f", key="train_lr",
                         help="0: torchvision's reference rate scaled by batch size, 0.02 x B/16 for SGD "
                         "(1e-4 x B/16 for AdamW).")
    config["lr"] = float(lr) if lr > 0 else None
    config["optimizer"] = h4.selectbox("Optimizer", OPTIMIZERS, key="train_optimizer",
                                       help="SGD with momentum 0.9 (the paper's and torchvision's) or AdamW.")
    s1, s2, s3, s4 = st.columns(4)
    config["schedule"] = s1.selectbox("LR schedule", SCHEDULES, key="train_schedule",
                                      help="step: x0.1 at 16/26 and 22/26 of the epochs (torchvision's recipe); "
                                      "cosine: smooth decay to 0. Both after a linear warm-up.")
    min_size = s2.number_input("Short side (px, 0 = model's)", 0, 1600, 0, step=32, key="train_min_size",
                               help="Images are resized so the short side is this (the model's min_size). "
                               "Smaller is faster; objects shrink with it.")
    max_size = s3.number_input("Long side max (px, 0 = model's)", 0, 2666, 0, step=32, key="train_max_size",
                               help="The long side never exceeds this (the model's max_size).")
    kwargs = {}
    if min_size:
        kwargs["min_size"] = int(min_size)
    if max_size:
        kwargs["max_size"] = int(max_size)
    config["model_kwargs"] = kwargs
    config["device"] = s4.selectbox("Device", ("auto", "cpu", "cuda"), key="train_device",
                                    help=f"auto: CUDA when present. {device_note}")
    with st.expander("More settings"):
        a1, a2, a3, a4 = st.columns(4)
        config["workers"] = int(a1.number_input("Data workers", 0, 16, 2, key="train_workers",
                                                help="DataLoader processes decoding images (0: in the training process)."))
        config["warmup_iters"] = int(a2.number_input("Warm-up iterations", 0, 10000, 1000, key="train_warmup",
                                                     help="The lr ramps up linearly over these steps (capped at one epoch)."))
        config["weight_decay"] = float(a3.number_input("Weight decay", 0.0, 0.1, 1e-4, format="%.5f",
                                                       key="train_wd", help="L2 penalty (decoupled for AdamW)."))
        config["seed"] = int(a4.number_input("Seed", 0, 2**31 - 1, 0, key="train_seed",
                                             help="Data order, sampling and initialisation."))
        b1, b2, b3, b4 = st.columns(4)
        config["val_every"] = int(b1.number_input("Validate every N epochs", 1, 100, 1, key="train_val_every",
                                                  help="Validation losses and COCO mAP (always after the last epoch)."))
        config["snapshot_images"] = int(b2.number_input("RPN snapshot images", 0, 8, 3, key="train_snapshots",
                                                        help="Validation images whose RPN state is saved each epoch "
                                                        "(for 'Watch the RPN learn')."))
        clip = b3.number_input("Gradient clip (0 = off)", 0.0, 100.0, 0.0, key="train_clip",
                               help="Clip the gradient norm; helps when the loss jumps to NaN.")
        config["grad_clip"] = float(clip) if clip > 0 else None
        config["hflip"] = b4.toggle("Random horizontal flips", True, key="train_hflip",
                                    help="Flip training images left-right half the time (boxes flipped with them).")
    try:
        TrainConfig.from_dict(config)
    except ValueError as exc:
        st.error(f"These settings do not work: {exc}")
        return None
    holder = runs.lock_holder("cpu") if config["device"] == "cpu" or not torch.cuda.is_available() else None
    if holder:
        st.warning(f"Run {Path(holder).name} is training on the CPU now: a new run would wait for it to "
                   "finish (one training per device). Stop it first.", icon=":material/hourglass:")
    if st.button("Start training", type="primary", key="train_start", icon=":material/play_arrow:",
                 disabled=bool(holder)):
        return config
    return None


def start_new_run(config: dict[str, Any]) -> Path:
    """Write the run folder (config.json, status queued) and launch the engine in its own session."""
    run_dir = runs.create_run(TrainConfig.from_dict(config).to_dict())
    runs.start_training(run_dir)
    return run_dir


def config_summary(config: dict[str, Any]) -> str:
    start = (f"init {Path(str(config['init'])).name}" if config.get("init")
             else f"{config.get('model') or 'default model'} ({'COCO' if config.get('weights') == 'coco' else 'random'} weights)")
    lr = config.get("lr") or "auto"
    kwargs = config.get("model_kwargs") or {}
    size = f", size {kwargs.get('min_size', '-')}/{kwargs.get('max_size', '-')}" if kwargs else ""
    return (f"{start}; {config.get('epochs')} epochs, batch {config.get('batch_size')}, lr {lr}, "
            f"{config.get('optimizer')} / {config.get('schedule')}{size}, device {config.get('device')}")


def describe_device() -> str:
    """One line: which accelerator this machine has (training's `auto` device uses it)."""
    if torch.cuda.is_available():
        return f"This machine: CUDA ({torch.cuda.get_device_name(0)}); training uses it by default."
    return "This machine: CPU only (no CUDA GPU found); training runs on the CPU."
