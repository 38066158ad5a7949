"""The run folder contract: the only code that reads or writes a training run's folder.

A run folder (`RUN_DIR`) holds:

    config.json          the TrainConfig as JSON (`train --out RUN_DIR` reads it; flags override)
    status.json          {state, pid, epoch, epochs_done, step, heartbeat, error, ...}, written
                         atomically; `epoch` is the epoch of the last training step taken (1-based, 0
                         before the first): the epoch in progress while training, the one it stopped
                         in after a stop, as metrics.jsonl's last train line and the Train page's
                         header count it; `epochs_done` the epochs completed (validated, snapshot
                         and last.pt written; --resume continues after them); extra fields: epochs,
                         device, world_size, phase, best_map,
                         best {metric, value, epoch}, augment_boxes_removed, reason (why a run
                         ended: "all 12 epochs", "early stop: ...", "SIGTERM received", "stop
                         requested (...)", "ended by a second SIGINT ..."; a killed process writes
                         nothing: readers see its pid gone and show it interrupted)
    metrics.jsonl        append-only, one JSON object per line, `kind` "train" or "val"
    fixes.json           the dataset fixes training applied (from validation)
    train.log            the engine's log; console.log: the process's stdout/stderr when started here
    checkpoints/last.pt, checkpoints/best.pt
    snapshots/epoch_NNN.npz   per-epoch RPN snapshots (numpy arrays + JSON meta, never .pt)
    diagnosis.json       the last finished diagnosis of the run's checkpoint on its validation
                         split (detector.diagnosis's report, plus `checkpoint` and its mtime)
    events.out.tfevents.*     TensorBoard event files with the same scalars as metrics.jsonl
    STOP                 present: the run is asked to stop cleanly

The engine writes; pages, the CLI and tests read through the functions here. One training per
device at a time: `device_lock` holds an `flock` on a file in the workspace, so a dead process
releases it; the lock file names the run that holds it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from detector.atomic_file import atomic_path, write_text_atomic
from detector.frames import CellPlacement
from detector.workspace import is_inside, runs_dir, workspace_root

CONFIG = "config.json"
STATUS = "status.json"
METRICS = "metrics.jsonl"
FIXES = "fixes.json"
LOG = "train.log"
CONSOLE = "console.log"
STOP = "STOP"
CHECKPOINTS = "checkpoints"
SNAPSHOTS = "snapshots"
DIAGNOSIS = "diagnosis.json"

STATES = ("queued", "running", "stopping", "done", "failed", "stopped")
ACTIVE_STATES = ("queued", "running", "stopping")
# torchvision Faster R-CNN's four training losses, in the order metrics.jsonl, logs and charts use
LOSS_NAMES = ("loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg")
HEARTBEAT_S = 5.0  # a training run rewrites status.json this often
HEARTBEAT_STALE_S = 90.0  # a running run whose heartbeat is older than this is interrupted


class RunError(RuntimeError):
    """A run folder that cannot be used for what was asked (missing, not a run, already used)."""


class DeviceBusy(RuntimeError):
    """Another training holds the device; `holder` names its run folder."""

    def __init__(self, device: str, holder: str):
        super().__init__(f"{device} is busy: run {holder} is training on it (stop it first, or wait)")
        self.device = device
        self.holder = holder


# ---------------------------------------------------------------- small file helpers


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to `path` through a temp file in the same folder and os.replace."""
    write_text_atomic(path, json.dumps(data, indent=2, allow_nan=False, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _finite(value: Any) -> Any:
    """JSON has no NaN/inf: non-finite floats become null (recursively)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, np.generic):
        return _finite(value.item())
    return value


def _read_json(path: Path) -> Any | None:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def now_iso() -> str:
    """The current UTC time, ISO 8601 (what status.json's `heartbeat` holds)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _age_s(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        then = datetime.fromisoformat(iso)
    except ValueError:
        return None
    if then.tzinfo is None:
        then = then.replace(tzinfo=timezone.utc)
    return (datetime.now(timezone.utc) - then).total_seconds()


# ---------------------------------------------------------------- creating runs and config


def new_run_id(prefix: str = "run") -> str:
    """A sortable, readable run id: `PREFIX-YYYYmmdd-HHMMSS` plus a suffix when taken."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = f"{prefix}-{stamp}"
    root = runs_dir()
    name, n = base, 1
    while (root / name).exists():
        n += 1
        name = f"{base}-{n}"
    return name


def run_path(run_id: str) -> Path | None:
    """The folder of run `run_id` under the workspace's runs/, or None when `run_id` is not the name
    of one (a path, '..', a missing run, a link leading outside): how a name from a URL becomes a run."""
    if not isinstance(run_id, str) or run_id in ("", ".", "..") or any(c in run_id for c in "/\\\0"):
        return None
    root = runs_dir()
    path = root / run_id
    return path if path.is_dir() and is_inside(path, root) else None


RUN_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
RUN_NAME_MAX = 64


def run_name_problem(name: str, new: bool = True) -> str | None:
    """Why `name` cannot be a run id (it names a folder under runs/ and goes in URLs), or None;
    with `new`, a run of that name must not exist yet."""
    if not name:
        return "a run name cannot be empty"
    if len(name) > RUN_NAME_MAX:
        return f"a run name has at most {RUN_NAME_MAX} characters"
    if not set(name) <= RUN_NAME_CHARS or name[0] in ".-":
        return "a run name uses letters, digits, '.', '_' and '-' only, and starts with a letter or digit"
    if new and (runs_dir() / name).exists():
        return f"a run named {name} exists already"
    return None


def create_run(config: dict[str, Any] | None = None, name: str | None = None) -> Path:
    """Make a new run folder under the workspace's `runs/`, with config.json and status `queued`.
    A `name` must pass run_name_problem (RunError otherwise); without one, a dated id is made."""
    if name is not None and (problem := run_name_problem(name, new=False)):
        raise RunError(f"{name}: {problem}")
    run_dir = runs_dir() / (name or new_run_id())
    if run_dir.exists() and any(run_dir.iterdir()):
        raise RunError(f"{run_dir}: run folder already exists")
    run_dir.mkdir(parents=True, exist_ok=True)
    if config is not None:
        write_config(run_dir, config)
    write_status(run_dir, state="queued", pid=None, epoch=0, step=0, error=None)
    return run_dir


def write_config(run_dir: Path, config: dict[str, Any]) -> Path:
    """Write `config.json` (a TrainConfig as a dict; see detector.train_config)."""
    path = Path(run_dir) / CONFIG
    write_json_atomic(path, _finite(config))
    return path


def read_config(run_dir: Path) -> dict[str, Any] | None:
    """The run's config.json as a dict, or None when absent; RunError when unreadable."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise RunError(f"{path}: expected a JSON object")
    return data


def has_started(run_dir: Path) -> bool:
    """True when a training already wrote into this folder (metrics or checkpoints)."""
    run_dir = Path(run_dir)
    return (run_dir / METRICS).exists() or (run_dir / CHECKPOINTS / "last.pt").exists()


# ---------------------------------------------------------------- status


@dataclass(frozen=True)
class RunStatus:
    """status.json plus what a reader concludes: `interrupted` when the process is gone."""

    state: str  # as written: queued|running|stopping|done|failed|stopped ("missing" if no file)
    pid: int | None
    epoch: int
    step: int
    heartbeat: str | None
    error: str | None
    interrupted: bool  # said running/stopping but the process is gone or its heartbeat is stale
    extra: dict[str, Any] = field(default_factory=dict)  # other fields (epochs, message, device...)
    epochs_done: int | None = None  # epochs completed; None in a status.json written before the field

    @property
    def shown_state(self) -> str:
        """The state to show: `interrupted` replaces a running state whose process is gone."""
        return "interrupted" if self.interrupted else self.state

    @property
    def resumable(self) -> bool:
        return self.interrupted or self.state in ("stopped", "failed")


def write_status(run_dir: Path, **fields: Any) -> dict[str, Any]:
    """Update status.json atomically: merge `fields` into the current status, stamp the heartbeat."""
    path = Path(run_dir) / STATUS
    current = _read_json(path) or {}
    if "state" in fields and fields["state"] not in STATES:
        raise ValueError(f"state must be one of {STATES}, not {fields['state']!r}")
    current.update(fields)
    current["heartbeat"] = now_iso()
    current.setdefault("error", None)
    write_json_atomic(path, _finite(current))
    return current


class StatusKeeper:
    """Holds a training run's status in memory and rewrites status.json every HEARTBEAT_S seconds.

    The heartbeat is what `read_status` checks for staleness (HEARTBEAT_STALE_S); a STOP asked for
    while running is written as "stopping". Only the training process (rank 0) writes.
    """

    def __init__(self, run_dir: Path, enabled: bool, **initial: Any):
        self.run_dir = run_dir
        self.enabled = enabled
        self.fields: dict[str, Any] = dict(initial)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if not self.enabled:
            return
        self.write()
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with contextlib.suppress(OSError):
                self.write()

    def update(self, write: bool = False, **fields: Any) -> None:
        with self._lock:
            self.fields.update(fields)
        if write:
            self.write()

    def write(self) -> None:
        if self.enabled:
            with self._lock:
                if self.fields.get("state") == "running" and stop_requested(self.run_dir):
                    self.fields["state"] = "stopping"  # asked to stop: acted on before the next iteration
                write_status(self.run_dir, **self.fields)

    def close(self, **fields: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=HEARTBEAT_S * 2)
        self.update(write=True, **fields)


def pid_alive(pid: int | None) -> bool:
    """True when a process with this id exists (and is not a zombie)."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped) counts as gone
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def read_status(run_dir: Path, stale_after_s: float = HEARTBEAT_STALE_S) -> RunStatus:
    """The run's status; a running/stopping run whose pid is gone or heartbeat stale is interrupted."""
    data = _read_json(Path(run_dir) / STATUS)
    if not isinstance(data, dict):
        return RunStatus("missing", None, 0, 0, None, None, False)
    state = str(data.get("state", "missing"))
    pid = data.get("pid")
    heartbeat = data.get("heartbeat")
    interrupted = False
    if state in ("running", "stopping"):
        age = _age_s(heartbeat)
        interrupted = not pid_alive(pid) or age is None or age > stale_after_s
    elif state == "queued" and isinstance(pid, int):  # started, then died before it could say so
        interrupted = not pid_alive(pid)
    known = {"state", "pid", "epoch", "epochs_done", "step", "heartbeat", "error"}
    done = data.get("epochs_done")
    return RunStatus(
        state=state,
        pid=pid if isinstance(pid, int) else None,
        epoch=int(data.get("epoch") or 0),
        step=int(data.get("step") or 0),
        heartbeat=heartbeat,
        error=data.get("error"),
        interrupted=interrupted,
        extra={k: v for k, v in data.items() if k not in known},
        epochs_done=int(done) if isinstance(done, (int, float)) and not isinstance(done, bool) else None,
    )


# ---------------------------------------------------------------- metrics


def append_metrics(run_dir: Path, *rows: dict[str, Any]) -> None:
    """Append rows to metrics.jsonl, one JSON object per line (non-finite numbers become null)."""
    path = Path(run_dir) / METRICS
    text = "".join(json.dumps(_finite(r), default=_json_default, allow_nan=False) + "\n" for r in rows)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()


def read_metrics_from(run_dir: Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Rows appended since byte `offset`, and the offset to pass next time.

    Only complete lines are read (a line being written stays for the next call); a line that is not
    JSON is skipped. Offset past the end (file replaced) starts again from 0.
    """
    path = Path(run_dir) / METRICS
    try:
        size = path.stat().st_size
    except OSError:
        return [], 0
    if offset > size:
        offset = 0
    with open(path, "rb") as fh:
        fh.seek(offset)
        chunk = fh.read(size - offset)
    end = chunk.rfind(b"\n")
    if end < 0:
        return [], offset
    rows = []
    for line in chunk[: end + 1].splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows, offset + end + 1


class MetricsTail:
    """Incremental reader of metrics.jsonl: `update()` reads only new bytes.

    Keeps the last line for each train step and each val epoch (after a resume a step may repeat),
    so `train` and `val` are in order without repeats.
    """

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.offset = 0
        self._train: dict[int, dict[str, Any]] = {}
        self._val: dict[int, dict[str, Any]] = {}

    def update(self) -> int:
        """Read what was appended since the last call; returns the number of new rows."""
        rows, self.offset = read_metrics_from(self.run_dir, self.offset)
        for row in rows:
            if row.get("kind") == "train" and "step" in row:
                self._train[int(row["step"])] = row
            elif row.get("kind") == "val" and "epoch" in row:
                self._val[int(row["epoch"])] = row
        return len(rows)

    @property
    def train(self) -> list[dict[str, Any]]:
        return [self._train[k] for k in sorted(self._train)]

    @property
    def val(self) -> list[dict[str, Any]]:
        return [self._val[k] for k in sorted(self._val)]


def read_metrics(run_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train rows, val rows) of a run, one row per step / epoch (the last written wins)."""
    tail = MetricsTail(run_dir)
    tail.update()
    return tail.train, tail.val


# ---------------------------------------------------------------- stop, fixes, log


def request_stop(run_dir: Path) -> None:
    """Ask a run to stop cleanly: it checkpoints and exits at the next iteration."""
    (Path(run_dir) / STOP).write_text(now_iso() + "\n")


def stop_requested(run_dir: Path) -> bool:
    return (Path(run_dir) / STOP).exists()


def clear_stop(run_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (Path(run_dir) / STOP).unlink()


def write_fixes(run_dir: Path, fixes: list[Any]) -> None:
    """Record the dataset fixes training applied (each a dict or a string)."""
    write_json_atomic(Path(run_dir) / FIXES, _finite([_as_plain(f) for f in fixes]))


def read_fixes(run_dir: Path) -> list[Any]:
    data = _read_json(Path(run_dir) / FIXES)
    return data if isinstance(data, list) else []


def _as_plain(obj: Any) -> Any:
    if hasattr(obj, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(obj)
    if isinstance(obj, (dict, list, str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def log_path(run_dir: Path) -> Path:
    return Path(run_dir) / LOG


def log_tail(run_dir: Path, lines: int = 50, max_bytes: int = 65536) -> list[str]:
    """The last `lines` lines of train.log (reads at most `max_bytes` from the end)."""
    path = log_path(run_dir)
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except OSError:
        return []
    return data.decode("utf-8", errors="replace").splitlines()[-lines:]


# ---------------------------------------------------------------- checkpoints and snapshots


def tensorboard_dir(run_dir: Path) -> Path:
    """Where TensorBoard event files go: the run folder itself, so `tensorboard --logdir workspace/runs`
    lists each run by its id."""
    return Path(run_dir)


def checkpoint_path(run_dir: Path, which: str = "last") -> Path:
    """`checkpoints/last.pt` or `checkpoints/best.pt` of a run (may not exist yet)."""
    if which not in ("last", "best"):
        raise ValueError(f"which must be last or best, not {which!r}")
    return Path(run_dir) / CHECKPOINTS / f"{which}.pt"


def diagnosis_path(run_dir: Path) -> Path:
    """`diagnosis.json` of a run (may not exist yet)."""
    return Path(run_dir) / DIAGNOSIS


def write_diagnosis(run_dir: Path, report: dict[str, Any]) -> Path:
    """Write a finished diagnosis into the run folder, atomically."""
    path = diagnosis_path(run_dir)
    write_json_atomic(path, report)
    return path


def read_diagnosis(run_dir: Path) -> dict[str, Any] | None:
    """The run's diagnosis.json, or None when there is none (or it cannot be read)."""
    data = _read_json(diagnosis_path(run_dir))
    return data if isinstance(data, dict) else None


def best_score(val_row: dict[str, Any], metric: str = "mAP") -> float:
    """How good a validation line is for choosing best.pt, higher better: the one place "best" is decided.

    metric mAP or mAP50: that figure when pycocotools computed it, else minus the validation loss
    (a negative number, never mistaken for an mAP); val_loss: minus the validation loss.
    """
    value = val_row.get(metric) if metric != "val_loss" else None
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return -float(val_row["val_loss"])


def is_better(score: float, best: float | None) -> bool:
    """Whether a validation score (`best_score`) beats the best so far (None: nothing yet)."""
    return best is None or score > best


def score_as_map(best: float | None) -> float | None:
    """The best score as an mAP for status.json and the run list; None when it is minus a loss."""
    return best if best is not None and best >= 0 else None


def best_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint a run folder stands for: `checkpoints/best.pt`, else `checkpoints/last.pt`
    (a folder holding best.pt / last.pt itself, such as a run's checkpoints/, is accepted too);
    None when it has neither yet."""
    run_dir = Path(run_dir)
    for candidate in (checkpoint_path(run_dir, "best"), checkpoint_path(run_dir, "last"),
                      run_dir / "best.pt", run_dir / "last.pt"):
        if candidate.is_file():
            return candidate
    return None


def snapshot_path(run_dir: Path, epoch: int) -> Path:
    return Path(run_dir) / SNAPSHOTS / f"epoch_{int(epoch):03d}.npz"


def write_snapshot(run_dir: Path, epoch: int, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Path:
    """Write one epoch's RPN snapshot: numpy arrays plus a JSON `meta`, atomically (.npz)."""
    path = snapshot_path(run_dir, epoch)
    payload = dict(arrays)
    payload["meta"] = np.array(json.dumps(_finite(meta), default=_json_default))
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **payload)
    return path


def list_snapshots(run_dir: Path) -> list[int]:
    """Epochs that have an RPN snapshot (0 = before training), sorted."""
    folder = Path(run_dir) / SNAPSHOTS
    epochs = []
    for p in folder.glob("epoch_*.npz") if folder.is_dir() else []:
        with contextlib.suppress(ValueError):
            epochs.append(int(p.stem.split("_", 1)[1]))
    return sorted(epochs)


@dataclass(frozen=True)
class SnapshotImage:
    """One fixed validation image's RPN state at the end of an epoch.

    Boxes are [x1, y1, x2, y2] in ORIGINAL image pixels. `objectness[k]` is level k's map of
    sigmoid(objectness), max over the anchor shapes at each cell, max-pooled down to at most the
    snapshot's `map_side` (the model's padding removed); `cells[k]` places its cells in original
    pixels (`detector.frames.CellPlacement`: cell (c, r) centred at (x0 + c dx, y0 + r dy)).
    """

    file: str
    width: int
    height: int
    gt_boxes: np.ndarray  # (G, 4)
    gt_labels: np.ndarray  # (G,)
    objectness: tuple[np.ndarray, ...]  # per FPN level, (h, w) in [0, 1]
    level_names: tuple[str, ...]
    proposals: np.ndarray  # (P, 4) top proposals after NMS, best first
    proposal_scores: np.ndarray  # (P,) sigmoid objectness
    boxes: np.ndarray  # (D, 4) final detections
    scores: np.ndarray  # (D,)
    labels: np.ndarray  # (D,) 1-based into class_names
    cells: tuple[CellPlacement, ...] = ()  # per FPN level; () in snapshots written before they were stored

    def cell_placement(self, level: int) -> CellPlacement:
        """Where level `level`'s cells sit in original pixels. A snapshot written before placements
        were stored spreads its cells over the image, the first centre on the corner (torchvision's
        anchor centres)."""
        if len(self.cells) == len(self.objectness):
            return self.cells[level]
        rows, cols = np.asarray(self.objectness[level]).shape
        return CellPlacement(0.0, self.width / max(cols, 1), 0.0, self.height / max(rows, 1))


@dataclass(frozen=True)
class RpnSnapshot:
    epoch: int
    class_names: tuple[str, ...]
    images: tuple[SnapshotImage, ...]
    meta: dict[str, Any]


def read_snapshot(run_dir: Path, epoch: int) -> RpnSnapshot:
    """Read `snapshots/epoch_NNN.npz` (allow_pickle=False); RunError when absent or unreadable."""
    path = snapshot_path(run_dir, epoch)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise RunError(f"{path}: no readable snapshot ({exc})") from None
    meta = json.loads(str(arrays.pop("meta")))
    images = []
    for i, info in enumerate(meta.get("images", [])):
        levels = tuple(meta.get("level_names", []))
        objectness = tuple(arrays[f"img{i}_objectness_{k}"] for k in range(len(levels)))
        images.append(SnapshotImage(
            file=info["file"], width=int(info["width"]), height=int(info["height"]),
            gt_boxes=arrays[f"img{i}_gt_boxes"], gt_labels=arrays[f"img{i}_gt_labels"],
            objectness=objectness,
            level_names=levels,
            proposals=arrays[f"img{i}_proposals"], proposal_scores=arrays[f"img{i}_proposal_scores"],
            boxes=arrays[f"img{i}_boxes"], scores=arrays[f"img{i}_scores"], labels=arrays[f"img{i}_labels"],
            cells=_cells(info),
        ))
    return RpnSnapshot(int(meta.get("epoch", epoch)), tuple(meta.get("class_names", [])), tuple(images), meta)


def _cells(info: dict[str, Any]) -> tuple[CellPlacement, ...]:
    stored = info.get("cells")
    if not isinstance(stored, list):
        return ()
    return tuple(CellPlacement(*(float(v) for v in c)) for c in stored)


# ---------------------------------------------------------------- listing runs


@dataclass(frozen=True)
class RunSummary:
    """One line of the runs table."""

    run_dir: Path
    name: str
    state: str  # status state, or "interrupted"
    dataset: str | None
    model: str | None
    epoch: int  # status.json's: the epoch of the last step taken (the Train page header's)
    epochs: int | None
    step: int
    best_map: float | None  # best validation mAP so far (None before the first val or without pycocotools)
    error: str | None
    modified: float  # mtime of status.json (or the folder), seconds since the epoch
    epochs_done: int | None = None  # status.json's: epochs completed (None when it predates the field)


def summarize_run(run_dir: Path) -> RunSummary:
    run_dir = Path(run_dir)
    status = read_status(run_dir)
    try:
        config = read_config(run_dir) or {}
    except RunError:
        config = {}
    _, val = read_metrics(run_dir)
    maps = [float(v["mAP"]) for v in val if isinstance(v.get("mAP"), (int, float))]
    status_file = run_dir / STATUS
    modified = (status_file if status_file.exists() else run_dir).stat().st_mtime
    model = config.get("model") or status.extra.get("model")
    if config.get("init") and not config.get("model"):
        model = f"init {config['init']}"
    return RunSummary(
        run_dir=run_dir, name=run_dir.name, state=status.shown_state,
        dataset=config.get("data"), model=model,
        epoch=status.epoch, epochs=config.get("epochs"), step=status.step,
        best_map=max(maps) if maps else None, error=status.error, modified=modified, epochs_done=status.epochs_done,
    )


def list_runs(root: Path | None = None) -> list[RunSummary]:
    """Every run folder under the workspace's runs/ (or `root`), newest first."""
    root = Path(root) if root is not None else runs_dir()
    if not root.is_dir():
        return []
    runs = [summarize_run(p) for p in root.iterdir()
            if p.is_dir() and ((p / STATUS).exists() or (p / CONFIG).exists())]
    return sorted(runs, key=lambda r: r.modified, reverse=True)


# ---------------------------------------------------------------- starting a training process


TRAINING_NICE = 10  # how much lower than the server a training started from a page runs (os.nice)
AUTOGROUP = Path("/proc/self/autogroup")
TRAINING_SPINCOUNT = "10000"  # libgomp spin iterations before a waiting thread sleeps (default 300000)


def autogroup_nice(pid: int | str = "self") -> int | None:
    """The nice value of a process's scheduling autogroup (sched(7)); None where the kernel has none."""
    try:
        return int(Path(f"/proc/{pid}/autogroup").read_text().split("nice")[1])
    except (OSError, IndexError, ValueError):
        return None


def lower_cpu_priority(steps: int) -> None:
    """This process `steps` nice levels lower, and its session's autogroup too when it leads the session.

    With the kernel's autogroup scheduling on (sched(7); the default on most distributions) the CPU is
    shared between sessions first and nice only orders processes inside one: a training in its own
    session (as the Train page starts it) at nice 10 still took a full share against the server's.
    A process that does not lead its session (a command typed in a terminal) leaves the terminal's
    autogroup alone."""
    os.nice(steps)
    current = autogroup_nice()
    if current is not None and os.getsid(0) == os.getpid():
        with contextlib.suppress(OSError):
            AUTOGROUP.write_text(str(min(19, current + steps)))


def start_training(run_dir: Path, extra_args: list[str] | None = None, resume: bool = False,
                   nice: int = TRAINING_NICE) -> int:
    """Start `python -m detector train --out RUN_DIR --nice N` in its own session; returns its pid.

    The process outlives the caller (a page refresh or a Streamlit restart leave it alone); its
    stdout/stderr go to RUN_DIR/console.log; the engine writes status, metrics and train.log. It
    runs `nice` steps below the caller's CPU priority, so the pages stay responsive while it trains
    on the CPU (the GPU's own work is not slowed by it).
    """
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    clear_stop(run_dir)
    args = [sys.executable, "-m", "detector", "train", "--out", str(run_dir)]
    if nice > 0:
        args += ["--nice", str(int(nice))]
    if resume:
        args.append("--resume")
    args += list(extra_args or [])
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONUNBUFFERED"] = "1"
    if nice > 0 and "OMP_WAIT_POLICY" not in env:
        # A low-priority training shares the cores: torch's OpenMP threads (libgomp) spin-wait for each
        # other by default, burning the CPU the pages leave it while a partner thread waits for a core.
        # A short spin: first step under two busy processes 137 -> 60 s (CPU 17.2 -> 8.4 s), as fast alone.
        env.setdefault("GOMP_SPINCOUNT", TRAINING_SPINCOUNT)
    with open(run_dir / CONSOLE, "ab") as console:
        proc = subprocess.Popen(args, stdout=console, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=str(root), env=env, start_new_session=True)
    # The engine rewrites its whole status at every heartbeat, so this cannot hide "running" for long.
    if read_status(run_dir).state != "running":
        write_status(run_dir, state="queued", pid=proc.pid, error=None)
    return proc.pid


# ---------------------------------------------------------------- one training per device


def lock_file(device: str) -> Path:
    """The lock file of a device ("cpu", "cuda:0", ...) in the workspace's locks/ folder."""
    safe = "".join(c if c.isalnum() else "-" for c in device)
    folder = workspace_root() / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"train-{safe}.lock"


def lock_holder(device: str) -> str | None:
    """The run folder named in the device's lock file when someone holds the lock, else None."""
    path = lock_file(device)
    if not path.exists():
        return None
    with open(path, "a+", encoding="utf-8") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            return fh.read().strip() or "(unknown run)"
        fcntl.flock(fh, fcntl.LOCK_UN)
    return None


@contextlib.contextmanager
def device_lock(device: str, run_dir: Path) -> Iterator[Path]:
    """Hold the device's training lock for the `with` block; DeviceBusy names the holder's run.

    fcntl.flock on a file under the workspace: released by the kernel when the process dies.
    """
    path = lock_file(device)
    fh = open(path, "a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            fh.seek(0)
            raise DeviceBusy(device, fh.read().strip() or "(unknown run)") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{Path(run_dir).resolve()}\n")
        fh.flush()
        try:
            yield path
        finally:
            with contextlib.suppress(OSError):
                fh.seek(0)
                fh.truncate()
                fh.flush()
            fcntl.flock(fh, fcntl.LOCK_UN)
    finally:
        fh.close()


def wait_for(predicate: Any, timeout_s: float, interval_s: float = 0.2) -> bool:
    """Poll `predicate()` until true or `timeout_s` passes (for callers watching a run)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())
