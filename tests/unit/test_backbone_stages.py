"""trainable_backbone_layers: the same stages as torchvision's own extractors freeze, really frozen.

Oracle: torchvision's `_resnet_fpn_extractor` / `_mobilenet_extractor` (what its builders call
with pretrained weights) on a fresh backbone; the trainable parameter names must be identical.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models import mobilenet_v3_large, resnet50
from torchvision.models.detection import backbone_utils
from torchvision.ops.misc import FrozenBatchNorm2d

from detector.backbone_stages import backbone_stage_count, set_trainable_backbone_layers
from detector.models import build_model


def _trainable_body(named_parameters, prefix: str) -> set[str]:
    return {n[len(prefix):] for n, p in named_parameters if p.requires_grad and n.startswith(prefix)}


@pytest.mark.parametrize("arch, layers", [("mobilenet_v3_fpn_lite", k) for k in range(7)]
                         + [("fasterrcnn_resnet50_fpn", k) for k in (0, 2, 5)])
def test_the_stages_torchvision_trains_are_the_ones_that_train(arch, layers):
    model = build_model(arch, ("a", "b"))
    assert backbone_stage_count(model) == (5 if "resnet" in arch else 6)
    frozen = set_trainable_backbone_layers(model, layers)
    if "resnet" in arch:
        reference = backbone_utils._resnet_fpn_extractor(resnet50(), layers)
    else:
        reference = backbone_utils._mobilenet_extractor(mobilenet_v3_large(), True, layers)
    assert _trainable_body(model.named_parameters(), "backbone.body.") == \
        _trainable_body(reference.named_parameters(), "body.")
    assert all(not p.requires_grad for n, p in model.named_parameters() if n in frozen)
    # the rest of the detector always trains
    assert all(p.requires_grad for n, p in model.named_parameters() if not n.startswith("backbone.body."))
    # no BatchNorm inside a frozen stage can update running statistics
    for name, module in model.backbone.body.named_modules():
        if isinstance(module, nn.BatchNorm2d):
            assert any(p.requires_grad for p in module.parameters()), name


def test_out_of_range_is_refused_per_backbone():
    with pytest.raises(ValueError, match="0 to 6"):
        set_trainable_backbone_layers(build_model("mobilenet_v3_fpn_lite", ("a",)), 7)


def test_frozen_stages_keep_their_weights_and_statistics_through_sgd_steps():
    torch.manual_seed(0)
    model = build_model("mobilenet_v3_fpn_lite", ("a",), min_size=64, max_size=96)
    frozen = set(set_trainable_backbone_layers(model, 2))
    assert frozen
    before = {k: v.clone() for k, v in model.state_dict().items()}
    frozen_state = [k for k in before if any(k.startswith(f.rpartition(".")[0] + ".") for f in frozen)]
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05, momentum=0.9)
    model.train()
    images = [torch.rand(3, 64, 80), torch.rand(3, 72, 64)]
    targets = [{"boxes": torch.tensor([[5.0, 6.0, 40.0, 50.0]]), "labels": torch.tensor([1])}] * 2
    for _ in range(3):
        optimizer.zero_grad()
        sum(model(images, targets).values()).backward()
        for name, p in model.named_parameters():
            assert (p.grad is None) == (name in frozen), name
        optimizer.step()
    after = model.state_dict()
    assert frozen_state and all(torch.equal(before[k], after[k]) for k in frozen_state)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("backbone.fpn."))
    assert isinstance(model.backbone.body.get_submodule("1").block[0][1], FrozenBatchNorm2d)
