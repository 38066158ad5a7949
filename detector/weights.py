"""Pretrained weights: torchvision's cache, their status in plain words, the one download.

Weights policy (README, Models and weights): pretrained weights come from torchvision's cache
(`$TORCH_HOME/hub/checkpoints`); a download happens only through `download_weights`, which the
user asks for. Which weights an architecture has is in `detector.models.ARCHITECTURES`.
Offline, `add_weights` takes a weight file copied over by hand (`python -m detector weights add
FILE`, or the sidebar), checks it is the file torchvision expects (name, sha256 prefix, loads into
the builder) and puts it in the cache.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from detector.architectures import ARCHITECTURES, COCO_CLASS_NAMES, architecture
from detector.atomic_file import atomic_path
from detector.backbone_stages import freeze_batchnorm


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
    weights = architecture(name).pretrained
    if weights is None:
        return None
    path = weights_cache_dir() / os.path.basename(weights.url)
    return path if path.is_file() and path.stat().st_size > 0 else None


def weights_status(name: str) -> WeightsStatus:
    """Plain-words status of `name`'s pretrained weights (never touches the network)."""
    arch = architecture(name)
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
    arch = architecture(name)
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


# ---------------------------------------------------------------- offline: a weight file copied over


class WeightsFileRefused(ValueError):
    """A file offered to `add_weights` that is not the weight file torchvision expects: `str()` says why."""


@dataclass(frozen=True)
class AddedWeights:
    """What `add_weights` did: the architecture, where the file now is, and its status."""

    arch: str
    path: Path
    status: WeightsStatus
    note: str  # empty, or how the file differs from this torchvision's own release


def expected_weight_files() -> dict[str, str]:
    """The weight file name each architecture's builder looks for in the cache -> the architecture."""
    return {os.path.basename(a.pretrained.url): a.name for a in ARCHITECTURES.values() if a.pretrained is not None}


def _name_parts(file_name: str) -> tuple[str, str, str] | None:
    """(stem, hash prefix, extension) of a torchvision weight file name (`stem-<hex>.ext`), as torch.hub reads it."""
    match = torch.hub.HASH_REGEX.search(file_name)
    if match is None or not match.group(1):
        return None
    stem = file_name[: match.start()]
    return stem, match.group(1), file_name[match.end():]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_weight_file(path: str | Path, file_name: str | None = None) -> tuple[str, str]:
    """(architecture, note) for a weight file torchvision expects; WeightsFileRefused otherwise.

    Checks, as torchvision's cache does: the name is `<stem>-<sha256 prefix>.<ext>` with the stem of
    one of our architectures' weight URLs; the file's sha256 starts with that prefix (torch.hub's
    check_hash rule); and the file loads (weights_only) strictly into that architecture's builder.
    file_name: the name to check when `path` is a temporary copy (an upload).
    """
    path = Path(path)
    name = file_name or path.name
    if not path.is_file():
        raise WeightsFileRefused(f"{name}: no such file")
    expected = expected_weight_files()
    parts = _name_parts(name)
    by_stem = {_name_parts(n)[0]: n for n in expected}  # type: ignore[index]
    if parts is None or parts[0] not in by_stem or f".{parts[2]}" != os.path.splitext(by_stem[parts[0]])[1]:
        raise WeightsFileRefused(
            f"{name}: not a weight file torchvision looks for; expected one of {', '.join(sorted(expected))} "
            "(the name carries the architecture and the first hex digits of the file's sha256)")
    official = by_stem[parts[0]]
    arch = expected[official]
    digest = _sha256(path)
    if not digest.startswith(parts[1]):
        raise WeightsFileRefused(
            f"{name}: its sha256 starts {digest[:len(parts[1])]}, but its name says {parts[1]}: the file is "
            "damaged or not the one named (copy it again)")
    _check_loads(path, name, arch)
    note = "" if name == official else (
        f"a different release than this torchvision's {official}: its own hash checks out and it loads into "
        f"{arch}; stored as {official}, the name torchvision looks for")
    return arch, note


def _check_loads(path: Path, name: str, arch: str) -> None:
    """The file is a state_dict that loads strictly into `arch`'s builder (COCO's 91 classes)."""
    from torchvision.models import resnet50

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsFileRefused(f"{name}: not a loadable weight file ({str(exc).strip().splitlines()[0][:200]})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsFileRefused(f"{name}: not a state_dict (a dict of tensors)")
    spec = architecture(arch)
    model = resnet50(weights=None) if spec.pretrained_kind == "imagenet" else \
        spec.build(spec, COCO_CLASS_NAMES, False, {})
    # pretrained builders use FrozenBatchNorm2d, whose saved state has no num_batches_tracked
    frozen = {k[: -len(".running_mean")] for k in state if k.endswith(".running_mean")
              and k[: -len(".running_mean")] + ".num_batches_tracked" not in state}
    freeze_batchnorm(model, frozen)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = " ".join(str(exc).strip().splitlines()[:2])[:300]
        raise WeightsFileRefused(f"{name}: does not load into {arch} ({first})") from None


def add_weights(path: str | Path, file_name: str | None = None) -> AddedWeights:
    """Check a weight file copied over by hand and put it in torchvision's cache (atomically).

    After this, `weights_status(arch)` reports it cached and `--weights coco` / the sidebar use it.
    """
    arch, note = check_weight_file(path, file_name)
    official = os.path.basename(architecture(arch).pretrained.url)
    target = weights_cache_dir() / official
    with atomic_path(target) as tmp:
        shutil.copyfile(path, tmp)
    return AddedWeights(arch, target, weights_status(arch), note)
