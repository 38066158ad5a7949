"""The unpacked-archive cache: a zip given by path (validate, `--data`, registration) is unpacked
once into `datasets/.unpacked/<content hash>/` and reused; the cache is bounded by total size,
least recently used first.

Each entry holds the unpacked files under `files/` and a `cache.json` with its size; its mtime
is the last use. Before a new archive is unpacked, entries are evicted (oldest use first) until the
new one fits under the cap (`DETECTOR_UNPACKED_CACHE_GB`, default 4 GiB); the entry being returned
is never evicted. An archive bigger than the cap alone is refused with a message saying so (register
its unpacked folder by path instead). A failed or refused unpack leaves nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

from detector.data.archives import ArchiveLimits, check_space, check_zip, extract_zip, human_bytes, open_zip
from detector.data.records import DatasetRefused

DEFAULT_CAP_BYTES = 4 * 1024**3


def cache_dir() -> Path:
    from detector.workspace import datasets_dir

    return datasets_dir() / ".unpacked"


def cap_bytes() -> int:
    """The cache's size cap: $DETECTOR_UNPACKED_CACHE_GB (GiB, may be fractional), else 4 GiB."""
    value = os.environ.get("DETECTOR_UNPACKED_CACHE_GB")
    try:
        return int(float(value) * 1024**3) if value else DEFAULT_CAP_BYTES
    except ValueError:
        return DEFAULT_CAP_BYTES


def content_key(archive: Path) -> str:
    digest = hashlib.sha256()
    with open(archive, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def _entry_size(entry: Path) -> int:
    try:
        return int(json.loads((entry / "cache.json").read_text())["bytes"])
    except (OSError, ValueError, KeyError, TypeError):
        return sum(p.stat().st_size for p in entry.rglob("*") if p.is_file())


def entries() -> list[tuple[Path, int, float]]:
    """(entry, bytes, last use) for every complete entry, least recently used first."""
    out = []
    folder = cache_dir()
    for entry in folder.iterdir() if folder.is_dir() else ():
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        out.append((entry, _entry_size(entry), entry.stat().st_mtime))
    return sorted(out, key=lambda e: e[2])


def evict_for(needed: int, cap: int, keep: Path | None = None) -> list[Path]:
    """Remove least recently used entries until `needed` more bytes fit under `cap`; the removed."""
    current = entries()
    total = sum(size for _, size, _ in current)
    removed = []
    for entry, size, _ in current:
        if total + needed <= cap:
            break
        if keep is not None and entry == keep:
            continue
        shutil.rmtree(entry, ignore_errors=True)
        total -= size
        removed.append(entry)
    return removed


def unpacked(archive: Path, limits: ArchiveLimits | None = None, cap: int | None = None) -> Path:
    """The folder holding `archive`'s files, unpacked now if it is not cached (DatasetRefused /
    DatasetError as extract_zip raises them, leaving nothing)."""
    archive = Path(archive)
    cap = cap_bytes() if cap is None else cap
    entry = cache_dir() / content_key(archive)
    files = entry / "files"
    if files.is_dir():
        os.utime(entry)  # a use: most recent now
        return files
    with open_zip(archive, archive.name) as zf:
        needed = sum(info.file_size for info, _ in check_zip(zf, archive.name, limits))
    if needed > cap:
        raise DatasetRefused(
            f"{archive.name}: unpacks to {human_bytes(needed)}, more than the unpacked-archive cache holds "
            f"({human_bytes(cap)}, DETECTOR_UNPACKED_CACHE_GB): unzip it and register the folder by path instead")
    evict_for(needed, cap, keep=entry)
    check_space(needed, entry, archive.name, limits)  # before anything is created
    entry.mkdir(parents=True, exist_ok=True)
    try:
        extract_zip(archive, files, label=archive.name, limits=limits)
    except BaseException:
        if files.is_dir():  # another process unpacked the same archive first: use its copy
            return files
        for folder in (entry, entry.parent):  # extract_zip removed its own temporary folder
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise
    (entry / "cache.json").write_text(json.dumps({"archive": archive.name, "bytes": needed, "unpacked": time.time()}))
    return files


def discard(folder: Path) -> None:
    """Remove the cache entry holding `folder` (its files failed to load as a dataset)."""
    folder = Path(folder)
    entry = folder.parent if folder.name == "files" else folder
    if entry.parent == cache_dir():
        shutil.rmtree(entry, ignore_errors=True)
