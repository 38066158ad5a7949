"""A run's validation images on the training page, cached: read from the run's dataset (None when
it is gone) and scored by the run's checkpoint (once per checkpoint file version)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st
import torch
from PIL import Image

from detector import checkpoints, runs
from detector.hard_examples import ScoredRun, score_validation_images, validation_root
from detector.images import ImageError, load_image


@st.cache_data(show_spinner=False, max_entries=64)
def load_val_image(path: str) -> Image.Image | None:
    """A validation image, or None when it cannot be read (figures then draw a grey canvas)."""
    try:
        return load_image(path, name=Path(path).name)
    except (ImageError, OSError):
        return None


@st.cache_data(show_spinner=False, max_entries=16)
def _root(run_dir: str, stamp: float) -> str | None:
    del stamp
    root = validation_root(run_dir)
    return str(root) if root is not None else None


def snapshot_image(run_dir: Path, file: str) -> Image.Image | None:
    """The image behind a snapshot entry (its dataset may be gone: then None)."""
    cfg = Path(run_dir) / runs.CONFIG
    root = _root(str(run_dir), cfg.stat().st_mtime if cfg.exists() else 0.0)
    return load_val_image(str(Path(root) / file)) if root else None


@st.cache_resource(show_spinner=False, max_entries=4)
def _scored(run_dir: str, stamp: float, device: str, max_images: int) -> ScoredRun:
    del stamp
    return score_validation_images(run_dir, device, max_images=max_images)


def scored_run(run_dir: Path, device: torch.device, max_images: int) -> ScoredRun:
    """The run's validation images scored by its checkpoint (cached per checkpoint file version)."""
    ckpt = checkpoints.checkpoint_path_for(run_dir)
    return _scored(str(run_dir), ckpt.stat().st_mtime, str(device), max_images)
