"""How far a training run has got, read from its metrics rows: epoch, step, images/s, time left.

Pure functions over the rows `runs.MetricsTail` keeps (train rows carry epoch, step, time in
seconds since the run began, images_per_s), so the page and tests agree on the figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

RECENT_STEPS = 20  # speed is measured over the last this many steps


@dataclass(frozen=True)
class Progress:
    epoch: int  # the epoch of the last step (1-based; 0 before the first step)
    epochs: int | None  # epochs asked for
    step: int  # global step reached
    steps_per_epoch: int | None  # from a complete epoch seen, else the caller's hint (None: unknown)
    images_per_s: float | None  # mean over the recent steps
    seconds_per_step: float | None  # wall time per step over the recent steps (validation included)
    elapsed_s: float  # training time so far (across resumes)
    eta_s: float | None  # time left to the last epoch at the recent pace (None: unknown)
    fraction: float  # 0..1 of the steps asked for (0 while unknown)

    @property
    def total_steps(self) -> int | None:
        return self.epochs * self.steps_per_epoch if self.epochs and self.steps_per_epoch else None


def estimate_progress(train: Sequence[dict[str, Any]], epochs: int | None, val: Sequence[dict[str, Any]] = (),
                      steps_per_epoch_hint: int | None = None) -> Progress:
    """Progress from train rows in step order (one per step, as MetricsTail.train gives them).

    Steps per epoch come from the first complete epoch; before one is complete, from
    `steps_per_epoch_hint` (e.g. training images / batch size).
    """
    if not train:
        return Progress(0, epochs, 0, steps_per_epoch_hint, None, None, 0.0, None, 0.0)
    last = train[-1]
    epoch, step = int(last.get("epoch", 0)), int(last.get("step", 0))
    # steps per epoch: last step of a complete epoch minus that of the epoch before it
    last_step: dict[int, int] = {0: 0}
    for row in train:
        last_step[int(row["epoch"])] = int(row["step"])
    per_epoch = next((last_step[e] - last_step[e - 1] for e in sorted(last_step)
                      if 0 < e < epoch and e - 1 in last_step), steps_per_epoch_hint)
    recent = list(train[-RECENT_STEPS:])
    speeds = [float(r["images_per_s"]) for r in recent if _number(r.get("images_per_s"))]
    ips = sum(speeds) / len(speeds) if speeds else None
    sec_per_step = None
    if len(recent) >= 2 and _number(recent[0].get("time")) and _number(recent[-1].get("time")):
        dt = float(recent[-1]["time"]) - float(recent[0]["time"])
        ds = int(recent[-1]["step"]) - int(recent[0]["step"])
        if ds > 0 and dt > 0:
            sec_per_step = dt / ds
    elapsed = max([float(r["time"]) for r in (*train[-1:], *val[-1:]) if _number(r.get("time"))], default=0.0)
    eta, fraction = None, 0.0
    if epochs and per_epoch:
        total = epochs * per_epoch
        fraction = min(1.0, step / total) if total else 0.0
        if sec_per_step is not None:
            eta = max(0.0, (total - step) * sec_per_step)
    return Progress(epoch, epochs, step, per_epoch, ips, sec_per_step, elapsed, eta, fraction)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def format_duration(seconds: float | None) -> str:
    """`1 h 02 min`, `14 min`, `3 min 05 s`, `42 s`; an em dash when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "—"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 300:
        return f"{round(s / 60)} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"
