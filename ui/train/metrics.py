"""A run's metrics on the training page: read incrementally per session (only the bytes appended
since), the epoch marks that tell the page an epoch ended, the metrics CSV, and the steps-per-epoch
hint the progress figures use before the first epoch is complete."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from detector import runs
from detector.data.records import DatasetError
from detector.data.store import open_dataset
from detector.workspace import datasets_dir

TAILS_KEY = "train_tails"  # session_state: run name -> runs.MetricsTail


def metrics_tail(run_dir: Path) -> runs.MetricsTail:
    """This session's MetricsTail of a run, updated: each call reads only the bytes appended since."""
    tails: dict[str, runs.MetricsTail] = st.session_state.setdefault(TAILS_KEY, {})
    key = str(Path(run_dir).resolve())
    tail = tails.get(key)
    if tail is None:
        tail = tails[key] = runs.MetricsTail(run_dir)
    tail.update()
    return tail


@dataclass(frozen=True)
class EpochMarks:
    """What the parts of the training page drawn once per epoch depend on: the RPN snapshots on disk and
    the validation rows read. `steps` (whether any step is recorded) is not compared."""

    snapshots: tuple[int, ...]
    val_rows: int
    steps: bool = field(default=False, compare=False)


def epoch_marks(run_dir: Path, tail: runs.MetricsTail) -> EpochMarks:
    """The run's EpochMarks now: when they differ from the ones a page was drawn with, an epoch ended."""
    return EpochMarks(tuple(runs.list_snapshots(run_dir)), len(tail.val), bool(tail.train or tail.val))


def metrics_csv_of(run_dir: Path) -> bytes:
    """metrics_csv of everything the run recorded so far (read when called: a download's data)."""
    return metrics_csv(*runs.read_metrics(run_dir))


def metrics_csv(train: list[dict[str, Any]], val: list[dict[str, Any]]) -> bytes:
    """Every train and val row as one CSV (a `kind` column tells them apart; nested fields dropped)."""
    rows = [{k: v for k, v in r.items() if not isinstance(v, (dict, list))} for r in (*train, *val)]
    frame = pd.DataFrame(rows)
    if "kind" in frame:
        first = [c for c in ("kind", "epoch", "step") if c in frame]
        frame = frame[first + [c for c in frame.columns if c not in first]]
    return frame.to_csv(index=False).encode("utf-8")


@st.cache_data(show_spinner=False, max_entries=16)
def _train_images(name: str, stamp: float) -> int | None:
    del stamp
    try:
        return len(open_dataset(name).train_indices)
    except (DatasetError, OSError, ValueError, KeyError):
        return None


def train_split_size(name: str) -> int | None:
    """Images in a stored dataset's training split (None when it cannot be read)."""
    doc = datasets_dir() / str(name) / "dataset.json"
    return _train_images(str(name), doc.stat().st_mtime) if doc.is_file() else None


def steps_per_epoch_hint(config: dict[str, Any]) -> int | None:
    """About how many steps an epoch takes (training images / batch size), for a stored dataset;
    the progress figures use it until the first epoch is complete."""
    name, batch = config.get("data"), config.get("batch_size")
    if not name or not isinstance(batch, int) or batch < 1 or Path(str(name)).exists():  # "auto": chosen at start
        return None
    n = train_split_size(str(name))
    return math.ceil(n / int(batch)) if n else None
