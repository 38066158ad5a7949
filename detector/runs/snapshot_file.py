"""The RPN snapshot file, `snapshots/epoch_NNN.npz`: the one place that writes and reads its keys.

One `.npz` per epoch (0 = before training), numpy arrays plus a JSON `meta` string, never pickled.
Image i's arrays are `img{i}_gt_boxes`, `img{i}_gt_labels`, `img{i}_objectness_{k}` (FPN level k),
`img{i}_proposals`, `img{i}_proposal_scores`, `img{i}_boxes`, `img{i}_scores`, `img{i}_labels`;
meta holds epoch, class_names, level_names and per image {file, width, height, resized, padded,
cells}, plus whatever the writer adds (`map_side`). `detector.snapshots` builds an `RpnSnapshot`.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from detector.atomic_file import atomic_path
from detector.frames import CellPlacement
from detector.runs.folder import SNAPSHOTS, RunError, finite, json_default


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
    resized: tuple[int, int] | None = None  # (width, height) of the model's resized input, when stored
    padded: tuple[int, int] | None = None  # (width, height) of the padded batch, when stored

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
    """The RPN on a few fixed validation images at the end of `epoch`; `meta` is the stored JSON
    (on writing: extra fields to store, such as `map_side`)."""

    epoch: int
    class_names: tuple[str, ...]
    images: tuple[SnapshotImage, ...]
    meta: dict[str, Any] = field(default_factory=dict)


def snapshot_path(run_dir: Path, epoch: int) -> Path:
    return Path(run_dir) / SNAPSHOTS / f"epoch_{int(epoch):03d}.npz"


def list_snapshots(run_dir: Path) -> list[int]:
    """Epochs that have an RPN snapshot (0 = before training), sorted."""
    folder = Path(run_dir) / SNAPSHOTS
    epochs = []
    for p in folder.glob("epoch_*.npz") if folder.is_dir() else []:
        with contextlib.suppress(ValueError):
            epochs.append(int(p.stem.split("_", 1)[1]))
    return sorted(epochs)


def write_snapshot(run_dir: Path, snapshot: RpnSnapshot) -> Path:
    """Write one epoch's RPN snapshot atomically to `snapshots/epoch_NNN.npz` (arrays + JSON meta)."""
    path = snapshot_path(run_dir, snapshot.epoch)
    payload: dict[str, np.ndarray] = {}
    for i, image in enumerate(snapshot.images):
        payload.update({f"img{i}_{name}": np.asarray(getattr(image, name)) for name in _ARRAYS})
        payload.update({f"img{i}_objectness_{k}": np.asarray(o) for k, o in enumerate(image.objectness)})
    level_names = snapshot.images[0].level_names if snapshot.images else snapshot.meta.get("level_names", ())
    meta = {**snapshot.meta, "epoch": snapshot.epoch, "class_names": list(snapshot.class_names),
            "level_names": list(level_names), "images": [_image_meta(image) for image in snapshot.images]}
    payload["meta"] = np.array(json.dumps(finite(meta), default=json_default))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **payload)
    return path


def read_snapshot(run_dir: Path, epoch: int) -> RpnSnapshot:
    """Read `snapshots/epoch_NNN.npz` (allow_pickle=False); RunError when absent or unreadable."""
    path = snapshot_path(run_dir, epoch)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise RunError(f"{path}: no readable snapshot ({exc})") from None
    meta = json.loads(str(arrays.pop("meta")))
    levels = tuple(meta.get("level_names", []))
    images = []
    for i, info in enumerate(meta.get("images", [])):
        images.append(SnapshotImage(
            file=info["file"], width=int(info["width"]), height=int(info["height"]),
            objectness=tuple(arrays[f"img{i}_objectness_{k}"] for k in range(len(levels))),
            level_names=levels, cells=_cells(info),
            resized=_size(info.get("resized")), padded=_size(info.get("padded")),
            **{name: arrays[f"img{i}_{name}"] for name in _ARRAYS},
        ))
    return RpnSnapshot(int(meta.get("epoch", epoch)), tuple(meta.get("class_names", [])), tuple(images), meta)


_ARRAYS = ("gt_boxes", "gt_labels", "proposals", "proposal_scores", "boxes", "scores", "labels")


def _image_meta(image: SnapshotImage) -> dict[str, Any]:
    info: dict[str, Any] = {"file": image.file, "width": int(image.width), "height": int(image.height)}
    if image.resized is not None:
        info["resized"] = list(image.resized)
    if image.padded is not None:
        info["padded"] = list(image.padded)
    info["cells"] = [c.to_list() for c in image.cells]
    return info


def _size(stored: Any) -> tuple[int, int] | None:
    return (int(stored[0]), int(stored[1])) if isinstance(stored, list) and len(stored) == 2 else None


def _cells(info: dict[str, Any]) -> tuple[CellPlacement, ...]:
    stored = info.get("cells")
    if not isinstance(stored, list):
        return ()
    return tuple(CellPlacement(*(float(v) for v in c)) for c in stored)
