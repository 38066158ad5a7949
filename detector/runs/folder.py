"""One run folder: its file names, config.json, the STOP file, fixes.json, train.log, diagnosis.json and
where its checkpoints go, plus the JSON-file helpers the other run-folder modules write through."""

from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import asdict, is_dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from detector.atomic_file import write_text_atomic

CONFIG = "config.json"
STATUS = "status.json"
METRICS = "metrics.jsonl"
FIXES = "fixes.json"
LOG = "train.log"
CONSOLE = "console.log"
STOP = "STOP"
CHECKPOINTS = "checkpoints"
SNAPSHOTS = "snapshots"
DIAGNOSIS = "diagnosis.json"


class RunError(RuntimeError):
    """A run folder that cannot be used for what was asked (missing, not a run, already used)."""


# ---------------------------------------------------------------- JSON files


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to `path` through a temp file in the same folder and os.replace."""
    write_text_atomic(path, json.dumps(data, indent=2, allow_nan=False, default=json_default) + "\n")


def read_json_strict(path: Path, error: type[Exception]) -> Any:
    """The JSON in `path`; `error` with a one-line message naming the file when it cannot be read or parsed
    (`read_json` is the lenient twin: None instead)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise error(f"{path}: not readable JSON ({exc})") from None


def json_default(value: Any) -> Any:
    """What json.dumps writes for the non-JSON values a run folder holds (paths, numpy scalars, sets)."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def finite(value: Any) -> Any:
    """JSON has no NaN/inf: non-finite floats become null (recursively)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if isinstance(value, np.generic):
        return finite(value.item())
    return value


def read_json(path: Path) -> Any | None:
    """The JSON in `path`, or None when it is absent or unreadable."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def now_iso() -> str:
    """The current UTC time, ISO 8601 (what status.json's `heartbeat` holds)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------- config


def write_config(run_dir: Path, config: dict[str, Any]) -> Path:
    """Write `config.json` (a TrainConfig as a dict; see detector.train_config)."""
    path = Path(run_dir) / CONFIG
    write_json_atomic(path, finite(config))
    return path


def read_config(run_dir: Path) -> dict[str, Any] | None:
    """The run's config.json as a dict, or None when absent; RunError when unreadable."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        return None
    data = read_json_strict(path, RunError)
    if not isinstance(data, dict):
        raise RunError(f"{path}: expected a JSON object")
    return data


def has_started(run_dir: Path) -> bool:
    """True when a training already wrote into this folder (metrics or checkpoints)."""
    run_dir = Path(run_dir)
    return (run_dir / METRICS).exists() or (run_dir / CHECKPOINTS / "last.pt").exists()


# ---------------------------------------------------------------- stop, fixes, log


def request_stop(run_dir: Path) -> None:
    """Ask a run to stop cleanly: it checkpoints and exits at the next iteration."""
    (Path(run_dir) / STOP).write_text(now_iso() + "\n")


def stop_requested(run_dir: Path) -> bool:
    return (Path(run_dir) / STOP).exists()


def clear_stop(run_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (Path(run_dir) / STOP).unlink()


def write_fixes(run_dir: Path, fixes: list[Any]) -> None:
    """Record the dataset fixes training applied (each a dict or a string)."""
    write_json_atomic(Path(run_dir) / FIXES, finite([_as_plain(f) for f in fixes]))


def read_fixes(run_dir: Path) -> list[Any]:
    data = read_json(Path(run_dir) / FIXES)
    return data if isinstance(data, list) else []


def _as_plain(obj: Any) -> Any:
    if is_dataclass(obj) and not isinstance(obj, type):
        return asdict(obj)
    if isinstance(obj, (dict, list, str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def log_path(run_dir: Path) -> Path:
    return Path(run_dir) / LOG


def log_tail(run_dir: Path, lines: int = 50, max_bytes: int = 65536) -> list[str]:
    """The last `lines` lines of train.log (reads at most `max_bytes` from the end)."""
    path = log_path(run_dir)
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except OSError:
        return []
    return data.decode("utf-8", errors="replace").splitlines()[-lines:]


# ---------------------------------------------------------------- checkpoints, TensorBoard, diagnosis


def tensorboard_dir(run_dir: Path) -> Path:
    """Where TensorBoard event files go: the run folder itself, so `tensorboard --logdir workspace/runs`
    lists each run by its id."""
    return Path(run_dir)


def checkpoint_path(run_dir: Path, which: str = "last") -> Path:
    """`checkpoints/last.pt` or `checkpoints/best.pt` of a run (may not exist yet)."""
    if which not in ("last", "best"):
        raise ValueError(f"which must be last or best, not {which!r}")
    return Path(run_dir) / CHECKPOINTS / f"{which}.pt"


def best_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint a run folder stands for: `checkpoints/best.pt`, else `checkpoints/last.pt`
    (a folder holding best.pt / last.pt itself, such as a run's checkpoints/, is accepted too);
    None when it has neither yet."""
    run_dir = Path(run_dir)
    for candidate in (checkpoint_path(run_dir, "best"), checkpoint_path(run_dir, "last"),
                      run_dir / "best.pt", run_dir / "last.pt"):
        if candidate.is_file():
            return candidate
    return None


def diagnosis_path(run_dir: Path) -> Path:
    """`diagnosis.json` of a run (may not exist yet)."""
    return Path(run_dir) / DIAGNOSIS


def write_diagnosis(run_dir: Path, report: dict[str, Any]) -> Path:
    """Write a finished diagnosis into the run folder, atomically."""
    path = diagnosis_path(run_dir)
    write_json_atomic(path, report)
    return path


def read_diagnosis(run_dir: Path) -> dict[str, Any] | None:
    """The run's diagnosis.json, or None when there is none (or it cannot be read)."""
    data = read_json(diagnosis_path(run_dir))
    return data if isinstance(data, dict) else None
