"""Fixtures and helpers shared by the unit tests of several modules (import helpers from tests.unit.conftest)."""

from __future__ import annotations

import pytest
import torch

from detector.models import build_model


SMALL = dict(min_size=128, max_size=200)  # tiny inputs: fast on 2 cores


@pytest.fixture(scope="session")
def mobilenet():
    return build_model("fasterrcnn_mobilenet_v3_large_320_fpn", weights="none", **SMALL).eval()


def torchvision_anchors(model, width: int, height: int):
    """What the RPN itself sees: the transform's image list, the backbone's features, the generator."""
    image = torch.rand(3, height, width)
    with torch.no_grad():
        image_list, _ = model.transform([image])
        features = list(model.backbone(image_list.tensors).values())
        anchors = model.rpn.anchor_generator(image_list, features)[0]
    return image_list, features, anchors
