"""Stored datasets: the upload kept as uploaded, the parsed records and a train/val split, by name.

Workspace layout (README, Workspace): `uploads/NAME.zip` (or `uploads/NAME/` for a folder upload), never
modified; `datasets/NAME/dataset.json` (format, classes, records, problems, splits, train/val
indices, seed, where the files are) and `datasets/NAME/files/` (the unpacked archive). Everything
is plain JSON, so a stored dataset opens without re-parsing and survives restarts.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Union

import numpy as np

from detector.atomic_file import write_text_atomic
from detector.data.archives import ArchiveLimits, check_space, check_zip, extract_zip, is_zip, open_zip, write_files
from detector.data.loader import load_dataset, load_folder
from detector.data.records import (
    DatasetError,
    LoadedDataset,
    extras_from_dict,
    extras_to_dict,
    problem_from_dict,
    record_from_dict,
    record_to_dict,
)
from detector.workspace import datasets_dir, is_inside, uploads_dir, workspace_root

STORE_VERSION = 1
VAL_ALIASES = ("val", "test")

Upload = Union[bytes, str, Path, Mapping[str, bytes]]


@dataclass(frozen=True)
class StoredDatasetInfo:
    """One line of the dataset list."""

    name: str
    format: str
    images: int
    boxes: int
    classes: tuple[str, ...]
    usable: bool
    created: float  # unix time


@dataclass(frozen=True)
class StoredDataset:
    name: str
    root: Path  # the folder the records' files are relative to
    dataset: LoadedDataset
    train_indices: tuple[int, ...]
    val_indices: tuple[int, ...]


def split_indices(dataset: LoadedDataset, seed: int = 0, val_fraction: float = 0.2) -> tuple[tuple[int, ...], tuple[int, ...], str]:
    """(train, val, source): the dataset's own train/val (or train/test) splits when it has both,
    else a seeded random split with at least one validation image when there are two or more."""
    splits = dataset.splits or {}
    if splits.get("train"):
        for name in VAL_ALIASES:
            if splits.get(name):
                return tuple(splits["train"]), tuple(splits[name]), f"the dataset's own {name} split"
    n = len(dataset.records)
    order = np.random.default_rng(seed).permutation(n)
    n_val = 0 if n < 2 else min(n - 1, max(1, int(round(n * val_fraction))))
    val = tuple(sorted(int(i) for i in order[:n_val]))
    train = tuple(sorted(int(i) for i in order[n_val:]))
    return train, val, f"random split, seed {seed}, {val_fraction:.0%} validation"


def _slug(hint: str) -> str:
    stem = Path(str(hint)).name
    for ext in (".zip",):
        if stem.lower().endswith(ext):
            stem = stem[: -len(ext)]
    slug = re.sub(r"[^a-zA-Z0-9_-]+", "-", stem).strip("-_.").lower()[:60]
    return slug or "dataset"


def _unique_name(hint: str) -> str:
    base = _slug(hint)
    name, n = base, 2
    while (datasets_dir() / name).exists() or any(uploads_dir().glob(f"{name}.zip")) or (uploads_dir() / name).exists():
        name, n = f"{base}-{n}", n + 1
    return name


def _write_json(path: Path, doc: dict) -> None:
    write_text_atomic(path, json.dumps(doc))


def store_upload(
    name_hint: str, data: Upload, format: str = "auto", seed: int = 0, val_fraction: float = 0.2,
    voc_coordinates: str = "auto", limits: ArchiveLimits | None = None,
) -> StoredDataset:
    """Keep an upload (zip bytes, a zip or folder path, or a folder upload {relative path: bytes}),
    parse it and store it under a new name. Raises DatasetRefused / DatasetError, leaving nothing.

    `limits`: what an archive may cost (size cap, compression ratio, free disk; detector.data.archives).
    """
    name = _unique_name(name_hint)
    ds_dir = datasets_dir() / name
    created: list[Path] = []
    try:
        if isinstance(data, Mapping):
            upload = write_files(data, uploads_dir() / name, label=str(name_hint), limits=limits)
            created.append(upload)
            root = upload
        elif isinstance(data, (bytes, bytearray)) or (isinstance(data, (str, Path)) and Path(data).is_file()):
            label = Path(str(name_hint)).name
            if not is_zip(data):
                raise DatasetError(f"{label}: not a zip archive")
            with open_zip(data, label) as zf:  # refuse before keeping anything
                unpacked = sum(info.file_size for info, _ in check_zip(zf, label, limits))
            size = len(data) if isinstance(data, (bytes, bytearray)) else Path(data).stat().st_size
            check_space(size + unpacked, uploads_dir(), label, limits)  # the kept archive and its files
            upload = uploads_dir() / f"{name}.zip"
            if isinstance(data, (bytes, bytearray)):
                upload.write_bytes(data)
            else:
                shutil.copyfile(data, upload)
            created.append(upload)
            created.append(ds_dir)  # before extracting: extract_zip creates it, and a failure must remove it
            root = extract_zip(upload, ds_dir / "files", label=label, limits=limits)
        elif isinstance(data, (str, Path)) and Path(data).is_dir():
            check_space(sum(f.stat().st_size for f in Path(data).rglob("*") if f.is_file()), uploads_dir(),
                        Path(data).name, limits)
            upload = uploads_dir() / name
            shutil.copytree(data, upload, symlinks=False)
            created.append(upload)
            root = upload
        else:
            raise DatasetError(f"{name_hint}: not a zip archive or a folder")
        dataset = load_folder(root, format, voc_coordinates)
        if ds_dir not in created:
            created.append(ds_dir)
        _write_stored(name, dataset, {"upload": upload.relative_to(workspace_root()).as_posix()}, seed, val_fraction)
    except BaseException:
        for path in reversed(created):
            if is_inside(path, workspace_root()):
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        raise
    return open_dataset(name)


def _root_text(root: Path) -> str:
    """A root as stored: relative to the workspace when inside it, else absolute (a registered path)."""
    root = Path(root).resolve()
    return root.relative_to(workspace_root()).as_posix() if is_inside(root, workspace_root()) else str(root)


def _write_stored(name: str, dataset: LoadedDataset, source: dict, seed: int, val_fraction: float,
                  created: float | None = None) -> None:
    """datasets/NAME/dataset.json and summary.json for a parsed dataset (atomic writes)."""
    ds_dir = datasets_dir() / name
    ds_dir.mkdir(parents=True, exist_ok=True)
    train, val, split_source = split_indices(dataset, seed, val_fraction)
    doc = {
        "version": STORE_VERSION,
        "name": name,
        "created": time.time() if created is None else created,
        **source,
        "root": _root_text(dataset.root),
        "format": dataset.format,
        "class_names": list(dataset.class_names),
        "records": [record_to_dict(r) for r in dataset.records],
        "problems": [p.to_dict() for p in dataset.problems],
        "splits": {k: list(v) for k, v in dataset.splits.items()} if dataset.splits else None,
        **extras_to_dict(dataset),
        "split": {"seed": seed, "val_fraction": val_fraction, "source": split_source, "train": list(train),
                  "val": list(val)},
    }
    _write_json(ds_dir / "dataset.json", doc)
    report = dataset.report()
    _write_json(ds_dir / "summary.json", {  # what list_datasets reads: small, fast
        "name": name, "format": dataset.format, "images": len(dataset.records), "boxes": report["boxes"],
        "classes": report["classes"], "usable": report["usable"], "created": doc["created"]})


def register_path(text: str, format: str = "auto", seed: int = 0, val_fraction: float = 0.2,
                  voc_coordinates: str = "auto", limits: ArchiveLimits | None = None,
                  roots: tuple[Path, ...] | None = None) -> StoredDataset:
    """Store a dataset that stays where it is: a folder or zip on this machine under an allowed root
    (detector.data.roots). A folder is read in place, never copied; a zip is unpacked once into
    datasets/NAME/files/ (images must be files to be read), the archive itself is not copied.
    Raises DatasetRefused (outside the roots, hostile, no room) or DatasetError, leaving nothing."""
    from detector.data.roots import allowed_path

    path = allowed_path(text, roots)
    name = _unique_name(path.name)
    ds_dir = datasets_dir() / name
    try:
        if path.is_dir():
            root = path
        elif is_zip(path):
            root = extract_zip(path, ds_dir / "files", label=path.name, limits=limits)
        else:
            raise DatasetError(f"{path.name}: not a folder or a zip archive")
        dataset = load_folder(root, format, voc_coordinates)
        _write_stored(name, dataset, {"upload": None, "registered": str(path)}, seed, val_fraction)
    except BaseException:
        shutil.rmtree(ds_dir, ignore_errors=True)
        raise
    return open_dataset(name)


def reread(name: str, voc_coordinates: str = "auto") -> StoredDataset:
    """Parse a stored dataset's files again (e.g. with the VOC convention forced); same name, split seed."""
    doc = _read_doc(name)
    root = _stored_root(doc)
    dataset = load_folder(root, doc["format"], voc_coordinates)
    _write_stored(name, dataset, {k: doc[k] for k in ("upload", "registered") if k in doc},
                  doc["split"]["seed"], doc["split"]["val_fraction"], created=doc.get("created"))
    return open_dataset(name)


def _stored_root(doc: dict) -> Path:
    """The folder a stored dataset's records are relative to; a registered one must still be allowed."""
    if doc.get("registered"):
        from detector.data.roots import allowed_path

        allowed_path(doc["registered"])  # the roots or a link may have changed since
    return (workspace_root() / doc["root"]).resolve()


def _read_doc(name: str) -> dict:
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name or ""):
        raise DatasetError(f"{name!r} is not a stored dataset name")
    path = datasets_dir() / name / "dataset.json"
    if not path.is_file():
        raise DatasetError(f"no stored dataset named {name!r}")
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: unreadable ({exc})") from None


def open_dataset(name: str) -> StoredDataset:
    """A stored dataset by name, from its JSON (no re-parsing)."""
    doc = _read_doc(name)
    root = _stored_root(doc)
    splits = {k: tuple(v) for k, v in doc["splits"].items()} if doc.get("splits") else None
    dataset = LoadedDataset(
        root=root, format=doc["format"], class_names=tuple(doc["class_names"]),
        records=tuple(record_from_dict(r) for r in doc["records"]),
        problems=tuple(problem_from_dict(p) for p in doc["problems"]), splits=splits, **extras_from_dict(doc),
    )
    return StoredDataset(doc["name"], root, dataset, tuple(doc["split"]["train"]), tuple(doc["split"]["val"]))


def list_datasets() -> list[StoredDatasetInfo]:
    """Stored datasets, newest first (folders without a readable dataset.json are skipped)."""
    out = []
    for folder in datasets_dir().iterdir():
        if folder.name.startswith(".") or not (folder / "dataset.json").is_file():
            continue
        try:
            if (folder / "summary.json").is_file():
                s = json.loads((folder / "summary.json").read_text())
                info = StoredDatasetInfo(s["name"], s["format"], int(s["images"]), int(s["boxes"]),
                                         tuple(s["classes"]), bool(s["usable"]), float(s["created"]))
            else:
                doc = json.loads((folder / "dataset.json").read_text())
                records = doc["records"]
                info = StoredDatasetInfo(
                    name=doc["name"], format=doc["format"], images=len(records),
                    boxes=sum(len(r["boxes"]) for r in records), classes=tuple(doc["class_names"]),
                    usable=not any(p["severity"] == "error" for p in doc["problems"]),
                    created=float(doc.get("created", 0)),
                )
            out.append(info)
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return sorted(out, key=lambda i: i.created, reverse=True)


def resolve_dataset(spec: str | Path, seed: int = 0, val_fraction: float = 0.2) -> tuple[LoadedDataset, tuple[int, ...], tuple[int, ...]]:
    """`--data`: a folder or zip path, or a stored dataset name -> (dataset, train indices, val indices)."""
    path = Path(spec)
    if path.exists():
        dataset = load_dataset(path)
        train, val, _ = split_indices(dataset, seed, val_fraction)
        return dataset, train, val
    try:
        stored = open_dataset(str(spec))
    except DatasetError:
        raise DatasetError(f"{spec}: no such file or folder, and no stored dataset by that name") from None
    return stored.dataset, stored.train_indices, stored.val_indices
