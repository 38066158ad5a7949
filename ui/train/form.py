"""The new-run form of the training page, built from TrainConfig itself.

Every TrainConfig field the form offers takes its default from `TrainConfig()` and its one-line
explanation from the field's metadata (`help`, and `choices` / `min` / `max` where they apply), so
a knob added to the config appears here with its explanation without restating its default. The
start (which weights to begin from) defaults to the best one available and says why.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st
import torch

from detector import checkpoints, models, runs, weights
from detector.train_config import TrainConfig
from detector.wording import counted
from ui.inputs import dataset_select, follow_default
from ui.train.run_list import list_runs

START_ARCH, START_DEMO, START_RUN = "architecture", "demo", "run"
START_LABELS = {
    START_ARCH: "An architecture (random or cached COCO weights)",
    START_DEMO: "The demo model (fine-tune it)",
    START_RUN: "A past run's checkpoint (continue from it)",
}
# fields the form sets in its own way (the start, the dataset, the image size knobs)
OWN_WIDGETS = ("data", "val_data", "model", "init", "weights", "model_kwargs")
# the first rows of the form; every other field goes under "More settings", in the config's order
MAIN_FIELDS = ("epochs", "batch_size", "lr", "optimizer", "schedule", "device")
# labels and widget keys of fields the page and its tests know by name; others are named after the field
LABELS = {
    "epochs": ("Epochs", "train_epochs"), "batch_size": ("Batch size", "train_batch"),
    "lr": ("Learning rate (empty = auto)", "train_lr"), "optimizer": ("Optimizer", "train_optimizer"),
    "schedule": ("LR schedule", "train_schedule"), "device": ("Device", "train_device"),
    "workers": ("Data workers", "train_workers"), "warmup_iters": ("Warm-up iterations", "train_warmup"),
    "weight_decay": ("Weight decay", "train_wd"), "seed": ("Seed", "train_seed"),
    "val_every": ("Validate every N epochs", "train_val_every"),
    "snapshot_images": ("RPN snapshot images", "train_snapshots"),
    "grad_clip": ("Gradient clip (empty = off)", "train_clip"), "hflip": ("Random horizontal flips", "train_hflip"),
}
PER_ROW = 4


@dataclass(frozen=True)
class Start:
    """Where a new run's weights come from, and why that is the default."""

    kind: str  # START_ARCH, START_DEMO or START_RUN
    arch: str | None  # the architecture for START_ARCH
    coco: bool  # START_ARCH with cached COCO weights
    why: str  # one or two sentences for the form
    warning: bool = False  # the best available start is random weights


def describe_device() -> str:
    """One line: which accelerator this machine has (training's `auto` device uses it)."""
    if torch.cuda.is_available():
        return f"This machine: CUDA ({torch.cuda.get_device_name(0)}); training uses it by default."
    return "This machine: CPU only (no CUDA GPU found); training runs on the CPU."


def best_start(classes: tuple[str, ...], device: torch.device | str = "cpu") -> Start:
    """The best start available here: COCO weights when cached (the default builder for
    the device), else fine-tuning the shipped demo model (its box predictor replaced when the
    dataset's classes differ from its own: the engine's --init relabels by class name), else
    random weights, with a plain warning."""
    source, _ = checkpoints.default_model(device)
    if source in models.ARCHITECTURES and weights.weights_status(source).cached:
        return Start(START_ARCH, source, True, f"COCO weights for {source} are in the torch cache: fine-tuning "
                     "from them (transfer learning, the box predictor replaced for your classes) learns fastest.")
    if checkpoints.DEMO_CHECKPOINT.is_file() and classes:
        demo = checkpoints.read_checkpoint(checkpoints.DEMO_CHECKPOINT)
        theirs = tuple(demo["class_names"])
        same = tuple(classes) == theirs
        return Start(START_DEMO, None, False,
                     "No COCO weights are cached here, so the best start is the shipped demo model: its backbone, "
                     "RPN and box head already find objects. " + (
                         "Your classes are its classes: the whole model carries on." if same else
                         f"Your classes ({', '.join(classes[:6])}{'...' if len(classes) > 6 else ''}) differ from "
                         f"its ({', '.join(theirs)}): its box predictor is replaced for them, the rest keeps what "
                         "it learnt."))
    return Start(START_ARCH, models.DEMO_ARCH, False,
                 "No pretrained weights are available here (no COCO weights cached, no demo model): this run starts "
                 "from random weights, which on a CPU and a small dataset learns little. Download COCO weights in "
                 "the sidebar for a better start.", warning=True)


# ---------------------------------------------------------------- one widget per field


def _kind(f: dataclasses.Field) -> tuple[str, bool]:
    """(base type name, optional) from the field's annotation (a string: annotations are postponed)."""
    text = str(f.type).replace(" ", "")
    optional = "None" in text.split("|")
    base = next((t for t in text.split("|") if t != "None"), text)
    return base.split("[")[0], optional


def field_widget(container: Any, f: dataclasses.Field, default: Any, help_suffix: str = "") -> Any:
    """The widget of one TrainConfig field (its default, help, choices and bounds from the config);
    returns the value in the config's type (None where the field is optional and left empty)."""
    meta = f.metadata
    label, key = LABELS.get(f.name, (f.name.replace("_", " ").capitalize(), f"train_{f.name}"))
    helptext = (meta.get("help", "") + (" " + help_suffix if help_suffix else "")).strip() or None
    base, optional = _kind(f)
    lo, hi = meta.get("min"), meta.get("max")
    if default == "auto" and "resolve" in meta:  # a number field whose default is "auto": show what auto means here
        default = meta["resolve"]()
        helptext = f"{helptext} (auto here: {default})"
    if "choices" in meta:
        choices = list(meta["choices"])
        return container.selectbox(label, choices, index=choices.index(default), key=key, help=helptext)
    if base == "bool":
        if not optional:
            return container.toggle(label, bool(default), key=key, help=helptext)
        shown = {None: "auto", True: "on", False: "off"}
        return container.selectbox(label, list(shown), index=list(shown).index(default), format_func=shown.get,
                                   key=key, help=helptext)
    if base == "int":
        return container.number_input(label, min_value=lo, max_value=hi, value=default, step=1, key=key,
                                      help=helptext, placeholder="empty: default" if optional else None)
    if base == "float":
        small = default is not None and 0 < abs(default) < 0.01
        return container.number_input(label, min_value=None if lo is None else float(lo),
                                      max_value=None if hi is None else float(hi),
                                      value=None if default is None else float(default),
                                      format="%.6f" if small else "%.4f", key=key, help=helptext,
                                      placeholder="empty: default" if optional else None)
    if base == "tuple":
        text = container.text_input(label, ",".join(map(str, default or ())), key=key, help=helptext,
                                    placeholder="comma-separated; empty: default")
        return text.strip() or None  # TrainConfig.from_dict parses the list
    if base == "str":
        text = container.text_input(label, default or "", key=key, help=helptext)
        return text if text or not optional else None
    return default  # a structured field (dict, list) the form leaves at its default


def _fields_widgets(names: list[str], defaults: TrainConfig, notes: dict[str, str]) -> dict[str, Any]:
    by_name = {f.name: f for f in dataclasses.fields(TrainConfig)}
    out: dict[str, Any] = {}
    for start in range(0, len(names), PER_ROW):
        cols = st.columns(PER_ROW)
        for col, name in zip(cols, names[start: start + PER_ROW]):
            out[name] = field_widget(col, by_name[name], getattr(defaults, name), notes.get(name, ""))
    return out


# ---------------------------------------------------------------- the form


def _past_runs_with_checkpoint() -> list[Path]:
    return [r.run_dir for r in list_runs() if runs.checkpoint_path(r.run_dir, "best").is_file()
            or runs.checkpoint_path(r.run_dir, "last").is_file()]


def _start_section(d: Any, device: torch.device) -> dict[str, Any] | None:
    """The start radio (default: best_start, and why) and its own inputs; None if it cannot start."""
    best = best_start(tuple(d.classes), device)
    follow_default("train_start_from", best.kind)  # the best start, unless the user picked another
    start = st.radio("Start from", list(START_LABELS), format_func=START_LABELS.get, key="train_start_from",
                     horizontal=True, help="Fine-tuning starts from trained weights (COCO, the demo, a past run); "
                     "an architecture without cached weights starts from random weights.")
    if start == best.kind:
        (st.warning if best.warning else st.caption)(f"Default start: {best.why}")
    m1, m2 = st.columns([3, 2])
    if start == START_ARCH:
        names = list(models.MODEL_NAMES)
        arch = m1.selectbox("Architecture", names, key="train_arch", index=names.index(best.arch or models.DEMO_ARCH),
                            format_func=lambda n: f"{n}: {models.ARCHITECTURES[n].description}",
                            help="The Faster R-CNN to build. On a CPU, prefer the small MobileNet ones.")
        status = weights.weights_status(arch)
        coco_ok = status.cached and status.kind == "coco"
        use_coco = m2.toggle("Start from COCO weights", value=coco_ok, disabled=not coco_ok, key="train_coco",
                             help="Transfer learning from torchvision's COCO weights (the box predictor is "
                             "replaced for your classes). Needs the weights in the torch cache.")
        m2.caption(status.message if not coco_ok else f"{models.ARCHITECTURES[arch].on_cpu}.")
        if not (use_coco and coco_ok):
            m1.warning("Random weights: on a CPU and a small dataset this learns little; the demo model or COCO "
                       "weights are a far better start.", icon=":material/warning:")
        return {"model": arch, "weights": "coco" if use_coco and coco_ok else "none"}
    if start == START_DEMO:
        if not checkpoints.DEMO_CHECKPOINT.is_file():
            m1.warning("The demo model is not shipped with this copy of the app.")
            return None
        m1.caption("The shipped demo model (mobilenet_v3_fpn_lite, trained on synthetic circles, rectangles and "
                   "triangles, at its own 320 px input). If your classes differ, its box predictor is replaced; the "
                   "backbone, RPN and box head keep what they learnt.")
        return {"init": checkpoints.DEMO}
    past = _past_runs_with_checkpoint()
    if not past:
        m1.warning("No past run has a checkpoint yet.")
        return None
    init = m1.selectbox("Run", [str(p) for p in past], key="train_init_run", format_func=lambda p: Path(p).name,
                        help="Its best.pt (else last.pt) initialises the model; this makes a new run.")
    return {"init": init}


def _size_inputs(col_min: Any, col_max: Any) -> dict[str, int]:
    min_size = col_min.number_input("Short side (px, 0 = model's)", 0, 1600, 0, step=32, key="train_min_size",
                                    help="Images are resized so the short side is this (the model's min_size). "
                                    "Smaller is faster; objects shrink with it.")
    max_size = col_max.number_input("Long side max (px, 0 = model's)", 0, 2666, 0, step=32, key="train_max_size",
                                    help="The long side never exceeds this (the model's max_size).")
    return {k: int(v) for k, v in (("min_size", min_size), ("max_size", max_size)) if v}


def describe_schedule(config: TrainConfig, train_images: int | None) -> str:
    """The learning-rate schedule of this config in steps, for a dataset of `train_images`."""
    if not train_images:
        return ""
    per_epoch = math.ceil(train_images / config.batch_size)
    total = per_epoch * config.epochs
    warm = config.warmup_steps(per_epoch)
    text = f"{per_epoch} steps per epoch, {total} in all: warm-up over {counted(warm, 'step')}, then "
    if config.schedule == "cosine":
        return text + "cosine decay from the full learning rate to 0."
    drops = [m for m in config.milestones() if m < config.epochs]
    full = (min(drops) * per_epoch if drops else total) - warm
    if not drops:
        return text + f"{counted(full, 'step')} at the full learning rate."
    return text + (f"{counted(full, 'step')} at the full learning rate, x{config.lr_gamma:g} after {'epoch' if len(drops) == 1 else 'epochs'} "
                   f"{', '.join(map(str, drops))} (scaled to the run's length).")


def new_run_form(device: torch.device, device_note: str, train_images: Any) -> tuple[dict[str, Any], str | None] | None:
    """The dataset, the start, a run name and every TrainConfig knob; returns (config dict, run
    name or None) when Start is pressed and the values check out, else None.

    `train_images(name)` gives the training-split size of a stored dataset (for the schedule line)."""
    from detector.data.store import list_datasets

    datasets = list_datasets()
    if not datasets:
        st.info("No stored dataset yet. Add one on the [Data page](data) (a zip, a folder, or a synthetic set), "
                "then come back here.", icon=":material/dataset:")
        return None
    info = {d.name: d for d in datasets}
    c1, c2 = st.columns([2, 3])
    data = dataset_select(c1, "Dataset", list(info), key="train_data",
                          format_func=lambda n: f"{n} ({counted(info[n].images, 'image')}, {counted(len(info[n].classes), 'class')})",
                          help="A stored dataset; its own train/val split is used. Add one on the Data page.")
    d = info[data]
    c2.caption(f"**{d.name}**: {d.format}, {counted(d.images, 'image')}, {counted(d.boxes, 'box')}; classes "
               f"{', '.join(d.classes[:8])}{'...' if len(d.classes) > 8 else ''}. [Upload another dataset](data).")
    if not d.usable:
        c2.warning("This dataset has errors in its validation report: training would refuse it.")
    start = _start_section(d, device)
    if start is None:
        return None
    defaults = TrainConfig()
    main = _fields_widgets(list(MAIN_FIELDS[:4]), defaults, {})
    s1, s2, s3, s4 = st.columns(PER_ROW)
    by_name = {f.name: f for f in dataclasses.fields(TrainConfig)}
    main["schedule"] = field_widget(s1, by_name["schedule"], defaults.schedule)
    sizes = _size_inputs(s2, s3)
    main["device"] = field_widget(s4, by_name["device"], defaults.device, device_note)
    rest = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in OWN_WIDGETS + MAIN_FIELDS]
    with st.expander("More settings"):
        more = _fields_widgets(rest, defaults, {})
    name = st.text_input("Run name (optional)", key="train_run_name", max_chars=runs.RUN_NAME_MAX,
                         placeholder="e.g. shapes-demo-finetune; empty: a dated id",
                         help="Names the run folder and the run in the URL: letters, digits, '.', '_' and '-'.")
    problem = runs.run_name_problem(name.strip()) if name.strip() else None
    if problem:
        st.error(f"Run name: {problem}.")
    config = {"data": data, **start, **main, **more, "model_kwargs": sizes}
    try:
        checked = TrainConfig.from_dict(config)
    except ValueError as exc:
        st.error(f"These settings do not work: {exc}")
        return None
    st.caption(f"Schedule: {describe_schedule(checked, train_images(data))}")
    holder = runs.lock_holder("cpu") if checked.device == "cpu" or not torch.cuda.is_available() else None
    if holder:
        st.warning(f"Run {Path(holder).name} is training on the CPU now: a new run would wait for it to "
                   "finish (one training per device). Stop it first.", icon=":material/hourglass:")
    if st.button("Start training", type="primary", key="train_start", icon=":material/play_arrow:",
                 disabled=bool(holder or problem)):
        return checked.to_dict(), name.strip() or None
    return None
