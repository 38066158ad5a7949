"""The one dataset record every format loads into, and the problems found while loading.

Boxes are absolute [x1, y1, x2, y2] pixels in the original image frame (after EXIF orientation),
pixel edges: a box covering columns 10..19 has x1 = 10, x2 = 20. Labels are 1..K; 0 is kept for
background, so label id = index into `class_names` + 1 (torchvision's convention).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

Box = tuple[float, float, float, float]

def class_name(class_names: Sequence[str], label_id: int) -> str:
    """Name of a 1-based label id (0 is background); an id outside `class_names` is 'class N'.

    The one label-id -> name lookup: every table, figure and export uses it.
    """
    if 1 <= label_id <= len(class_names):
        return class_names[label_id - 1]
    return "background" if label_id == 0 else f"class {label_id}"


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


def relabel_by_name(records: Sequence[ImageRecord], names: Sequence[str], target: Sequence[str],
                    label: str = "dataset", target_label: str = "the target classes",
                    ) -> tuple[list[ImageRecord], tuple[str, ...]]:
    """Labels of `records` (ids into `names`) re-numbered into `target`'s ids, classes matched by name.

    The one relabelling policy (evaluation and a training run's separate validation set): boxes of a
    class `target` lacks are left out and the class is named in the second return value; when no
    class is shared at all, ValueError (nothing could be measured). Images keep their place, an
    image whose boxes are all left out stays as a background image.
    """
    target = list(target)
    lut = {i + 1: target.index(n) + 1 for i, n in enumerate(names) if n in target}
    missing = tuple(n for n in names if n not in target)
    if names and not lut:
        raise ValueError(f"{label}: none of its classes ({', '.join(list(names)[:8])}) are among "
                         f"{target_label} ({', '.join(target[:8])})")
    out = [ImageRecord(r.file, r.width, r.height, tuple(b for b, lab in zip(r.boxes, r.labels) if lab in lut),
                       tuple(lut[lab] for lab in r.labels if lab in lut), r.image_id) for r in records]
    return out, missing


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
class IgnoredFile:
    """An annotation file the loader read and did not use, and why (another task, images only)."""

    file: str  # posix path relative to the dataset root
    reason: str

    def to_dict(self) -> dict:
        return {"file": self.file, "reason": self.reason}


VOC_CONVENTIONS = ("one-based", "zero-based")


@dataclass(frozen=True)
class Parsed:
    """What a format's loader returns: records and problems, plus how it read the files."""

    class_names: tuple[str, ...]
    records: list[ImageRecord]
    problems: list[Problem]
    splits: dict[str, tuple[int, ...]] | None = None
    ignored_files: tuple[IgnoredFile, ...] = ()
    notes: tuple[str, ...] = ()  # facts about the reading a user should know (one line each)
    voc_coordinates: tuple[str, str] | None = None  # VOC: (convention, why), convention in VOC_CONVENTIONS


@dataclass(frozen=True)
class LoadedDataset:
    """A parsed dataset: records in the one record type, the problems found, the splits it came with."""

    root: Path  # the folder `ImageRecord.file` is relative to
    format: str  # "coco" | "voc" | "yolo"
    class_names: tuple[str, ...]  # label id = index + 1
    records: tuple[ImageRecord, ...]
    problems: tuple[Problem, ...] = ()
    splits: dict[str, tuple[int, ...]] | None = field(default=None)  # split name -> record indices
    ignored_files: tuple[IgnoredFile, ...] = ()  # annotation files read and not used, with why
    notes: tuple[str, ...] = ()  # how the files were read (negatives found, conventions chosen)
    voc_coordinates: tuple[str, str] | None = None  # VOC only: (one-based | zero-based, why)

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
        """The `validate --json` report: format, counts, classes, problems, usable."""
        return {
            "format": self.format,
            "images": len({r.file for r in self.records}),
            "boxes": self.num_boxes,
            "empty_images": self.empty_images,
            "classes": list(self.class_names),
            "problems": [p.to_dict() for p in self.problems],
            "usable": self.usable,
            "splits": {k: len(v) for k, v in (self.splits or {}).items()},
            "ignored_files": [f.to_dict() for f in self.ignored_files],
            "notes": list(self.notes),
            "voc_coordinates": ({"convention": self.voc_coordinates[0], "reason": self.voc_coordinates[1]}
                                if self.voc_coordinates else None),
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


def extras_to_dict(dataset: LoadedDataset) -> dict:
    """The reading facts of a dataset (ignored files, notes, VOC convention) as plain JSON."""
    return {"ignored_files": [f.to_dict() for f in dataset.ignored_files], "notes": list(dataset.notes),
            "voc_coordinates": list(dataset.voc_coordinates) if dataset.voc_coordinates else None}


def extras_from_dict(d: dict) -> dict:
    """LoadedDataset keyword arguments from `extras_to_dict` (missing keys: stored before they existed)."""
    vc = d.get("voc_coordinates")
    return {"ignored_files": tuple(IgnoredFile(f["file"], f["reason"]) for f in d.get("ignored_files") or ()),
            "notes": tuple(d.get("notes") or ()), "voc_coordinates": (str(vc[0]), str(vc[1])) if vc else None}


def problem_from_dict(d: dict) -> Problem:
    return Problem(d["severity"], d.get("file"), d.get("line"), d.get("id"), d["message"], d.get("action", ""))
