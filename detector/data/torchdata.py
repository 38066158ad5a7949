"""The torch Dataset over records, for training and evaluation with torchvision's detection models."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import torch
from torch.utils.data import Dataset

from detector.data.records import ImageRecord
from detector.images import load_image, to_tensor


class DetectionDataset(Dataset):
    """Images and targets as torchvision's FasterRCNN expects them in training mode.

    `dataset[i]` -> (image float tensor (3, H, W) in [0, 1], {"boxes": float32 (N, 4) absolute
    xyxy pixels of that image, "labels": int64 (N,) in 1..K, "image_id": i}). With `train`, each
    image is flipped left-right with probability `flip_p` (boxes flipped with it: x1' = W - x2).
    Records should come from `prepare_for_training` (boxes clipped, degenerate boxes left out).
    `augment` (detector.augment.Augment) replaces the flip: it transforms image and boxes together
    and the target's "boxes_removed" says how many boxes it left degenerate and removed.
    """

    def __init__(self, records: Sequence[ImageRecord], root: str | Path, train: bool = False, flip_p: float = 0.5,
                 augment: Callable | None = None):
        self.records = list(records)
        self.root = Path(root)
        self.train = train
        self.flip_p = flip_p
        self.augment = augment

    def __len__(self) -> int:
        return len(self.records)

    def aspect_ratio(self, i: int) -> float:
        """width / height of image i from its record (no decoding), for aspect-ratio grouping."""
        r = self.records[i]
        return r.width / r.height

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict]:
        record = self.records[i]
        image = to_tensor(load_image(self.root / record.file, name=record.file))  # ImageError names the file
        boxes = torch.tensor(record.boxes, dtype=torch.float32).reshape(-1, 4)
        labels = torch.tensor(record.labels, dtype=torch.int64)
        if self.augment is not None:
            image, boxes, labels, removed = self.augment(image, boxes, labels)
            return image, {"boxes": boxes, "labels": labels, "image_id": i, "boxes_removed": removed}
        if self.train and torch.rand(()) < self.flip_p:
            image, boxes = hflip(image, boxes)
        return image, {"boxes": boxes, "labels": labels, "image_id": i}


def hflip(image: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror a (3, H, W) image left-right and its xyxy pixel-edge boxes with it."""
    width = image.shape[-1]
    flipped = boxes.clone()
    flipped[:, 0] = width - boxes[:, 2]
    flipped[:, 2] = width - boxes[:, 0]
    return image.flip(-1), flipped


def collate(batch: list) -> tuple:
    """DataLoader collate for detection: a tuple of images and a tuple of targets."""
    return tuple(zip(*batch))
