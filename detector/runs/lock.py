"""One training per device: `device_lock` holds an `flock` on a file in the workspace's locks/, so a
dead process releases it; the lock file names the run that holds it."""

from __future__ import annotations

import contextlib
import errno
import fcntl
from pathlib import Path
from typing import Iterator

from detector.workspace import workspace_root


class DeviceBusy(RuntimeError):
    """Another training holds the device; `holder` names its run folder."""

    def __init__(self, device: str, holder: str):
        super().__init__(f"{device} is busy: run {holder} is training on it (stop it first, or wait)")
        self.device = device
        self.holder = holder


def lock_file(device: str) -> Path:
    """The lock file of a device ("cpu", "cuda:0", ...) in the workspace's locks/ folder."""
    safe = "".join(c if c.isalnum() else "-" for c in device)
    folder = workspace_root() / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"train-{safe}.lock"


def lock_holder(device: str) -> str | None:
    """The run folder named in the device's lock file when someone holds the lock, else None."""
    path = lock_file(device)
    if not path.exists():
        return None
    with open(path, "a+", encoding="utf-8") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            return fh.read().strip() or "(unknown run)"
        fcntl.flock(fh, fcntl.LOCK_UN)
    return None


@contextlib.contextmanager
def device_lock(device: str, run_dir: Path) -> Iterator[Path]:
    """Hold the device's training lock for the `with` block; DeviceBusy names the holder's run.

    fcntl.flock on a file under the workspace: released by the kernel when the process dies.
    """
    path = lock_file(device)
    fh = open(path, "a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            fh.seek(0)
            raise DeviceBusy(device, fh.read().strip() or "(unknown run)") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{Path(run_dir).resolve()}\n")
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
