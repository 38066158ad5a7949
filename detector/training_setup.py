"""A training's set-up, before its first step: where it runs (device, torchrun place), the model to
fine-tune, the optimizer, the learning-rate schedule, mixed precision and `--batch-size auto`.

Used by `detector.engine`'s set-up stage; each piece is a function of the TrainConfig.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import nn

from detector.batch_size import CPU_FALLBACK_BATCH, BatchSizeError, choose_batch_size
from detector.checkpoints import checkpoint_path_for, model_from_checkpoint, read_checkpoint
from detector.models import DEFAULT_ARCH, build_model, replace_box_predictor
from detector.runs import LOSS_NAMES, StatusKeeper
from detector.train_config import TrainConfig
from detector.training_data import TrainingFailed
from detector.weights import WeightsUnavailable

log = logging.getLogger("detector.engine")


# ---------------------------------------------------------------- where it runs


@dataclass(frozen=True)
class Distributed:
    """This process's place in a torchrun job (world_size 1 without torchrun)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "Distributed":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        return cls(int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")), world)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def init_distributed(ddp: Distributed, device: torch.device) -> None:
    if ddp.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)


def select_device(config: TrainConfig, ddp: Distributed) -> torch.device:
    want = config.device
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want == "cuda":
        if not torch.cuda.is_available():
            raise TrainingFailed("CUDA was asked for but no CUDA device is available (use --device cpu)")
        index = ddp.local_rank % torch.cuda.device_count()
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    return torch.device("cpu")


# ---------------------------------------------------------------- model, optimizer, schedule


@dataclass
class ModelSetup:
    model: nn.Module
    arch: str
    model_kwargs: dict[str, Any]
    origin: str  # one line: where the weights came from


def build_training_model(config: TrainConfig, class_names: tuple[str, ...]) -> ModelSetup:
    """The model to fine-tune: --init checkpoint (predictor replaced if classes differ), COCO, or random."""
    if config.init:
        path = checkpoint_path_for(config.init)
        ckpt = read_checkpoint(path)
        if config.model and config.model != ckpt["model"]:
            raise TrainingFailed(f"--init {config.init} is a {ckpt['model']} checkpoint, but --model says {config.model}")
        kwargs = {**ckpt.get("model_kwargs", {}), **config.model_kwargs}
        model = model_from_checkpoint(ckpt, path.name, **config.model_kwargs)
        origin = f"initialised from {config.init} ({ckpt['model']}, classes {', '.join(ckpt['class_names'][:6])})"
        if list(ckpt["class_names"]) != list(class_names):
            replace_box_predictor(model, len(class_names) + 1)
            origin += f"; box predictor replaced for {len(class_names)} classes"
        return ModelSetup(model, ckpt["model"], kwargs, origin)
    arch = config.model or DEFAULT_ARCH
    weights = "coco" if config.weights == "coco" else "none"
    try:
        model = build_model(arch, class_names, weights=weights, **config.model_kwargs)
    except WeightsUnavailable as exc:
        raise TrainingFailed(f"--weights coco: {exc}; nothing is downloaded during training. Download the weights "
                             "first (Detect or home page), or train from --init demo or --weights none") from None
    origin = f"{arch} with {'COCO weights' if weights == 'coco' else 'random weights'}"
    return ModelSetup(model, arch, dict(config.model_kwargs), origin)


def build_optimizer(model: nn.Module, config: TrainConfig, lr: float,
                    device: torch.device | None = None) -> torch.optim.Optimizer:
    """SGD with momentum or AdamW over the trainable parameters; one fused kernel per step on CUDA
    unless `fused_optimizer` is False (then torch's default, foreach)."""
    params = [p for p in model.parameters() if p.requires_grad]
    on_cuda = device is not None and device.type == "cuda"
    fused = {"fused": True} if (config.fused_optimizer if config.fused_optimizer is not None else on_cuda) and on_cuda else {}
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=config.weight_decay, **fused)
    return torch.optim.SGD(params, lr=lr, momentum=config.momentum, weight_decay=config.weight_decay, **fused)


def amp_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast type: None off CUDA or with amp off; bfloat16 where supported for "auto", else float16
    (float16 trains with GradScaler's loss scaling, bfloat16 needs none)."""
    if device.type != "cuda" or not (config.amp if config.amp is not None else True):
        return None
    if config.amp_dtype == "float16" or (config.amp_dtype == "auto" and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16


def lr_factor(config: TrainConfig, iters_per_epoch: int) -> Callable[[int], float]:
    """Learning-rate multiplier at iteration `it` (0-based): linear warm-up, then step or cosine."""
    warmup = config.warmup_steps(iters_per_epoch)
    total = max(config.epochs * iters_per_epoch, 1)
    milestones = config.milestones()

    def factor(it: int) -> float:
        if config.schedule == "cosine":
            value = 0.5 * (1.0 + math.cos(math.pi * min(it, total) / total))
        else:
            done_epochs = it // max(iters_per_epoch, 1)
            value = config.lr_gamma ** sum(1 for m in milestones if done_epochs >= m)
        if it < warmup:
            alpha = it / warmup
            value *= config.warmup_factor * (1 - alpha) + alpha
        return value

    return factor


def auto_batch_size(config: TrainConfig, model: nn.Module, dataset: Any, device: torch.device,
                    dtype: torch.dtype | None, ddp: Distributed, ckpt: dict | None, status: StatusKeeper) -> int:
    """`--batch-size auto`: the batch chosen at the start when resuming; on CUDA the largest batch
    whose trial step (the worst-case images, this recipe, a throwaway optimizer) fits with headroom
    (detector.batch_size), the smallest over all processes; CPU_FALLBACK_BATCH on CPU. Logged and
    written to status.json (`batch_size`, `batch_size_search`)."""
    resumed = (ckpt or {}).get("config", {}).get("batch_size")
    if isinstance(resumed, int):
        log.info("batch size auto: %d, as chosen when this run started", resumed)
        status.update(write=True, batch_size=resumed)
        return resumed
    if device.type != "cuda":
        log.info("batch size auto: %d on %s (the search needs a GPU's out-of-memory error)", CPU_FALLBACK_BATCH, device)
        status.update(write=True, batch_size=CPU_FALLBACK_BATCH)
        return CPU_FALLBACK_BATCH

    def trial_step(m: nn.Module, images: list[torch.Tensor], targets: list[dict]) -> None:
        optimizer = build_optimizer(m, config, 0.0, device)
        scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            losses = m(images, targets)
        scaler.scale(sum(losses[k] for k in LOSS_NAMES)).backward()
        scaler.step(optimizer)

    limit = math.ceil(len(dataset) / ddp.world_size)
    try:
        choice = choose_batch_size(model, dataset, trial_step, device, limit)
    except BatchSizeError as exc:
        raise TrainingFailed(f"--batch-size auto: {exc}") from None
    chosen = choice.batch_size
    if ddp.enabled:  # every process trains the same batch: the smallest any of them fits
        shared = torch.tensor([chosen], device=device)
        dist.all_reduce(shared, op=dist.ReduceOp.MIN)
        chosen = int(shared.item())
    log.info("%s%s", choice.describe(), f"; {chosen} on every process" if chosen != choice.batch_size else "")
    status.update(write=True, batch_size=chosen, batch_size_search=choice.to_dict())
    return chosen
