"""The baseline training loop for `trainer_overhead`: torch and torchvision alone, nothing from `detector`.

The loop any torchvision user writes: a Dataset that reads a COCO annotation file and decodes
JPEGs with torchvision.io, a random horizontal flip, a DataLoader, SGD with momentum and a
linear warm-up, then forward, backward, step, and the loss read back for the log (as
torchvision's references/detection loop does). `steps(...)` yields each iteration's wall time
(batch fetch included, as the engine's time between two iterations includes it) and the part
of it spent waiting for the batch. The GPU recipe (mixed precision, channels_last, fused SGD,
loader settings, cuDNN autotuning, torch.compile) is switchable, so bench/gpu.py runs it with
the same recipe as the engine.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Step:
    """One iteration: its wall seconds (batch fetch included) and the seconds spent in the DataLoader's next."""

    seconds: float
    data_seconds: float
    images: int


def steps(model_builder: Callable[[], torch.nn.Module], root: str | Path, files: Sequence[str], batch_size: int,
          workers: int, lr: float, seed: int = 0, warmup_iters: int = 1000,
          warmup_factor: float = 0.001, device: str = "cpu", amp: str = "off", channels_last: bool = False,
          pin_memory: bool = False, persistent_workers: bool = True, prefetch_factor: int | None = None,
          fused: bool = False, cudnn_benchmark: bool = False, compile_backbone: bool = False) -> Iterator[Step]:
    """Train over `files` epoch after epoch; yields a Step per iteration (batch fetch, copy to the
    device, forward, backward, optimizer and schedule steps, and the loss read back for logging, as
    torchvision's reference loop does), so a caller can interleave it with another loop.

    The recipe: `amp` "off", "fp16" (autocast + GradScaler) or "bf16" (autocast, no scaler);
    `channels_last` for the backbone; `fused` SGD (CUDA); DataLoader `pin_memory`,
    `persistent_workers`, `prefetch_factor`; `cudnn_benchmark`; `compile_backbone` (torch.compile).
    """
    torch.manual_seed(seed)
    torch.backends.cudnn.benchmark = cudnn_benchmark
    dev = torch.device(device)
    model = model_builder().to(dev)
    if channels_last:
        model.backbone.to(memory_format=torch.channels_last)
    if compile_backbone:
        model.backbone.compile()
    model.train()
    extra = {"persistent_workers": persistent_workers, "prefetch_factor": prefetch_factor} if workers > 0 else {}
    loader = DataLoader(CocoBoxes(root, files), batch_size=batch_size, shuffle=True, num_workers=workers,
                        collate_fn=collate, pin_memory=pin_memory, **extra)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4, **({"fused": True} if fused else {}))
    warmup = max(min(warmup_iters, len(loader) - 1), 1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: warmup_factor * (1 - it / warmup) + it / warmup if it < warmup else 1.0)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(amp)
    scaler = torch.amp.GradScaler(dev.type, enabled=amp == "fp16")
    while True:
        batches = iter(loader)
        while True:
            start = time.perf_counter()
            try:
                images, targets = next(batches)
            except StopIteration:
                break
            fetched = time.perf_counter()
            images = [i.to(dev, non_blocking=True) for i in images]
            targets = [{k: v.to(dev, non_blocking=True) for k, v in t.items()} for t in targets]
            with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
                losses = model(images, targets)
            loss = sum(losses.values())
            loss.item()  # the per-step read-back every loop does for its log (one host-device sync)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            yield Step(time.perf_counter() - start, fetched - start, len(images))
