"""Checks shared by every format: numbers, boxes against their image, and the fixes training applies.

A box problem is reported once, at load time, with the action that `fix_box` will take; training
applies exactly that (`prepare_for_training`), so the report and the run agree.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

from detector.data.records import Box, ImageRecord, LoadedDataset, Problem

# A box narrower or lower than this (pixels, after clipping to the image) is degenerate:
# torchvision asserts x2 > x1 and y2 > y1, and a box that thin carries no signal.
MIN_BOX_SIDE = 0.01


def parse_number(value: Any) -> float | None:
    """A finite float, or None for text that is not a number, NaN or infinity."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def fix_box(box: Box, width: int, height: int) -> Box | None:
    """Clip an absolute xyxy box to the image; None when nothing of it is left (degenerate)."""
    x1, y1, x2, y2 = box
    if x2 - x1 < MIN_BOX_SIDE or y2 - y1 < MIN_BOX_SIDE:
        return None
    clipped = (min(max(x1, 0.0), width), min(max(y1, 0.0), height), min(max(x2, 0.0), width), min(max(y2, 0.0), height))
    if clipped[2] - clipped[0] < MIN_BOX_SIDE or clipped[3] - clipped[1] < MIN_BOX_SIDE:
        return None
    return clipped


# A box that crosses the border by less than this is rounding (YOLO's 6-decimal normalised
# centres, COCO exports in float32): it is clipped without a warning.
ROUNDING_TOLERANCE_PX = 0.01


def _fmt(box: Box) -> str:
    return "[" + ", ".join(f"{v:g}" for v in box) + "]"


def box_problem(
    box: Box, width: int, height: int, *, file: str | None, line: int | None = None, id: int | str | None = None
) -> Problem | None:
    """The warning for a box that training must fix (clip or leave out), or None for a good box."""
    x1, y1, x2, y2 = box
    if x2 - x1 < MIN_BOX_SIDE or y2 - y1 < MIN_BOX_SIDE:
        return Problem(
            "warning", file, line, id,
            f"box {_fmt(box)} has zero or negative size (width {x2 - x1:g}, height {y2 - y1:g})",
            "box left out",
        )
    fixed = fix_box(box, width, height)
    if fixed is None:
        return Problem(
            "warning", file, line, id, f"box {_fmt(box)} lies outside the {width}x{height} image", "box left out"
        )
    if max(abs(a - b) for a, b in zip(fixed, box)) > ROUNDING_TOLERANCE_PX:
        return Problem(
            "warning", file, line, id,
            f"box {_fmt(box)} extends outside the {width}x{height} image",
            f"box clipped to the image: {_fmt(fixed)}",
        )
    return None


def summary_problems(class_names: tuple[str, ...], records: list[ImageRecord] | tuple[ImageRecord, ...]) -> list[Problem]:
    """Dataset-level errors: what makes training impossible."""
    problems: list[Problem] = []
    if not records:
        problems.append(Problem("error", None, None, None, "no usable images found", "cannot train"))
    elif not any(r.boxes for r in records):
        problems.append(Problem("error", None, None, None, "no boxes in any image: nothing to learn", "cannot train"))
    if not class_names:
        problems.append(Problem("error", None, None, None, "no class names found", "cannot train"))
    return problems


def decode_problems(
    dataset: LoadedDataset, progress: Callable[[int, int], None] | None = None
) -> list[Problem]:
    """Decode every image fully (slow): corrupt or truncated data that the header did not show."""
    from detector.images import ImageError, load_image

    problems = []
    for i, record in enumerate(dataset.records):
        try:
            load_image(Path(dataset.root) / record.file, name=record.file).close()
        except ImageError as exc:
            problems.append(Problem("warning", record.file, None, record.image_id, exc.problem, "image left out"))
        if progress:
            progress(i + 1, len(dataset.records))
    return problems


def prepare_for_training(
    dataset: LoadedDataset, decode: bool = False
) -> tuple[list[ImageRecord], list[dict]]:
    """Records with the report's fixes applied, and the fixes as plain dicts for the run's record.

    Boxes are clipped to the image, degenerate boxes left out, and (with `decode`) images that fail
    to decode left out. Images without boxes stay, as negatives. The fixes are the load-time problems
    (each says its action, which is what happens here) plus any decoding failures.
    """
    fixes: list[dict] = [dict(p.to_dict(), stage="load") for p in dataset.problems]
    bad_files: set[str] = set()
    if decode:
        for p in decode_problems(dataset):
            bad_files.add(str(p.file))
            fixes.append(dict(p.to_dict(), stage="decode"))
    records: list[ImageRecord] = []
    for record in dataset.records:
        if record.file in bad_files:
            continue
        boxes, labels = [], []
        for box, label in zip(record.boxes, record.labels):
            fixed = fix_box(box, record.width, record.height)  # the action box_problem reported
            if fixed is not None:
                boxes.append(fixed)
                labels.append(label)
        records.append(
            ImageRecord(record.file, record.width, record.height, tuple(boxes), tuple(labels), record.image_id)
        )
    return records, fixes


def problems_by_record(dataset: LoadedDataset) -> dict[int, list[Problem]]:
    """Record index -> the problems about that image (matched by image file, label file or image id)."""
    by_file: dict[str, int] = {}
    for i, r in enumerate(dataset.records):
        by_file[r.file] = i
        stem = r.file.rsplit(".", 1)[0]
        by_file.setdefault(stem + ".txt", i)  # YOLO label beside the image
        parts = stem.split("/")
        for j in range(len(parts) - 2, -1, -1):
            if parts[j].lower() == "images":  # YOLO label under labels/
                by_file.setdefault("/".join(parts[:j] + ["labels"] + parts[j + 1:]) + ".txt", i)
                break
    by_id = {r.image_id: i for i, r in enumerate(dataset.records) if isinstance(r.image_id, str)}
    out: dict[int, list[Problem]] = {}
    for p in dataset.problems:
        i = by_file.get(p.file) if p.file else None
        if i is None and p.file and p.file.lower().endswith(".xml"):
            i = by_id.get(p.id)  # type: ignore[arg-type]
        if i is not None:
            out.setdefault(i, []).append(p)
    return out


def action_kind(problem: Problem) -> str:
    """A problem's action without its details ("box clipped to the image: [..]" -> "box clipped to the image")."""
    return kind_of_action(problem.action)


def kind_of_action(action: str) -> str:
    """An action's text without its details: the kind action_kind names."""
    return action.split(":")[0].strip()
