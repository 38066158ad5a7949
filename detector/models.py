"""Model names, builders, the weights policy, and checkpoint save/load.

Weights policy (DESIGN.md): pretrained weights come from torchvision's cache
(`$TORCH_HOME/hub/checkpoints`); a download happens only through `download_weights`, which the
user asks for; builders are always given `weights_backbone` explicitly so nothing is fetched
implicitly. Checkpoints are dicts of tensors and plain Python values, loaded with
`torch.load(weights_only=True)`, and for torchvision architectures their `state_dict` loads into
the plain torchvision builder.
"""

from __future__ import annotations

import os
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torchvision.models import ResNet50_Weights
from torchvision.models.detection import faster_rcnn as tv_frcnn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import mobilenet_backbone, resnet_fpn_backbone
from torchvision.models.detection.faster_rcnn import FasterRCNN, FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops.misc import FrozenBatchNorm2d

CHECKPOINT_FORMAT_VERSION = 1
DEMO = "demo"
DEMO_ARCH = "mobilenet_v3_fpn_lite"
DEMO_CHECKPOINT = Path(__file__).resolve().parent / "weights" / "demo.pt"

# COCO's 91 ids as torchvision names them; index 0 is background, "N/A" marks unused ids.
COCO_CLASS_NAMES: tuple[str, ...] = tuple(tv_frcnn.FasterRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"][1:])


@dataclass(frozen=True)
class Architecture:
    """A buildable architecture: its builder, its pretrained weights, and a line for the UI."""

    name: str
    description: str
    pretrained: Any  # a torchvision WeightsEnum member, or None
    pretrained_kind: str  # "coco" (whole detector), "imagenet" (backbone only) or "none"
    on_cpu: str  # what to expect on a 2-core CPU


ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture(
            "fasterrcnn_resnet50_fpn",
            "ResNet-50 + FPN (the torchvision classic, 41M parameters)",
            tv_frcnn.FasterRCNN_ResNet50_FPN_Weights.COCO_V1,
            "coco",
            "slow on CPU (about 2 s per image)",
        ),
        Architecture(
            "fasterrcnn_resnet50_fpn_v2",
            "ResNet-50 + FPN v2 (improved recipe, 43M parameters)",
            tv_frcnn.FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1,
            "coco",
            "slow on CPU (about 3 s per image)",
        ),
        Architecture(
            "fasterrcnn_mobilenet_v3_large_fpn",
            "MobileNetV3-Large + FPN, 800 px input (19M parameters)",
            tv_frcnn.FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1,
            "coco",
            "about 0.5 s per image on CPU",
        ),
        Architecture(
            "fasterrcnn_mobilenet_v3_large_320_fpn",
            "MobileNetV3-Large + FPN, 320 px input (19M parameters)",
            tv_frcnn.FasterRCNN_MobileNet_V3_Large_320_FPN_Weights.COCO_V1,
            "coco",
            "fast on CPU (about 0.1 s per image)",
        ),
        Architecture(
            "resnet50_fpn_custom",
            "FasterRCNN(resnet_fpn_backbone('resnet50')): the classic fine-tuning example",
            ResNet50_Weights.IMAGENET1K_V1,
            "imagenet",
            "slow on CPU (about 2 s per image)",
        ),
        Architecture(
            DEMO_ARCH,
            "MobileNetV3-Large + FPN with a 256-wide box head, 320 px input: the shipped demo",
            None,
            "none",
            "fast on CPU (about 0.1 s per image)",
        ),
    )
}
MODEL_NAMES: tuple[str, ...] = tuple(ARCHITECTURES)
TORCHVISION_BUILDERS: dict[str, Callable[..., FasterRCNN]] = {
    "fasterrcnn_resnet50_fpn": tv_frcnn.fasterrcnn_resnet50_fpn,
    "fasterrcnn_resnet50_fpn_v2": tv_frcnn.fasterrcnn_resnet50_fpn_v2,
    "fasterrcnn_mobilenet_v3_large_fpn": tv_frcnn.fasterrcnn_mobilenet_v3_large_fpn,
    "fasterrcnn_mobilenet_v3_large_320_fpn": tv_frcnn.fasterrcnn_mobilenet_v3_large_320_fpn,
}

# Keyword arguments that reach FasterRCNN.__init__ (the RPN / RoI knobs and the transform).
MODEL_KNOBS = (
    "min_size", "max_size", "rpn_pre_nms_top_n_train", "rpn_pre_nms_top_n_test",
    "rpn_post_nms_top_n_train", "rpn_post_nms_top_n_test", "rpn_nms_thresh", "rpn_fg_iou_thresh",
    "rpn_bg_iou_thresh", "rpn_batch_size_per_image", "rpn_positive_fraction", "rpn_score_thresh",
    "box_score_thresh", "box_nms_thresh", "box_detections_per_img", "box_fg_iou_thresh",
    "box_bg_iou_thresh", "box_batch_size_per_image", "box_positive_fraction",
)


class WeightsUnavailable(RuntimeError):
    """Pretrained weights are not cached and could not be downloaded (offline, or refused)."""


class CheckpointError(ValueError):
    """A file that is not one of this project's checkpoints, or one that does not fit."""


@dataclass(frozen=True)
class WeightsStatus:
    """Where an architecture's pretrained weights stand, in plain words for the UI."""

    arch: str
    kind: str  # "coco", "imagenet" or "none"
    cached: bool
    path: str | None
    message: str


def architecture(name: str) -> Architecture:
    """The Architecture called `name`; ValueError listing the known names otherwise."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODEL_NAMES)}") from None


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


def _anchor_generator(sizes: Any, ratios: Any) -> AnchorGenerator:
    sizes_t = tuple(tuple(int(s) for s in level) for level in sizes)
    if ratios is None:
        ratios = [[0.5, 1.0, 2.0]] * len(sizes_t)
    ratios_t = tuple(tuple(float(r) for r in level) for level in ratios)
    if len(ratios_t) == 1 and len(sizes_t) > 1:
        ratios_t = ratios_t * len(sizes_t)
    if len(ratios_t) != len(sizes_t):
        raise ValueError(f"{len(sizes_t)} levels of anchor sizes but {len(ratios_t)} of ratios")
    return AnchorGenerator(sizes_t, ratios_t)


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d below `module` by FrozenBatchNorm2d with the same statistics."""
    for name, child in list(module.named_children()):
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            with torch.no_grad():
                frozen.weight.copy_(child.weight.detach())
                frozen.bias.copy_(child.bias.detach())
                frozen.running_mean.copy_(child.running_mean)
                frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen)
        else:
            freeze_batchnorm(child)
    return module


def build_model(
    name: str,
    class_names: tuple[str, ...] | list[str] | None = None,
    weights: str = "none",
    **model_kwargs: Any,
) -> FasterRCNN:
    """Build architecture `name` for `class_names` (label id = index + 1, 0 is background).

    weights: "none" (random init, no download ever), or "pretrained" / "coco" / "imagenet" for the
    architecture's own pretrained weights, which must be in torchvision's cache (else
    WeightsUnavailable). With COCO weights and other classes, the box predictor is replaced.
    model_kwargs: the MODEL_KNOBS, plus `anchor_sizes` (one list per level) and `aspect_ratios`
    (height/width, one list per level or one for all); a change in anchors per location replaces
    the RPN head with a fresh one.
    """
    arch = architecture(name)
    if weights not in ("none", "pretrained", "coco", "imagenet"):
        raise ValueError(f"weights must be none, pretrained, coco or imagenet, not {weights!r}")
    pretrained = weights != "none"
    if pretrained and arch.pretrained is None:
        raise WeightsUnavailable(f"{name} has no pretrained weights")
    if pretrained and cached_weights_path(name) is None:
        raise WeightsUnavailable(f"{weights_status(name).message} ({name})")
    if class_names is None:
        class_names = COCO_CLASS_NAMES if arch.pretrained_kind == "coco" else ("object",)
    num_classes = len(class_names) + 1
    kwargs = dict(model_kwargs)
    anchor_sizes = kwargs.pop("anchor_sizes", None)
    aspect_ratios = kwargs.pop("aspect_ratios", None)
    unknown = set(kwargs) - set(MODEL_KNOBS)
    if unknown:
        raise ValueError(f"unknown model options: {', '.join(sorted(unknown))}")

    if name in TORCHVISION_BUILDERS:
        builder = TORCHVISION_BUILDERS[name]
        if pretrained:
            model = builder(weights=arch.pretrained, weights_backbone=None, **kwargs)
            if num_classes != 91 or tuple(class_names) != COCO_CLASS_NAMES:
                replace_box_predictor(model, num_classes)
        else:
            model = builder(weights=None, weights_backbone=None, num_classes=num_classes, **kwargs)
    elif name == "resnet50_fpn_custom":
        backbone = resnet_fpn_backbone(
            backbone_name="resnet50", weights=arch.pretrained if pretrained else None,
            trainable_layers=3 if pretrained else 5,
        )
        model = FasterRCNN(backbone, num_classes=num_classes, **kwargs)
    else:  # DEMO_ARCH: compact, trained from scratch by this project
        backbone = mobilenet_backbone(
            backbone_name="mobilenet_v3_large", weights=None, fpn=True, trainable_layers=6, norm_layer=nn.BatchNorm2d
        )
        resolution = 7  # MultiScaleRoIAlign's output size
        defaults = dict(min_size=320, max_size=640, rpn_pre_nms_top_n_test=300, rpn_post_nms_top_n_test=100,
                        rpn_pre_nms_top_n_train=600, rpn_post_nms_top_n_train=300, box_batch_size_per_image=128)
        model = FasterRCNN(
            backbone,
            num_classes=None,
            rpn_anchor_generator=_anchor_generator([[16, 32, 64, 128, 256]] * 3, None),
            box_head=TwoMLPHead(backbone.out_channels * resolution**2, 256),
            box_predictor=FastRCNNPredictor(256, num_classes),
            **{**defaults, **kwargs},
        )

    if anchor_sizes is not None:
        set_anchors(model, anchor_sizes, aspect_ratios)
    return model


def set_anchors(model: FasterRCNN, sizes: Any, ratios: Any = None) -> bool:
    """Give `model` a new AnchorGenerator; True if the RPN head had to be replaced (fresh weights).

    A pretrained RPN head predicts a fixed number of anchors per location: a change of that number
    means a new, untrained head.
    """
    generator = _anchor_generator(sizes, ratios)
    model.rpn.anchor_generator = generator
    new_a = generator.num_anchors_per_location()[0]
    head: RPNHead = model.rpn.head
    old_a = head.cls_logits.out_channels
    if new_a == old_a:
        return False
    in_channels = head.cls_logits.in_channels
    conv_depth = len(head.conv)
    model.rpn.head = RPNHead(in_channels, new_a, conv_depth=conv_depth)
    return True


def replace_box_predictor(model: FasterRCNN, num_classes: int) -> None:
    """Replace the final classification/regression layer for `num_classes` (background included)."""
    in_features = model.roi_heads.box_predictor.cls_score.in_features
    model.roi_heads.box_predictor = FastRCNNPredictor(in_features, num_classes)


# ---------------------------------------------------------------- checkpoints


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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(ckpt, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


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


# ---------------------------------------------------------------- model sources


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


def resolve_device(preference: str = "auto") -> torch.device:
    """`auto` means CUDA when available, else CPU; asking for CUDA without one is an error."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if preference == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA was asked for but no CUDA device is available")
    if preference not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, not {preference!r}")
    return torch.device(preference)


def checkpoint_path_for(source: str | Path) -> Path:
    """A checkpoint file from `demo`, a file, or a run folder (its best.pt, else last.pt)."""
    if str(source) == DEMO:
        if not DEMO_CHECKPOINT.is_file():
            raise CheckpointError(f"the demo checkpoint is missing ({DEMO_CHECKPOINT})")
        return DEMO_CHECKPOINT
    path = Path(source)
    if path.is_dir():
        for candidate in (path / "checkpoints" / "best.pt", path / "checkpoints" / "last.pt",
                          path / "best.pt", path / "last.pt"):
            if candidate.is_file():
                return candidate
        raise CheckpointError(f"{path}: run folder has no checkpoints/best.pt or checkpoints/last.pt yet")
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
    preferred = "fasterrcnn_resnet50_fpn_v2" if on_gpu else "fasterrcnn_mobilenet_v3_large_320_fpn"
    if cached_weights_path(preferred) is not None:
        return preferred, f"COCO weights for {preferred} are in the torch cache ({'GPU' if on_gpu else 'CPU'} default)"
    if DEMO_CHECKPOINT.is_file():
        return DEMO, "no COCO weights cached: the shipped demo model (trained offline on synthetic shapes)"
    return preferred, "no COCO weights cached and no demo checkpoint: random weights"


def choose_source(checkpoint: str | None = None, model: str | None = None, device: str | torch.device = "cpu") -> str:
    """The model source the CLI's `--checkpoint` / `--model` flags name (DESIGN.md).

    `--checkpoint` wins (a run folder, a file or `demo`); `--model NAME` alone means that builder
    with its COCO weights; neither means COCO weights when cached, else `demo`.
    """
    if checkpoint:
        return checkpoint
    if model:
        architecture(model)  # ValueError for an unknown name
        return model
    return default_model(device)[0]
