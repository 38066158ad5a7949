"""The workspace: the one folder where uploads, datasets and runs live.

`./workspace` by default, or `$DETECTOR_WORKSPACE`. Nothing in this project writes outside it
(except the shipped demo checkpoint, which is part of the repository).
"""

from __future__ import annotations

import os
from pathlib import Path


def workspace_root() -> Path:
    """The workspace folder (created on first use), absolute."""
    root = Path(os.environ.get("DETECTOR_WORKSPACE") or "workspace").expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    return root


def uploads_dir() -> Path:
    """`uploads/`: files exactly as the user uploaded them, never modified."""
    return _sub("uploads")


def datasets_dir() -> Path:
    """`datasets/NAME/`: parsed records and the train/val split of each stored dataset."""
    return _sub("datasets")


def runs_dir() -> Path:
    """`runs/ID/`: one folder per training run (see detector.runs)."""
    return _sub("runs")


def studies_dir() -> Path:
    """`studies/NAME/`: one folder per anchor study (study.json; its runs live in runs/, see
    detector.anchor_study)."""
    return _sub("studies")


def models_dir() -> Path:
    """`models/`: checkpoint files the user added (named `upload:<file name>` by the app)."""
    return _sub("models")


def is_inside(path: Path, folder: Path) -> bool:
    """True when `path` resolves to `folder` or somewhere below it (symlinks followed)."""
    try:
        Path(path).resolve().relative_to(Path(folder).resolve())
        return True
    except ValueError:
        return False


def _sub(name: str) -> Path:
    folder = workspace_root() / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder
