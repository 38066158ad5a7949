"""Checkpoints: save, read, rebuild, and the one way to resolve a model source.

A checkpoint describes itself (format version, architecture, model kwargs, class names): a dict
of tensors and plain Python values, loaded with `torch.load(weights_only=True)`; for torchvision
architectures its `state_dict` loads into the plain torchvision builder. A model source is an
architecture name, `demo`, a checkpoint file or a run folder (`load_model`); the CLI's
`--checkpoint` / `--model` flags name one through `choose_source`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torchvision.models.detection.faster_rcnn import FasterRCNN
from torchvision.ops.misc import FrozenBatchNorm2d

from detector import runs
from detector.atomic_file import atomic_path
from detector.models import (
    ARCHITECTURES, COCO_CLASS_NAMES, DEFAULT_ARCH, GPU_DEFAULT_ARCH, architecture, build_model, freeze_batchnorm,
)
from detector.weights import cached_weights_path, weights_status


CHECKPOINT_FORMAT_VERSION = 1


DEMO = "demo"


DEMO_CHECKPOINT = Path(__file__).resolve().parent / "weights" / "demo.pt"


class CheckpointError(ValueError):
    """A file that is not one of this project's checkpoints, or one that does not fit."""


def _plain(value: Any) -> Any:
    """Plain Python for a checkpoint: no numpy scalars, no Paths, no tuples-of-tensors surprises."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, torch.Tensor):
        return value
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return value.item()
    return value


def save_checkpoint(
    path: str | Path,
    model: FasterRCNN,
    arch: str,
    class_names: tuple[str, ...] | list[str],
    model_kwargs: dict[str, Any] | None = None,
    epoch: int = 0,
    half: bool = False,
    **extra: Any,
) -> Path:
    """Write a checkpoint atomically (temp file + os.replace); `extra` adds optimizer, step, ...

    The model's frozen state (FrozenBatchNorm layers, parameters without gradient) is recorded so
    `load_checkpoint` rebuilds the same module tree. `half=True` stores float tensors as fp16.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if half:
        state = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}
    ckpt: dict[str, Any] = {
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "model": arch,
        "model_kwargs": _plain(model_kwargs or {}),
        "class_names": [str(c) for c in class_names],
        "epoch": int(epoch),
        "state_dict": state,
        "frozen_batchnorm": any(isinstance(m, FrozenBatchNorm2d) for m in model.modules()),
        "frozen_parameters": [n for n, p in model.named_parameters() if not p.requires_grad],
    }
    ckpt.update({k: _plain(v) for k, v in extra.items()})
    return write_checkpoint(path, ckpt)


def write_checkpoint(path: str | Path, ckpt: dict[str, Any]) -> Path:
    """Write a checkpoint dict atomically (temp file in the same folder + os.replace)."""
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)
    return Path(path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and check a checkpoint file (weights_only=True); CheckpointError names what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path.name}: not a loadable checkpoint ({reason[:200]})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "model" not in ckpt:
        raise CheckpointError(
            f"{path.name}: not a Faster R-CNN Explorer checkpoint (expected keys format_version, model, "
            "class_names, state_dict)"
        )
    if ckpt.get("format_version") != CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(f"{path.name}: unsupported checkpoint format_version {ckpt.get('format_version')!r}")
    if ckpt["model"] not in ARCHITECTURES:
        raise CheckpointError(f"{path.name}: unknown architecture {ckpt['model']!r}")
    names = ckpt.get("class_names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise CheckpointError(f"{path.name}: class_names must be a non-empty list of names")
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any], name: str = "checkpoint", **overrides: Any) -> FasterRCNN:
    """Rebuild the model a checkpoint describes and load its weights (strictly)."""
    kwargs = {**ckpt.get("model_kwargs", {}), **overrides}
    try:
        model = build_model(ckpt["model"], tuple(ckpt["class_names"]), weights="none", **kwargs)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{name}: cannot rebuild its model ({exc})") from None
    if ckpt.get("frozen_batchnorm"):
        freeze_batchnorm(model.backbone)
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in ckpt["state_dict"].items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise CheckpointError(f"{name}: weights do not fit {ckpt['model']} ({' '.join(first[:2])[:300]})") from None
    frozen = set(ckpt.get("frozen_parameters", []))
    for pname, param in model.named_parameters():
        param.requires_grad_(pname not in frozen)
    return model


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for inference and what the UI says about it."""

    model: FasterRCNN = field(repr=False)
    source: str  # what was asked for: a builder name, "demo", or a checkpoint path
    arch: str
    class_names: tuple[str, ...]
    model_kwargs: dict[str, Any]
    weights: str  # "coco", "imagenet", "demo", "checkpoint" or "random"
    description: str  # one line: which model and which weights


def checkpoint_path_for(source: str | Path) -> Path:
    """A checkpoint file from `demo`, a file, or a run folder (its best.pt, else last.pt)."""
    if str(source) == DEMO:
        if not DEMO_CHECKPOINT.is_file():
            raise CheckpointError(f"the demo checkpoint is missing ({DEMO_CHECKPOINT})")
        return DEMO_CHECKPOINT
    path = Path(source)
    if path.is_dir():
        found = runs.best_checkpoint(path)
        if found is None:
            raise CheckpointError(f"{path}: run folder has no checkpoints/best.pt or checkpoints/last.pt yet")
        return found
    return path


def load_model(source: str | Path, device: str | torch.device = "cpu", **overrides: Any) -> LoadedModel:
    """Load what `source` names, in eval mode on `device`.

    source: an architecture name (its pretrained weights when cached, else random weights),
    `demo`, a checkpoint file, or a run folder. overrides: MODEL_KNOBS such as box_score_thresh.
    """
    device = torch.device(device)
    src = str(source)
    if src in ARCHITECTURES and not Path(src).exists():
        status = weights_status(src)
        if status.cached:
            model = build_model(src, weights="pretrained", **overrides)
            weights = status.kind
            class_names = COCO_CLASS_NAMES if status.kind == "coco" else ("object",)
            description = f"{src} with {status.message}"
        else:
            class_names = COCO_CLASS_NAMES if status.kind == "coco" else ("object",)
            model = build_model(src, class_names, weights="none", **overrides)
            weights = "random"
            description = f"{src} with random weights ({status.message})"
        loaded = LoadedModel(model, src, src, tuple(class_names), dict(overrides), weights, description)
    else:
        path = checkpoint_path_for(src)
        ckpt = read_checkpoint(path)
        model = model_from_checkpoint(ckpt, path.name, **overrides)
        is_demo = src == DEMO
        kind = "demo" if is_demo else "checkpoint"
        label = "the demo model" if is_demo else f"checkpoint {path}"
        description = (f"{label}: {ckpt['model']} trained on {len(ckpt['class_names'])} classes"
                       f" ({', '.join(ckpt['class_names'][:6])}{'...' if len(ckpt['class_names']) > 6 else ''})")
        loaded = LoadedModel(model, src, ckpt["model"], tuple(ckpt["class_names"]),
                             {**ckpt.get("model_kwargs", {}), **overrides}, kind, description)
    loaded.model.eval().to(device)
    return loaded


def default_model(device: str | torch.device = "cpu") -> tuple[str, str]:
    """(source, why) of the default model: COCO MobileNet on CPU / resnet50 v2 on GPU, else demo."""
    on_gpu = torch.device(device).type == "cuda"
    preferred = GPU_DEFAULT_ARCH if on_gpu else DEFAULT_ARCH
    if cached_weights_path(preferred) is not None:
        return preferred, f"COCO weights for {preferred} are in the torch cache ({'GPU' if on_gpu else 'CPU'} default)"
    if DEMO_CHECKPOINT.is_file():
        return DEMO, "no COCO weights cached: the shipped demo model (trained offline on synthetic shapes)"
    return preferred, "no COCO weights cached and no demo checkpoint: random weights"


def choose_source(checkpoint: str | None = None, model: str | None = None, device: str | torch.device = "cpu") -> str:
    """The model source the CLI's `--checkpoint` / `--model` flags name (README, Command line).

    `--checkpoint` wins (a run folder, a file or `demo`); `--model NAME` alone means that builder
    with its COCO weights; neither means COCO weights when cached, else `demo`.
    """
    if checkpoint:
        return checkpoint
    if model:
        architecture(model)  # ValueError for an unknown name
        return model
    return default_model(device)[0]
