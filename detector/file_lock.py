"""An exclusive lock held by one process: `fcntl.flock` on a file, released by the kernel when the
process dies, the file naming its holder (a run folder, a pid) while it is held.

Used by the training's device lock (`detector.runs.lock`: one training per device) and the
diagnosis pass folder (`detector.diagnosis.passes`: one writer per pass).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
from pathlib import Path
from typing import Iterator


class LockHeld(RuntimeError):
    """Another process holds the lock; `holder` is what its file names."""

    def __init__(self, path: Path, holder: str):
        super().__init__(f"{path}: held by {holder}")
        self.path, self.holder = path, holder


def lock_owner(path: Path, unknown: str = "(unknown)") -> str | None:
    """What the lock file names while another process holds it (`unknown` when it names nothing), else None."""
    path = Path(path)
    if not path.exists():
        return None
    with open(path, "a+", encoding="utf-8") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            return fh.read().strip() or unknown
        fcntl.flock(fh, fcntl.LOCK_UN)
    return None


@contextlib.contextmanager
def exclusive_lock(path: Path, holder: str, unknown: str = "(unknown)") -> Iterator[Path]:
    """Hold the lock on `path` for the block, writing `holder` into it; LockHeld (naming what the
    file names, `unknown` when nothing) when another process holds it."""
    path = Path(path)
    fh = open(path, "a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            fh.seek(0)
            raise LockHeld(path, fh.read().strip() or unknown) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{holder}\n")
        fh.flush()
        try:
            yield path
        finally:
            with contextlib.suppress(OSError):
                fh.seek(0)
                fh.truncate()
                fh.flush()
            fcntl.flock(fh, fcntl.LOCK_UN)
    finally:
        fh.close()
