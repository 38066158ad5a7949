"""Safe archives: every member checked before anything is extracted; a refused archive leaves nothing.

Refused as a whole: an absolute path, a drive letter or a `..` component (zip-slip), a symbolic
link, more than MAX_MEMBERS members, or more than MAX_TOTAL_BYTES uncompressed (zip bombs; the
sizes are counted while writing too, so a header that lies does not help). Extraction goes into a
fresh temporary folder inside the destination's parent and is moved into place only when complete.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Mapping, Union

from detector.data.records import DatasetError, DatasetRefused
from detector.workspace import is_inside

MAX_MEMBERS = 100_000
MAX_TOTAL_BYTES = 8 * 1024**3  # 8 GiB uncompressed
_CHUNK = 1 << 20

ArchiveSource = Union[str, Path, bytes, BinaryIO]


def _limits(max_members: int | None, max_total_bytes: int | None) -> tuple[int, int]:
    """The caps in force: the arguments, or the module's MAX_MEMBERS / MAX_TOTAL_BYTES at call time."""
    return (MAX_MEMBERS if max_members is None else max_members,
            MAX_TOTAL_BYTES if max_total_bytes is None else max_total_bytes)


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


def check_zip(zf: zipfile.ZipFile, label: str, max_members: int | None = None,
              max_total_bytes: int | None = None) -> list[tuple[zipfile.ZipInfo, str]]:
    """Every member checked (names, links, count, declared sizes) before anything is written."""
    max_members, max_total_bytes = _limits(max_members, max_total_bytes)
    infos = zf.infolist()
    if len(infos) > max_members:
        raise DatasetRefused(f"{label}: {len(infos)} members is over the limit of {max_members}; archive refused")
    total = 0
    members = []
    for info in infos:
        rel = safe_member_name(info.filename, label)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise DatasetRefused(f"{label}: member {info.filename!r} is a symbolic link; archive refused")
        if info.flag_bits & 0x1:
            raise DatasetRefused(f"{label}: member {info.filename!r} is encrypted; archive refused")
        total += info.file_size
        if total > max_total_bytes:
            raise DatasetRefused(
                f"{label}: uncompressed size over the limit of {max_total_bytes / 1024**2:.0f} MiB "
                f"(a zip bomb?); archive refused")
        if rel:
            members.append((info, rel))
    return members


def extract_zip(source: ArchiveSource, dest: Path, label: str | None = None, max_members: int | None = None,
                max_total_bytes: int | None = None) -> Path:
    """Extract a checked archive into `dest` (which must not exist yet); return `dest`.

    Raises DatasetRefused (hostile or over the limits) or DatasetError (not a zip); in both cases
    nothing is left behind.
    """
    max_members, max_total_bytes = _limits(max_members, max_total_bytes)
    label = label or (Path(source).name if isinstance(source, (str, Path)) else "upload.zip")
    dest = Path(dest)
    if dest.exists():
        raise DatasetError(f"{dest} already exists")
    with open_zip(source, label) as zf:
        members = check_zip(zf, label, max_members, max_total_bytes)
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
                        if written > max_total_bytes:
                            raise DatasetRefused(
                                f"{label}: uncompressed size over the limit of {max_total_bytes / 1024**2:.0f} MiB "
                                f"(a zip bomb?); archive refused")
                        out.write(chunk)
            os.replace(tmp, dest)
        except (zipfile.BadZipFile, EOFError, OSError, NotImplementedError) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise DatasetError(f"{label}: corrupt archive ({exc})") from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return dest


def write_files(files: Mapping[str, bytes], dest: Path, label: str = "upload", max_members: int | None = None,
                max_total_bytes: int | None = None) -> Path:
    """Write a folder upload ({relative path: bytes}) into `dest` with the same checks as an archive."""
    max_members, max_total_bytes = _limits(max_members, max_total_bytes)
    dest = Path(dest)
    if dest.exists():
        raise DatasetError(f"{dest} already exists")
    if len(files) > max_members:
        raise DatasetRefused(f"{label}: {len(files)} files is over the limit of {max_members}; upload refused")
    if sum(len(b) for b in files.values()) > max_total_bytes:
        raise DatasetRefused(f"{label}: total size over the limit of {max_total_bytes / 1024**2:.0f} MiB; upload refused")
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
