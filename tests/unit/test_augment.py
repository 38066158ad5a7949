"""Augmentations: boxes move with the image, degenerate boxes are removed and counted.

Oracle: each object is also given as a pixel mask; transforms v2 moves masks through its own
(pixel) code path, so after any crop / zoom / flip the box of a kept object must equal the box of
its mask's pixels (torchvision.ops.masks_to_boxes), and the image's object pixels must sit there.
"""

from __future__ import annotations

import pytest
import torch
from torchvision import tv_tensors
from torchvision.ops import masks_to_boxes

from detector.augment import AUGMENTATIONS, Augment, build_transform
from detector.data.torchdata import DetectionDataset

H, W = 96, 128
BOXES = torch.tensor([[10, 12, 50, 60], [64, 20, 120, 90], [40, 70, 58, 88]], dtype=torch.float32)


def _scene() -> tuple[torch.Tensor, torch.Tensor]:
    """A dark image with bright rectangles at BOXES, and one mask per rectangle."""
    image = torch.full((3, H, W), 0.1)
    masks = torch.zeros(len(BOXES), H, W, dtype=torch.uint8)
    for k, (x1, y1, x2, y2) in enumerate(BOXES.int().tolist()):
        image[:, y1:y2, x1:x2] = 0.9
        masks[k, y1:y2, x1:x2] = 1
    return image, masks


@pytest.mark.parametrize("policy", ["ssd", "ssdlite"])
def test_boxes_follow_the_pixels_through_crops_zooms_and_flips(policy):
    transform = build_transform(policy, hflip=True)
    image, masks = _scene()
    changed = removed = kept_total = 0
    for seed in range(40):
        torch.manual_seed(seed)
        target = {"boxes": tv_tensors.BoundingBoxes(BOXES.clone(), format="XYXY", canvas_size=(H, W)),
                  "labels": torch.tensor([1, 2, 3]), "masks": tv_tensors.Mask(masks.clone())}
        out_image, out = transform(tv_tensors.Image(image.clone()), target)
        boxes, kept_masks = out["boxes"].as_subclass(torch.Tensor), out["masks"].as_subclass(torch.Tensor)
        assert out_image.shape[-2:] == kept_masks.shape[-2:] == tuple(out["boxes"].canvas_size)
        assert len(boxes) == len(out["labels"]) == len(kept_masks)
        removed += 3 - len(boxes)
        kept_total += len(boxes)
        changed += out_image.shape[-2:] != (H, W) or not torch.equal(boxes, BOXES)
        for box, mask, label in zip(boxes, kept_masks, out["labels"]):
            # the box is where its object's pixels are
            assert mask.any(), "a kept box with no visible object"
            assert torch.allclose(box, masks_to_boxes(mask[None].bool())[0] + torch.tensor([0, 0, 1, 1]), atol=1.0)
            assert (box[2:] - box[:2] >= 1).all()
            # and the image's bright pixels are under the mask (photometric changes keep the contrast order)
            grey = out_image.as_subclass(torch.Tensor).mean(0)
            assert grey[mask.bool()].mean() > grey[~kept_masks.bool().any(0)].mean()
    assert changed > 10 and kept_total > 0
    assert removed > 0, "the crops never removed a box in 40 tries"


def test_augment_counts_what_it_removed():
    image, _ = _scene()
    augment = Augment("ssdlite", hflip=False)
    counted = 0
    for seed in range(30):
        torch.manual_seed(seed)
        out_image, boxes, labels, removed = augment(image, BOXES.clone(), torch.tensor([1, 2, 3]))
        assert type(out_image) is torch.Tensor and type(boxes) is torch.Tensor  # plain tensors for the model
        assert removed == 3 - len(boxes) == 3 - len(labels)
        counted += removed
    assert counted > 0


def test_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="augmentation must be one of"):
        build_transform("mosaic")
    assert AUGMENTATIONS[0] == "none"


def test_dataset_applies_augment_and_reports_removed_boxes(tmp_path):
    from detector.data.synthetic import write_synthetic
    from detector.data import resolve_dataset

    root = write_synthetic(tmp_path / "d", images=4, seed=5, format="coco", width=128, height=96)
    ds, train_idx, _ = resolve_dataset(str(root))
    dataset = DetectionDataset([ds.records[i] for i in train_idx], ds.root, augment=Augment("ssd"))
    for i in range(len(dataset)):
        image, target = dataset[i]
        assert image.dtype == torch.float32 and image.shape[0] == 3
        h, w = image.shape[-2:]
        boxes = target["boxes"]
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
        assert target["boxes_removed"] == len(ds.records[train_idx[i]].boxes) - len(boxes)
