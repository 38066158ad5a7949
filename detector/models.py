"""Building a model by name: `build_model(name, class_names, weights)` looks the name up in the
registry (`detector.architectures`, whose names are imported here for every caller: ARCHITECTURES,
DEMO_ARCH, DEFAULT_ARCH, ...) and calls its builder, then sets anchors and trainable backbone stages;
pretrained weights only from torchvision's cache (`detector.weights`). Checkpoints (save, read, rebuild, what a model
source names) are `detector.checkpoints`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchvision.models.detection.faster_rcnn import FasterRCNN
from torchvision.models.detection.rpn import RPNHead

from detector.architectures import (  # noqa: F401 - the registry's names, as callers have always read them here
    ARCHITECTURES, COCO_CLASS_NAMES, DEFAULT_ARCH, DEMO_ARCH, GPU_DEFAULT_ARCH, MODEL_KNOBS, MODEL_NAMES, Architecture,
    anchor_generator, architecture, replace_box_predictor,
)
from detector.backbone_stages import set_trainable_backbone_layers
from detector.weights import WeightsUnavailable, cached_weights_path, weights_status



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
    (height/width, one list per level or one for all); a change in anchors per location
    re-initialises the RPN head's last layers (`set_anchors`); and `trainable_backbone_layers` (detector.backbone_stages: the
    top N backbone stages train, the others are frozen), so a checkpoint rebuilds the same tree.
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
    kwargs = dict(model_kwargs)
    anchor_sizes = kwargs.pop("anchor_sizes", None)
    aspect_ratios = kwargs.pop("aspect_ratios", None)
    trainable_layers = kwargs.pop("trainable_backbone_layers", None)
    unknown = set(kwargs) - set(MODEL_KNOBS)
    if unknown:
        raise ValueError(f"unknown model options: {', '.join(sorted(unknown))}")

    model = arch.build(arch, tuple(class_names), pretrained, kwargs)
    if anchor_sizes is not None:
        set_anchors(model, anchor_sizes, aspect_ratios)
    if trainable_layers is not None:
        set_trainable_backbone_layers(model, int(trainable_layers))
    return model


def set_anchors(model: FasterRCNN, sizes: Any, ratios: Any = None) -> bool:
    """Give `model` a new AnchorGenerator; True if the RPN head's last layers were re-initialised.

    The RPN head is a 3x3 conv over the features (kept: it does not depend on the anchors) and two
    1x1 layers with one output (`cls_logits`) and four (`bbox_pred`) per anchor per location. When
    the number of anchors per location changes, those two are replaced by fresh layers, initialised
    as torchvision's RPNHead initialises its own (weights normal with std 0.01, biases 0).
    """
    generator = anchor_generator(sizes, ratios)
    model.rpn.anchor_generator = generator
    new_a = generator.num_anchors_per_location()[0]
    head: RPNHead = model.rpn.head
    if new_a == head.cls_logits.out_channels:
        return False
    channels = head.cls_logits.in_channels
    head.cls_logits = nn.Conv2d(channels, new_a, kernel_size=1, stride=1)
    head.bbox_pred = nn.Conv2d(channels, new_a * 4, kernel_size=1, stride=1)
    for layer in (head.cls_logits, head.bbox_pred):
        nn.init.normal_(layer.weight, std=0.01)
        nn.init.constant_(layer.bias, 0)
    return True


# the layers set_anchors re-initialises when the anchors per location change
RPN_LAST_LAYERS = ("rpn.head.cls_logits", "rpn.head.bbox_pred")


def resolve_device(preference: str = "auto") -> torch.device:
    """`auto` means CUDA when available, else CPU; asking for CUDA without one is an error."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if preference == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA was asked for but no CUDA device is available")
    if preference not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, not {preference!r}")
    return torch.device(preference)
