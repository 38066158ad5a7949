"""The workspace's runs/: naming a new run, creating its folder, finding a run by name, listing runs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from detector.runs.folder import CONFIG, STATUS, RunError, read_config, write_config
from detector.runs.metrics import read_metrics
from detector.runs.status import read_status, write_status
from detector.workspace import is_inside, runs_dir

def new_run_id(prefix: str = "run") -> str:
    """A sortable, readable run id: `PREFIX-YYYYmmdd-HHMMSS` plus a suffix when taken."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = f"{prefix}-{stamp}"
    root = runs_dir()
    name, n = base, 1
    while (root / name).exists():
        n += 1
        name = f"{base}-{n}"
    return name


def run_path(run_id: str) -> Path | None:
    """The folder of run `run_id` under the workspace's runs/, or None when `run_id` is not the name
    of one (a path, '..', a missing run, a link leading outside): how a name from a URL becomes a run."""
    if not isinstance(run_id, str) or run_id in ("", ".", "..") or any(c in run_id for c in "/\\\0"):
        return None
    root = runs_dir()
    path = root / run_id
    return path if path.is_dir() and is_inside(path, root) else None


RUN_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
RUN_NAME_MAX = 64


def run_name_problem(name: str, new: bool = True) -> str | None:
    """Why `name` cannot be a run id (it names a folder under runs/ and goes in URLs), or None;
    with `new`, a run of that name must not exist yet."""
    if not name:
        return "a run name cannot be empty"
    if len(name) > RUN_NAME_MAX:
        return f"a run name has at most {RUN_NAME_MAX} characters"
    if not set(name) <= RUN_NAME_CHARS or name[0] in ".-":
        return "a run name uses letters, digits, '.', '_' and '-' only, and starts with a letter or digit"
    if new and (runs_dir() / name).exists():
        return f"a run named {name} exists already"
    return None


def create_run(config: dict[str, Any] | None = None, name: str | None = None) -> Path:
    """Make a new run folder under the workspace's `runs/`, with config.json and status `queued`.
    A `name` must pass run_name_problem (RunError otherwise); without one, a dated id is made."""
    if name is not None and (problem := run_name_problem(name, new=False)):
        raise RunError(f"{name}: {problem}")
    run_dir = runs_dir() / (name or new_run_id())
    if run_dir.exists() and any(run_dir.iterdir()):
        raise RunError(f"{run_dir}: run folder already exists")
    run_dir.mkdir(parents=True, exist_ok=True)
    if config is not None:
        write_config(run_dir, config)
    write_status(run_dir, state="queued", pid=None, epoch=0, step=0, error=None)
    return run_dir


@dataclass(frozen=True)
class RunSummary:
    """One line of the runs table."""

    run_dir: Path
    name: str
    state: str  # status state, or "interrupted"
    dataset: str | None
    model: str | None
    epoch: int  # status.json's: the epoch of the last step taken (the Train page header's)
    epochs: int | None
    step: int
    best_map: float | None  # best validation mAP so far (None before the first val or without pycocotools)
    error: str | None
    modified: float  # mtime of status.json (or the folder), seconds since the epoch
    epochs_done: int | None = None  # status.json's: epochs completed (None when it predates the field)


def summarize_run(run_dir: Path) -> RunSummary:
    run_dir = Path(run_dir)
    status = read_status(run_dir)
    try:
        config = read_config(run_dir) or {}
    except RunError:
        config = {}
    _, val = read_metrics(run_dir)
    maps = [float(v["mAP"]) for v in val if isinstance(v.get("mAP"), (int, float))]
    status_file = run_dir / STATUS
    modified = (status_file if status_file.exists() else run_dir).stat().st_mtime
    model = config.get("model") or status.extra.get("model")
    if config.get("init") and not config.get("model"):
        model = f"init {config['init']}"
    return RunSummary(
        run_dir=run_dir, name=run_dir.name, state=status.shown_state,
        dataset=config.get("data"), model=model,
        epoch=status.epoch, epochs=config.get("epochs"), step=status.step,
        best_map=max(maps) if maps else None, error=status.error, modified=modified, epochs_done=status.epochs_done,
    )


def list_runs(root: Path | None = None) -> list[RunSummary]:
    """Every run folder under the workspace's runs/ (or `root`), newest first."""
    root = Path(root) if root is not None else runs_dir()
    if not root.is_dir():
        return []
    runs = [summarize_run(p) for p in root.iterdir()
            if p.is_dir() and ((p / STATUS).exists() or (p / CONFIG).exists())]
    return sorted(runs, key=lambda r: r.modified, reverse=True)
