"""Pretrained weights: torchvision's cache, their status in plain words, the one download.

Weights policy (README, Models and weights): pretrained weights come from torchvision's cache
(`$TORCH_HOME/hub/checkpoints`); a download happens only through `download_weights`, which the
user asks for. Which weights an architecture has is in `detector.models.ARCHITECTURES`.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch


def _architecture(name: str) -> Any:
    """The registry entry (imported here: `detector.models` builds with these weights)."""
    from detector.models import architecture

    return architecture(name)


class WeightsUnavailable(RuntimeError):
    """Pretrained weights are not cached and could not be downloaded (offline, or refused)."""


@dataclass(frozen=True)
class WeightsStatus:
    """Where an architecture's pretrained weights stand, in plain words for the UI."""

    arch: str
    kind: str  # "coco", "imagenet" or "none"
    cached: bool
    path: str | None
    message: str


def weights_cache_dir() -> Path:
    """torchvision's weight cache: `$TORCH_HOME/hub/checkpoints` (default ~/.cache/torch)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def cached_weights_path(name: str) -> Path | None:
    """The cached pretrained weight file of architecture `name`, or None if not downloaded."""
    weights = _architecture(name).pretrained
    if weights is None:
        return None
    path = weights_cache_dir() / os.path.basename(weights.url)
    return path if path.is_file() and path.stat().st_size > 0 else None


def weights_status(name: str) -> WeightsStatus:
    """Plain-words status of `name`'s pretrained weights (never touches the network)."""
    arch = _architecture(name)
    if arch.pretrained is None:
        return WeightsStatus(name, "none", False, None, "trained by this project: no pretrained weights to fetch")
    path = cached_weights_path(name)
    what = "COCO weights" if arch.pretrained_kind == "coco" else "ImageNet backbone weights"
    if path is not None:
        return WeightsStatus(name, arch.pretrained_kind, True, str(path), f"{what} found in the torch cache")
    return WeightsStatus(
        name, arch.pretrained_kind, False, None,
        f"no {what} here: random weights; Download to fetch them",
    )


def download_weights(name: str, timeout_s: float = 15.0) -> Path:
    """Fetch `name`'s pretrained weights into torchvision's cache (only when the user asks).

    Fails fast offline: a socket timeout bounds the wait, and any network error becomes
    WeightsUnavailable with a one-line reason.
    """
    arch = _architecture(name)
    if arch.pretrained is None:
        raise WeightsUnavailable(f"{name} has no pretrained weights to download")
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout_s)
    try:
        torch.hub.load_state_dict_from_url(arch.pretrained.url, progress=False, check_hash=True, weights_only=True)
    except Exception as exc:  # URLError, timeout, hash mismatch: all mean "not available"
        raise WeightsUnavailable(f"could not download {name} weights ({type(exc).__name__}: {exc})") from None
    finally:
        socket.setdefaulttimeout(previous)
    path = cached_weights_path(name)
    if path is None:
        raise WeightsUnavailable(f"download of {name} weights left no file in {weights_cache_dir()}")
    return path
