"""Where a training's metric rows go: one list of writers, built once, so a row is written in one place.

As detectron2's `EventWriter`s (`utils/events.py`: JSONWriter, TensorboardXWriter, CommonMetricPrinter):
`metrics.jsonl` (`runs.append_metrics`), the TensorBoard event files (`tensorboard_events.RunEvents`)
and train.log (`LogWriter`: a training line at most every LOG_EVERY_S seconds and at an epoch's last
step, every validation line). A row is a "train" row (one per step) or a "val" row (one per
validation); only the training process of rank 0 writes (the others get no writers).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Protocol, Sequence

from detector import runs
from detector.runs import LOSS_NAMES
from detector.tensorboard_events import RunEvents

LOG_EVERY_S = 15.0


class MetricWriter(Protocol):
    def write(self, row: dict[str, Any], position: tuple[int, int] | None = None) -> None:
        """Take one row; `position` is (steps done, steps) in the epoch for a train row."""


class JsonlWriter:
    """metrics.jsonl of the run folder."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir

    def write(self, row: dict[str, Any], position: tuple[int, int] | None = None) -> None:
        runs.append_metrics(self.run_dir, row)


class TensorBoardWriter:
    """The run's TensorBoard event files (the same scalars as metrics.jsonl)."""

    def __init__(self, events: RunEvents):
        self.events = events

    def write(self, row: dict[str, Any], position: tuple[int, int] | None = None) -> None:
        self.events.add(row)


class LogWriter:
    """train.log's lines: a train row when LOG_EVERY_S have passed since the last line (or the epoch's
    start) or at the epoch's last step; every val row."""

    def __init__(self, log: logging.Logger):
        self.log = log
        self.last = time.monotonic()

    def epoch_started(self) -> None:
        self.last = time.monotonic()

    def write(self, row: dict[str, Any], position: tuple[int, int] | None = None) -> None:
        if row.get("kind") == "val":
            self.log.info("epoch %d validation: loss %.4f (cls %.4f box %.4f obj %.4f rpn %.4f) mAP %s mAP50 %s",
                          row["epoch"], row["val_loss"], *(row[f"val_{k}"] for k in LOSS_NAMES),
                          fmt(row["mAP"]), fmt(row["mAP50"]))
            return
        done, total = position or (0, 0)
        if time.monotonic() - self.last > LOG_EVERY_S or done == total:
            self.last = time.monotonic()
            self.log.info("epoch %d [%d/%d] step %d loss %.4f (cls %.4f box %.4f obj %.4f rpn %.4f) lr %.3g "
                          "%.1f img/s", row["epoch"], done, total, row["step"], row["loss"],
                          *(row[k] for k in LOSS_NAMES), row["lr"], row["images_per_s"])


class MetricWriters:
    """Every writer of a run, in order; `write` hands a row to each."""

    def __init__(self, writers: Sequence[MetricWriter]):
        self.writers = tuple(writers)

    @classmethod
    def for_run(cls, run_dir: Path, events: RunEvents, log: logging.Logger, enabled: bool) -> "MetricWriters":
        """metrics.jsonl, TensorBoard and the log for the writing process (`enabled`); none otherwise."""
        return cls((JsonlWriter(run_dir), TensorBoardWriter(events), LogWriter(log)) if enabled else ())

    def epoch_started(self) -> None:
        for writer in self.writers:
            if isinstance(writer, LogWriter):
                writer.epoch_started()

    def write(self, row: dict[str, Any], position: tuple[int, int] | None = None) -> None:
        for writer in self.writers:
            writer.write(row, position)


def fmt(value: float | None) -> str:
    """A figure for a log line: four decimals, or n/a."""
    return "n/a" if value is None else f"{value:.4f}"
