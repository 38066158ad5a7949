"""The one dataset record every format loads into, and the problems found while loading.

Boxes are absolute [x1, y1, x2, y2] pixels in the original image frame (after EXIF orientation),
pixel edges: a box covering columns 10..19 has x1 = 10, x2 = 20. Labels are 1..K; 0 is kept for
background, so label id = index into `class_names` + 1 (torchvision's convention).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Box = tuple[float, float, float, float]

# COCO's size buckets, by box area in pixels (original frame).
COCO_SMALL = 32 * 32
COCO_MEDIUM = 96 * 96


class DatasetError(ValueError):
    """The input cannot be opened as a dataset (no known layout, unreadable): `str()` is one line."""


class DatasetRefused(DatasetError):
    """Hostile or over-limit input (unsafe archive member, zip bomb): refused as a whole."""


@dataclass(frozen=True)
class ImageRecord:
    """One image and its ground truth, the same whatever format it came from."""

    file: str  # posix path relative to the dataset root
    width: int  # pixels, from the image header (after EXIF orientation)
    height: int
    boxes: tuple[Box, ...]  # absolute xyxy pixels, original frame, as annotated
    labels: tuple[int, ...]  # 1..K, 0 is background
    image_id: int | str  # the id the annotation file gives (COCO id, VOC/YOLO file stem)


@dataclass(frozen=True)
class Problem:
    """One thing wrong in the input, where it is, and what is done about it."""

    severity: Literal["error", "warning"]  # error: the dataset is not usable as it is
    file: str | None  # posix path relative to the dataset root
    line: int | None  # 1-based line in `file`, where the format has lines
    id: int | str | None  # image or annotation id, where the format has ids
    message: str
    action: str  # what loading/training does about it ("box left out", "box clipped to the image")

    def to_dict(self) -> dict:
        return {
            "severity": self.severity,
            "file": self.file,
            "line": self.line,
            "id": self.id,
            "message": self.message,
            "action": self.action,
        }


@dataclass(frozen=True)
class LoadedDataset:
    """A parsed dataset: records in the one record type, the problems found, the splits it came with."""

    root: Path  # the folder `ImageRecord.file` is relative to
    format: str  # "coco" | "voc" | "yolo"
    class_names: tuple[str, ...]  # label id = index + 1
    records: tuple[ImageRecord, ...]
    problems: tuple[Problem, ...] = ()
    splits: dict[str, tuple[int, ...]] | None = field(default=None)  # split name -> record indices

    @property
    def usable(self) -> bool:
        """True when no problem is an error (errors mean training cannot start)."""
        return not any(p.severity == "error" for p in self.problems)

    @property
    def num_boxes(self) -> int:
        return sum(len(r.boxes) for r in self.records)

    @property
    def empty_images(self) -> int:
        """Images without boxes: kept as negatives."""
        return sum(1 for r in self.records if not r.boxes)

    def report(self) -> dict:
        """The `validate --json` report (DESIGN): format, counts, classes, problems, usable."""
        return {
            "format": self.format,
            "images": len({r.file for r in self.records}),
            "boxes": self.num_boxes,
            "empty_images": self.empty_images,
            "classes": list(self.class_names),
            "problems": [p.to_dict() for p in self.problems],
            "usable": self.usable,
            "splits": {k: len(v) for k, v in (self.splits or {}).items()},
        }


def record_to_dict(record: ImageRecord) -> dict:
    return {
        "file": record.file,
        "width": record.width,
        "height": record.height,
        "boxes": [list(b) for b in record.boxes],
        "labels": list(record.labels),
        "image_id": record.image_id,
    }


def record_from_dict(d: dict) -> ImageRecord:
    return ImageRecord(
        file=str(d["file"]),
        width=int(d["width"]),
        height=int(d["height"]),
        boxes=tuple(tuple(float(v) for v in b) for b in d["boxes"]),  # type: ignore[misc]
        labels=tuple(int(v) for v in d["labels"]),
        image_id=d["image_id"],
    )


def problem_from_dict(d: dict) -> Problem:
    return Problem(d["severity"], d.get("file"), d.get("line"), d.get("id"), d["message"], d.get("action", ""))
