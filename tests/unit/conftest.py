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


def anchor_centres(padded_size, grid, sizes=((32,),)):
    """x and y centres of a level's cells from torchvision's AnchorGenerator itself (input frame)."""
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.image_list import ImageList

    (pw, ph), (cols, rows) = padded_size, grid
    gen = AnchorGenerator(sizes, ((1.0,),) * len(sizes))
    images = ImageList(torch.zeros(1, 3, ph, pw), [(ph, pw)])
    (anchors,) = gen(images, [torch.zeros(1, 1, rows, cols)])
    centres = ((anchors[:, :2] + anchors[:, 2:]) / 2).view(rows, cols, 2)
    return centres[0, :, 0].numpy(), centres[:, 0, 1].numpy()


def anchor_tiles_on_boxes(padded_size, grid, scale, boxes):
    """(rows, columns) mask of a level's cells whose tile overlaps a box, from torchvision's anchor
    centres: centre -/+ stride / 2 in the input frame, divided by the (sx, sy) scale, against
    [x1, y1, x2, y2] boxes in original pixels."""
    import numpy as np

    cx, cy = anchor_centres(padded_size, grid)
    half_x, half_y = padded_size[0] // grid[0] / 2, padded_size[1] // grid[1] / 2
    mask = np.zeros((grid[1], grid[0]), bool)
    for x1, y1, x2, y2 in boxes:
        on_x = ((cx + half_x) / scale[0] > x1) & ((cx - half_x) / scale[0] < x2)
        on_y = ((cy + half_y) / scale[1] > y1) & ((cy - half_y) / scale[1] < y2)
        mask |= on_y[:, None] & on_x[None, :]
    return mask


@pytest.fixture(scope="session")
def demo_scene():
    """The shipped demo model, make_scene(10_002) (five shapes) and its Inspection: (loaded, scene, inspection)."""
    from detector import checkpoints
    from detector.images import to_tensor
    from detector.inspect import inspect
    from detector.scenes import make_scene

    demo = checkpoints.load_model(checkpoints.DEMO)
    scene = make_scene(10_002)
    return demo, scene, inspect(demo.model, [to_tensor(scene.image)])
