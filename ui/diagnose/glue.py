"""Streamlit glue for /diagnose: what to diagnose (a stored dataset, or a run's validation split),
the one pass over its images with progress (cached per model and data), the report at the
widgets' IoU and score threshold, a run's diagnosis.json, the tuner and the tuned checkpoint.

The pass keeps the RPN stages of every image for the tuner, so at most MAX_IMAGES_DEFAULT images
are diagnosed unless the user asks for more; cached passes are few (PASS_CACHE_ENTRIES).
"""

from __future__ import annotations

import math
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from detector import checkpoints, runs
from detector.data import DatasetError
from detector.diagnosis import TrailSet, collect_trails, diagnosis_report, threshold_free
from detector.diagnosis.report import ThresholdFree
from detector.diagnosis.stage_blame import STAGE_LABELS
from detector.diagnosis.tuner import current_knobs, evaluate_setting, save_tuned_checkpoint
from detector.evaluation import EvaluationUnavailable, evaluation_images
from detector.images import ImageError, load_image
from ui.links import model_param, models_dir, page_url
from ui.model import checkpoint_source, loaded_model_key, model_key

MAX_IMAGES_DEFAULT = 100
PASS_CACHE_ENTRIES = 2  # each holds the cached RPN stages of its images (see BENCHMARKS.md)
DATASET_PREFIX, RUN_PREFIX = "dataset: ", "run: "


@dataclass(frozen=True)
class Target:
    """What to diagnose: a dataset spec and split; `run` when it is a run's validation split."""

    label: str
    spec: str
    split: str
    dataset_name: str | None  # the stored dataset's name (for /rpn links), None for a path
    run_dir: Path | None = None


def _run_target(run_dir: Path) -> Target | None:
    config = runs.read_config(run_dir) or {}
    if config.get("val_data"):
        spec, split = str(config["val_data"]), "all"
    elif config.get("data"):
        spec, split = str(config["data"]), "val"
    else:
        return None
    stored = spec if not Path(spec).exists() else None
    return Target(f"{RUN_PREFIX}{run_dir.name} (validation split)", spec, split, stored, run_dir)


def targets() -> list[Target]:
    """Stored datasets (their validation split, or all images), then runs' validation splits."""
    from detector.data.store import list_datasets

    out = []
    for d in list_datasets():
        out.append(Target(f"{DATASET_PREFIX}{d.name} (validation split)", d.name, "val", d.name))
        out.append(Target(f"{DATASET_PREFIX}{d.name} (all images)", d.name, "all", d.name))
    for summary in runs.list_runs():
        if (summary.run_dir / runs.CHECKPOINTS).is_dir():
            target = _run_target(summary.run_dir)
            if target is not None:
                out.append(target)
    return out


def target_from_url(options: list[Target]) -> int:
    """Index of the target `?run=ID` or `?dataset=NAME` names, else 0."""
    run = st.query_params.get("run")
    dataset = st.query_params.get("dataset")
    for i, t in enumerate(options):
        if run and t.run_dir is not None and t.run_dir.name == run:
            return i
        if dataset and t.run_dir is None and t.dataset_name == dataset:
            return i
    return 0


def run_checkpoint_is(loaded: checkpoints.LoadedModel, run_dir: Path) -> bool:
    """Whether the model in use is this run's own checkpoint."""
    try:
        path = checkpoints.checkpoint_path_for(checkpoint_source(loaded.source))
        return Path(path).resolve().is_relative_to(Path(run_dir).resolve())
    except (checkpoints.CheckpointError, OSError, ValueError):
        return False


def stored_run_report(loaded: checkpoints.LoadedModel, target: Target) -> dict[str, Any] | None:
    """The run's diagnosis.json when it was made with this checkpoint, as it is now, on this split."""
    if target.run_dir is None or not run_checkpoint_is(loaded, target.run_dir):
        return None
    report = runs.read_diagnosis(target.run_dir)
    if not report:
        return None
    try:
        mtime = checkpoints.checkpoint_path_for(target.run_dir).stat().st_mtime
    except (checkpoints.CheckpointError, OSError):
        return None
    same = report.get("checkpoint_mtime") == mtime and report.get("data") == target.spec
    return report if same and report.get("split") == target.split else None


@st.cache_resource(show_spinner=False)
def _passes() -> "OrderedDict[tuple, tuple[TrailSet, ThresholdFree, int]]":
    return OrderedDict()


def diagnosis_pass(loaded: checkpoints.LoadedModel, target: Target, max_images: int) -> tuple[TrailSet, ThresholdFree, int]:
    """The one pass over the target's first `max_images` images (cached), with a progress bar:
    (trails, threshold-free figures, images in the target)."""
    key = (model_key(loaded.source, next(loaded.model.parameters()).device), loaded_model_key(loaded), target.spec,
           target.split, int(max_images))
    cache = _passes()
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    try:
        chosen = evaluation_images(target.spec, target.split, loaded.class_names)
    except (DatasetError, ValueError) as exc:
        st.error(str(exc))
        st.stop()
    records = chosen.records[: int(max_images)]
    if not records:
        st.warning(f"{target.label}: no images to diagnose.")
        st.stop()
    bar = st.progress(0.0, text=f"One forward per image: 0 of {len(records)} ...")
    start = time.perf_counter()

    def progress(done: int, total: int) -> None:
        left = (time.perf_counter() - start) / done * (total - done)
        bar.progress(done / total, text=f"One forward per image: {done} of {total} (about {math.ceil(left)} s left)")

    try:
        trails = collect_trails(loaded.model, records, chosen.root, loaded.class_names, keep_pool=True,
                                progress=progress)
        bar.progress(1.0, text="COCO evaluation and TIDE ...")
        fixed = threshold_free(trails)
    except (ImageError, EvaluationUnavailable) as exc:
        bar.empty()
        st.error(str(exc))
        st.stop()
    bar.empty()
    cache[key] = (trails, fixed, len(chosen.records))
    while len(cache) > PASS_CACHE_ENTRIES:
        cache.popitem(last=False)
    return cache[key]


def report_for(loaded: checkpoints.LoadedModel, target: Target, trails: TrailSet, fixed: ThresholdFree, total: int,
               iou: float, score_threshold: float) -> dict[str, Any]:
    """The report at these thresholds; written to the run folder when it diagnoses the run's own
    checkpoint on its whole validation split."""
    report = diagnosis_report(trails, iou, score_threshold, fixed)
    report.update(model=loaded.description, data=target.spec, split=target.split)
    if target.run_dir is not None and len(trails) == total and run_checkpoint_is(loaded, target.run_dir):
        try:
            report["checkpoint_mtime"] = checkpoints.checkpoint_path_for(target.run_dir).stat().st_mtime
            runs.write_diagnosis(target.run_dir, report)
        except (checkpoints.CheckpointError, OSError):
            pass
    return report


# ---------------------------------------------------------------- tables and links


def per_class_frame(report: dict[str, Any]) -> pd.DataFrame:
    cols = ["class", "gt", "AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "precision", "recall",
            "best_f1_threshold"]
    return pd.DataFrame([{c: row.get(c) for c in cols} for row in report["per_class"]], columns=cols).round(3)


def missed_frame(report: dict[str, Any], target: Target, loaded: checkpoints.LoadedModel) -> pd.DataFrame:
    """Every missed box: image, class, size, stage, figures, and its link to /rpn."""
    rows = []
    for b in report["missed"]["boxes"]:
        rows.append({
            "image": b["image"], "class": b["class"], "size": b["size"], "stage": STAGE_LABELS[b["stage"]],
            "best anchor IoU": b["best_anchor_iou"], "best proposal IoU": b["best_iou"]["rpn_proposals"],
            "best RoI IoU": b["best_iou"]["rpn_top_n"], "won by": b["winner"] or "",
            "open in /rpn": rpn_link(b, target, loaded),
        })
    return pd.DataFrame(rows)


def rpn_link(box: dict[str, Any], target: Target, loaded: checkpoints.LoadedModel) -> str | None:
    """/rpn on the box's image with the box highlighted (URL contract); None when unnameable."""
    if target.dataset_name is None:
        return None
    try:
        return page_url("rpn", model=loaded.source, dataset=target.dataset_name, image=box["image"], box=box["box"])
    except ValueError:
        return None


def missed_image(target: Target, file: str):
    """The image of a missed box (None with a warning when it cannot be opened)."""
    from detector.data import resolve_dataset

    try:
        dataset, _, _ = resolve_dataset(target.spec)
        return load_image(Path(dataset.root) / file, name=file)
    except (DatasetError, ImageError, OSError) as exc:
        st.warning(f"{file}: {exc}")
        return None


# ---------------------------------------------------------------- tuner


def tuner_defaults(loaded: checkpoints.LoadedModel) -> dict[str, float | int]:
    return current_knobs(loaded.model)


@st.cache_data(show_spinner="Re-running the proposal filtering and the heads from the cached stages ...",
               max_entries=64)
def _setting(_loaded: checkpoints.LoadedModel, _trails: TrailSet, key: tuple, knobs: tuple, iou: float,
             score: float) -> dict[str, Any]:
    del key  # the cache key: which pass
    return evaluate_setting(_loaded.model, _trails, dict(knobs), iou, score).as_dict()


def tuned_point(loaded: checkpoints.LoadedModel, trails: TrailSet, knobs: dict[str, Any], iou: float,
                score: float) -> dict[str, Any]:
    """mAP, mAP50 and recall of one setting (cached per pass and setting)."""
    return _setting(loaded, trails, (id(trails),), tuple(sorted(knobs.items())), iou, score)


def save_tuned(loaded: checkpoints.LoadedModel, knobs: dict[str, Any], name: str) -> tuple[Path | None, str]:
    """Save the tuned checkpoint into workspace/models/ (an uploaded model's home): (path, message)."""
    if loaded.weights not in ("demo", "checkpoint"):
        return None, "Only a checkpoint (demo, a run or an upload) can be saved with new knobs."
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip(".-") or "tuned"
    path = models_dir() / f"{stem}.pt"
    try:
        save_tuned_checkpoint(checkpoint_source(loaded.source), path, knobs)
    except (checkpoints.CheckpointError, OSError, ValueError) as exc:
        return None, f"Could not save: {exc}"
    try:
        link = page_url("diagnose", model=path)
    except ValueError:
        link = None
    where = f"model `{model_param(path)}`" if link else str(path)
    return path, f"Saved {path.name} ({where}) with {knobs}." + (f" [Diagnose with it]({link})" if link else "")

def curve_values(knob: str, current: float | int) -> list[float | int]:
    """A few values of `knob` around its current one, for the tuner's curve."""
    from detector.diagnosis.tuner import KNOBS

    if KNOBS[knob][2] is int:
        return sorted({max(1, int(round(current * f))) for f in (0.1, 0.25, 0.5, 1, 2, 4)})
    return sorted({round(v, 2) for v in (0.0, 0.25, 0.5, 0.75, 0.95, float(current))})


def go_live() -> None:
    """Button callback: diagnose afresh (the tuner needs the pass) instead of the stored report."""
    st.session_state["diag_live"] = True
