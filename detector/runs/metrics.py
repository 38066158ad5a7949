"""metrics.jsonl: one JSON object per line, `kind` "train" (one per step) or "val" (one per epoch),
appended by the training and read incrementally by the pages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from detector.runs.folder import METRICS, finite, json_default

# torchvision Faster R-CNN's four training losses, in the order metrics.jsonl, logs and charts use
LOSS_NAMES = ("loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg")


def append_metrics(run_dir: Path, *rows: dict[str, Any]) -> None:
    """Append rows to metrics.jsonl, one JSON object per line (non-finite numbers become null)."""
    path = Path(run_dir) / METRICS
    text = "".join(json.dumps(finite(r), default=json_default, allow_nan=False) + "\n" for r in rows)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()


def read_metrics_from(run_dir: Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Rows appended since byte `offset`, and the offset to pass next time.

    Only complete lines are read (a line being written stays for the next call); a line that is not
    JSON is skipped. Offset past the end (file replaced) starts again from 0.
    """
    path = Path(run_dir) / METRICS
    try:
        size = path.stat().st_size
    except OSError:
        return [], 0
    if offset > size:
        offset = 0
    with open(path, "rb") as fh:
        fh.seek(offset)
        chunk = fh.read(size - offset)
    end = chunk.rfind(b"\n")
    if end < 0:
        return [], offset
    rows = []
    for line in chunk[: end + 1].splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows, offset + end + 1


class MetricsTail:
    """Incremental reader of metrics.jsonl: `update()` reads only new bytes.

    Keeps the last line for each train step and each val epoch (after a resume a step may repeat),
    so `train` and `val` are in order without repeats.
    """

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.offset = 0
        self._train: dict[int, dict[str, Any]] = {}
        self._val: dict[int, dict[str, Any]] = {}

    def update(self) -> int:
        """Read what was appended since the last call; returns the number of new rows."""
        rows, self.offset = read_metrics_from(self.run_dir, self.offset)
        for row in rows:
            if row.get("kind") == "train" and "step" in row:
                self._train[int(row["step"])] = row
            elif row.get("kind") == "val" and "epoch" in row:
                self._val[int(row["epoch"])] = row
        return len(rows)

    @property
    def train(self) -> list[dict[str, Any]]:
        return [self._train[k] for k in sorted(self._train)]

    @property
    def val(self) -> list[dict[str, Any]]:
        return [self._val[k] for k in sorted(self._val)]


def read_metrics(run_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train rows, val rows) of a run, one row per step / epoch (the last written wins)."""
    tail = MetricsTail(run_dir)
    tail.update()
    return tail.train, tail.val

