"""The paper's anchor experiment on your own data: one ordinary training run per anchor set.

Ren et al. (Faster R-CNN, arXiv 1506.01497v3, Table 8) trained the same detector with six anchor
settings and compared mAP on PASCAL VOC 2007 test. A study does the same on a dataset: every run has
the same data, split, seed, schedule, initial weights and knobs, and differs only in `model_kwargs`
`anchor_sizes` / `aspect_ratios` (`AnchorSet.model_kwargs`). When a set's anchors per location differ
from the initial weights', the run starts with the RPN head's last layers (`rpn.head.cls_logits`,
`rpn.head.bbox_pred`) re-initialised (`models.set_anchors`); the backbone, the head's 3x3 conv and
the box head keep their weights.

Study folder (`STUDY_DIR`), written only by the study process:

    study.json    {format_version, state, pid, heartbeat, error, current, spec, runs_in, dataset,
                  paper_table8, sets: [AnchorSet.to_dict() + {run, run_state, reinitialised, figures}]},
                  written atomically; `figures` (per set, once its run is done): anchors_per_location,
                  anchors_median_image, anchor_recall {"0.5", "0.7"}, proposal_recall {k, iou: {"0.5",
                  "0.7"}, at_k {iou: [recall per k]}, ks, by_iou {iou: recall at 300}, gt_boxes},
                  mAP, mAP50, epoch, train_time_s
    console.log   the study's stdout/stderr when a page started it
    STOP          present: the study is asked to stop (its current run is asked too)

Runs are ordinary run folders (`detector.runs`) named `<study>-<set key>` under `runs_in` (the
study folder itself by default; the page uses the workspace's runs/, so /train lists them), each
started with the one launcher (`runs.start_training`, `train --out RUN_DIR` reading config.json).
A study run again continues: done runs are kept, a stopped or interrupted one resumes from its
last.pt, the rest start.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from detector import runs
from detector.anchor_sets import PAPER_SOURCE, PAPER_TABLE8, AnchorSet, StudyError, choose_sets, fitted_set, paper_dict
from detector.train_config import TrainConfig
from detector.wording import counted

STUDY = "study.json"
STOP = "STOP"
CONSOLE = "console.log"
FORMAT_VERSION = 1
STATES = ("running", "stopping", "done", "stopped", "failed")

PROPOSALS = 300  # the paper's test-time proposals (Fig. 4, Table 8)
RECALL_KS = (1, 2, 5, 10, 20, 50, 100, 200, 300)  # proposals per image for the recall curve
RECALL_IOUS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))  # Fig. 4's IoU axis, 0.5 .. 0.95
PRE_NMS_TOP_N = 1000  # proposals per level kept before NMS when measuring recall (torchvision's test default)
ANCHOR_RECALL_IOUS = ("0.5", "0.7")
POLL_S = 1.0
HEARTBEAT_S = 5.0


# ---------------------------------------------------------------- the study's figures


@dataclass(frozen=True)
class ProposalRecall:
    """Share of ground-truth boxes one of the top k RPN proposals covers (IoU >= t), over a split."""

    ks: tuple[int, ...]
    at_k: dict[str, list[float]]  # IoU "0.5" / "0.7" -> recall per k
    by_iou: dict[str, float]  # IoU 0.5 .. 0.95 -> recall at PROPOSALS (the paper's Fig. 4)
    gt_boxes: int
    images: int

    def to_dict(self) -> dict[str, Any]:
        return {"k": PROPOSALS, "iou": {t: self.at_k[t][-1] for t in ("0.5", "0.7")}, "ks": list(self.ks),
                "at_k": self.at_k, "by_iou": self.by_iou, "gt_boxes": self.gt_boxes, "images": self.images}


def proposal_recall_on(model: Any, dataset: Any, device: Any, batch_size: int = 2) -> ProposalRecall:
    """Proposal recall of a model's RPN on a dataset (the paper's Fig. 4 measure): per image, the
    proposals after NMS (PRE_NMS_TOP_N per level before it, the model's NMS IoU), the top PROPOSALS by
    objectness; boxes compared in the model's input frame. Summed over every ground-truth box."""
    import torch
    from torch.utils.data import DataLoader

    from detector.data import collate
    from detector.inspect import run_rpn_stage
    from detector.proposals import ProposalSettings, filter_proposals, proposal_recall

    settings = ProposalSettings.from_rpn(model.rpn).with_(pre_nms_top_n=PRE_NMS_TOP_N, post_nms_top_n=PROPOSALS)
    ious = tuple(sorted(set(RECALL_IOUS) | {0.5, 0.7}))
    covered_k = {t: np.zeros(len(RECALL_KS)) for t in (0.5, 0.7)}
    covered_iou = {t: 0.0 for t in ious}
    total, images = 0, 0
    model.eval()
    with torch.no_grad():
        for batch, targets in DataLoader(dataset, batch_size=batch_size, collate_fn=collate):
            stage = run_rpn_stage(model, [img.to(device) for img in batch])
            funnels = filter_proposals(stage.proposals, stage.objectness_flat, stage.image_sizes,
                                       stage.num_anchors_per_level, settings)
            for i, (funnel, target) in enumerate(zip(funnels, targets)):
                images += 1
                gt = target["boxes"]
                if len(gt) == 0:
                    continue
                gt_input = stage.frames[i].to_input(gt)
                proposals = funnel.post_nms.boxes
                curve = proposal_recall(proposals, gt_input, list(RECALL_KS), (0.5, 0.7))
                at_300 = proposal_recall(proposals, gt_input, [PROPOSALS], ious)
                for t in (0.5, 0.7):
                    covered_k[t] += np.asarray(curve[t]) * len(gt)
                for t in ious:
                    covered_iou[t] += at_300[t][0] * len(gt)
                total += len(gt)
    share = (lambda c: float(c) / total) if total else (lambda c: 0.0)
    return ProposalRecall(RECALL_KS, {f"{t:g}": [share(c) for c in covered_k[t]] for t in (0.5, 0.7)},
                          {f"{t:g}": share(covered_iou[t]) for t in RECALL_IOUS}, total, images)


def anchor_figures(model: Any, images: Sequence[Any], median_size: tuple[int, int]) -> dict[str, Any]:
    """What a set's anchors are before any training: anchors per location (the built model's own
    AnchorGenerator), anchors for the dataset's median image (W x H), and anchor recall (share of
    ground-truth boxes whose best anchor reaches IoU 0.5 / 0.7, after the model's resize)."""
    from detector.anchor_fitness import fitness
    from detector.anchor_grids import anchor_grid, model_source

    source = model_source(model)
    fit = fitness(source, images)
    grid = anchor_grid(source, median_size, with_anchors=False)
    return {"anchors_per_location": [int(a) for a in model.rpn.anchor_generator.num_anchors_per_location()],
            "anchors_median_image": int(grid.total),
            "anchor_recall": {t: fit.recall[t] for t in ANCHOR_RECALL_IOUS},
            "anchor_boxes": int(fit.boxes)}


def run_figures(run_dir: Path, val: Any, device: Any) -> dict[str, Any]:
    """What a finished run achieved: mAP and mAP50 of the epoch best.pt holds (metrics.jsonl), its
    training time (seconds, across resumes), and the proposal recall of that checkpoint on `val`."""
    from detector.checkpoints import model_from_checkpoint, read_checkpoint

    train, val_rows = runs.read_metrics(run_dir)
    status = runs.read_status(run_dir)
    best_epoch = (status.extra.get("best") or {}).get("epoch")
    row = next((v for v in val_rows if v.get("epoch") == best_epoch), val_rows[-1] if val_rows else {})
    times = [r["time"] for r in (*train, *val_rows) if isinstance(r.get("time"), (int, float))]
    out: dict[str, Any] = {"mAP": _number(row.get("mAP")), "mAP50": _number(row.get("mAP50")),
                           "epoch": row.get("epoch"), "train_time_s": max(times) if times else None,
                           "proposal_recall": None}
    checkpoint = runs.best_checkpoint(run_dir)
    if checkpoint is not None and val is not None and len(val):
        model = model_from_checkpoint(read_checkpoint(checkpoint), checkpoint.name).to(device)
        out["proposal_recall"] = proposal_recall_on(model, val, device).to_dict()
    return out


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


# ---------------------------------------------------------------- the study folder


def study_path(study_dir: Path) -> Path:
    return Path(study_dir) / STUDY


def read_study(study_dir: Path) -> dict[str, Any] | None:
    """study.json as a dict, with `shown_state` added ("interrupted" when it says running but its
    process is gone); None when there is none. StudyError when unreadable."""
    path = study_path(study_dir)
    if not path.is_file():
        return None
    data = runs.read_json_strict(path, StudyError)
    if not isinstance(data, dict) or not isinstance(data.get("sets"), list):
        raise StudyError(f"{path}: not a study file")
    state = data.get("state")
    gone = state in ("running", "stopping") and not runs.pid_alive(data.get("pid"))
    data["shown_state"] = "interrupted" if gone else state
    return data


def run_dir_of(study: dict[str, Any], key: str, study_dir: Path) -> Path:
    """The run folder of set `key`: `<runs_in>/<study name>-<key>`."""
    return Path(study.get("runs_in") or study_dir) / f"{Path(study_dir).name}-{key}"


def request_stop(study_dir: Path) -> None:
    """Ask a study to stop: its STOP file, and a STOP in the run it is training."""
    study_dir = Path(study_dir)
    (study_dir / STOP).touch()
    study = read_study(study_dir)
    if study and study.get("current"):
        runs.request_stop(run_dir_of(study, study["current"], study_dir))


def new_study_name() -> str:
    """A readable, sortable, unused name for a study started from the page: `study-YYYYmmdd-HHMMSS`."""
    from datetime import datetime

    from detector.workspace import studies_dir

    base = f"study-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    name, n = base, 1
    while (studies_dir() / name).exists():
        n += 1
        name = f"{base}-{n}"
    return name


def study_folder(name: str) -> Path | None:
    """The folder of study `name` under the workspace's studies/, or None when `name` is not one
    (a path, '..', a missing study): how a name from a URL becomes a study."""
    from detector.workspace import is_inside, studies_dir

    if not isinstance(name, str) or runs.run_name_problem(name, new=False):
        return None
    path = studies_dir() / name
    return path if path.is_dir() and is_inside(path, studies_dir()) else None


def list_studies() -> list[str]:
    """Names of the studies under the workspace's studies/ (started ones too, before their
    study.json), newest first."""
    from detector.workspace import studies_dir

    found = [p for p in studies_dir().iterdir() if p.is_dir() and ((p / STUDY).is_file() or (p / CONSOLE).is_file())]
    return [p.name for p in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)]


def console_tail(study_dir: Path, lines: int = 20) -> list[str]:
    """The last lines the study process printed (console.log), for a study still preparing or failed."""
    try:
        return (Path(study_dir) / CONSOLE).read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def start_study(name: str, data: str, epochs: int, sets: Sequence[str], changes: dict[str, Any] | None = None,
                nice: int = runs.TRAINING_NICE) -> Path:
    """Start `python -m detector anchor-study` for a stored dataset in its own session (the page's way):
    the study folder is studies/NAME, its runs go to the workspace's runs/ (so /train lists them),
    each training `nice` steps below the caller. Returns the study folder; the process writes study.json."""
    from detector.workspace import runs_dir, studies_dir

    if problem := runs.run_name_problem(name, new=False):
        raise StudyError(f"{name}: {problem}")
    folder = studies_dir() / name
    if folder.exists():
        raise StudyError(f"a study named {name} exists already")
    folder.mkdir(parents=True)
    args = ["anchor-study", "--data", data, "--out", str(folder), "--runs-in", str(runs_dir()),
            "--epochs", str(int(epochs)), "--sets", ",".join(sets), "--nice", str(int(nice))]
    for key, value in (changes or {}).items():
        args += ["--set", f"{key}={json.dumps(value)}"]
    runs.start_command(args, folder / CONSOLE)
    return folder


def continue_study(study_dir: Path) -> None:
    """Start `python -m detector anchor-study --out STUDY_DIR` in its own session: the stored settings,
    done runs kept, the stopped one resumed."""
    runs.start_command(["anchor-study", "--out", str(Path(study_dir).resolve())], Path(study_dir) / CONSOLE)


@dataclass
class _Writer:
    """study.json in memory; written atomically on every change and at most every HEARTBEAT_S while waiting."""

    study_dir: Path
    data: dict[str, Any]
    written: float = field(default=0.0)

    def write(self, **changes: Any) -> None:
        self.data.update(changes)
        self.data["heartbeat"] = runs.now_iso()
        self.data.pop("shown_state", None)
        runs.write_json_atomic(study_path(self.study_dir), self.data)
        self.written = time.monotonic()

    def beat(self) -> None:
        if time.monotonic() - self.written >= HEARTBEAT_S:
            self.write()


# ---------------------------------------------------------------- running a study


@dataclass(frozen=True)
class StudySpec:
    """What every run of a study shares: the base TrainConfig (no anchors) and how runs are started."""

    base: TrainConfig
    sets: str  # the --sets text
    nice: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"base": self.base.to_dict(), "sets": self.sets, "nice": self.nice}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StudySpec":
        return cls(TrainConfig.from_dict(d["base"]), str(d["sets"]), int(d.get("nice", 0)))


def run_config(base: TrainConfig, anchor_set: AnchorSet) -> TrainConfig:
    """A run's config: the study's base with this set's anchors; nothing else differs between runs."""
    return base.replace(model_kwargs={**base.model_kwargs, **anchor_set.model_kwargs()})


def _architecture_of(base: TrainConfig) -> tuple[str, dict[str, Any]]:
    """The architecture the runs train and its model kwargs (the --init checkpoint's, then the base's)."""
    from detector.checkpoints import checkpoint_path_for, read_checkpoint
    from detector.models import DEFAULT_ARCH

    if base.init:
        ckpt = read_checkpoint(checkpoint_path_for(base.init))
        return str(ckpt["model"]), {**ckpt.get("model_kwargs", {}), **base.model_kwargs}
    return base.model or DEFAULT_ARCH, dict(base.model_kwargs)


def prepare(study_dir: Path, spec: StudySpec, runs_in: Path | None = None, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Create study.json for a new study (sets resolved, fitted sizes fixed) or check an existing one
    against `spec`; returns the study dict. StudyError on a bad input or a changed spec."""
    from detector.anchor_fitness import FitnessImage, fitness
    from detector.anchor_grids import model_source
    from detector.models import build_model
    from detector.training_data import TrainingFailed, load_training_data

    study_dir = Path(study_dir)
    existing = read_study(study_dir)
    if existing is not None:
        if existing["shown_state"] in ("running", "stopping"):
            raise StudyError(f"{study_dir}: this study is running (pid {existing.get('pid')}); stop it first")
        stored = StudySpec.from_dict(existing["spec"])
        if stored.base != spec.base or stored.sets != spec.sets:
            diff = sorted(k for k, v in stored.base.to_dict().items() if spec.base.to_dict().get(k) != v)
            raise StudyError(f"{study_dir}: holds a study with other settings ({', '.join(diff) or 'sets'}); "
                             "run it again with the same settings to continue it, or use a new --out")
        return existing
    try:
        data = load_training_data(spec.base)
    except TrainingFailed as exc:
        raise StudyError(str(exc)) from None
    records = list(data.train.records) + (list(data.val.records) if data.val is not None else [])
    images = [FitnessImage(r.width, r.height, np.asarray(r.boxes, dtype=float).reshape(-1, 4)) for r in records]
    arch, kwargs = _architecture_of(spec.base)
    own = build_model(arch, data.class_names, **kwargs)
    own_sizes = [list(s) for s in own.rpn.anchor_generator.sizes]
    sets = choose_sets(spec.sets, own_sizes, lambda: fitted_set(fitness(model_source(own), images), model_source(own)))
    median = (int(np.median([r.width for r in records])), int(np.median([r.height for r in records])))
    entries = []
    for s in sets:
        model = build_model(arch, data.class_names, **{**kwargs, **s.model_kwargs()})
        figures = anchor_figures(model, images, median)
        pretrained = spec.base.init or spec.base.weights == "coco"
        reinit = list(_reinitialised(own, s)) if pretrained else ["all (random initial weights)"]
        entries.append({**s.to_dict(), "run": None, "run_state": "pending", "reinitialised": reinit,
                        "figures": figures})
        say(f"  {s.key:<10} {s.label:<40} sizes {' / '.join(','.join(map(str, lv)) for lv in s.sizes)}  "
            f"ratios {','.join(f'{r:g}' for r in s.ratios[0])}  {figures['anchors_per_location'][0]} per location")
    study = {"format_version": FORMAT_VERSION, "state": "stopped", "pid": None, "error": None, "current": None,
             "spec": spec.to_dict(), "runs_in": str(Path(runs_in).resolve()) if runs_in else None,
             "dataset": {"data": spec.base.data, "images": len(records), "train_images": len(data.train),
                         "val_images": len(data.val) if data.val is not None else 0,
                         "median_image": list(median), "classes": list(data.class_names)},
             "architecture": arch, "model_own_anchors": {"sizes": own_sizes,
                                                         "ratios": [list(r) for r in own.rpn.anchor_generator.aspect_ratios]},
             "paper_source": PAPER_SOURCE, "paper_table8": [paper_dict(r) for r in PAPER_TABLE8], "sets": entries}
    study_dir.mkdir(parents=True, exist_ok=True)
    runs.write_json_atomic(study_path(study_dir), study)
    return study


def _reinitialised(own: Any, anchor_set: AnchorSet) -> tuple[str, ...]:
    """The layers a run re-initialises: the RPN head's last layers when its anchors per location
    differ from the initial weights' (models.set_anchors), else none."""
    from detector.models import RPN_LAST_LAYERS

    return RPN_LAST_LAYERS if anchor_set.anchors_per_location[0] != own.rpn.head.cls_logits.out_channels else ()


def run(study_dir: Path, study: dict[str, Any], say: Callable[[str], None] = print) -> str:
    """Train every set not done yet, in order, one run at a time, and fill in its figures; returns the
    study's final state (done, stopped or failed). SIGTERM / SIGINT or a STOP file stop the current run
    cleanly and end the study as stopped; run it again to continue."""
    from detector.models import resolve_device
    from detector.training_data import load_training_data

    study_dir = Path(study_dir)
    (study_dir / STOP).unlink(missing_ok=True)
    spec = StudySpec.from_dict(study["spec"])
    writer = _Writer(study_dir, study)
    writer.write(state="running", pid=os.getpid(), error=None, current=None)
    stop = {"asked": False}

    def on_signal(signum: int, _frame: Any) -> None:
        stop["asked"] = True

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    val = None
    try:
        device = resolve_device(spec.base.device)
        for entry in study["sets"]:
            key = entry["key"]
            run_dir = run_dir_of(study, key, study_dir)
            if stop["asked"] or (study_dir / STOP).exists():
                break
            status = runs.read_status(run_dir)
            if status.state != "done":
                writer.write(current=key)
                entry.update(run=str(run_dir), run_state="running")
                ended = _train(run_dir, run_config(spec.base, AnchorSet.from_dict(entry)), spec.nice, status,
                               lambda: stop["asked"] or (study_dir / STOP).exists(), writer, say,
                               "cpu" if device.type == "cpu" else str(device))
                entry["run_state"] = ended
                writer.write(current=None)
                if ended != "done":
                    if ended == "failed":
                        say(f"{key}: failed ({runs.read_status(run_dir).error}); going on with the next set")
                        continue
                    break
            entry.update(run=str(run_dir), run_state="done")
            if entry["figures"].get("mAP") is None or entry["figures"].get("proposal_recall") is None:
                if val is None:
                    val = load_training_data(spec.base).val
                say(f"{key}: measuring proposal recall on the validation split")
                entry["figures"].update(run_figures(run_dir, val, device))
                writer.write()
        states = [e["run_state"] for e in study["sets"]]
        final = "done" if all(s == "done" for s in states) else "failed" if "failed" in states else "stopped"
        writer.write(state=final, pid=None, current=None)
        return final
    except Exception as exc:
        writer.write(state="failed", pid=None, error=str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__)
        raise
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        (study_dir / STOP).unlink(missing_ok=True)


def _train(run_dir: Path, config: TrainConfig, nice: int, status: runs.RunStatus, stop_asked: Callable[[], bool],
           writer: _Writer, say: Callable[[str], None], lock_key: str) -> str:
    """Start (or resume) one run with the one launcher and wait for it; returns its final state.
    A run still training from an earlier study process (killed without stopping it) is waited for,
    and so is another training that holds the device (one training per device: runs.device_lock)."""
    if status.state in runs.ACTIVE_STATES and not status.interrupted and status.pid:
        say(f"{run_dir.name}: still training (pid {status.pid}); waiting for it")
        return _wait(run_dir, status.pid, stop_asked, writer, say)
    if holder := runs.lock_holder(lock_key):
        say(f"{run_dir.name}: waiting for run {Path(holder).name} to free the {lock_key} (one training per device)")
        while runs.lock_holder(lock_key) and not stop_asked():
            writer.beat()
            time.sleep(POLL_S)
        if stop_asked():
            return "stopped"
    resume = runs.checkpoint_path(run_dir, "last").is_file()
    if not resume and runs.has_started(run_dir):  # killed before its first checkpoint: nothing to resume
        runs.write_status(run_dir, state="failed", error="it was killed before its first checkpoint; delete "
                          f"{run_dir.name} to train this set again")
        return "failed"
    run_dir.mkdir(parents=True, exist_ok=True)
    runs.write_config(run_dir, config.to_dict())
    if not resume:
        runs.write_status(run_dir, state="queued", pid=None, epoch=0, step=0, error=None)
    say(f"{run_dir.name}: {'resuming' if resume else 'training'} ({counted(config.epochs, 'epoch')})")
    return _wait(run_dir, runs.start_training(run_dir, resume=resume, nice=nice), stop_asked, writer, say)


def _wait(run_dir: Path, pid: int, stop_asked: Callable[[], bool], writer: _Writer, say: Callable[[str], None]) -> str:
    asked = False
    while runs.pid_alive(pid):
        if stop_asked() and not asked:
            runs.request_stop(run_dir)
            writer.write(state="stopping")
            asked = True
        writer.beat()
        time.sleep(POLL_S)
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    state = runs.read_status(run_dir).shown_state
    say(f"{run_dir.name}: {state}")
    return state if state in ("done", "stopped", "failed") else "stopped"
