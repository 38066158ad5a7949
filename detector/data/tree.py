"""A dataset folder's files, listed once: finding images by the names annotation files give.

Annotation tools write image names relative to different folders (the annotation file's, an
`images/` folder, a split folder) or with sub-folders and Windows separators; `FileTree.locate`
tries the likely bases and falls back to a unique file name anywhere in the tree.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from detector.data.records import Problem
from detector.images import MAX_PIXELS, ImageError, read_image_header

# Extensions used only to *find* candidate images; content is verified by decoding the header.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".jfif")
_SKIP_DIRS = {"__MACOSX", ".git", ".ipynb_checkpoints"}


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def clean_name(name: str) -> str:
    """A file name from an annotation file as a relative posix path: backslashes, './' and
    leading slashes or drive letters removed (the lookup is always inside the dataset)."""
    name = name.replace("\\", "/").strip()
    if len(name) > 1 and name[1] == ":":
        name = name[2:]
    parts = [p for p in name.split("/") if p not in ("", ".")]
    return "/".join(parts)


class FileTree:
    """Every file under `root` as a relative posix path (hidden files and __MACOSX skipped)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        files: list[str] = []
        escaping: list[str] = []
        real_root = self.root.resolve()
        for dirpath, dirnames, filenames in os.walk(self.root):  # folder links are not followed
            dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for f in sorted(filenames):
                if f.startswith("."):
                    continue
                name = f if rel == "." else f"{rel}/{f}"
                full = os.path.join(dirpath, f)
                if os.path.islink(full) and not Path(os.path.realpath(full)).is_relative_to(real_root):
                    escaping.append(name)  # a file link leading out of the dataset: never read
                    continue
                files.append(name)
        self.escaping_links: tuple[str, ...] = tuple(escaping)
        self.files: tuple[str, ...] = tuple(files)
        self.file_set = frozenset(files)
        self._lower = {f.lower(): f for f in files}
        by_name: dict[str, list[str]] = {}
        for f in files:
            by_name.setdefault(posixpath.basename(f).lower(), []).append(f)
        self._by_name = by_name

    def with_suffix(self, *suffixes: str) -> list[str]:
        return [f for f in self.files if f.lower().endswith(suffixes)]

    def images(self) -> list[str]:
        return [f for f in self.files if is_image_name(f)]

    def exists(self, rel: str) -> str | None:
        """The stored spelling of `rel` (case-insensitive match), or None."""
        rel = posixpath.normpath(rel) if rel else rel
        if rel in self.file_set:
            return rel
        return self._lower.get(rel.lower()) if rel else None

    def locate(self, name: str, bases: list[str]) -> str | None:
        """The file an annotation's image name refers to: base/name for each base, then the
        longest unique path suffix match, then None."""
        name = clean_name(name)
        if not name:
            return None
        for base in bases:
            candidate = posixpath.normpath(posixpath.join(base, name)) if base not in ("", ".") else name
            if candidate.startswith("../"):
                continue
            found = self.exists(candidate)
            if found:
                return found
        matches = self._by_name.get(posixpath.basename(name).lower(), [])
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:  # prefer the candidate that shares the most trailing folders
            parts = PurePosixPath(name.lower()).parts
            def shared(m: str) -> int:
                mp = PurePosixPath(m.lower()).parts
                n = 0
                while n < min(len(mp), len(parts)) and mp[-1 - n] == parts[-1 - n]:
                    n += 1
                return n
            ranked = sorted(matches, key=shared, reverse=True)
            if shared(ranked[0]) > shared(ranked[1]):
                return ranked[0]
        return None


@dataclass(frozen=True)
class HeaderResult:
    width: int
    height: int


def read_header(root: Path, rel: str, image_id: int | str | None = None) -> HeaderResult | Problem:
    """Image size from the header (no decoding), or the warning that leaves the image out."""
    try:
        header = read_image_header(Path(root) / rel, name=rel)
    except ImageError as exc:
        return Problem("warning", rel, None, image_id, f"unreadable image: {exc.problem}", "image left out")
    if header.width <= 0 or header.height <= 0:
        return Problem("warning", rel, None, image_id, f"invalid image size {header.width}x{header.height}", "image left out")
    if header.width * header.height > MAX_PIXELS:
        return Problem(
            "warning", rel, None, image_id,
            f"{header.width}x{header.height} image is over the limit of {MAX_PIXELS / 1e6:.0f} megapixels",
            "image left out",
        )
    return HeaderResult(header.width, header.height)
