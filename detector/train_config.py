"""The training configuration: one frozen dataclass that is the run's `config.json`.

`python -m detector train --out RUN_DIR` reads RUN_DIR/config.json when present (the training page
writes it), command-line flags override it, and `--resume` reads it back. No torch import here, so
pages can build and check a config cheaply.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field, fields
from typing import Any

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("step", "cosine")
WEIGHTS = ("none", "coco")
DEVICES = ("auto", "cpu", "cuda")
AUGMENTATIONS = ("none", "photometric", "ssd", "ssdlite")  # built by detector.augment
BEST_METRICS = ("mAP", "mAP50", "val_loss")
AMP_DTYPES = ("auto", "bfloat16", "float16")
AUTO = "auto"
MAX_AUTO_WORKERS = 12
MAX_TRAINABLE_LAYERS = 6  # MobileNetV3 backbones have 6 stages, ResNets 5 (checked per architecture when built)

# torchvision's detection reference recipe: lr 0.02 for 16 images per step (8 GPUs x 2), momentum
# 0.9, weight decay 1e-4, lr x0.1 at epochs 16 and 22 of 26, linear warm-up over 1000 iterations.
REFERENCE_BATCH = 16
REFERENCE_LR = {"sgd": 0.02, "adamw": 1e-4}

# A CPU-friendly model for quick runs (the bench's CPU training case): 320 x 320 input, fewer proposals.
# Not the shipped demo's settings: those are the demo architecture's defaults in detector.models
# (min_size 320, max_size 640, 300/100 proposals at test time, 600/300 in training).
CPU_MODEL_KWARGS: dict[str, Any] = {
    "min_size": 320, "max_size": 320,
    "rpn_pre_nms_top_n_train": 1000, "rpn_post_nms_top_n_train": 500,
    "rpn_pre_nms_top_n_test": 150, "rpn_post_nms_top_n_test": 150,
    "box_batch_size_per_image": 128,
}


def _field(default: Any = dataclasses.MISSING, help: str = "", factory: Any = dataclasses.MISSING, **meta: Any) -> Any:
    """A config field with its one-line `help` (and `choices`, `min`, `max`, `auto`, `metavar` where they
    apply) as metadata.

    The training form builds its widgets from these (`dataclasses.fields(TrainConfig)[i].metadata`), and
    the `train` command its flags (detector/cli/train.py).
    """
    return field(default=default, default_factory=factory, metadata={"help": help, **meta})


@dataclass(frozen=True)
class TrainConfig:
    """Everything needed to rerun a training (one help line per field, in its metadata)."""

    data: str = _field("", "DATASET: a folder, a zip, or a stored dataset's name", metavar="DATASET")
    val_data: str | None = _field(None, "a separate validation DATASET; empty: the dataset's own val split",
                                  metavar="DATASET")
    model: str | None = _field(None, "architecture name; empty: the --init checkpoint's, else fasterrcnn_mobilenet_v3_large_320_fpn",
                               metavar="NAME")
    init: str | None = _field(None, "start from a checkpoint file, a run folder or demo (box predictor replaced if classes differ)",
                              metavar="CHECKPOINT")
    weights: str = _field("none", "coco: start from torchvision's cached COCO weights; none: random (or --init)", choices=WEIGHTS)
    epochs: int = _field(12, "passes over the training split", min=1)
    batch_size: int | str = _field(
        4, "images per step, per process; auto: the largest that fits the GPU with 20 % of its memory left free "
        "(found by trial steps before training; 4 on CPU)", min=1, auto=True, metavar="B|auto")
    lr: float | None = _field(None, "learning rate; empty: the reference lr scaled by batch (0.02 x B/16 for SGD, 1e-4 x B/16 for AdamW)", metavar="LR")
    optimizer: str = _field("sgd", "sgd (momentum) or adamw", choices=OPTIMIZERS)
    momentum: float = _field(0.9, "SGD momentum", min=0.0, max=1.0)
    weight_decay: float = _field(1e-4, "L2 penalty (decoupled for AdamW)", min=0.0)
    schedule: str = _field("step", "step: x lr_gamma at lr_steps; cosine: cosine decay to 0 over all epochs", choices=SCHEDULES)
    lr_steps: tuple[int, ...] | None = _field(None, "epochs after which lr drops; empty: at 16/26 and 22/26 of the run")
    lr_gamma: float = _field(0.1, "step schedule factor", min=0.0, max=1.0)
    warmup_iters: int = _field(1000, "linear warm-up iterations (capped at one epoch, and at a quarter of the "
                               "steps before the first lr drop, so a short run trains at full lr)", min=0)
    warmup_factor: float = _field(0.001, "lr multiplier at the first iteration", min=0.0, max=1.0)
    grad_clip: float | None = _field(None, "max gradient norm; empty: no clipping")
    device: str = _field("auto", "auto (CUDA if available), cpu or cuda", choices=DEVICES)
    amp: bool | None = _field(None, "mixed precision; empty: on for CUDA, off on CPU")
    amp_dtype: str = _field("auto", "mixed-precision type: auto (bfloat16 where the GPU supports it, else float16 "
                            "with loss scaling), bfloat16 or float16", choices=AMP_DTYPES)
    workers: int | str = _field(AUTO, "DataLoader worker processes (0: load in the main process); auto: the CPU "
                                "cores this process may use less one, shared by the processes of a torchrun job, "
                                f"at most {MAX_AUTO_WORKERS}", min=0, auto=True, resolve=lambda: auto_workers())
    pin_memory: bool | None = _field(None, "page-locked batches for faster, asynchronous copies to the GPU; empty: on for CUDA")
    persistent_workers: bool = _field(True, "keep DataLoader workers alive between epochs")
    prefetch_factor: int | None = _field(None, "batches each worker loads ahead; empty: torch's default (2)", min=1)
    channels_last: bool = _field(False, "backbone weights and activations in channels-last memory order (faster "
                                 "convolutions on tensor-core GPUs)")
    cudnn_benchmark: bool = _field(False, "let cuDNN time its convolution algorithms per input shape (faster when "
                                   "image sizes repeat; each new padded size is timed once)")
    fused_optimizer: bool | None = _field(None, "one fused kernel per optimizer step (SGD / AdamW); empty: on for CUDA")
    compile_backbone: bool = _field(False, "torch.compile the backbone (minutes of compilation first; the run "
                                    "goes on uncompiled if compilation fails)")
    hflip: bool = _field(True, "random horizontal flips of training images")
    augmentation: str = _field(
        "none", "more augmentation, as torchvision's detection references: photometric (colour jitter), "
        "ssd (colour, zoom-out, IoU crop), ssdlite (IoU crop); boxes a crop leaves degenerate are removed and counted",
        choices=AUGMENTATIONS)
    multi_scale: tuple[int, ...] | None = _field(
        None, "short-side sizes (px) drawn per training batch, e.g. 480,512,544,576,608; validation and "
        "detection use the model's min_size; empty: one size", metavar="S1,S2,...")
    trainable_backbone_layers: int | None = _field(
        None, "backbone stages that train, counted from the top, as torchvision's builders define it "
        "(0: whole backbone frozen; 5: all of a ResNet, 6: all of a MobileNet); empty: the builder's default "
        "(3 with COCO weights, all otherwise)", min=0, max=MAX_TRAINABLE_LAYERS)
    aspect_ratio_grouping: bool = _field(True, "batch images of like aspect ratio (portrait / landscape) together")
    decode_check: bool = _field(True, "decode every image before training; unreadable ones are left out and recorded")
    seed: int = _field(0, "data order, sampling and initialisation")
    model_kwargs: dict[str, Any] = _field(factory=dict, help="FasterRCNN knobs: min_size, max_size, rpn_*, box_*, anchor_sizes, aspect_ratios")
    snapshot_images: int = _field(3, "fixed validation images whose RPN state is saved each epoch (0: none)", min=0)
    val_every: int = _field(1, "validate every N epochs (and always after the last)", min=1)
    max_val_images: int | None = _field(None, "validate on at most this many images (empty: all; 0: no validation)", min=0)
    best_metric: str = _field(
        "mAP", "what best.pt is the best of: mAP (0.5:0.95), mAP50, or val_loss (lowest); without pycocotools "
        "mAP and mAP50 fall back to val_loss", choices=BEST_METRICS)
    patience: int | None = _field(
        None, "stop early after this many validations without a better best_metric (the run ends done, "
        "the reason in status.json); empty: never", min=1)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for name in ("lr_steps", "multi_scale"):
            value = getattr(self, name)
            d[name] = list(value) if value is not None else None
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
        for name in ("lr_steps", "multi_scale"):
            if values.get(name) is not None:
                raw = values[name]
                items = raw.split(",") if isinstance(raw, str) else raw if isinstance(raw, (list, tuple)) else [raw]
                try:
                    values[name] = tuple(int(v) for v in items)
                except (TypeError, ValueError):
                    raise ValueError(f"{name} must be a list of whole numbers, not {raw!r}") from None
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
        if not _count_or_auto(self.batch_size, 1):
            raise ValueError(f"batch size must be auto or a whole number of at least 1, not {self.batch_size!r}")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"learning rate must be positive, not {self.lr}")
        if not _count_or_auto(self.workers, 0):
            raise ValueError(f"workers must be auto or a whole number of 0 or more, not {self.workers!r}")
        if self.amp_dtype not in AMP_DTYPES:
            raise ValueError(f"amp_dtype must be one of {', '.join(AMP_DTYPES)}, not {self.amp_dtype!r}")
        if self.prefetch_factor is not None and not (isinstance(self.prefetch_factor, int) and self.prefetch_factor >= 1):
            raise ValueError(f"prefetch_factor must be at least 1, not {self.prefetch_factor!r}")
        if self.init is not None and self.weights == "coco":
            raise ValueError("give either --init or --weights coco, not both")
        if not isinstance(self.model_kwargs, dict):
            raise ValueError("model_kwargs must be a JSON object")
        if self.augmentation not in AUGMENTATIONS:
            raise ValueError(f"augmentation must be one of {', '.join(AUGMENTATIONS)}, not {self.augmentation!r}")
        if self.best_metric not in BEST_METRICS:
            raise ValueError(f"best_metric must be one of {', '.join(BEST_METRICS)}, not {self.best_metric!r}")
        if self.multi_scale is not None and (not self.multi_scale or any(not 32 <= s <= 4096 for s in self.multi_scale)):
            raise ValueError(f"multi_scale sizes must be 32 to 4096 px, not {list(self.multi_scale)}")
        tbl = self.trainable_backbone_layers
        if tbl is not None and not (isinstance(tbl, int) and 0 <= tbl <= MAX_TRAINABLE_LAYERS):
            raise ValueError(f"trainable_backbone_layers must be 0 to {MAX_TRAINABLE_LAYERS}, not {tbl!r}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be at least 1 validation, not {self.patience}")
        return self

    def base_lr(self, world_size: int = 1) -> float:
        """The learning rate used: `lr`, or the reference one scaled by the total batch size.

        With `batch_size` "auto" the engine resolves the batch first (`replace(batch_size=N)`)."""
        if self.lr is not None:
            return float(self.lr)
        if self.batch_size == AUTO:
            raise ValueError("batch size auto is resolved when training starts: the learning rate follows from it")
        return REFERENCE_LR[self.optimizer] * self.batch_size * world_size / REFERENCE_BATCH

    def resolved_workers(self, processes: int = 1) -> int:
        """DataLoader workers: `workers`, or for "auto" `auto_workers(processes)`."""
        return auto_workers(processes) if self.workers == AUTO else int(self.workers)

    def milestones(self) -> tuple[int, ...]:
        """Epochs after which the step schedule multiplies lr by lr_gamma."""
        if self.lr_steps is not None:
            return tuple(self.lr_steps)
        return tuple(sorted({max(1, round(self.epochs * 16 / 26)), max(1, round(self.epochs * 22 / 26))}))

    def warmup_steps(self, iters_per_epoch: int) -> int:
        """Iterations of linear warm-up actually used: `warmup_iters`, capped at one epoch and at a
        quarter of the iterations before the lr first drops (the first milestone for `step`, the
        whole run for `cosine`), so that even a two-epoch run has steps at the full learning rate;
        a run with at least two iterations before that point still ramps over its first one."""
        if self.schedule == "step" and self.milestones():
            horizon = min(self.milestones()) * iters_per_epoch
        else:
            horizon = self.epochs * iters_per_epoch
        ramp = max(horizon // 4, 1 if horizon >= 2 else 0)
        return max(0, min(self.warmup_iters, iters_per_epoch - 1, ramp))

def _count_or_auto(value: Any, least: int) -> bool:
    return value == AUTO or (isinstance(value, int) and not isinstance(value, bool) and value >= least)


def auto_workers(processes: int = 1) -> int:
    """Workers for "auto": the CPU cores this process may use (its affinity), shared by the `processes`
    training processes on this machine, less one for each process's own loop; at most MAX_AUTO_WORKERS."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(cores // max(processes, 1) - 1, MAX_AUTO_WORKERS))
