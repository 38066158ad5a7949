"""Training augmentations: the photometric and geometric sets of torchvision's detection references.

Built on `torchvision.transforms.v2`, which moves boxes with the image (tv_tensors.BoundingBoxes),
after torchvision's `references/detection/presets.py` (DetectionPresetTrain):
  photometric  RandomPhotometricDistort (brightness, contrast, saturation, hue, channel order)
  ssd          RandomPhotometricDistort, RandomZoomOut (filled with the reference mean),
               RandomIoUCrop (the SSD crop: a crop overlapping some object at a random min IoU)
  ssdlite      RandomIoUCrop
each followed by RandomHorizontalFlip when flips are on, then SanitizeBoundingBoxes, as the
references do with transforms v2: a box the crop left degenerate (under 1 px a side, or whose
centre fell outside the crop, which RandomIoUCrop marks by zeroing it) is removed with its label,
and `Augment` returns how many were removed so the run can count them. The references' `lsj`
(ScaleJitter + FixedSizeCrop to 1024 px) is left out: FixedSizeCrop is not part of
transforms.v2, and multi-scale training is the model's own per-batch `min_size` choice
(TrainConfig.multi_scale). Images are float (3, H, W) in [0, 1]; boxes absolute xyxy pixels.
"""

from __future__ import annotations

from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2 as T

from detector.train_config import AUGMENTATIONS  # the one list of policies (the config checks it)

__all__ = ["AUGMENTATIONS", "Augment", "build_transform"]

# the references' fill for RandomZoomOut: ImageNet mean RGB, here on the [0, 1] scale of our images
REFERENCE_MEAN = (123.0 / 255, 117.0 / 255, 104.0 / 255)
HFLIP_P = 0.5


def build_transform(policy: str, hflip: bool = True) -> T.Compose:
    """The v2 pipeline of `policy` (one of AUGMENTATIONS), taking and returning (image, target).

    target: {"boxes": tv_tensors.BoundingBoxes (XYXY), "labels": (N,) tensor, optionally "masks"}.
    """
    if policy not in AUGMENTATIONS:
        raise ValueError(f"augmentation must be one of {', '.join(AUGMENTATIONS)}, not {policy!r}")
    steps: list[Any] = []
    if policy in ("photometric", "ssd"):
        steps.append(T.RandomPhotometricDistort())
    if policy == "ssd":
        steps.append(T.RandomZoomOut(fill={tv_tensors.Image: REFERENCE_MEAN, "others": 0}))
    if policy in ("ssd", "ssdlite"):
        steps.append(T.RandomIoUCrop())
    if hflip:
        steps.append(T.RandomHorizontalFlip(p=HFLIP_P))
    steps.append(T.SanitizeBoundingBoxes())  # degenerate boxes out, with their labels (and masks)
    return T.Compose(steps)


class Augment:
    """Callable for a Dataset: (image, boxes, labels) -> (image, boxes, labels, boxes removed)."""

    def __init__(self, policy: str, hflip: bool = True):
        self.policy = policy
        self.transform = build_transform(policy, hflip)

    def __call__(self, image: torch.Tensor, boxes: torch.Tensor,
                 labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        height, width = image.shape[-2:]
        target = {"boxes": tv_tensors.BoundingBoxes(boxes.reshape(-1, 4), format="XYXY", canvas_size=(height, width)),
                  "labels": labels}
        out_image, out = self.transform(tv_tensors.Image(image), target)
        kept = out["boxes"].as_subclass(torch.Tensor).float().reshape(-1, 4)
        return (out_image.as_subclass(torch.Tensor).contiguous(), kept, out["labels"].as_subclass(torch.Tensor),
                int(len(labels) - len(kept)))

    def __repr__(self) -> str:
        return f"Augment({self.policy!r})"


class BatchScales:
    """Multi-scale training: the model's short-side target drawn per batch from `sizes`.

    torchvision's GeneralizedRCNNTransform draws `min_size` per image from a tuple; drawing once per
    batch instead keeps a batch's images the same size (less padding, as Ultralytics does). The draw
    depends only on (seed, global step), so a resumed run sees the same sizes. `apply(transform,
    step)` sets the size for one training step; `restore(transform)` puts back the model's own
    min_size for validation and detection.
    """

    def __init__(self, sizes: tuple[int, ...] | list[int], seed: int = 0):
        self.sizes = tuple(int(s) for s in sizes)
        self.seed = seed
        self.original: tuple[int, ...] | None = None

    def size_at(self, step: int) -> int:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        return self.sizes[int(torch.randint(len(self.sizes), (1,), generator=g))]

    def apply(self, transform: Any, step: int) -> int:
        if self.original is None:
            self.original = tuple(transform.min_size)
        size = self.size_at(step)
        transform.min_size = (size,)
        return size

    def restore(self, transform: Any) -> None:
        if self.original is not None:
            transform.min_size = self.original
