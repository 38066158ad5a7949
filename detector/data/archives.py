"""Safe archives: every member checked before anything is extracted; a refused archive leaves nothing.

Refused as a whole, from the central directory, before a byte is written: an absolute path, a drive
letter or a `..` component (zip-slip), a symbolic link, an encrypted member, more than
`max_members` members, and zip bombs by two rules: the size cap (more than `max_total_bytes`
uncompressed) and the compression-ratio rule (a member, or the whole archive, expanding more than
`max_ratio` times its compressed size; members under `ratio_floor_bytes` are exempt, small JSON
compresses well). Then the disk: the uncompressed total plus a margin must fit in the free space.
Sizes are counted while writing too, so a header that lies does not help (zipfile also stops at the
declared size and checks the CRC). Extraction goes into a fresh temporary folder inside the
destination's parent and is moved into place only when complete; on any failure it is removed.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Callable, Mapping, Union

from detector.data.records import DatasetError, DatasetRefused
from detector.workspace import is_inside

MAX_MEMBERS = 100_000
MAX_TOTAL_BYTES = 8 * 1024**3  # 8 GiB uncompressed
MAX_RATIO = 100.0  # uncompressed / compressed; JPEG/PNG store at ~1x, COCO JSON deflates 5-20x
RATIO_FLOOR_BYTES = 16 * 1024**2  # members below this are not held to the ratio
_CHUNK = 1 << 20

ArchiveSource = Union[str, Path, bytes, BinaryIO]


def free_bytes(folder: Path) -> int:
    """Free space on the file system holding `folder` (its nearest existing parent)."""
    folder = Path(folder)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


@dataclass(frozen=True)
class ArchiveLimits:
    """What an archive may cost. Defaults read the module constants when built (tests lower them)."""

    max_members: int = field(default_factory=lambda: MAX_MEMBERS)
    max_total_bytes: int = field(default_factory=lambda: MAX_TOTAL_BYTES)  # the size cap
    max_ratio: float = field(default_factory=lambda: MAX_RATIO)  # the compression-ratio rule
    ratio_floor_bytes: int = field(default_factory=lambda: RATIO_FLOOR_BYTES)
    free_space: Callable[[Path], int] = free_bytes  # the disk seam: bytes free where we write
    margin_bytes: int = 256 * 1024**2  # left free after unpacking, besides 5% of what is written


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB' (binary units, as `du -h` gives them)."""
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def check_space(needed: int, folder: Path, label: str, limits: ArchiveLimits | None = None) -> None:
    """DatasetRefused unless `needed` bytes plus the margin fit in the free space where `folder` is."""
    limits = limits or ArchiveLimits()
    want = needed + limits.margin_bytes + needed // 20
    free = limits.free_space(Path(folder))
    if want > free:
        raise DatasetRefused(
            f"{label}: needs {human_bytes(want)} of disk to unpack ({human_bytes(needed)} plus a margin), "
            f"only {human_bytes(free)} free in the workspace; archive refused")


def safe_member_name(name: str, archive: str = "archive") -> str:
    """The member's relative posix path, or DatasetRefused for a path that could escape the folder."""
    if "\x00" in name:
        raise DatasetRefused(f"{archive}: member name contains a NUL byte")
    posix = name.replace("\\", "/")
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        raise DatasetRefused(f"{archive}: member {name!r} has an absolute path; archive refused")
    parts = PurePosixPath(posix).parts
    if ".." in parts:
        raise DatasetRefused(f"{archive}: member {name!r} points outside the archive folder ('..'); archive refused")
    return "/".join(p for p in parts if p not in ("", "."))


def open_zip(source: ArchiveSource, label: str) -> zipfile.ZipFile:
    """A ZipFile for a path, bytes or file object; DatasetError (one line) when it is not a zip."""
    try:
        if isinstance(source, (bytes, bytearray)):
            return zipfile.ZipFile(io.BytesIO(source))
        return zipfile.ZipFile(source)  # path or file object
    except zipfile.BadZipFile as exc:
        raise DatasetError(f"{label}: not a readable zip archive ({exc})") from None
    except OSError as exc:
        raise DatasetError(f"{label}: cannot open ({exc.strerror or exc})") from None


def _size_cap(label: str, limits: ArchiveLimits) -> DatasetRefused:
    return DatasetRefused(f"{label}: uncompressed size over the limit of {human_bytes(limits.max_total_bytes)} "
                          "(size cap; a zip bomb?); archive refused")


def check_zip(zf: zipfile.ZipFile, label: str, limits: ArchiveLimits | None = None
              ) -> list[tuple[zipfile.ZipInfo, str]]:
    """Every member checked (names, links, count, sizes, compression ratios) before anything is written."""
    limits = limits or ArchiveLimits()
    infos = zf.infolist()
    if len(infos) > limits.max_members:
        raise DatasetRefused(f"{label}: {len(infos)} members is over the limit of {limits.max_members}; archive refused")
    total = packed = 0
    members = []
    for info in infos:
        rel = safe_member_name(info.filename, label)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise DatasetRefused(f"{label}: member {info.filename!r} is a symbolic link; archive refused")
        if info.flag_bits & 0x1:
            raise DatasetRefused(f"{label}: member {info.filename!r} is encrypted; archive refused")
        if info.file_size > limits.ratio_floor_bytes and info.file_size > limits.max_ratio * max(info.compress_size, 1):
            raise DatasetRefused(
                f"{label}: member {info.filename!r} expands {info.file_size / max(info.compress_size, 1):,.0f} times "
                f"({human_bytes(info.compress_size)} to {human_bytes(info.file_size)}), over the limit of "
                f"{limits.max_ratio:g} (compression-ratio rule; a zip bomb?); archive refused")
        total += info.file_size
        packed += info.compress_size
        if total > limits.max_total_bytes:
            raise _size_cap(label, limits)
        if rel:
            members.append((info, rel))
    if total > limits.ratio_floor_bytes and total > limits.max_ratio * max(packed, 1):
        raise DatasetRefused(
            f"{label}: the archive expands {total / max(packed, 1):,.0f} times ({human_bytes(packed)} to "
            f"{human_bytes(total)}), over the limit of {limits.max_ratio:g} (compression-ratio rule; a zip bomb?); "
            "archive refused")
    return members


def extract_zip(source: ArchiveSource, dest: Path, label: str | None = None, limits: ArchiveLimits | None = None) -> Path:
    """Extract a checked archive into `dest` (which must not exist yet); return `dest`.

    Raises DatasetRefused (hostile, over the limits, or no room on the disk) or DatasetError (not a
    zip, corrupt); in every case nothing is left behind.
    """
    limits = limits or ArchiveLimits()
    label = label or (Path(source).name if isinstance(source, (str, Path)) else "upload.zip")
    dest = Path(dest)
    if dest.exists():
        raise DatasetError(f"{label}: the destination already exists")
    with open_zip(source, label) as zf:
        members = check_zip(zf, label, limits)
        check_space(sum(info.file_size for info, _ in members), dest.parent, label, limits)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest.parent))
        try:
            written = 0
            for info, rel in members:
                target = tmp / rel
                if not is_inside(target, tmp):  # belt and braces after safe_member_name
                    raise DatasetRefused(f"{label}: member {info.filename!r} escapes the folder; archive refused")
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as out:
                    while True:
                        chunk = src.read(_CHUNK)
                        if not chunk:
                            break
                        written += len(chunk)
                        if written > limits.max_total_bytes:
                            raise _size_cap(label, limits)
                        out.write(chunk)
            os.replace(tmp, dest)
        except (zipfile.BadZipFile, EOFError, OSError, NotImplementedError) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise DatasetError(f"{label}: corrupt archive ({exc})") from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return dest


def write_files(files: Mapping[str, bytes], dest: Path, label: str = "upload",
                limits: ArchiveLimits | None = None) -> Path:
    """Write a folder upload ({relative path: bytes}) into `dest` with the same checks as an archive."""
    limits = limits or ArchiveLimits()
    max_members, max_total_bytes = limits.max_members, limits.max_total_bytes
    dest = Path(dest)
    if dest.exists():
        raise DatasetError(f"{dest} already exists")
    if len(files) > max_members:
        raise DatasetRefused(f"{label}: {len(files)} files is over the limit of {max_members}; upload refused")
    total = sum(len(b) for b in files.values())
    if total > max_total_bytes:
        raise DatasetRefused(f"{label}: total size over the limit of {human_bytes(max_total_bytes)}; upload refused")
    check_space(total, dest.parent, label, limits)
    checked = [(safe_member_name(name, label), data) for name, data in files.items()]
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".upload-", dir=dest.parent))
    try:
        for rel, data in checked:
            if not rel:
                continue
            target = tmp / rel
            if not is_inside(target, tmp):
                raise DatasetRefused(f"{label}: {rel!r} escapes the folder; upload refused")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def is_zip(source: ArchiveSource) -> bool:
    """True when the content is a zip archive (checked by content, not by name)."""
    if isinstance(source, (bytes, bytearray)):
        return zipfile.is_zipfile(io.BytesIO(source))
    if isinstance(source, (str, Path)):
        return Path(source).is_file() and zipfile.is_zipfile(source)
    return zipfile.is_zipfile(source)
