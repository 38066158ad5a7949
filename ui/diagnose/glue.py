"""Streamlit glue for /diagnose: what to diagnose (a stored dataset, or a run's validation split),
the one pass over its images with progress (cached per model and data), the report at the
widgets' IoU and score threshold, a run's diagnosis.json, the tuner and the tuned checkpoint.

The pass is `detector.diagnosis.passes`'s folder, written by one shared background job per model
and data (`pass_job`): it holds the trails in memory (a few KiB per image) and the tuner's RoI
candidates on disk, so the number of images has no cap but the machine's, which the page states
before it starts.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from detector import checkpoints, runs
from detector.data import DatasetError
from detector.diagnosis import TrailSet, diagnosis_report, passes, threshold_free
from detector.diagnosis.report import ThresholdFree
from detector.diagnosis.stage_blame import STAGE_LABELS
from detector.diagnosis.tuner import current_knobs, evaluate_setting, save_tuned_checkpoint
from detector.evaluation import EvaluationUnavailable, evaluation_images
from detector.images import ImageError, load_image
from ui.diagnose import pass_job
from ui.diagnose.pass_job import running
from ui.links import model_param, models_dir, page_url
from ui.model import checkpoint_source

PASS_CACHE_ENTRIES = 8  # finished passes whose trails stay in memory (a few KiB per image)
PASS_BATCH = 2  # images per batch, as `evaluate` batches them
AUTO_START_S = 60.0  # a new pass planned to take at most this long starts without a click
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


@dataclass(frozen=True)
class PassRequest:
    """The pass a page asks for: its folder and identity, the images, and how many the target has."""

    folder: Path
    identity: dict[str, Any]
    records: tuple[Any, ...]
    root: Path
    total: int


@st.cache_resource(show_spinner=False, max_entries=16)
def _target_images(spec: str, split: str, class_names: tuple[str, ...], version: Any) -> Any:
    del version  # the cache key: the dataset as it is now
    return evaluation_images(spec, split, class_names)


def target_images(loaded: checkpoints.LoadedModel, target: Target) -> Any:
    """The target's images with labels as the model's ids (cached); an error and a stop when unusable."""
    try:
        version = Path(target.spec).stat().st_mtime if Path(target.spec).exists() else None
        chosen = _target_images(target.spec, target.split, tuple(loaded.class_names), version)
    except (DatasetError, ValueError, OSError) as exc:
        st.error(str(exc))
        st.stop()
    if not chosen.records:
        st.warning(f"{target.label}: no images to diagnose.")
        st.stop()
    return chosen


def pass_request(loaded: checkpoints.LoadedModel, target: Target, images: int) -> PassRequest:
    """The pass over the target's first `images` images with the model's own settings; its folder is
    `diagnosis/` in the run folder for a run's own checkpoint, else under the workspace."""
    chosen = target_images(loaded, target)
    records = tuple(chosen.records[: int(images)])
    model = loaded.model
    top_n = int(model.rpn._pre_nms_top_n["testing"])
    try:
        source = checkpoint_source(loaded.source)
    except checkpoints.CheckpointError:
        source = loaded.source  # a path given as it is
    version = passes.model_version(source)
    identity = passes.pass_identity(model, version, str(Path(chosen.root).resolve()), target.split, records, PASS_BATCH,
                                    top_n)
    run_dir = target.run_dir if target.run_dir is not None and run_checkpoint_is(loaded, target.run_dir) else None
    return PassRequest(passes.pass_folder(identity, run_dir), identity, records, Path(chosen.root),
                       len(chosen.records))


@st.cache_resource(show_spinner="Measuring one image to plan the pass ...", max_entries=16)
def _plan(folder: str, done: int, _loaded: checkpoints.LoadedModel, _request: PassRequest) -> passes.PassPlan:
    del done  # the cache key: a resumed pass has less to do
    return passes.plan_pass(_loaded.model, list(_request.records), _request.root, _loaded.class_names, Path(folder),
                            PASS_BATCH, int(_request.identity["pool_top_n"]))


@st.cache_resource(show_spinner="COCO evaluation and TIDE ...", max_entries=PASS_CACHE_ENTRIES)
def _finished(folder: str, heartbeat: Any) -> tuple[TrailSet, ThresholdFree]:
    del heartbeat  # the cache key: a pass written again is read again
    trails = passes.load_pass(Path(folder))
    return trails, threshold_free(trails)


def plan_text(plan: passes.PassPlan, top_n: int) -> str:
    """What the pass will take, before it starts, and what the tuner will be able to do with it."""
    return (f"The pass: {plan.summary()} (measured on one image). It keeps, per image, the top {top_n} RoI "
            f"candidates of every FPN level with the box head's outputs for each, on disk, so the tuner is exact "
            f"for every knob up to rpn_pre_nms_top_n_test = {top_n}.")


def _wait(request: PassRequest) -> None:
    """Progress of the pass being written, until it ends; a Stop button beside it."""
    folder = request.folder
    st.button("Stop the pass", key="diag_stop", on_click=passes.request_stop, args=(folder,),
              help="Stops after the batch in hand; the images done stay in the pass folder and it resumes there.")
    bar = st.progress(0.0, text="Starting the pass ...")
    while running(folder):
        status = passes.read_status(folder)
        done, total = int(status.get("done") or 0), int(status.get("total") or len(request.records))
        left = status.get("eta_s")
        eta = "" if left is None else f", about {passes.duration(left)} left"
        bar.progress(done / max(1, total), text=f"One forward per image: {done} of {total}{eta}")
        time.sleep(0.3)


def _start_or_wait(loaded: checkpoints.LoadedModel, request: PassRequest,
                   status: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The plan and the Start button of a pass not written yet (stops the script until it starts), then
    the progress of a pass being written, until it ends: (its status.json after, whether it ran here)."""
    folder = request.folder
    started = False
    if status["state"] != "done" and not running(folder):
        plan = _plan(str(folder), int(status.get("done") or 0), loaded, request)
        st.info(plan_text(plan, int(request.identity["pool_top_n"])), icon=":material/schedule:")
        refusal = plan.refusal()
        if refusal:
            st.error(refusal)
            st.stop()
        current = pass_job.job(folder)
        if current is not None and current.error:
            st.error(f"The last pass ended early: {current.error}")
        resumable = status["state"] in ("stopped", "interrupted", "failed") and int(status.get("done") or 0) > 0
        if resumable:
            st.caption(f"Stopped at {status['done']} of {status['total']} images: it resumes there.")
        auto = status["state"] == "new" and plan.seconds <= AUTO_START_S
        if not auto and not st.button("Resume the pass" if resumable else "Start the pass", key="diag_start",
                                      type="primary"):
            st.stop()
        pass_job.start(folder, model=loaded.model, records=list(request.records), root=request.root,
                       class_names=loaded.class_names, identity=request.identity)
        started = True  # a pass that ends before the next line still has its status.json read again
    if not started and not running(folder):
        return status, False
    _wait(request)
    return passes.read_status(folder), True


def diagnosis_pass(loaded: checkpoints.LoadedModel, target: Target, images: int) -> tuple[TrailSet, ThresholdFree, int]:
    """The tuner-ready pass over the target's first `images` images: (trails, threshold-free figures,
    images in the target). A finished pass is read from its folder; one being written (by this
    server or another process) is shown with its progress; otherwise the plan is stated first, a
    pass the machine cannot hold is refused with what it needs and what is free, and a short one
    starts at once (a longer one, or a stopped one, on a click). The plan, the buttons and the
    progress share one placeholder that the pass's end replaces in the same script run: a pass
    finished here leaves only its progress, saying done."""
    request = pass_request(loaded, target, images)
    folder = request.folder
    block = st.empty()
    with block.container():
        status, ran = _start_or_wait(loaded, request, passes.read_status(folder))
    if ran and status["state"] == "done":
        total = int(status.get("total") or len(request.records))
        block.progress(1.0, text=f"One forward per image: {int(status.get('done') or total)} of {total}, done")
    else:
        block.empty()
    if status["state"] != "done":
        current = pass_job.job(folder)
        why = current.error if current is not None and current.error else f"the pass is {status['state']}"
        st.warning(f"No report yet: {why} ({status.get('done', 0)} of {status.get('total')} images done).")
        st.button("Resume the pass", key="diag_resume")
        st.stop()
    try:
        trails, fixed = _finished(str(folder), status.get("heartbeat"))
    except (EvaluationUnavailable, ValueError, OSError) as exc:
        st.error(str(exc))
        st.stop()
    return trails, fixed, request.total


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


def exactness_text(trails: TrailSet) -> str:
    """Which knob values the tuner evaluates exactly from this pass, and what happens beyond."""
    top_n = trails.pools[0].top_n if len(trails.pools) else 0
    return (f"Each setting re-runs the RPN's proposal filtering and the box post-processing on the pass's RoI "
            f"candidates (the top {top_n} of every FPN level per image, with the box head's outputs for each): "
            f"no backbone, no head. Its detections equal those of the model rebuilt with the knobs, for every "
            f"value of every knob up to rpn_pre_nms_top_n_test = {top_n}; above that, the setting is refused "
            f"with the reason (the pass never kept those candidates).")


def tuner_defaults(loaded: checkpoints.LoadedModel) -> dict[str, float | int]:
    return current_knobs(loaded.model)


@st.cache_data(show_spinner="Re-running the proposal filtering and the post-processing on the RoI candidates ...",
               max_entries=64)
def _setting(_loaded: checkpoints.LoadedModel, _trails: TrailSet, key: tuple, knobs: tuple, iou: float,
             score: float) -> dict[str, Any]:
    del key  # the cache key: which pass
    return evaluate_setting(_loaded.model, _trails, dict(knobs), iou, score).as_dict()


def tuned_point(loaded: checkpoints.LoadedModel, trails: TrailSet, knobs: dict[str, Any], iou: float,
                score: float) -> dict[str, Any] | str:
    """mAP, mAP50 and recall of one setting (cached per pass and setting), or why it cannot be
    evaluated exactly from the pass (rpn_pre_nms_top_n_test above its candidate pool)."""
    try:
        return _setting(loaded, trails, (id(trails),), tuple(sorted(knobs.items())), iou, score)
    except ValueError as exc:
        return str(exc)


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
