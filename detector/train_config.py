"""The training configuration: one frozen dataclass that is the run's `config.json`.

`python -m detector train --out RUN_DIR` reads RUN_DIR/config.json when present (the training page
writes it), command-line flags override it, and `--resume` reads it back. No torch import here, so
pages can build and check a config cheaply.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from typing import Any

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("step", "cosine")
WEIGHTS = ("none", "coco")
DEVICES = ("auto", "cpu", "cuda")

# torchvision's detection reference recipe: lr 0.02 for 16 images per step (8 GPUs x 2), momentum
# 0.9, weight decay 1e-4, lr x0.1 at epochs 16 and 22 of 26, linear warm-up over 1000 iterations.
REFERENCE_BATCH = 16
REFERENCE_LR = {"sgd": 0.02, "adamw": 1e-4}

# A CPU-friendly model for quick runs (the shipped demo's settings): 320 px, fewer proposals.
CPU_MODEL_KWARGS: dict[str, Any] = {
    "min_size": 320, "max_size": 320,
    "rpn_pre_nms_top_n_train": 1000, "rpn_post_nms_top_n_train": 500,
    "rpn_pre_nms_top_n_test": 150, "rpn_post_nms_top_n_test": 150,
    "box_batch_size_per_image": 128,
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything needed to rerun a training (one comment per field)."""

    data: str = ""  # DATASET: a folder, a zip, or a stored dataset's name
    val_data: str | None = None  # a separate validation DATASET; None: the dataset's own val split
    model: str | None = None  # architecture name; None: the --init checkpoint's, else the default below
    init: str | None = None  # start from a checkpoint file, a run folder or "demo" (box predictor replaced if classes differ)
    weights: str = "none"  # "coco": start from torchvision's cached COCO weights; "none": random (or --init)
    epochs: int = 12  # passes over the training split
    batch_size: int = 4  # images per step, per process
    lr: float | None = None  # None: the reference lr scaled by total batch (0.02 x B/16 for SGD, 1e-4 x B/16 for AdamW)
    optimizer: str = "sgd"  # "sgd" (momentum) or "adamw"
    momentum: float = 0.9  # SGD momentum
    weight_decay: float = 1e-4  # L2 penalty (decoupled for AdamW)
    schedule: str = "step"  # "step": x lr_gamma at lr_steps; "cosine": cosine decay to 0 over all epochs
    lr_steps: tuple[int, ...] | None = None  # epochs after which lr drops; None: at 16/26 and 22/26 of the run
    lr_gamma: float = 0.1  # step schedule factor
    warmup_iters: int = 1000  # linear warm-up iterations (capped at one epoch)
    warmup_factor: float = 0.001  # lr multiplier at the first iteration
    grad_clip: float | None = None  # max gradient norm; None: no clipping
    device: str = "auto"  # "auto" (CUDA if available), "cpu" or "cuda"
    amp: bool | None = None  # mixed precision; None: on for CUDA, off on CPU
    workers: int = 2  # DataLoader worker processes (0: load in the main process)
    hflip: bool = True  # random horizontal flips of training images
    aspect_ratio_grouping: bool = True  # batch images of like aspect ratio (portrait / landscape) together
    decode_check: bool = True  # decode every image before training; unreadable ones are left out and recorded
    seed: int = 0  # data order, sampling and initialisation
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # FasterRCNN knobs: min_size, max_size, rpn_*, box_*, anchor_sizes, aspect_ratios
    snapshot_images: int = 3  # fixed validation images whose RPN state is saved each epoch (0: none)
    val_every: int = 1  # validate every N epochs (and always after the last)
    max_val_images: int | None = None  # validate on at most this many images (None: all; 0: no validation)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["lr_steps"] = list(self.lr_steps) if self.lr_steps is not None else None
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """Build from a dict (config.json); unknown keys raise ValueError naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config field(s): {', '.join(unknown)}")
        values = dict(data)
        if values.get("lr_steps") is not None:
            values["lr_steps"] = tuple(int(s) for s in values["lr_steps"])
        if values.get("model_kwargs") is None:
            values["model_kwargs"] = {}
        return cls(**values).checked()

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes).checked()

    def checked(self) -> "TrainConfig":
        """Raise ValueError with a plain reason if a field is out of range."""
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, not {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, not {self.schedule!r}")
        if self.weights not in WEIGHTS:
            raise ValueError(f"weights must be one of {', '.join(WEIGHTS)}, not {self.weights!r}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, not {self.device!r}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, not {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be at least 1, not {self.batch_size}")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"learning rate must be positive, not {self.lr}")
        if self.workers < 0:
            raise ValueError(f"workers must be 0 or more, not {self.workers}")
        if self.init is not None and self.weights == "coco":
            raise ValueError("give either --init or --weights coco, not both")
        if not isinstance(self.model_kwargs, dict):
            raise ValueError("model_kwargs must be a JSON object")
        return self

    def base_lr(self, world_size: int = 1) -> float:
        """The learning rate used: `lr`, or the reference one scaled by the total batch size."""
        if self.lr is not None:
            return float(self.lr)
        return REFERENCE_LR[self.optimizer] * self.batch_size * world_size / REFERENCE_BATCH

    def milestones(self) -> tuple[int, ...]:
        """Epochs after which the step schedule multiplies lr by lr_gamma."""
        if self.lr_steps is not None:
            return tuple(self.lr_steps)
        return tuple(sorted({max(1, round(self.epochs * 16 / 26)), max(1, round(self.epochs * 22 / 26))}))
