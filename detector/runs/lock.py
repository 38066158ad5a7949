"""One training per device: `device_lock` holds an `flock` on a file in the workspace's locks/, so a
dead process releases it; the lock file names the run that holds it."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

from detector.file_lock import LockHeld, exclusive_lock, lock_owner
from detector.workspace import workspace_root

UNKNOWN_RUN = "(unknown run)"  # what a lock file that names nothing is shown as


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
    return lock_owner(lock_file(device), unknown=UNKNOWN_RUN)


@contextlib.contextmanager
def device_lock(device: str, run_dir: Path) -> Iterator[Path]:
    """Hold the device's training lock for the `with` block; DeviceBusy names the holder's run.

    fcntl.flock on a file under the workspace (`detector.file_lock`): released by the kernel when
    the process dies.
    """
    with contextlib.ExitStack() as stack:
        try:
            path = stack.enter_context(exclusive_lock(lock_file(device), str(Path(run_dir).resolve()), UNKNOWN_RUN))
        except LockHeld as exc:
            raise DeviceBusy(device, exc.holder) from None
        yield path
