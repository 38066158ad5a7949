"""status.json and the heartbeat: what state a run is in, written by its training, read by everyone.

The training process (rank 0) keeps its status in a `StatusKeeper`, which rewrites status.json every
HEARTBEAT_S seconds; `read_status` calls a running run whose process is gone, or whose heartbeat is
older than HEARTBEAT_STALE_S, interrupted.
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from detector.runs.folder import STATUS, finite, now_iso, read_json, stop_requested, write_json_atomic

STATES = ("queued", "running", "stopping", "done", "failed", "stopped")
ACTIVE_STATES = ("queued", "running", "stopping")
HEARTBEAT_S = 5.0  # a training run rewrites status.json this often
HEARTBEAT_STALE_S = 90.0  # a running run whose heartbeat is older than this is interrupted


@dataclass(frozen=True)
class RunStatus:
    """status.json plus what a reader concludes: `interrupted` when the process is gone."""

    state: str  # as written: queued|running|stopping|done|failed|stopped ("missing" if no file)
    pid: int | None
    epoch: int
    step: int
    heartbeat: str | None
    error: str | None
    interrupted: bool  # said running/stopping but the process is gone or its heartbeat is stale
    extra: dict[str, Any] = field(default_factory=dict)  # other fields (epochs, message, device...)
    epochs_done: int | None = None  # epochs completed; None in a status.json written before the field

    @property
    def shown_state(self) -> str:
        """The state to show: `interrupted` replaces a running state whose process is gone."""
        return "interrupted" if self.interrupted else self.state

    @property
    def resumable(self) -> bool:
        return self.interrupted or self.state in ("stopped", "failed")


def write_status(run_dir: Path, **fields: Any) -> dict[str, Any]:
    """Update status.json atomically: merge `fields` into the current status, stamp the heartbeat."""
    path = Path(run_dir) / STATUS
    current = read_json(path) or {}
    if "state" in fields and fields["state"] not in STATES:
        raise ValueError(f"state must be one of {STATES}, not {fields['state']!r}")
    current.update(fields)
    current["heartbeat"] = now_iso()
    current.setdefault("error", None)
    write_json_atomic(path, finite(current))
    return current


class StatusKeeper:
    """Holds a training run's status in memory and rewrites status.json every HEARTBEAT_S seconds.

    The heartbeat is what `read_status` checks for staleness (HEARTBEAT_STALE_S); a STOP asked for
    while running is written as "stopping". Only the training process (rank 0) writes.
    """

    def __init__(self, run_dir: Path, enabled: bool, **initial: Any):
        self.run_dir = run_dir
        self.enabled = enabled
        self.fields: dict[str, Any] = dict(initial)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if not self.enabled:
            return
        self.write()
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with contextlib.suppress(OSError):
                self.write()

    def stop_heartbeat(self) -> None:
        """End the heartbeat thread without writing (status.json keeps what was last written)."""
        self._stop.set()

    def update(self, write: bool = False, **fields: Any) -> None:
        with self._lock:
            self.fields.update(fields)
        if write:
            self.write()

    def write(self) -> None:
        if self.enabled:
            with self._lock:
                if self.fields.get("state") == "running" and stop_requested(self.run_dir):
                    self.fields["state"] = "stopping"  # asked to stop: acted on before the next iteration
                write_status(self.run_dir, **self.fields)

    def close(self, **fields: Any) -> None:
        """Stop the heartbeat and write the final `fields`."""
        self.stop_heartbeat()
        if self._thread is not None:
            self._thread.join(timeout=HEARTBEAT_S * 2)
        self.update(write=True, **fields)


def pid_alive(pid: int | None) -> bool:
    """True when a process with this id exists (and is not a zombie)."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped) counts as gone
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _age_s(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        then = datetime.fromisoformat(iso)
    except ValueError:
        return None
    if then.tzinfo is None:
        then = then.replace(tzinfo=timezone.utc)
    return (datetime.now(timezone.utc) - then).total_seconds()


def read_status(run_dir: Path, stale_after_s: float = HEARTBEAT_STALE_S) -> RunStatus:
    """The run's status; a running/stopping run whose pid is gone or heartbeat stale is interrupted."""
    data = read_json(Path(run_dir) / STATUS)
    if not isinstance(data, dict):
        return RunStatus("missing", None, 0, 0, None, None, False)
    state = str(data.get("state", "missing"))
    pid = data.get("pid")
    heartbeat = data.get("heartbeat")
    interrupted = False
    if state in ("running", "stopping"):
        age = _age_s(heartbeat)
        interrupted = not pid_alive(pid) or age is None or age > stale_after_s
    elif state == "queued" and isinstance(pid, int):  # started, then died before it could say so
        interrupted = not pid_alive(pid)
    known = {"state", "pid", "epoch", "epochs_done", "step", "heartbeat", "error"}
    done = data.get("epochs_done")
    return RunStatus(
        state=state,
        pid=pid if isinstance(pid, int) else None,
        epoch=int(data.get("epoch") or 0),
        step=int(data.get("step") or 0),
        heartbeat=heartbeat,
        error=data.get("error"),
        interrupted=interrupted,
        extra={k: v for k, v in data.items() if k not in known},
        epochs_done=int(done) if isinstance(done, (int, float)) and not isinstance(done, bool) else None,
    )
