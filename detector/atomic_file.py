"""The one atomic file write: a temp file beside the target, then os.replace.

A reader (a page refreshing, a resumed run) sees the old file or the new one, never half of one;
a failure leaves the old file and no temp file behind. Used for run-folder JSON and snapshots,
checkpoints, exports and the dataset store's index.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temp path in `path`'s folder (created if missing); write it inside the block.

    On leaving the block normally the temp file replaces `path` (os.replace); on an exception it
    is removed and `path` is untouched. `suffix`: what some writers need the name to end with
    (numpy's savez appends .npz otherwise).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
