"""Training data: the dataset(s) a run trains and validates on, relabelled, batched, loaded.

`load_training_data` resolves DATASET (and an optional separate validation DATASET), applies the
validation fixes and builds the torch Datasets; a separate validation set's labels are mapped
onto the training classes by name (`data.records.relabel_by_name`: boxes of a class the training data
lacks are left out and named in fixes.json).
`GroupedBatchSampler` shards and batches by aspect ratio, resumable mid-epoch; `make_loader`
builds the DataLoaders. No streamlit, no plotly.
"""

from __future__ import annotations

import math
import os
import random
import signal
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from detector.augment import Augment
from detector.train_config import TrainConfig
from detector.wording import counted


class TrainingFailed(RuntimeError):
    """The run cannot go on (non-finite loss, out of memory, bad data): `str()` is the user message."""


@dataclass(frozen=True)
class TrainingData:
    """The training and validation splits as torch Datasets, and what was done to the data."""

    class_names: tuple[str, ...]
    train: Any  # detector.data.DetectionDataset
    val: Any | None
    fixes: list[dict]
    source: str


def load_training_data(config: TrainConfig) -> TrainingData:
    """Resolve the dataset(s), apply the validation fixes, and build the torch Datasets."""
    from detector.data import DetectionDataset, prepare_for_training, resolve_dataset
    from detector.data.records import relabel_by_name

    if not config.data:
        raise TrainingFailed("no dataset given: pass --data DATASET (a folder, a zip or a stored dataset name)")
    ds, train_idx, val_idx = resolve_dataset(config.data)
    if not ds.usable:
        errors = [p for p in ds.problems if p.severity == "error"]
        first = errors[0]
        where = f"{first.file}" + (f":{first.line}" if first.line else "")
        raise TrainingFailed(f"{config.data}: not usable for training ({counted(len(errors), 'error')}; first: {where}: {first.message})")
    records, fixes = prepare_for_training(ds, decode=config.decode_check)
    by_index = _align(ds.records, records)
    train_records = [by_index[i] for i in train_idx if i in by_index]
    val_records = [by_index[i] for i in val_idx if i in by_index]
    val_root = ds.root
    if config.val_data:
        # a separate validation set: every image of DATASET trains, its own split included
        train_records = [by_index[i] for i in sorted(set(train_idx) | set(val_idx)) if i in by_index]
        vds, vtrain, vval = resolve_dataset(config.val_data)
        vrecords, vfixes = prepare_for_training(vds, decode=config.decode_check)
        fixes += [dict(f, dataset="val_data") for f in vfixes]
        try:
            val_records, unknown = relabel_by_name(vrecords, vds.class_names, ds.class_names, str(config.val_data),
                                                     "the training data's classes")
        except ValueError as exc:
            raise TrainingFailed(str(exc)) from None
        if unknown:  # the one relabelling policy: left out and named, as evaluate does
            fixes.append({"severity": "warning", "file": None, "line": None, "id": None, "stage": "relabel",
                          "dataset": "val_data", "message": f"classes not in the training data: {', '.join(unknown)}",
                          "action": "their boxes left out of validation"})
        val_root = vds.root
    if not train_records:
        raise TrainingFailed(f"{config.data}: no training images left after validation")
    if config.max_val_images is not None:
        val_records = val_records[: config.max_val_images]
    augment = Augment(config.augmentation, config.hflip) if config.augmentation != "none" else None
    train = DetectionDataset(train_records, ds.root, train=config.hflip, augment=augment)
    val = DetectionDataset(val_records, val_root, train=False) if val_records else None
    return TrainingData(tuple(ds.class_names), train, val, fixes, str(config.data))


def _align(original: Sequence[Any], prepared: Sequence[Any]) -> dict[int, Any]:
    """Map dataset record index -> prepared record (prepare_for_training may leave images out)."""
    if len(original) == len(prepared):
        return dict(enumerate(prepared))
    remaining = {}
    for rec in prepared:
        remaining.setdefault((rec.file, str(rec.image_id)), rec)
    return {i: remaining[(r.file, str(r.image_id))] for i, r in enumerate(original)
            if (r.file, str(r.image_id)) in remaining}


class GroupedBatchSampler(Sampler[list[int]]):
    """Shuffled batches of images with like aspect ratio, sharded across processes, resumable.

    Images are shuffled by (seed, epoch), dealt to ranks, then batched within their group
    (landscape / portrait, as torchvision's reference with group factor 0); leftovers are batched
    together at the end, so every rank gets exactly ceil(n / world / batch) batches (DDP needs
    equal counts). `skip` drops the first batches of the next epoch (resuming mid-epoch).
    """

    def __init__(self, groups: Sequence[int], batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1,
                 grouping: bool = True):
        self.groups = list(groups) if grouping else [0] * len(groups)
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 1
        self.skip = 0
        self.per_rank = math.ceil(len(self.groups) / world_size)

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def __len__(self) -> int:
        return math.ceil(self.per_rank / self.batch_size)

    def batches(self) -> list[list[int]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(len(self.groups), generator=g).tolist()
        order += order[: self.per_rank * self.world_size - len(order)]  # pad so ranks share equally
        mine = order[self.rank :: self.world_size]
        buckets: dict[int, list[int]] = {}
        out: list[list[int]] = []
        for i in mine:
            bucket = buckets.setdefault(self.groups[i], [])
            bucket.append(i)
            if len(bucket) == self.batch_size:
                out.append(list(bucket))
                bucket.clear()
        rest = [i for k in sorted(buckets) for i in buckets[k]]
        out += [rest[j : j + self.batch_size] for j in range(0, len(rest), self.batch_size)]
        return out

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches()[self.skip :])


def make_loader(dataset: Any, batch_sampler: Sampler | None, config: TrainConfig, device: torch.device,
            batch_size: int = 1) -> DataLoader:
    from detector.data.torchdata import collate

    workers = config.resolved_workers(int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    pin = config.pin_memory if config.pin_memory is not None else device.type == "cuda"
    kwargs: dict[str, Any] = {"num_workers": workers, "collate_fn": collate, "pin_memory": pin}
    if workers > 0:
        kwargs.update(persistent_workers=config.persistent_workers, worker_init_fn=_seed_worker,
                      prefetch_factor=config.prefetch_factor)
    if batch_sampler is not None:
        return DataLoader(dataset, batch_sampler=batch_sampler, **kwargs)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, **kwargs)


def _seed_worker(worker_id: int) -> None:
    # a SIGTERM / SIGINT sent to the whole process group is the main process's to handle (a clean
    # stop at the next step, detector.engine); a worker killed by it would turn that into a failure.
    # Workers still end with the main process (DataLoader's watchdog) and when the loader shuts down.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
