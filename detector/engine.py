"""The training loop: fine-tune a Faster R-CNN on a dataset, writing a run folder as it goes.

`train(config, run_dir)` reads top to bottom: data, model, optimizer and schedule, then per
epoch: iterations (four losses, lr and images/s to metrics.jsonl), validation (the model's own
losses without touching weights or BatchNorm statistics, and COCO mAP), an RPN snapshot of a
few fixed validation images, and the `last` / `best` checkpoints. It runs the same under
`torchrun --nproc_per_node=N` (DistributedDataParallel; rank 0 writes the run folder).
Its parts live apart: data and batches in `detector.training_data`, validation mAP in
`detector.evaluation.evaluate_model`, the snapshot in `detector.snapshots`, the status heartbeat
and which checkpoint is best in `detector.runs`.

Faults end the run with a plain message in status.json and train.log, and the last good
checkpoint kept: a non-finite loss (naming the batch's images), out of memory (saying what to
lower), a STOP file or SIGTERM (a clean stop with a checkpoint, resumable). This module imports
neither streamlit nor plotly: it runs on GPU machines that have neither.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.profiler import record_function
from torch.utils.data import DataLoader

from detector import runs
from detector.augment import BatchScales
from detector.backbone_stages import set_trainable_backbone_layers
from detector.runs import LOSS_NAMES
from detector.checkpoints import checkpoint_path_for, model_from_checkpoint, read_checkpoint, save_checkpoint
from detector.evaluation import EvalResult, EvaluationUnavailable, evaluate_model, pycocotools_available
from detector.model_selection import Selection
from detector.models import DEFAULT_ARCH, build_model, replace_box_predictor
from detector.snapshots import rpn_snapshot
from detector.tensorboard_events import RunEvents
from detector.batch_size import CPU_FALLBACK_BATCH, BatchSizeError, choose_batch_size
from detector.train_config import AUTO, TrainConfig
from detector.training_data import GroupedBatchSampler, TrainingFailed, load_training_data, make_loader
from detector.weights import WeightsUnavailable

LOG_EVERY_S = 15.0

log = logging.getLogger("detector.engine")

# A hook the tests use to reach fault paths on CPU: called as on_step(step, model, images) just
# before each forward. It may raise (torch.OutOfMemoryError) or poison weights (NaN).
StepHook = Callable[[int, nn.Module, Sequence[torch.Tensor]], None]




@dataclass(frozen=True)
class TrainResult:
    """How a call to `train` ended."""

    state: str  # "done", "stopped" or "failed"
    epoch: int  # epochs completed
    step: int  # global step reached
    best_map: float | None
    message: str


# ---------------------------------------------------------------- distributed set-up


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


def _init_distributed(ddp: Distributed, device: torch.device) -> None:
    if ddp.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)


def _select_device(config: TrainConfig, ddp: Distributed) -> torch.device:
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


# ---------------------------------------------------------------- data
















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


# ---------------------------------------------------------------- validation and snapshots


def _batchnorm_frozen(model: nn.Module) -> contextlib.AbstractContextManager:
    """Put BatchNorm layers in eval mode (no running-statistics update) for a training-mode forward."""

    @contextlib.contextmanager
    def ctx():
        changed = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
        for m in changed:
            m.eval()
        try:
            yield
        finally:
            for m in changed:
                m.train()

    return ctx()


def validation_losses(model: nn.Module, loader: DataLoader, device: torch.device, amp: bool,
                      dtype: torch.dtype | None = None) -> dict[str, float]:
    """Mean of the model's four training losses over the validation set, weights untouched.

    The model runs in training mode (that is where torchvision computes losses) with gradients
    off and BatchNorm in eval mode; the sampling RNG is forked so training's random stream is
    unchanged.
    """
    was_training = model.training
    sums = dict.fromkeys(LOSS_NAMES, 0.0)
    count = 0
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        model.train()
        with _batchnorm_frozen(model):
            for images, targets in loader:
                images = [i.to(device, non_blocking=True) for i in images]
                targets = [{k: v.to(device) for k, v in t.items() if k in ("boxes", "labels")} for t in targets]
                with torch.autocast(device.type, dtype=dtype, enabled=amp):
                    losses = model(images, targets)
                n = len(images)
                for k in LOSS_NAMES:
                    sums[k] += float(losses[k]) * n
                count += n
    model.train(was_training)
    return {f"val_{k}": sums[k] / max(count, 1) for k in LOSS_NAMES}


def validation_map(model: nn.Module, loader: DataLoader, device: torch.device, class_names: Sequence[str],
                   amp: bool) -> EvalResult:
    """COCO mAP of the model on the validation set: the one evaluation function (evaluation.evaluate_model)."""
    return evaluate_model(model, loader, class_names, device, amp=amp)




# ---------------------------------------------------------------- run bookkeeping




def _setup_logging(run_dir: Path, enabled: bool) -> list[logging.Handler]:
    log.setLevel(logging.INFO)
    log.propagate = False
    if not enabled:
        return []
    fmt = logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S")
    handlers: list[logging.Handler] = [logging.FileHandler(runs.log_path(run_dir), encoding="utf-8"),
                                       logging.StreamHandler(sys.stdout)]
    for h in handlers:
        h.setFormatter(fmt)
        log.addHandler(h)
    return handlers


def _batch_files(dataset: Any, targets: Sequence[dict]) -> list[str]:
    return [dataset.records[int(t["image_id"])].file for t in targets]


def _oom_message(device: torch.device, config: TrainConfig, model_kwargs: dict[str, Any], step: int) -> str:
    size = model_kwargs.get("min_size", "the model's default")
    return (f"out of memory on {device} at step {step} (batch size {config.batch_size}, min_size {size}): "
            f"lower --batch-size (now {config.batch_size}), or the image size (model_kwargs min_size / max_size), "
            "or rpn_batch_size_per_image / box_batch_size_per_image; on CUDA keep --amp on; "
            "then --resume from the last checkpoint")


def _auto_batch_size(config: TrainConfig, model: nn.Module, dataset: Any, device: torch.device,
                     dtype: torch.dtype | None, ddp: Distributed, ckpt: dict | None, status: Any) -> int:
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


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


# ---------------------------------------------------------------- the loop


def train(config: TrainConfig, run_dir: str | Path, *, resume: bool = False, on_step: StepHook | None = None) -> TrainResult:
    """Train as `config` says, writing `run_dir`; returns how it ended: done, or stopped (STOP file,
    SIGTERM), with a checkpoint to resume from.

    Every fault is first written to status.json (state failed, the message) and train.log, then
    raised: TrainingFailed for the faults it names (a non-finite loss with the batch's images, out of
    memory with what to lower, bad set-up), DeviceBusy, WeightsUnavailable, CheckpointError,
    DatasetError as they come; anything unexpected with its traceback in train.log. The last good
    checkpoint is kept.
    """
    run_dir = Path(run_dir)
    ddp = Distributed.from_env()
    if ddp.main:
        run_dir.mkdir(parents=True, exist_ok=True)
    handlers = _setup_logging(run_dir, ddp.main)
    # a resumed run keeps its epoch, epochs_done and step in status.json until its checkpoint is read
    counts = {} if resume else dict(epoch=0, epochs_done=0, step=0)
    status = runs.StatusKeeper(run_dir, ddp.main, state="running", pid=os.getpid(), **counts, error=None,
                               reason=None, epochs=config.epochs, world_size=ddp.world_size)
    try:
        device = _select_device(config, ddp)
        _init_distributed(ddp, device)
        lock_key = str(device) if device.type == "cuda" else "cpu"
        lock = runs.device_lock(lock_key, run_dir) if ddp.main else contextlib.nullcontext()
        # TensorBoard event files beside metrics.jsonl (rank 0; a resume drops the events after its step)
        with lock, RunEvents(runs.tensorboard_dir(run_dir), resume, enabled=ddp.main) as events:
            status.update(device=str(device))
            status.start()
            stop_flag: dict[str, str | None] = {"signal": None}
            previous_handlers = _install_stop_signals(stop_flag)
            try:
                return _train(config, run_dir, resume, on_step, ddp, device, status, stop_flag, events)
            finally:
                for sig, handler in previous_handlers.items():
                    signal.signal(sig, handler)
    except BaseException as exc:  # record every way out in status.json, then let set-up errors through
        signalled = isinstance(exc, KeyboardInterrupt)  # StopSignal, or SIGINT before the handlers were set
        message = str(exc) if isinstance(exc, StopSignal) or not signalled else "interrupted (SIGINT)"
        if signalled:
            status.update(reason=message)
        if isinstance(exc, runs.DeviceBusy):
            if Path(exc.holder).resolve() != run_dir.resolve():  # never overwrite the holder's own status
                status.update(write=True, state="failed", error=message)
        elif ddp.main:
            if isinstance(exc, TrainingFailed) or signalled:
                log.error("%s", message)
            else:  # unexpected: the traceback goes to train.log
                log.exception("training failed: %s", message)
            status.close(state="failed", error=message or type(exc).__name__)
        raise
    finally:
        status.stop_heartbeat()
        for h in handlers:
            log.removeHandler(h)
            h.close()
        if ddp.enabled and dist.is_initialized():
            dist.destroy_process_group()


def _train(config: TrainConfig, run_dir: Path, resume: bool, on_step: StepHook | None, ddp: Distributed,
           device: torch.device, status: runs.StatusKeeper, stop_flag: dict[str, str | None],
           events: RunEvents) -> TrainResult:
    began = time.monotonic()
    torch.manual_seed(config.seed + ddp.rank)
    random.seed(config.seed + ddp.rank)
    dtype = amp_dtype(config, device)
    amp = dtype is not None
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = config.cudnn_benchmark
    if device.type == "cpu":
        torch.set_flush_denormal(True)  # tiny gradients late in training otherwise slow CPU kernels several-fold
    if config.amp and device.type != "cuda":
        log.info("mixed precision is for CUDA: training in float32 on %s", device)

    # data: resolve, apply the validation fixes, record them
    data = load_training_data(config)
    if ddp.main:
        runs.write_fixes(run_dir, data.fixes)
        log.info("data %s: %d training images, %d validation images, classes %s; %d fix(es) applied (fixes.json)",
                 data.source, len(data.train), len(data.val) if data.val else 0, ", ".join(data.class_names),
                 len(data.fixes))
        if data.val is None:
            log.info("no validation images: validation, mAP and snapshots are skipped; best.pt follows last.pt")

    # model: from the last checkpoint when resuming, else --init / COCO / random
    ckpt = None
    if resume:
        last = runs.checkpoint_path(run_dir, "last")
        ckpt = read_checkpoint(last)
        if list(ckpt["class_names"]) != list(data.class_names):
            raise TrainingFailed(f"{last}: trained on classes {ckpt['class_names']}, but the data has {list(data.class_names)}")
        model = model_from_checkpoint(ckpt, last.name)
        setup = ModelSetup(model, ckpt["model"], dict(ckpt.get("model_kwargs", {})), f"resumed from {last}")
    else:
        setup = build_training_model(config, data.class_names)
        if config.trainable_backbone_layers is not None:
            try:
                set_trainable_backbone_layers(setup.model, config.trainable_backbone_layers)
            except ValueError as exc:
                raise TrainingFailed(f"{setup.arch}: {exc}") from None
            setup.model_kwargs["trainable_backbone_layers"] = config.trainable_backbone_layers
    model = setup.model.to(device)
    if ddp.main:
        frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
        total = sum(1 for _ in model.parameters())
        log.info("trainable_backbone_layers %s: %d of %d parameter tensors frozen (not in the optimizer)%s",
                 "default" if config.trainable_backbone_layers is None else config.trainable_backbone_layers,
                 len(frozen), total, f", first {frozen[0]}" if frozen else "")
    if config.channels_last:
        model.backbone.to(memory_format=torch.channels_last)
    if config.compile_backbone:
        model.backbone.compile()  # in place: state_dict keys unchanged; compiled at the first step
    if ddp.main:
        log.info("model: %s; device %s%s; mixed precision %s%s%s", setup.origin, device,
                 f" x{ddp.world_size} processes" if ddp.enabled else "",
                 str(dtype).removeprefix("torch.") if amp else "off",
                 "; backbone channels_last" if config.channels_last else "",
                 "; backbone compiled" if config.compile_backbone else "")

    # --batch-size auto: the largest batch that fits, from trial steps (CUDA); kept on resume
    if config.batch_size == AUTO:
        config = config.replace(batch_size=_auto_batch_size(config, model, data.train, device, dtype, ddp, ckpt,
                                                            status))

    # loaders: grouped, sharded, resumable batches; validation in order
    groups = [0 if data.train.aspect_ratio(i) >= 1 else 1 for i in range(len(data.train))]
    sampler = GroupedBatchSampler(groups, config.batch_size, config.seed, ddp.rank, ddp.world_size,
                                  config.aspect_ratio_grouping)
    train_loader = make_loader(data.train, sampler, config, device)
    val_loader = make_loader(data.val, None, config, device, config.batch_size) if data.val is not None else None
    iters_per_epoch = len(sampler)

    # optimizer, schedule (per iteration), scaler
    lr = config.base_lr(ddp.world_size)
    optimizer = build_optimizer(model, config, lr, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config, iters_per_epoch))
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)  # bfloat16 needs no loss scaling
    start_epoch, step, skip, time_offset = 0, 0, 0, 0.0
    selection = Selection(config.best_metric, config.patience)  # best.pt and the early stop
    if ckpt is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        start_epoch, step = int(ckpt["epoch"]), int(ckpt["step"])
        skip = int(ckpt.get("batches_done", 0))
        selection = Selection.from_state(ckpt.get("selection"), config.best_metric, config.patience,
                                         ckpt.get("best_metric"))
        time_offset = float(ckpt.get("time", 0.0))
        if ddp.main:
            log.info("resuming after epoch %d%s at step %d", start_epoch,
                     f" (+{skip} batches of epoch {start_epoch + 1})" if skip else "", step)
    if ddp.enabled:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    core = _unwrap(model)
    if ddp.main:
        log.info("optimizer %s, lr %.5g (batch %d x %d processes), %s schedule%s, warm-up %d iterations, "
                 "%d iterations per epoch", config.optimizer, lr, config.batch_size, ddp.world_size, config.schedule,
                 f" (x{config.lr_gamma} after epochs {list(config.milestones())})" if config.schedule == "step" else "",
                 config.warmup_steps(iters_per_epoch), iters_per_epoch)

    can_map = pycocotools_available()
    if ddp.main and val_loader is not None and not can_map:
        log.info("pycocotools is not installed here: mAP is skipped (validation losses are still computed)")
    snap_idx = list(range(min(config.snapshot_images, len(data.val)))) if data.val is not None else []

    def checkpoint(which: str, epoch: int, batches_done: int, step: int, full: bool = True) -> None:
        extra: dict[str, Any] = {"step": step, "best_metric": selection.best, "selection": selection.state(),
                                 "time": time_offset + time.monotonic() - began,
                                 "config": config.to_dict()}
        if full:
            extra.update(optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                         scaler=scaler.state_dict(), batches_done=batches_done)
        save_checkpoint(runs.checkpoint_path(run_dir, which), core, setup.arch, data.class_names,
                        setup.model_kwargs, epoch=epoch, **extra)

    if ddp.main and snap_idx and ckpt is None:  # epoch 0: the RPN before any training
        runs.write_snapshot(run_dir, rpn_snapshot(core, data.val, snap_idx, device, data.class_names, 0))

    scales = BatchScales(config.multi_scale, config.seed) if config.multi_scale else None
    if ddp.main and scales is not None:
        log.info("multi-scale training: short side drawn per batch from %s; validation at min_size %s",
                 list(scales.sizes), list(core.transform.min_size))
    # `epoch`: that of the last step taken (a resumed partial epoch is in progress), `epochs_done`: completed
    status.update(write=True, state="running", epoch=start_epoch + 1 if skip else start_epoch, epochs_done=start_epoch,
                  step=step)
    epoch = start_epoch
    stop_reason = None
    for epoch in range(start_epoch + 1, config.epochs + 1):
        sampler.set_epoch(epoch, skip if epoch == start_epoch + 1 else 0)
        model.train()
        done_in_epoch = skip if epoch == start_epoch + 1 else 0
        boxes_removed = 0
        tick = time.perf_counter()
        last_log = time.monotonic()
        batches = iter(train_loader)
        while True:
            # each part of a step is a torch.profiler range (train.data, .forward, .readback, .backward,
            # .optimizer, .bookkeeping): a profile of a few steps shows where the host time goes
            fetch = time.perf_counter()
            with record_function("train.data"):
                batch = next(batches, None)
            if batch is None:
                break
            images, targets = batch
            data_s = time.perf_counter() - fetch  # the wait for this batch (the loader not keeping up)
            # stop requested? (STOP file or SIGTERM on any rank; decided together)
            stop_local = ddp.main and (runs.stop_requested(run_dir) or stop_flag["signal"] is not None)
            try:
                if on_step is not None:
                    on_step(step, core, images)
                if scales is not None:
                    scales.apply(core.transform, step)
                with record_function("train.forward"):
                    images = [i.to(device, non_blocking=True) for i in images]
                    gpu_targets = [{k: v.to(device, non_blocking=True) for k, v in t.items() if k in ("boxes", "labels")}
                                   for t in targets]
                    with torch.autocast(device.type, dtype=dtype, enabled=amp):
                        losses = model(images, gpu_targets)
                    loss = sum(losses[k] for k in LOSS_NAMES)
            except torch.OutOfMemoryError:
                raise TrainingFailed(_oom_message(device, config, setup.model_kwargs, step + 1)) from None
            # one collective per step: the losses (for logging), a non-finite flag and the stop flag;
            # built on the device and read back once (a single host-device sync per step on CUDA)
            with record_function("train.readback"):
                local = torch.stack([losses[k].detach().float() for k in LOSS_NAMES])
                nonfinite = (~torch.isfinite(local)).any().float().reshape(1)
                stop_flag_t = torch.full((1,), float(stop_local), device=device)
                shared = torch.cat([torch.nan_to_num(local, nan=0.0, posinf=0.0, neginf=0.0), nonfinite, stop_flag_t])
                if ddp.enabled:
                    dist.all_reduce(shared)
                host = torch.cat([shared[:4] / ddp.world_size, shared[4:]]).tolist()
            values = host[:4]
            if host[4] > 0:
                files = _batch_files(data.train, targets)
                what = ", ".join(f"{k}={v:.4g}" for k, v in zip(LOSS_NAMES, local.tolist()))
                here = f": {what}" if nonfinite.item() > 0 else " (on another process)"
                raise TrainingFailed(f"non-finite loss at epoch {epoch}, step {step + 1}{here}; batch images: "
                                     f"{', '.join(files)}. The last good checkpoint is kept; lower --lr or check "
                                     "these images' boxes, then --resume")
            if host[5] > 0:
                reason = (f"{stop_flag['signal']} received" if stop_flag["signal"]
                          else "stop requested (the Stop button or the STOP file)")
                if ddp.main:
                    if scales is not None:
                        scales.restore(core.transform)
                    checkpoint("last", epoch - 1, done_in_epoch, step)
                    runs.clear_stop(run_dir)
                    # the epoch of the last step taken, as the page counts it (metrics' `epoch` of that step)
                    log.info("stopped at epoch %d, step %d (%d epoch(s) complete; %s): checkpoint saved; --resume "
                             "continues from here", epoch if done_in_epoch else epoch - 1, step, epoch - 1, reason)
                status.close(state="stopped", epoch=epoch if done_in_epoch else epoch - 1, epochs_done=epoch - 1,
                             step=step, reason=reason)
                return TrainResult("stopped", epoch - 1, step, selection.best_map, reason)
            step_lr = optimizer.param_groups[0]["lr"]  # the rate this step uses
            try:
                with record_function("train.backward"):
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                with record_function("train.optimizer"):
                    if config.grad_clip:
                        scaler.unscale_(optimizer)
                        nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                    scaler.step(optimizer)
                    scaler.update()
                    scheduler.step()
            except torch.OutOfMemoryError:
                raise TrainingFailed(_oom_message(device, config, setup.model_kwargs, step + 1)) from None
            step += 1
            done_in_epoch += 1
            boxes_removed += sum(int(t.get("boxes_removed", 0)) for t in targets)
            with record_function("train.bookkeeping"):
                now = time.perf_counter()
                ips = len(images) * ddp.world_size / max(now - tick, 1e-9)
                tick = now
                if ddp.main:
                    row = {"kind": "train", "epoch": epoch, "step": step, "lr": step_lr,
                           "loss": sum(values), **dict(zip(LOSS_NAMES, values)), "images_per_s": ips,
                           "data_s": data_s, "time": time_offset + time.monotonic() - began}
                    runs.append_metrics(run_dir, row)
                    events.add(row)
                    # written at once when an epoch's first step is taken (the page's header counts it then too)
                    status.update(write=status.fields.get("epoch") != epoch, epoch=epoch, step=step)
                    if time.monotonic() - last_log > LOG_EVERY_S or done_in_epoch == iters_per_epoch:
                        last_log = time.monotonic()
                        log.info("epoch %d [%d/%d] step %d loss %.4f (cls %.4f box %.4f obj %.4f rpn %.4f) lr %.3g "
                                 "%.1f img/s", epoch, done_in_epoch, iters_per_epoch, step, row["loss"], *values,
                                 row["lr"], ips)
        skip = 0
        if scales is not None:
            scales.restore(core.transform)  # validation, snapshots and checkpoints at the model's own size
        if ddp.main and config.augmentation != "none":
            status.update(augment_boxes_removed=int(status.fields.get("augment_boxes_removed", 0)) + boxes_removed)
            log.info("epoch %d augmentation (%s): %d box(es) a crop left degenerate were removed", epoch,
                     config.augmentation, boxes_removed)

        # end of epoch: validate, snapshot, checkpoint (rank 0), the others wait
        if ddp.main:
            val_row = None
            due = epoch % max(config.val_every, 1) == 0 or epoch == config.epochs
            if val_loader is not None and due:
                status.update(write=True, phase="validating")
                val_row = {"kind": "val", "epoch": epoch, "step": step,
                           **validation_losses(core, val_loader, device, amp, dtype)}
                val_row["val_loss"] = sum(val_row[f"val_{k}"] for k in LOSS_NAMES)
                val_row.update(mAP=None, mAP50=None, mAP75=None)
                if can_map:
                    try:
                        result = validation_map(core, val_loader, device, data.class_names, amp)
                        val_row.update(mAP=result.mAP, mAP50=result.mAP50, mAP75=result.mAP75,
                                       per_class=result.per_class, val_images=result.images)
                    except EvaluationUnavailable as exc:
                        val_row["note"] = str(exc)
                else:
                    val_row["note"] = "pycocotools is not installed here: mAP skipped"
                val_row["time"] = time_offset + time.monotonic() - began
                runs.append_metrics(run_dir, val_row)
                events.add(val_row)
                log.info("epoch %d validation: loss %.4f (cls %.4f box %.4f obj %.4f rpn %.4f) mAP %s mAP50 %s",
                         epoch, val_row["val_loss"], *(val_row[f"val_{k}"] for k in LOSS_NAMES),
                         _fmt(val_row["mAP"]), _fmt(val_row["mAP50"]))
            if snap_idx:
                runs.write_snapshot(run_dir, rpn_snapshot(core, data.val, snap_idx, device, data.class_names, epoch))
            improved = val_loader is None  # no validation: best.pt follows last.pt
            if val_row is not None:
                improved = selection.update(epoch, val_row)
                stop_reason = selection.stop_reason()
            checkpoint("last", epoch, 0, step)
            if improved:
                checkpoint("best", epoch, 0, step, full=False)
            status.update(write=True, epoch=epoch, epochs_done=epoch, step=step, phase="training",
                          best_map=selection.best_map,
                          best={"metric": selection.describe_used(), "value": selection.best_value,
                                "epoch": selection.best_epoch})
        if ddp.enabled:  # rank 0 decides the early stop; every rank leaves the loop together
            flag = torch.tensor([float(stop_reason is not None)], device=device)
            dist.broadcast(flag, 0)
            stop_reason = stop_reason or ("early stop" if flag.item() > 0 else None)
        ddp.barrier()
        if stop_reason is not None:
            break

    reason = stop_reason or f"all {config.epochs} epochs"
    if ddp.main:
        runs.clear_stop(run_dir)
        log.info("done (%s): %d epochs, %d steps, best mAP %s", reason, epoch, step, _fmt(selection.best_map))
    status.close(state="done", epoch=epoch, epochs_done=epoch, step=step, phase=None, reason=reason)
    return TrainResult("done", epoch, step, selection.best_map, reason)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


class StopSignal(KeyboardInterrupt):
    """A second SIGTERM / SIGINT while a clean stop was pending: the run ends at once (as failed)."""


def _install_stop_signals(flag: dict[str, str | None]) -> dict[int, Any]:
    """SIGTERM and SIGINT ask for the same clean stop as the STOP file, at the next step (the
    signal's name is kept in `flag` and written to status.json as the reason); a second one ends
    the run at once. Main thread only; returns the handlers it replaced."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handler(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if flag["signal"] is not None:
            raise StopSignal(f"ended by a second {name} before the clean stop ({flag['signal']}) was reached")
        flag["signal"] = name
        log.info("%s received: stopping at the next step with a checkpoint (a second one ends the run at once)",
                 name)

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:
            pass
    return previous
