"""Streamlit glue for the training page: the run in the URL, incremental metrics per session,
cached snapshots and scoring of validation images, downloads (the new-run form is ui.train_form).

The page only reads run folders through detector.runs; training runs in its own process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st
import torch
from PIL import Image

from detector import checkpoints, runs
from detector.data.records import DatasetError
from detector.data.store import open_dataset
from detector.hard_examples import ScoredRun, score_validation_images, validation_root
from detector.images import ImageError, load_image
from detector.train_config import TrainConfig
from detector.workspace import datasets_dir, runs_dir
from detector.viz.training import COMPARABLE, comparison_figure
from ui.inputs import follow_default
from ui.links import page_url

RUN_PARAM = "run"  # st.query_params key holding the run's folder name
TAILS_KEY = "train_tails"  # session_state: run name -> runs.MetricsTail


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


@dataclass(frozen=True)
class EpochMarks:
    """What the parts of the training page drawn once per epoch depend on: the RPN snapshots on disk and
    the validation rows read. `steps` (whether any step is recorded) is not compared."""

    snapshots: tuple[int, ...]
    val_rows: int
    steps: bool = field(default=False, compare=False)


def epoch_marks(run_dir: Path, tail: runs.MetricsTail) -> EpochMarks:
    """The run's EpochMarks now: when they differ from the ones a page was drawn with, an epoch ended."""
    return EpochMarks(tuple(runs.list_snapshots(run_dir)), len(tail.val), bool(tail.train or tail.val))


def metrics_csv_of(run_dir: Path) -> bytes:
    """metrics_csv of everything the run recorded so far (read when called: a download's data)."""
    return metrics_csv(*runs.read_metrics(run_dir))


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


def train_split_size(name: str) -> int | None:
    """Images in a stored dataset's training split (None when it cannot be read)."""
    doc = datasets_dir() / str(name) / "dataset.json"
    return _train_images(str(name), doc.stat().st_mtime) if doc.is_file() else None


def steps_per_epoch_hint(config: dict[str, Any]) -> int | None:
    """About how many steps an epoch takes (training images / batch size), for a stored dataset;
    the progress figures use it until the first epoch is complete."""
    name, batch = config.get("data"), config.get("batch_size")
    if not name or not isinstance(batch, int) or batch < 1 or Path(str(name)).exists():  # "auto": chosen at start
        return None
    n = train_split_size(str(name))
    return math.ceil(n / int(batch)) if n else None


def runs_table(all_runs: list[runs.RunSummary]) -> pd.DataFrame:
    return pd.DataFrame([{
        "run": r.name, "state": r.state, "dataset": r.dataset, "model": r.model,
        "epochs done": _epochs_done(r), "step": r.step, "best mAP": r.best_map, "error": r.error or "",
    } for r in all_runs], columns=["run", "state", "dataset", "model", "epochs done", "step", "best mAP", "error"])


def _epochs_done(r: runs.RunSummary) -> str:
    """Completed epochs of a run, "3/5" (status files older than `epochs_done` give the epoch field)."""
    done = r.epoch if r.epochs_done is None else r.epochs_done
    return f"{done}/{r.epochs}" if r.epochs else str(done)


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


# ---------------------------------------------------------------- starting a run


def start_new_run(config: dict[str, Any], name: str | None = None) -> Path:
    """Write the run folder (config.json, status queued; named `name` or a dated id) and launch the
    engine in its own session."""
    run_dir = runs.create_run(TrainConfig.from_dict(config).to_dict(), name=name)
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


STATE_ICONS = {"interrupted": ":material/warning:", "failed": ":material/error:", "stopped": ":material/stop_circle:"}


def render_state_note(state: str, status: runs.RunStatus) -> None:
    """The one line under a run's header that says what its state means and what to do next."""
    if state == "interrupted":
        st.warning("This run's process is gone (or its heartbeat is stale) while it said it was training: it was "
                   "interrupted, e.g. by a restart. Resume continues from its last checkpoint.", icon=STATE_ICONS[state])
    elif state == "failed":
        st.error(f"The run failed: {status.error or 'see the log below'}", icon=STATE_ICONS[state])
    elif state == "stopped":
        st.info("Stopped on request. Resume continues from the last checkpoint.", icon=STATE_ICONS[state])
    elif state == "done" and status.extra.get("reason"):
        st.caption(f"Finished: {status.extra['reason']}.")  # all epochs, or the early stop and its best epoch


def render_comparison(names: list[str], labels: dict[str, str]) -> None:
    """'Compare runs': one curve of several runs on one chart (the two most recent preselected)."""
    follow_default("train_compare_runs", names[:2])
    chosen = st.multiselect("Runs", names, key="train_compare_runs", format_func=labels.get,
                            help="Pick two or more runs (the two most recent are preselected).")
    metric = st.columns([2, 3])[0].selectbox("Curve", list(COMPARABLE), format_func=lambda k: COMPARABLE[k][0],
                                             key="train_compare_metric")
    if chosen:
        series = {n: getattr(metrics_tail(run_folder(n)), COMPARABLE[metric][1]) for n in chosen}
        st.plotly_chart(comparison_figure(series, metric, st.session_state.get("train_smoothing", 0.6),
                                          uirevision="compare"), key="train_compare_chart",
                        config={"displaylogo": False})
        st.caption("The same curve of each run against step (training) or epoch (validation): e.g. COCO "
                   "weights against random initialisation, or two learning rates.")
