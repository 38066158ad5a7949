"""One entry point for every layout: detect the format, parse, validate, return a LoadedDataset."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from detector.data.records import VOC_CONVENTIONS, DatasetError, LoadedDataset, Problem
from detector.data.tree import FileTree
from detector.data.validation import summary_problems
from detector.wording import counted

if TYPE_CHECKING:
    from detector.data.archives import ArchiveLimits

FORMATS = ("coco", "voc", "yolo")


def detect_format(tree: FileTree) -> str:
    """'coco', 'voc' or 'yolo' from the files present (COCO JSON first, then VOC XML, then YOLO)."""
    from detector.data import coco, yolo

    if coco.find_annotation_files(tree):
        return "coco"
    from detector.data import voc  # only here: defusedxml is needed for XML alone (GPU machines lack it)

    if voc.find_annotation_files(tree):
        return "voc"
    if yolo.looks_like_yolo(tree):
        return "yolo"
    raise DatasetError(
        f"{tree.root.name}: no COCO JSON, Pascal VOC XML or YOLO labels found "
        f"({counted(len(tree.files), 'file')}, {counted(len(tree.images()), 'image')})")


def _unwrap(root: Path) -> Path:
    """Descend through folders that hold nothing but one folder (`export/` wrapping everything)."""
    for _ in range(8):
        entries = [p for p in root.iterdir() if not p.name.startswith(".") and p.name != "__MACOSX"]
        if len(entries) != 1 or not entries[0].is_dir():
            break
        root = entries[0]
    return root


def load_folder(root: Path, format: str = "auto", voc_coordinates: str = "auto") -> LoadedDataset:
    """Parse a dataset folder in any supported layout; problems are reported, never raised.

    voc_coordinates: "auto" (decided from the files, see detector.data.voc), "one-based" or
    "zero-based" (forced); only Pascal VOC uses it.
    """
    import importlib

    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder")
    root = _unwrap(root)
    tree = FileTree(root)
    fmt = detect_format(tree) if format == "auto" else format
    if fmt not in FORMATS:
        raise DatasetError(f"unknown format {format!r}: use auto, coco, voc or yolo")
    if voc_coordinates not in ("auto",) + VOC_CONVENTIONS:
        raise DatasetError(f"unknown VOC coordinate convention {voc_coordinates!r}: use auto, one-based or zero-based")
    loader = getattr(importlib.import_module(f"detector.data.{fmt}"), f"load_{fmt}")  # coco, voc or yolo
    parsed = loader(tree, voc_coordinates=voc_coordinates) if fmt == "voc" else loader(tree)
    problems = list(parsed.problems) + summary_problems(parsed.class_names, parsed.records)
    problems += [Problem("warning", rel, None, None, "a symbolic link leading outside the dataset folder",
                         "not followed, file left out") for rel in tree.escaping_links]
    return LoadedDataset(
        root=root.resolve(), format=fmt, class_names=tuple(parsed.class_names), records=tuple(parsed.records),
        problems=tuple(problems), splits=parsed.splits or None, ignored_files=parsed.ignored_files,
        notes=parsed.notes, voc_coordinates=parsed.voc_coordinates,
    )


def load_dataset(path: str | Path, format: str = "auto", voc_coordinates: str = "auto",
                 limits: "ArchiveLimits | None" = None) -> LoadedDataset:
    """A dataset folder or zip archive, parsed into records with every problem reported.

    A zip is checked member by member and unpacked into the workspace's bounded cache of unpacked
    archives (detector.data.unpack_cache), once per content; a hostile archive, or one that does
    not fit on the disk, raises DatasetRefused and leaves nothing behind.
    Raises DatasetError when the input cannot be opened at all.
    """
    from detector.data import unpack_cache
    from detector.data.archives import is_zip

    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    if path.is_dir():
        return load_folder(path, format, voc_coordinates)
    if not is_zip(path):
        raise DatasetError(f"{path.name}: not a folder or a zip archive")
    target = unpack_cache.unpacked(path, limits)
    try:
        return load_folder(target, format, voc_coordinates)
    except DatasetError:  # no dataset in it, or hostile content inside a well-formed archive: leave nothing
        unpack_cache.discard(target)
        raise
