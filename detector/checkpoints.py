"""Checkpoints: save, read, rebuild, and the one way to resolve a model source.

A checkpoint describes itself (format version, architecture, model kwargs, class names): a dict
of tensors and plain Python values, loaded with `torch.load(weights_only=True)`; for torchvision
architectures its `state_dict` loads into the plain torchvision builder.

Checkpoints from elsewhere are read into the same dict (`read_checkpoint`), so every command and
page takes them: a torchvision `references/detection/train.py` checkpoint ({model: state_dict,
optimizer, lr_scheduler, args: argparse.Namespace, epoch}; the architecture is `args.model`, the
class count the box predictor's rows), and a bare `state_dict` given an architecture name (class
names given, or COCO's for 91 classes, else numbered). Always `weights_only=True`; the only class
allowed beyond tensors and plain values is `argparse.Namespace`, for the references' `args`. A model source is an
architecture name, `demo`, a checkpoint file or a run folder (`load_model`); the CLI's
`--checkpoint` / `--model` flags name one through `choose_source`.
"""

from __future__ import annotations

import argparse
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torchvision.models.detection.faster_rcnn import FasterRCNN
from torchvision.ops.misc import FrozenBatchNorm2d

from detector import runs
from detector.atomic_file import atomic_path
from detector.architectures import ARCHITECTURES, COCO_CLASS_NAMES, DEFAULT_ARCH, GPU_DEFAULT_ARCH, architecture
from detector.backbone_stages import freeze_batchnorm
from detector.models import build_model, set_anchors
from detector.weights import cached_weights_path, weights_status
from detector.wording import counted


CHECKPOINT_FORMAT_VERSION = 1


DEMO = "demo"


DEMO_CHECKPOINT = Path(__file__).resolve().parent / "demo_model" / "demo.pt"


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
        "frozen_batchnorm_modules": [n for n, m in model.named_modules() if isinstance(m, FrozenBatchNorm2d)],
        "frozen_parameters": [n for n, p in model.named_parameters() if not p.requires_grad],
    }
    ckpt.update({k: _plain(v) for k, v in extra.items()})
    return write_checkpoint(path, ckpt)


def write_checkpoint(path: str | Path, ckpt: dict[str, Any]) -> Path:
    """Write a checkpoint dict atomically (temp file in the same folder + os.replace)."""
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)
    return Path(path)


BOX_PREDICTOR_KEY = "roi_heads.box_predictor.cls_score.weight"  # (num_classes, features): the class count


def _torch_load(path: Path) -> Any:
    """torch.load with weights_only=True, allowing exactly argparse.Namespace (the references' args)."""
    with open(path, "rb") as f:
        head = f.read(2)
    if not zipfile.is_zipfile(path) and head[:1] != b"\x80":  # torch.save writes a zip (or, long ago, a pickle)
        raise CheckpointError(f"{path.name}: not a loadable checkpoint (not a file torch.save writes)")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
        unsupported = next((ln for ln in lines if "Unsupported global" in ln or "Unsupported operand" in ln), None)
        reason = (unsupported or (lines[0] if lines else type(exc).__name__)).split(". Please use")[0]
        if "weights_only" in reason or unsupported:
            reason = f"it holds Python objects that weights_only loading refuses: {reason}"
        raise CheckpointError(f"{path.name}: not a loadable checkpoint ({reason[:240]})") from None


def _is_state_dict(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())


def _class_names_for(path: Path, state: dict[str, torch.Tensor], class_names: Any) -> list[str]:
    """Class names for a foreign state_dict: given ones (checked against the box predictor), COCO's, or numbered."""
    if BOX_PREDICTOR_KEY not in state:
        raise CheckpointError(f"{path.name}: not a Faster R-CNN state_dict (no {BOX_PREDICTOR_KEY})")
    count = int(state[BOX_PREDICTOR_KEY].shape[0]) - 1  # rows: background + classes
    if class_names:
        names = [str(n).strip() for n in class_names]
        if len(names) != count:
            raise CheckpointError(f"{path.name}: its box predictor has {counted(count, 'class')} (plus background), "
                                  f"but {len(names)} class names were given ({', '.join(names[:6])})")
        return names
    if count + 1 == len(COCO_CLASS_NAMES) + 1:
        return list(COCO_CLASS_NAMES)
    return [f"class {i}" for i in range(1, count + 1)]


def _foreign(path: Path, raw: Any, arch: str | None, class_names: Any) -> dict[str, Any]:
    """Our checkpoint dict from a references checkpoint or a bare state_dict (CheckpointError otherwise)."""
    if isinstance(raw, dict) and _is_state_dict(raw.get("model")) and isinstance(raw.get("args"), argparse.Namespace):
        args = raw["args"]
        name = getattr(args, "model", None)
        if arch and arch != name:
            raise CheckpointError(f"{path.name}: a torchvision references checkpoint of {name}, not {arch}")
        origin = f"torchvision references checkpoint ({name}, epoch {raw.get('epoch', '?')})"
        state = raw["model"]
        kwargs: dict[str, Any] = {}
        if getattr(args, "rpn_score_thresh", None) is not None:
            kwargs["rpn_score_thresh"] = float(args.rpn_score_thresh)
        epoch = int(raw.get("epoch", 0) or 0)
    elif _is_state_dict(raw):
        if not arch:
            raise CheckpointError(f"{path.name}: a bare state_dict records no architecture: give the model name "
                                  f"(--model NAME, one of {', '.join(n for n in ARCHITECTURES)}) and, optionally, "
                                  "the class names (--classes a,b,c)")
        name, origin, state, kwargs, epoch = arch, f"bare state_dict for {arch}", raw, {}, 0
    else:
        keys = ", ".join(sorted(map(str, raw))[:8]) if isinstance(raw, dict) else type(raw).__name__
        raise CheckpointError(
            f"{path.name}: not a checkpoint this tool reads (keys: {keys}); expected one of ours "
            "(format_version, model, class_names, state_dict), a torchvision references checkpoint "
            "(model, optimizer, lr_scheduler, args, epoch) or a bare state_dict")
    if name not in ARCHITECTURES:
        raise CheckpointError(f"{path.name}: architecture {name!r} is not a Faster R-CNN this tool builds "
                              f"(known: {', '.join(ARCHITECTURES)})")
    state = {k.removeprefix("module."): v for k, v in state.items()}  # saved from a DDP wrapper
    names = _class_names_for(path, state, class_names)
    # BatchNorm saved as FrozenBatchNorm2d (the builders' choice with pretrained backbones) has no
    # num_batches_tracked: freeze exactly those layers when rebuilding
    frozen_bn = [k[: -len(".running_mean")] for k in state if k.endswith(".running_mean")
                 and k[: -len(".running_mean")] + ".num_batches_tracked" not in state]
    return {"format_version": CHECKPOINT_FORMAT_VERSION, "model": name, "model_kwargs": kwargs,
            "class_names": names, "epoch": epoch, "state_dict": state, "frozen_batchnorm_modules": frozen_bn,
            "origin": origin}


def read_checkpoint(path: str | Path, arch: str | None = None, class_names: Any = None) -> dict[str, Any]:
    """Load and check a checkpoint file (weights_only=True); CheckpointError names what is wrong.

    Ours as they are; a torchvision references checkpoint or a bare state_dict (which needs `arch`;
    `class_names` optional) converted to ours in memory, with `origin` saying what it was.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    ckpt = _torch_load(path)
    if not (isinstance(ckpt, dict) and "state_dict" in ckpt and "format_version" in ckpt):
        ckpt = _foreign(path, ckpt, arch, class_names)
    if "model" not in ckpt:
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
    """Rebuild the model a checkpoint describes and load its weights (strictly).

    overrides: model kwargs that win over the checkpoint's. Other anchors (`anchor_sizes`,
    `aspect_ratios`) are set after the weights are loaded (`models.set_anchors`): the checkpoint's
    RPN head is kept, its last layers re-initialised when the anchors per location change.
    """
    anchors = {k: overrides.pop(k) for k in ("anchor_sizes", "aspect_ratios") if k in overrides}
    kwargs = {**ckpt.get("model_kwargs", {}), **overrides}
    try:
        model = build_model(ckpt["model"], tuple(ckpt["class_names"]), weights="none", **kwargs)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{name}: cannot rebuild its model ({exc})") from None
    if isinstance(ckpt.get("frozen_batchnorm_modules"), list):  # exactly those (a partly frozen backbone)
        freeze_batchnorm(model, set(ckpt["frozen_batchnorm_modules"]))
    elif ckpt.get("frozen_batchnorm"):  # checkpoints written before the list was recorded
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
    if anchors:
        own = ckpt.get("model_kwargs", {})
        set_anchors(model, anchors.get("anchor_sizes", own.get("anchor_sizes", model.rpn.anchor_generator.sizes)),
                    anchors.get("aspect_ratios", own.get("aspect_ratios", model.rpn.anchor_generator.aspect_ratios)))
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


def load_model(source: str | Path, device: str | torch.device = "cpu", *, arch: str | None = None,
               class_names: Any = None, **overrides: Any) -> LoadedModel:
    """Load what `source` names, in eval mode on `device`.

    source: an architecture name (its pretrained weights when cached, else random weights),
    `demo`, a checkpoint file (ours, torchvision references', or a bare state_dict given `arch`
    and optionally `class_names`), or a run folder. overrides: MODEL_KNOBS such as box_score_thresh.
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
        ckpt = read_checkpoint(path, arch, class_names)
        model = model_from_checkpoint(ckpt, path.name, **overrides)
        is_demo = src == DEMO
        kind = "demo" if is_demo else "checkpoint"
        label = "the demo model" if is_demo else f"{ckpt.get('origin', 'checkpoint')} {path.name}"
        description = (f"{label}: {ckpt['model']} trained on {counted(len(ckpt['class_names']), 'class')}"
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


def parse_class_names(text: str | None) -> list[str] | None:
    """`--classes a,b,c` as a list (None when not given); empty names refused."""
    if text is None or not text.strip():
        return None
    names = [n.strip() for n in text.split(",")]
    if any(not n for n in names):
        raise ValueError(f"--classes {text!r}: an empty class name (give names separated by commas)")
    return names


def load_chosen(checkpoint: str | None, model: str | None, classes: str | None = None,
                device: str | torch.device = "cpu", **overrides: Any) -> LoadedModel:
    """The model the CLI's `--checkpoint`, `--model` and `--classes` flags name, loaded.

    With both `--checkpoint FILE` and `--model NAME`, FILE may be a bare state_dict for NAME.
    """
    source = choose_source(checkpoint, model, device)
    if checkpoint and model:
        architecture(model)  # ValueError for an unknown name
    return load_model(source, device, arch=model if checkpoint else None, class_names=parse_class_names(classes),
                      **overrides)


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


def import_checkpoint(path: str | Path, folder: str | Path, name: str | None = None, arch: str | None = None,
                      class_names: Any = None) -> Path:
    """Store a checkpoint from anywhere (ours, torchvision references', a bare state_dict) as ours.

    The file is read with weights_only=True and checked by rebuilding its model; it is written to
    `folder/<stem>.pt` in this project's format (so every page and command loads it as it is).
    name: the file name to keep (an upload's), default `path`'s. CheckpointError if it does not load.
    """
    path = Path(path)
    label = name or path.name
    ckpt = read_checkpoint(path, arch, class_names)
    model_from_checkpoint(ckpt, label)  # it must rebuild and load strictly
    stem = Path(label).stem.strip() or "model"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem).lstrip(".") or "model"
    ckpt = {k: v for k, v in ckpt.items() if k not in ("optimizer", "scheduler", "scaler")}
    return write_checkpoint(Path(folder) / f"{safe}.pt", ckpt)
