"""Data roots: the folders on this machine a dataset may be registered from by path, without copying.

The workspace is always allowed; `$DETECTOR_DATA_ROOTS` adds folders (separated by os.pathsep, `:`
on Linux). A path is allowed when it lies under one of them both as written and once symbolic links
are resolved: a `..` component, or a link that leads out, is refused. Refusals never show where a
path leads on the server, only the name the user gave.
"""

from __future__ import annotations

import os
from pathlib import Path

from detector.data.records import DatasetError, DatasetRefused


def data_roots() -> tuple[Path, ...]:
    """The workspace, then each existing folder of $DETECTOR_DATA_ROOTS, resolved, without repeats."""
    from detector.workspace import workspace_root

    roots = [workspace_root()]
    for entry in (os.environ.get("DETECTOR_DATA_ROOTS") or "").split(os.pathsep):
        entry = entry.strip()
        if entry and Path(entry).expanduser().is_dir():
            root = Path(entry).expanduser().resolve()
            if root not in roots:
                roots.append(root)
    return tuple(roots)


def _under(path: Path, roots: tuple[Path, ...]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def allowed_path(text: str, roots: tuple[Path, ...] | None = None) -> Path:
    """The resolved folder or zip that `text` names, or DatasetRefused / DatasetError saying why not.

    A relative path is taken from the workspace.
    """
    from detector.workspace import workspace_root

    roots = data_roots() if roots is None else roots
    text = (text or "").strip()
    if not text:
        raise DatasetError("give the path of a dataset folder or zip on the machine the app runs on")
    given = Path(text).expanduser()
    shown = given.name or text
    if ".." in given.parts:
        raise DatasetRefused(f"{shown}: a path with '..' is refused; give the path without it")
    absolute = given if given.is_absolute() else workspace_root() / given
    absolute = Path(os.path.normpath(absolute))
    if not _under(absolute, roots):
        raise DatasetRefused(f"{shown}: not under a folder datasets may be registered from (the workspace or "
                             "one listed in DETECTOR_DATA_ROOTS); registration refused")
    resolved = absolute.resolve()
    if not _under(resolved, roots):
        raise DatasetRefused(f"{shown}: a symbolic link leads outside the allowed folders; registration refused")
    if not resolved.exists():
        raise DatasetError(f"{shown}: no such file or folder")
    return resolved
