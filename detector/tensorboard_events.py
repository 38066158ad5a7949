"""TensorBoard event files beside metrics.jsonl, so `tensorboard --logdir workspace/runs` shows every run.

The training loop hands each metrics row (the same dict it appends to metrics.jsonl) to
`RunEvents.add`; train rows become `train/<name>` scalars (the four losses, `loss`, `lr`,
`images_per_s`) and validation rows `val/<name>` scalars (the four validation losses, `val_loss`,
mAP, mAP50, mAP75), all at the row's global step. metrics.jsonl stays the contract the pages read;
the event files are for people who use TensorBoard. Without the tensorboard package, nothing is
written and the run says so once in train.log. On resume, `purge_step` drops the events an earlier
process wrote at or after the resumed step, as TensorBoard documents for restarts.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from detector.runs import LOSS_NAMES

log = logging.getLogger("detector.engine")

TRAIN_SCALARS = ("loss", *LOSS_NAMES, "lr", "images_per_s")
VAL_SCALARS = ("val_loss", *(f"val_{k}" for k in LOSS_NAMES), "mAP", "mAP50", "mAP75")
FLUSH_S = 10  # seconds between flushes, so a live `tensorboard` sees the run grow


def tag(kind: str, name: str) -> str:
    """The TensorBoard tag of a metrics.jsonl field: `train/loss`, `val/mAP`, ..."""
    return f"{kind}/{name}"


class RunEvents:
    """A SummaryWriter on the run folder, fed with metrics rows; a no-op without tensorboard.

    The writer opens at the first row, so a resumed run (`resume`) can purge from that row's step:
    events an interrupted process wrote past its last checkpoint are dropped, as the new ones replace them.
    """

    def __init__(self, log_dir: Path, resume: bool = False, enabled: bool = True):
        self.log_dir = Path(log_dir)
        self.resume = resume
        self.enabled = enabled
        self.writer: Any = None

    def _open(self, first_step: int) -> None:
        self.enabled = False  # one try
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # torch's writer needs the tensorboard package
            log.info("tensorboard is not installed here: no TensorBoard event files (metrics.jsonl is written)")
            return
        self.writer = SummaryWriter(log_dir=str(self.log_dir), purge_step=first_step if self.resume else None,
                                    flush_secs=FLUSH_S)

    def add(self, row: dict[str, Any]) -> None:
        """Write the scalars of one metrics.jsonl row at its step."""
        if self.writer is None and self.enabled:
            self._open(int(row["step"]))
        if self.writer is None:
            return
        kind = row.get("kind")
        names = TRAIN_SCALARS if kind == "train" else VAL_SCALARS if kind == "val" else ()
        for name in names:
            value = row.get(name)
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(tag(kind, name), float(value), int(row["step"]))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def __enter__(self) -> "RunEvents":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
