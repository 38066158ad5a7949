"""A tuner-ready diagnosis pass that survives its size: written as it goes to a folder of its own,
resumable, shared, and planned before it starts.

The pass folder (one per model, data and pass settings; `pass_folder` names it):

    RUN_DIR/diagnosis/KEY/          for a run's own checkpoint
    WORKSPACE/diagnosis/KEY/        for anything else (a stored dataset and a model)
      pass.json       what the pass is: identity (model, data, split, device), images, batch_size,
                      pool_top_n, class_names, box_score_thresh, the RPN settings; written first
      status.json     {state: running|stopped|done|failed, done, total, seconds, eta_s, pid, heartbeat, error}
      batches/NNNNNN.npz   one per batch of `batch_size` images, written atomically once the batch
                      is done: its trails (`trail.ImageTrail`) and its candidate pool
                      (`candidates.CandidatePool`, float32: the tuner's exactness needs every bit)
      STOP            asks the writer to stop after the batch in hand
      lock            an flock held by the one process writing the pass (released by the kernel
                      when it dies): two writers of one pass never run at once

KEY hashes the identity, so two users asking for the same model and data meet in the same folder:
one writes, the other reads its progress and then its batches. A stopped or killed pass resumes at
its first missing batch; the batches are the same as an uninterrupted pass's (same order, same
batch boundaries), so the resumed pass equals it. Memory: the trails (what the report reads, a few
KiB per image) stay in memory; the candidate pools stay on disk and the tuner reads one batch at a
time (`PoolFiles`). `plan_pass` measures one image first and refuses, with what it needs and what
is free, a pass the machine cannot hold; a refused pass writes nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torchvision.models.detection.faster_rcnn import FasterRCNN

from detector.atomic_file import atomic_path, write_text_atomic
from detector.diagnosis.candidates import CandidatePool
from detector.diagnosis.trail import ImageTrail, TrailSet, trail_batches
from detector.file_lock import LockHeld, exclusive_lock, lock_owner
from detector.proposals import ProposalSettings
from detector.wording import counted

FORMAT_VERSION = 1
PASS_JSON, STATUS_JSON, BATCHES, STOP, LOCK = "pass.json", "status.json", "batches", "STOP", "lock"
MEMORY_MARGIN = 0.8  # a pass may plan on this share of the memory the system says is available


class PassBusy(RuntimeError):
    """Another process holds the pass's lock (it is writing the pass)."""


class PassRefused(RuntimeError):
    """The machine cannot hold the pass: the message says what it needs and what is free."""


def pass_key(identity: dict[str, Any]) -> str:
    """A short hash of the pass's identity (JSON with sorted keys)."""
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def records_digest(records: Sequence[Any]) -> str:
    """A hash of the images and their ground truth (file, size, boxes, labels)."""
    h = hashlib.sha256()
    for r in records:
        h.update(json.dumps([r.file, r.width, r.height, [list(map(float, b)) for b in r.boxes],
                             [int(v) for v in r.labels]]).encode("utf-8"))
    return h.hexdigest()[:16]


def pass_folder(identity: dict[str, Any], run_dir: Path | None = None) -> Path:
    """`RUN_DIR/diagnosis/KEY` for a run's own checkpoint, else `WORKSPACE/diagnosis/KEY`."""
    from detector.workspace import workspace_root

    base = Path(run_dir) if run_dir is not None else workspace_root()
    return base / "diagnosis" / pass_key(identity)


def model_version(source: str | Path) -> str:
    """The model file a pass belongs to, as the CLI and the pages both name it: the checkpoint's
    resolved path and modification time (demo, a file, a run folder's best.pt), else the name."""
    from detector import checkpoints

    try:
        path = Path(checkpoints.checkpoint_path_for(source))
        return f"{path.resolve()}|{path.stat().st_mtime}"
    except (checkpoints.CheckpointError, OSError):
        return str(source)


def pass_identity(model: FasterRCNN, model_id: str, data: str, split: str, records: Sequence[Any],
                  batch_size: int, pool_top_n: int) -> dict[str, Any]:
    """Everything that makes two passes the same: the model (`model_id`: its file version, as
    `model_version` names it; its knobs are in the settings), the data (`data`: the images' folder,
    resolved) and its records, the device kind, the batching and the pool. The CLI and the pages
    build it alike, so they meet in the same folder."""
    device = next(model.parameters()).device.type
    return {"format": FORMAT_VERSION, "model": model_id, "data": str(data), "split": split,
            "records": records_digest(records), "images": len(records), "device": device,
            "batch_size": int(batch_size), "pool_top_n": int(pool_top_n),
            "settings": asdict(ProposalSettings.from_rpn(model.rpn)),
            "box": [float(model.roi_heads.score_thresh), float(model.roi_heads.nms_thresh),
                    int(model.roi_heads.detections_per_img)]}


# ---------------------------------------------------------------- the plan


@dataclass(frozen=True)
class PassPlan:
    """What a pass over `images` images will take, measured on one image (bytes, seconds)."""

    images: int
    done: int  # images already in the folder (a resumed pass)
    seconds_per_image: float
    held_bytes_per_image: int  # trails, kept in memory for the report
    disk_bytes_per_image: int  # trails and candidate pool, written to the folder
    batch_bytes: int  # the working set of one batch (the forward's activations, features, RoIAlign), freed after it
    memory_free: int  # what the system says is available
    disk_free: int

    @property
    def seconds(self) -> float:
        return self.seconds_per_image * (self.images - self.done)

    @property
    def memory_needed(self) -> int:
        return self.held_bytes_per_image * self.images + self.batch_bytes

    @property
    def disk_needed(self) -> int:
        return self.disk_bytes_per_image * (self.images - self.done)

    def refusal(self) -> str | None:
        """Why this machine cannot hold the pass (what it needs, what is free), or None."""
        problems = []
        if self.memory_needed > MEMORY_MARGIN * self.memory_free:
            problems.append(f"{mib(self.memory_needed)} of memory ({mib(self.memory_free)} free)")
        if self.disk_needed > self.disk_free:
            problems.append(f"{mib(self.disk_needed)} of disk ({mib(self.disk_free)} free)")
        if not problems:
            return None
        return (f"A pass over {counted(self.images, 'image')} needs {' and '.join(problems)}: "
                "choose fewer images or free some.")

    def summary(self) -> str:
        left = self.images - self.done
        return (f"{counted(self.images, 'image')} ({left} to run), about {duration(self.seconds)}, "
                f"{mib(self.memory_needed)} of memory, {mib(self.disk_needed)} of disk")


def mib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def memory_available() -> int:
    """MemAvailable from /proc/meminfo (bytes); elsewhere the physical memory."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _rss_now() -> int:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return 0


def _rss_peak() -> int:
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # kilobytes on Linux


def _existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def plan_pass(model: FasterRCNN, records: Sequence[Any], root: Any, class_names: tuple[str, ...], folder: Path,
              batch_size: int, pool_top_n: int) -> PassPlan:
    """Run the first image as the pass will (in memory, nothing written) and scale what it took."""
    done = len(_done_batches(folder)) * batch_size if folder.is_dir() else 0
    rss_before = _rss_now()
    start = time.perf_counter()
    batch = next(trail_batches(model, records[:1], root, 1, True, pool_top_n))
    seconds = time.perf_counter() - start
    # the forward's working set: what the process peak rose to above its size before the probe
    # (an over-estimate when an earlier peak was higher), at least the tensors the batch keeps
    work = max(batch.work_bytes, _rss_peak() - rss_before)
    probe = TrailSet(batch.trails, tuple(class_names), 0.0, ProposalSettings.from_rpn(model.rpn), (batch.pool,))
    held, pool = probe.held_bytes(), probe.pool_bytes()
    return PassPlan(
        images=len(records), done=min(done, len(records)), seconds_per_image=seconds, held_bytes_per_image=held,
        disk_bytes_per_image=held + pool, batch_bytes=int(work * batch_size),
        memory_free=memory_available(), disk_free=shutil.disk_usage(_existing_parent(folder)).free,
    )


# ---------------------------------------------------------------- the folder


def _batch_path(folder: Path, index: int) -> Path:
    return folder / BATCHES / f"{index:06d}.npz"


def _done_batches(folder: Path) -> list[int]:
    return sorted(int(p.stem) for p in (folder / BATCHES).glob("[0-9]*.npz")) if (folder / BATCHES).is_dir() else []


TRAIL_ARRAYS = ("gt_boxes", "gt_labels", "boxes", "scores", "labels", "best_iou_pre_nms", "best_iou_after_nms",
                "best_iou_rois", "best_anchor_iou", "refined_iou", "refined_score", "roi_top_label", "roi_top_score")


def write_batch(folder: Path, index: int, trails: Sequence[ImageTrail], pool: CandidatePool) -> Path:
    """One batch's trails and pool as an .npz, atomically."""
    arrays = {f"pool.{k}": v for k, v in pool.to_arrays().items()}
    meta = [{"file": t.file, "width": t.width, "height": t.height, "resized_size": list(t.resized_size)} for t in trails]
    arrays["trails"] = np.asarray(json.dumps(meta))
    for j, t in enumerate(trails):
        for name in TRAIL_ARRAYS:
            arrays[f"t{j}.{name}"] = getattr(t, name)
    path = _batch_path(folder, index)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)
    return path


def read_batch_trails(path: Path) -> list[ImageTrail]:
    with np.load(path, allow_pickle=False) as a:
        meta = json.loads(str(a["trails"]))
        return [ImageTrail(file=m["file"], width=int(m["width"]), height=int(m["height"]),
                           resized_size=tuple(m["resized_size"]), **{n: a[f"t{j}.{n}"] for n in TRAIL_ARRAYS})
                for j, m in enumerate(meta)]


def read_batch_pool(path: Path) -> CandidatePool:
    with np.load(path, allow_pickle=False) as a:
        return CandidatePool.from_arrays({k[len("pool."):]: a[k] for k in a.files if k.startswith("pool.")})


class PoolFiles(Sequence[CandidatePool]):
    """The pass's candidate pools, read from its folder one batch at a time (nothing held)."""

    def __init__(self, folder: Path, count: int):
        self.folder, self.count = Path(folder), int(count)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> CandidatePool:  # type: ignore[override]
        if not 0 <= index < self.count:
            raise IndexError(index)
        return read_batch_pool(_batch_path(self.folder, index))

    def __iter__(self) -> Iterator[CandidatePool]:
        return (self[i] for i in range(self.count))

    def disk_bytes(self) -> int:
        return sum(_batch_path(self.folder, i).stat().st_size for i in range(self.count))


def read_pass_json(folder: Path) -> dict[str, Any] | None:
    with contextlib.suppress(OSError, ValueError):
        return json.loads((Path(folder) / PASS_JSON).read_text(encoding="utf-8"))
    return None


def read_status(folder: Path) -> dict[str, Any]:
    """status.json; `state` is "interrupted" when it says running but nobody holds the lock, "new"
    when there is no folder."""
    folder = Path(folder)
    try:
        status = json.loads((folder / STATUS_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"state": "new", "done": 0, "total": None}
    if status.get("state") == "running" and lock_holder(folder) is None:
        status["state"] = "interrupted"
    return status


def write_status(folder: Path, **fields: Any) -> None:
    write_text_atomic(Path(folder) / STATUS_JSON, json.dumps({**fields, "heartbeat": time.time()}))


def request_stop(folder: Path) -> None:
    """Ask the pass writing `folder` to stop after the batch in hand."""
    (Path(folder) / STOP).touch()


def lock_holder(folder: Path) -> str | None:
    """The pid written in the pass's lock file while someone holds it, else None."""
    return lock_owner(Path(folder) / LOCK)


@contextlib.contextmanager
def pass_lock(folder: Path) -> Iterator[None]:
    """Hold the pass's lock for the block; PassBusy when another process writes this pass."""
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(exclusive_lock(Path(folder) / LOCK, str(os.getpid())))
        except LockHeld as exc:
            raise PassBusy(f"{folder}: another process (pid {exc.holder}) is writing this pass") from None
        yield


# ---------------------------------------------------------------- running and reading


def run_pass(model: FasterRCNN, records: Sequence[Any], root: Any, class_names: tuple[str, ...], folder: Path,
             identity: dict[str, Any], progress: Callable[[int, int, float | None], None] | None = None,
             should_stop: Callable[[], bool] | None = None) -> TrailSet | None:
    """Run (or resume) the pass into `folder`: batches already written are kept, the others run in
    order and each is written when done. Returns the whole pass (`load_pass`), or None when it was
    stopped (STOP file or `should_stop()`) before its end. progress(done, total, seconds_left).

    PassBusy when another process writes this pass; ValueError when `folder` holds another pass.
    """
    folder = Path(folder)
    batch_size, top_n = int(identity["batch_size"]), int(identity["pool_top_n"])
    folder.mkdir(parents=True, exist_ok=True)
    with pass_lock(folder):
        existing = read_pass_json(folder)
        if existing is not None and existing.get("identity") != json.loads(json.dumps(identity, default=str)):
            raise ValueError(f"{folder}: holds another pass (its pass.json differs)")
        if existing is None:
            write_text_atomic(folder / PASS_JSON, json.dumps({
                "identity": identity, "class_names": list(class_names), "images": len(records),
                "files": [r.file for r in records], "created": time.time()}, default=str, indent=1))
        (folder / STOP).unlink(missing_ok=True)
        total = len(records)
        batches = -(-total // batch_size)
        done_batches = set(_done_batches(folder))
        first = next((b for b in range(batches) if b not in done_batches), batches)
        done = min(total, first * batch_size)
        state: dict[str, Any] = {"state": "running", "done": done, "total": total, "pid": os.getpid(), "error": None}
        write_status(folder, **state, seconds=0.0, eta_s=None)
        start, run_here = time.perf_counter(), 0
        try:
            for batch in trail_batches(model, records, root, batch_size, True, top_n, first_batch=first):
                write_batch(folder, batch.index, batch.trails, batch.pool)
                run_here += len(batch.trails)
                done = min(total, (batch.index + 1) * batch_size)
                elapsed = time.perf_counter() - start
                eta = elapsed / run_here * (total - done)
                write_status(folder, **{**state, "done": done}, seconds=elapsed, eta_s=eta)
                if progress is not None:
                    progress(done, total, eta)
                if done < total and ((folder / STOP).exists() or (should_stop is not None and should_stop())):
                    write_status(folder, **{**state, "state": "stopped", "done": done}, seconds=elapsed, eta_s=None)
                    return None
        except KeyboardInterrupt:
            write_status(folder, **{**state, "state": "stopped", "done": done}, seconds=time.perf_counter() - start,
                         eta_s=None)
            raise
        except BaseException as exc:
            write_status(folder, **{**state, "state": "failed", "done": done, "error": str(exc)},
                         seconds=time.perf_counter() - start, eta_s=None)
            raise
        write_status(folder, **{**state, "state": "done", "done": total}, seconds=time.perf_counter() - start, eta_s=0.0)
    return load_pass(folder)


def load_pass(folder: Path) -> TrailSet:
    """A finished pass: every trail in memory, the candidate pools read from disk when used."""
    folder = Path(folder)
    info = read_pass_json(folder)
    if info is None:
        raise ValueError(f"{folder}: not a diagnosis pass (no {PASS_JSON})")
    identity = info["identity"]
    batches = -(-int(info["images"]) // int(identity["batch_size"]))
    if len(_done_batches(folder)) < batches:
        raise ValueError(f"{folder}: the pass is not finished ({len(_done_batches(folder))} of {batches} batches)")
    trails = [t for b in range(batches) for t in read_batch_trails(_batch_path(folder, b))]
    status = read_status(folder)
    return TrailSet(tuple(trails), tuple(info["class_names"]), float(identity["box"][0]),
                    ProposalSettings(**identity["settings"]), PoolFiles(folder, batches), float(status.get("seconds", 0.0)))
