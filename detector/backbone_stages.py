"""`trainable_backbone_layers`, as torchvision's detection builders define it, for any of our models.

torchvision counts backbone stages from the top and trains that many (`_resnet_fpn_extractor`,
`_mobilenet_extractor` in torchvision/models/detection/backbone_utils.py):
  ResNet: the stages are layer4, layer3, layer2, layer1, conv1 (5 with bn1 too); 0 to 5.
  MobileNetV3: the stages start at block 0, at every block that reduces resolution (`_is_cn`) and
  at the last block; every block before the n-th stage from the top is frozen: 0 to 6.
The FPN, RPN and RoI heads always train. torchvision applies it only with pretrained weights; here
it applies to every start (COCO, --init checkpoint, random), and frozen really means frozen:
`requires_grad=False` (so the optimizer never sees those parameters and keeps no state for them)
and the frozen stages' BatchNorm layers become FrozenBatchNorm2d (no running-statistics update in
training mode).
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.detection.faster_rcnn import FasterRCNN
from torchvision.ops.misc import FrozenBatchNorm2d

RESNET_STAGES = ("layer4", "layer3", "layer2", "layer1", "conv1")


def _body(model: FasterRCNN) -> nn.Module:
    body = getattr(model.backbone, "body", None)
    if body is None:
        raise ValueError("trainable_backbone_layers needs a backbone with a `body` (torchvision's BackboneWithFPN)")
    return body


def backbone_stage_count(model: FasterRCNN) -> int:
    """How many stages `model`'s backbone has (the largest trainable_backbone_layers): 5 or 6."""
    body = _body(model)
    names = [n for n, _ in body.named_children()]
    if "layer4" in names:
        return len(RESNET_STAGES)
    return len(_mobilenet_stage_starts(list(body.children())))


def _mobilenet_stage_starts(blocks: list[nn.Module]) -> list[int]:
    return [0] + [i for i, b in enumerate(blocks) if getattr(b, "_is_cn", False)] + [len(blocks) - 1]


def frozen_backbone_modules(model: FasterRCNN, layers: int) -> list[str]:
    """Names (in model.named_modules()) of the backbone body's children frozen by `layers`."""
    body = _body(model)
    top = backbone_stage_count(model)
    if not 0 <= layers <= top:
        raise ValueError(f"trainable_backbone_layers must be 0 to {top} for this backbone, not {layers}")
    children = list(body.named_children())
    if "layer4" in dict(children):  # ResNet: train the top `layers` stages (bn1 with conv1)
        trained = set(RESNET_STAGES[:layers]) | ({"bn1"} if layers == len(RESNET_STAGES) else set())
        frozen = [n for n, m in children if n not in trained and _has_state(m)]  # not relu / maxpool
    else:  # MobileNetV3: freeze the blocks before the first trained stage
        starts = _mobilenet_stage_starts([m for _, m in children])
        freeze_before = len(children) if layers == 0 else starts[len(starts) - layers]
        frozen = [n for n, _ in children[:freeze_before]]
    return [f"backbone.body.{n}" for n in frozen]


def _has_state(module: nn.Module) -> bool:
    return any(True for _ in module.parameters()) or any(isinstance(m, FrozenBatchNorm2d) for m in module.modules())


def freeze_batchnorm(module: nn.Module, only: set[str] | None = None, prefix: str = "") -> nn.Module:
    """Replace every BatchNorm2d below `module` by FrozenBatchNorm2d with the same statistics.

    only: the qualified names (as in module.named_modules()) of the BatchNorm layers to replace;
    None: all of them.
    """
    for name, child in list(module.named_children()):
        qualified = f"{prefix}{name}"
        if isinstance(child, nn.BatchNorm2d) and (only is None or qualified in only):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            with torch.no_grad():
                frozen.weight.copy_(child.weight.detach())
                frozen.bias.copy_(child.bias.detach())
                frozen.running_mean.copy_(child.running_mean)
                frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen)
        else:
            freeze_batchnorm(child, only, f"{qualified}.")
    return module


def set_trainable_backbone_layers(model: FasterRCNN, layers: int) -> list[str]:
    """Train the top `layers` backbone stages and freeze the rest; returns the frozen parameter names.

    Every parameter outside the frozen stages is made trainable (a COCO builder's own default of 3
    is replaced by `layers`); BatchNorm inside the frozen stages becomes FrozenBatchNorm2d.
    """
    frozen_modules = frozen_backbone_modules(model, layers)
    body = _body(model)
    for name in frozen_modules:
        child = name.rpartition(".")[2]
        holder = nn.Module()  # freeze_batchnorm replaces children: this makes a bare BatchNorm (bn1) one
        holder.add_module(child, getattr(body, child))
        freeze_batchnorm(holder)
        setattr(body, child, getattr(holder, child))
    prefixes = tuple(f"{n}." for n in frozen_modules)
    body_prefix = "backbone.body."
    frozen_names = []
    for pname, param in model.named_parameters():
        if pname.startswith(body_prefix):
            is_frozen = pname.startswith(prefixes)
            param.requires_grad_(not is_frozen)
            if is_frozen:
                frozen_names.append(pname)
    return frozen_names
