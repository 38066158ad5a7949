"""The baseline training loop for `trainer_overhead`: torch and torchvision alone, nothing from `detector`.

The loop any torchvision user writes: a Dataset that reads a COCO annotation file and decodes
JPEGs with torchvision.io, a random horizontal flip, a DataLoader, SGD with momentum and a
linear warm-up, then forward, backward, step. `steps(...)` yields the wall time of each iteration
(batch fetch included, as the engine's time between two iterations includes it).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
import torchvision
from torch.utils.data import DataLoader, Dataset


class CocoBoxes(Dataset):
    """(image float (3, H, W) in [0, 1], {"boxes" xyxy, "labels"}) for the given COCO file names."""

    def __init__(self, root: str | Path, files: Sequence[str], flip_p: float = 0.5):
        root = Path(root)
        doc = json.loads((root / "annotations.json").read_text())
        by_id = {im["id"]: im["file_name"] for im in doc["images"]}
        boxes: dict[str, list] = {name: [] for name in by_id.values()}
        labels: dict[str, list] = {name: [] for name in by_id.values()}
        for ann in doc["annotations"]:
            x, y, w, h = ann["bbox"]
            boxes[by_id[ann["image_id"]]].append([x, y, x + w, y + h])
            labels[by_id[ann["image_id"]]].append(ann["category_id"])
        self.items = [(root / "images" / f, boxes[f], labels[f]) for f in files]
        self.flip_p = flip_p

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        path, boxes, labels = self.items[i]
        image = torchvision.io.decode_image(torchvision.io.read_file(str(path)), mode=torchvision.io.ImageReadMode.RGB)
        image = image.float().div_(255.0)
        b = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        if torch.rand(()) < self.flip_p:
            width = image.shape[-1]
            image = image.flip(-1)
            b = torch.stack([width - b[:, 2], b[:, 1], width - b[:, 0], b[:, 3]], dim=1)
        return image, {"boxes": b, "labels": torch.tensor(labels, dtype=torch.int64)}


def collate(batch):
    return tuple(zip(*batch))


def steps(model_builder: Callable[[], torch.nn.Module], root: str | Path, files: Sequence[str], batch_size: int,
          workers: int, lr: float, seed: int = 0, warmup_iters: int = 1000,
          warmup_factor: float = 0.001) -> Iterator[float]:
    """Train over `files` epoch after epoch; yields the seconds of each iteration (batch fetch,
    forward, backward, optimizer and schedule steps), so a caller can interleave it with another loop."""
    torch.manual_seed(seed)
    model = model_builder()
    model.train()
    loader = DataLoader(CocoBoxes(root, files), batch_size=batch_size, shuffle=True, num_workers=workers,
                        collate_fn=collate, persistent_workers=workers > 0)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4)
    warmup = max(min(warmup_iters, len(loader) - 1), 1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: warmup_factor * (1 - it / warmup) + it / warmup if it < warmup else 1.0)
    while True:
        batches = iter(loader)
        while True:
            start = time.perf_counter()
            try:
                images, targets = next(batches)
            except StopIteration:
                break
            losses = model(list(images), list(targets))
            loss = sum(losses.values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            yield time.perf_counter() - start
