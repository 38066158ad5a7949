"""The training loop: fine-tune a Faster R-CNN on a dataset, writing a run folder as it goes.

Read in stages, as torchvision's references/detection (`train_one_epoch`) and detectron2's plain
trainer (`do_train`) read: `train(config, run_dir)` holds the run (status heartbeat, device lock,
signals, faults), `_set_up` builds a `Training` (data, model, loaders, optimizer, schedule, resumed
state, metric writers), `train_one_epoch` runs the steps, `_train_step` is one step in its profiler
ranges (train.data, .forward, .readback, .backward, .optimizer, .bookkeeping; one host read-back per
step), and `_end_of_epoch` validates, snapshots, checkpoints and decides the early stop. It runs
the same under `torchrun --nproc_per_node=N` (DistributedDataParallel; rank 0 writes the run folder).
Its parts live apart: the set-up pieces in `detector.training_setup`, data and batches in
`detector.training_data`, validation in `detector.validation`, the snapshot in `detector.snapshots`,
the metric writers in `detector.metric_writers`, which checkpoint is best in
`detector.model_selection`, the run folder in `detector.runs`.

Faults end the run with a plain message in status.json and train.log, and the last good
checkpoint kept: a non-finite loss (naming the batch's images), out of memory (saying what to
lower), a STOP file or SIGTERM (a clean stop with a checkpoint, resumable). This module imports
neither streamlit nor plotly: it runs on GPU machines that have neither.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
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
from detector.checkpoints import model_from_checkpoint, read_checkpoint, save_checkpoint
from detector.evaluation import pycocotools_available
from detector.metric_writers import MetricWriters, fmt
from detector.model_selection import Selection
from detector.runs import LOSS_NAMES
from detector.snapshots import rpn_snapshot
from detector.tensorboard_events import RunEvents
from detector.train_config import AUTO, TrainConfig
from detector.training_data import (GroupedBatchSampler, TrainingData, TrainingFailed, load_training_data,
                                    make_loader)
from detector.training_setup import (  # noqa: F401 - build_training_model, lr_factor: engine's API as before
    Distributed, ModelSetup, amp_dtype, auto_batch_size, build_optimizer, build_training_model, init_distributed,
    lr_factor, select_device,
)
from detector.validation import validation_losses, validation_row  # noqa: F401 - validation_losses as before
from detector.wording import counted

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


# ---------------------------------------------------------------- the run


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
    # from the moment status.json says running, a signal is recorded: a first one stops at the first
    # step (with a checkpoint), a second one ends the run as failed (was: from after the device lock and
    # TensorBoard's import, and a SIGTERM in between killed the run with its status left 'running')
    stop_flag: dict[str, str | None] = {"signal": None}
    previous_handlers = _install_stop_signals(stop_flag)
    try:
        device = select_device(config, ddp)
        init_distributed(ddp, device)
        lock_key = str(device) if device.type == "cuda" else "cpu"
        lock = runs.device_lock(lock_key, run_dir) if ddp.main else contextlib.nullcontext()
        # TensorBoard event files beside metrics.jsonl (rank 0; a resume drops the events after its step)
        with lock, RunEvents(runs.tensorboard_dir(run_dir), resume, enabled=ddp.main) as events:
            status.update(device=str(device))
            status.start()
            writers = MetricWriters.for_run(run_dir, events, log, ddp.main)
            training = _set_up(config, run_dir, resume, ddp, device, status, writers)
            return _train(training, stop_flag, on_step)
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
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
        status.stop_heartbeat()
        for h in handlers:
            log.removeHandler(h)
            h.close()
        if ddp.enabled and dist.is_initialized():
            dist.destroy_process_group()


# ---------------------------------------------------------------- set-up


@dataclass
class Training:
    """What the set-up builds and the epochs run on; `step` and `skip` move as it trains."""

    config: TrainConfig  # with --batch-size auto resolved
    run_dir: Path
    ddp: Distributed
    device: torch.device
    dtype: torch.dtype | None  # the autocast type; None: mixed precision off
    data: TrainingData
    setup: ModelSetup
    sampler: GroupedBatchSampler
    train_loader: DataLoader
    val_loader: DataLoader | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    selection: Selection  # best.pt and the early stop
    status: runs.StatusKeeper
    writers: MetricWriters
    began: float  # time.monotonic() when the set-up started
    model: nn.Module = field(init=False)  # DistributedDataParallel under torchrun, else setup.model
    start_epoch: int = 0  # epochs completed before this call (a resume)
    skip: int = 0  # batches of epoch start_epoch + 1 done before a resume
    step: int = 0  # global steps taken
    time_offset: float = 0.0  # training time before a resume, seconds
    scales: BatchScales | None = None  # multi-scale training
    snapshot_images: list[int] = field(default_factory=list)  # validation images of the RPN snapshots
    can_map: bool = False  # pycocotools is here

    def __post_init__(self) -> None:
        self.model = self.setup.model

    @property
    def core(self) -> nn.Module:
        """The model itself (DistributedDataParallel unwrapped): what is validated, snapshot and saved."""
        return self.model.module if isinstance(self.model, nn.parallel.DistributedDataParallel) else self.model

    @property
    def iters_per_epoch(self) -> int:
        return len(self.sampler)

    def elapsed(self) -> float:
        """Training time so far, across resumes (metrics' `time`)."""
        return self.time_offset + time.monotonic() - self.began

    def save_checkpoint(self, which: str, epoch: int, batches_done: int, full: bool = True) -> None:
        """checkpoints/`which`.pt after `epoch` (+ `batches_done` of the next); `full` with the optimizer,
        schedule and scaler for --resume."""
        extra: dict[str, Any] = {"step": self.step, "best_metric": self.selection.best,
                                 "selection": self.selection.state(), "time": self.elapsed(),
                                 "config": self.config.to_dict()}
        if full:
            extra.update(optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
                         scaler=self.scaler.state_dict(), batches_done=batches_done)
        save_checkpoint(runs.checkpoint_path(self.run_dir, which), self.core, self.setup.arch,
                        self.data.class_names, self.setup.model_kwargs, epoch=epoch, **extra)


def _set_up(config: TrainConfig, run_dir: Path, resume: bool, ddp: Distributed, device: torch.device,
            status: runs.StatusKeeper, writers: MetricWriters) -> Training:
    """Everything before the first step: seeds, data, model, loaders, optimizer and schedule, the
    resumed state, the epoch-0 RPN snapshot."""
    began = time.monotonic()
    dtype = _seed_and_backend(config, ddp, device)
    data = _load_data(config, run_dir, ddp)
    setup, ckpt = _model(config, run_dir, resume, data, ddp, device, dtype)
    if config.batch_size == AUTO:  # the largest batch that fits, from trial steps (CUDA); kept on resume
        config = config.replace(batch_size=auto_batch_size(config, setup.model, data.train, device, dtype, ddp, ckpt,
                                                           status))
    # loaders: grouped, sharded, resumable batches; validation in order
    groups = [0 if data.train.aspect_ratio(i) >= 1 else 1 for i in range(len(data.train))]
    sampler = GroupedBatchSampler(groups, config.batch_size, config.seed, ddp.rank, ddp.world_size,
                                  config.aspect_ratio_grouping)
    train_loader = make_loader(data.train, sampler, config, device)
    val_loader = make_loader(data.val, None, config, device, config.batch_size) if data.val is not None else None
    # optimizer, schedule (per iteration), scaler
    lr = config.base_lr(ddp.world_size)
    optimizer = build_optimizer(setup.model, config, lr, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config, len(sampler)))
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)  # bfloat16 needs no loss scaling
    t = Training(config, run_dir, ddp, device, dtype, data, setup, sampler, train_loader, val_loader, optimizer,
                 scheduler, scaler, Selection(config.best_metric, config.patience), status, writers, began)
    if ckpt is not None:
        _restore(t, ckpt)
    if ddp.enabled:
        t.model = nn.parallel.DistributedDataParallel(setup.model, device_ids=[device.index] if device.type == "cuda" else None)
    if ddp.main:
        log.info("optimizer %s, lr %.5g (batch %d x %d processes), %s schedule%s, warm-up %d iterations, "
                 "%d iterations per epoch", config.optimizer, lr, config.batch_size, ddp.world_size, config.schedule,
                 f" (x{config.lr_gamma} after epochs {list(config.milestones())})" if config.schedule == "step" else "",
                 config.warmup_steps(t.iters_per_epoch), t.iters_per_epoch)
    _snapshots_and_scales(t, first=ckpt is None)
    return t


def _seed_and_backend(config: TrainConfig, ddp: Distributed, device: torch.device) -> torch.dtype | None:
    """Seed this process, set the device's kernels up; returns the autocast type (None: off)."""
    torch.manual_seed(config.seed + ddp.rank)
    random.seed(config.seed + ddp.rank)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = config.cudnn_benchmark
    if device.type == "cpu":
        torch.set_flush_denormal(True)  # tiny gradients late in training otherwise slow CPU kernels several-fold
    if config.amp and device.type != "cuda":
        log.info("mixed precision is for CUDA: training in float32 on %s", device)
    return amp_dtype(config, device)


def _load_data(config: TrainConfig, run_dir: Path, ddp: Distributed) -> TrainingData:
    """Resolve the data, apply the validation fixes, record them (fixes.json)."""
    data = load_training_data(config)
    if ddp.main:
        runs.write_fixes(run_dir, data.fixes)
        log.info("data %s: %d training images, %d validation images, classes %s; %d fix(es) applied (fixes.json)",
                 data.source, len(data.train), len(data.val) if data.val else 0, ", ".join(data.class_names),
                 len(data.fixes))
        if data.val is None:
            log.info("no validation images: validation, mAP and snapshots are skipped; best.pt follows last.pt")
    return data


def _model(config: TrainConfig, run_dir: Path, resume: bool, data: TrainingData, ddp: Distributed,
           device: torch.device, dtype: torch.dtype | None) -> tuple[ModelSetup, dict | None]:
    """The model on its device (from the last checkpoint when resuming, else --init / COCO / random)
    and the checkpoint resumed from (None for a new run)."""
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
    setup.model = model = setup.model.to(device)
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
                 str(dtype).removeprefix("torch.") if dtype is not None else "off",
                 "; backbone channels_last" if config.channels_last else "",
                 "; backbone compiled" if config.compile_backbone else "")
    return setup, ckpt


def _restore(t: Training, ckpt: dict) -> None:
    """A resumed run's optimizer, schedule, scaler, counters and model selection, from its last.pt."""
    t.optimizer.load_state_dict(ckpt["optimizer"])
    t.scheduler.load_state_dict(ckpt["scheduler"])
    if ckpt.get("scaler"):
        t.scaler.load_state_dict(ckpt["scaler"])
    t.start_epoch, t.step = int(ckpt["epoch"]), int(ckpt["step"])
    t.skip = int(ckpt.get("batches_done", 0))
    t.selection = Selection.from_state(ckpt.get("selection"), t.config.best_metric, t.config.patience,
                                       ckpt.get("best_metric"))
    t.time_offset = float(ckpt.get("time", 0.0))
    if t.ddp.main:
        log.info("resuming after epoch %d%s at step %d", t.start_epoch,
                 f" (+{t.skip} batches of epoch {t.start_epoch + 1})" if t.skip else "", t.step)


def _snapshots_and_scales(t: Training, first: bool) -> None:
    """mAP where pycocotools is here, the snapshot images (and the epoch-0 snapshot of a new run: the
    RPN before any training), multi-scale training's sizes."""
    t.can_map = pycocotools_available()
    if t.ddp.main and t.val_loader is not None and not t.can_map:
        log.info("pycocotools is not installed here: mAP is skipped (validation losses are still computed)")
    val = t.data.val
    t.snapshot_images = list(range(min(t.config.snapshot_images, len(val)))) if val is not None else []
    if t.ddp.main and t.snapshot_images and first:
        runs.write_snapshot(t.run_dir, rpn_snapshot(t.core, val, t.snapshot_images, t.device, t.data.class_names, 0))
    if t.config.multi_scale:
        t.scales = BatchScales(t.config.multi_scale, t.config.seed)
        if t.ddp.main:
            log.info("multi-scale training: short side drawn per batch from %s; validation at min_size %s",
                     list(t.scales.sizes), list(t.core.transform.min_size))


# ---------------------------------------------------------------- the epochs


def _train(t: Training, stop_flag: dict[str, str | None], on_step: StepHook | None) -> TrainResult:
    """Every epoch from the set-up's on: its steps, then its end (validation, snapshot, checkpoints)."""
    # `epoch`: that of the last step taken (a resumed partial epoch is in progress), `epochs_done`: completed
    t.status.update(write=True, state="running", epoch=t.start_epoch + 1 if t.skip else t.start_epoch,
                    epochs_done=t.start_epoch, step=t.step)
    epoch, stop_reason = t.start_epoch, None
    for epoch in range(t.start_epoch + 1, t.config.epochs + 1):
        stopped = train_one_epoch(t, epoch, stop_flag, on_step)
        if stopped is not None:
            return stopped
        stop_reason = _end_of_epoch(t, epoch)
        if stop_reason is not None:
            break
    reason = stop_reason or f"all {t.config.epochs} epochs"
    if t.ddp.main:
        runs.clear_stop(t.run_dir)
        log.info("done (%s): %d epochs, %d steps, best mAP %s", reason, epoch, t.step, fmt(t.selection.best_map))
    t.status.close(state="done", epoch=epoch, epochs_done=epoch, step=t.step, phase=None, reason=reason)
    return TrainResult("done", epoch, t.step, t.selection.best_map, reason)


@dataclass
class EpochProgress:
    """Where an epoch stands: steps done in it, boxes an augmentation removed, the last step's end."""

    done: int
    boxes_removed: int = 0
    tick: float = field(default_factory=time.perf_counter)


def train_one_epoch(t: Training, epoch: int, stop_flag: dict[str, str | None],
                    on_step: StepHook | None) -> TrainResult | None:
    """The steps of `epoch` (a resumed one from where it stopped); the result of a clean stop, or None."""
    skip = t.skip if epoch == t.start_epoch + 1 else 0
    t.sampler.set_epoch(epoch, skip)
    t.model.train()
    progress = EpochProgress(done=skip)
    t.writers.epoch_started()
    batches = iter(t.train_loader)
    while True:
        fetch = time.perf_counter()
        with record_function("train.data"):
            batch = next(batches, None)
        if batch is None:
            break
        data_s = time.perf_counter() - fetch  # the wait for this batch (the loader not keeping up)
        stopped = _train_step(t, epoch, batch, data_s, progress, stop_flag, on_step)
        if stopped is not None:
            return stopped
    t.skip = 0
    if t.scales is not None:
        t.scales.restore(t.core.transform)  # validation, snapshots and checkpoints at the model's own size
    if t.ddp.main and t.config.augmentation != "none":
        t.status.update(augment_boxes_removed=int(t.status.fields.get("augment_boxes_removed", 0))
                        + progress.boxes_removed)
        log.info("epoch %d augmentation (%s): %d box(es) a crop left degenerate were removed", epoch,
                 t.config.augmentation, progress.boxes_removed)
    return None


def _train_step(t: Training, epoch: int, batch: tuple, data_s: float, progress: EpochProgress,
                stop_flag: dict[str, str | None], on_step: StepHook | None) -> TrainResult | None:
    """One step, each part a torch.profiler range (train.data is the caller's; .forward, .readback,
    .backward, .optimizer, .bookkeeping here): a profile of a few steps shows where the host time goes.
    Returns the result of a clean stop (STOP file or a signal, on any rank), else None."""
    images, targets = batch
    # stop requested? (STOP file or SIGTERM on any rank; decided together at the read-back)
    stop_local = t.ddp.main and (runs.stop_requested(t.run_dir) or stop_flag["signal"] is not None)
    with _out_of_memory_named(t):
        if on_step is not None:
            on_step(t.step, t.core, images)
        if t.scales is not None:
            t.scales.apply(t.core.transform, t.step)
        with record_function("train.forward"):
            images = [i.to(t.device, non_blocking=True) for i in images]
            gpu_targets = [{k: v.to(t.device, non_blocking=True) for k, v in tg.items() if k in ("boxes", "labels")}
                           for tg in targets]
            with torch.autocast(t.device.type, dtype=t.dtype, enabled=t.dtype is not None):
                losses = t.model(images, gpu_targets)
            loss = sum(losses[k] for k in LOSS_NAMES)
    with record_function("train.readback"):
        local, nonfinite, host = _read_back(t, losses, stop_local)
    if host[4] > 0:
        raise TrainingFailed(_nonfinite_message(t, epoch, targets, local, nonfinite))
    if host[5] > 0:
        return _stop(t, epoch, progress.done, stop_flag)
    step_lr = t.optimizer.param_groups[0]["lr"]  # the rate this step uses
    with _out_of_memory_named(t):
        with record_function("train.backward"):
            t.optimizer.zero_grad(set_to_none=True)
            t.scaler.scale(loss).backward()
        with record_function("train.optimizer"):
            if t.config.grad_clip:
                t.scaler.unscale_(t.optimizer)
                nn.utils.clip_grad_norm_(t.model.parameters(), t.config.grad_clip)
            t.scaler.step(t.optimizer)
            t.scaler.update()
            t.scheduler.step()
    t.step += 1
    progress.done += 1
    progress.boxes_removed += sum(int(tg.get("boxes_removed", 0)) for tg in targets)
    with record_function("train.bookkeeping"):
        _bookkeeping(t, epoch, step_lr, host[:4], len(images), data_s, progress)
    return None


@contextlib.contextmanager
def _out_of_memory_named(t: Training):
    """Out of memory during the next step becomes TrainingFailed saying what to lower."""
    try:
        yield
    except torch.OutOfMemoryError:
        size = t.setup.model_kwargs.get("min_size", "the model's default")
        batch = t.config.batch_size
        raise TrainingFailed(
            f"out of memory on {t.device} at step {t.step + 1} (batch size {batch}, min_size {size}): "
            f"lower --batch-size (now {batch}), or the image size (model_kwargs min_size / max_size), "
            "or rpn_batch_size_per_image / box_batch_size_per_image; on CUDA keep --amp on; "
            "then --resume from the last checkpoint") from None


def _read_back(t: Training, losses: dict[str, torch.Tensor],
               stop_local: bool) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """One collective per step: the losses (for logging), a non-finite flag and the stop flag, built on
    the device and read back once (a single host-device sync per step on CUDA). Returns this process's
    losses, its non-finite flag, and the host copy: 4 losses averaged over processes, the non-finite
    count, the stop count."""
    local = torch.stack([losses[k].detach().float() for k in LOSS_NAMES])
    nonfinite = (~torch.isfinite(local)).any().float().reshape(1)
    stop_flag_t = torch.full((1,), float(stop_local), device=t.device)
    shared = torch.cat([torch.nan_to_num(local, nan=0.0, posinf=0.0, neginf=0.0), nonfinite, stop_flag_t])
    if t.ddp.enabled:
        dist.all_reduce(shared)
    return local, nonfinite, torch.cat([shared[:4] / t.ddp.world_size, shared[4:]]).tolist()


def _nonfinite_message(t: Training, epoch: int, targets: Sequence[dict], local: torch.Tensor,
                       nonfinite: torch.Tensor) -> str:
    files = [t.data.train.records[int(tg["image_id"])].file for tg in targets]
    what = ", ".join(f"{k}={v:.4g}" for k, v in zip(LOSS_NAMES, local.tolist()))
    here = f": {what}" if nonfinite.item() > 0 else " (on another process)"
    return (f"non-finite loss at epoch {epoch}, step {t.step + 1}{here}; batch images: {', '.join(files)}. "
            "The last good checkpoint is kept; lower --lr or check these images' boxes, then --resume")


def _stop(t: Training, epoch: int, done_in_epoch: int, stop_flag: dict[str, str | None]) -> TrainResult:
    """A clean stop before this step: checkpoint where it is (rank 0), status stopped with the reason."""
    reason = (f"{stop_flag['signal']} received" if stop_flag["signal"]
              else "stop requested (the Stop button or the STOP file)")
    # the epoch of the last step taken, as the page counts it (metrics' `epoch` of that step)
    shown = epoch if done_in_epoch else epoch - 1
    if t.ddp.main:
        if t.scales is not None:
            t.scales.restore(t.core.transform)
        t.save_checkpoint("last", epoch - 1, done_in_epoch)
        runs.clear_stop(t.run_dir)
        log.info("stopped at epoch %d, step %d (%s complete; %s): checkpoint saved; --resume "
                 "continues from here", shown, t.step, counted(epoch - 1, "epoch"), reason)
    t.status.close(state="stopped", epoch=shown, epochs_done=epoch - 1, step=t.step, reason=reason)
    return TrainResult("stopped", epoch - 1, t.step, t.selection.best_map, reason)


def _bookkeeping(t: Training, epoch: int, step_lr: float, values: list[float], images: int, data_s: float,
                 progress: EpochProgress) -> None:
    """The step's metrics row to every writer, and status.json's epoch and step (rank 0)."""
    now = time.perf_counter()
    ips = images * t.ddp.world_size / max(now - progress.tick, 1e-9)
    progress.tick = now
    if not t.ddp.main:
        return
    row = {"kind": "train", "epoch": epoch, "step": t.step, "lr": step_lr, "loss": sum(values),
           **dict(zip(LOSS_NAMES, values)), "images_per_s": ips, "data_s": data_s, "time": t.elapsed()}
    t.writers.write(row, (progress.done, t.iters_per_epoch))
    # written at once when an epoch's first step is taken (the page's header counts it then too)
    t.status.update(write=t.status.fields.get("epoch") != epoch, epoch=epoch, step=t.step)


def _end_of_epoch(t: Training, epoch: int) -> str | None:
    """Validate (when due), snapshot, checkpoint last.pt and best.pt (rank 0; the others wait); returns
    why the run stops early (patience spent), or None."""
    stop_reason = None
    if t.ddp.main:
        val_row = None
        due = epoch % max(t.config.val_every, 1) == 0 or epoch == t.config.epochs
        if t.val_loader is not None and due:
            t.status.update(write=True, phase="validating")
            val_row = validation_row(t.core, t.val_loader, t.device, t.data.class_names, t.dtype, t.can_map, epoch,
                                     t.step)
            val_row["time"] = t.elapsed()
            t.writers.write(val_row)
        if t.snapshot_images:
            runs.write_snapshot(t.run_dir, rpn_snapshot(t.core, t.data.val, t.snapshot_images, t.device,
                                                        t.data.class_names, epoch))
        improved = t.val_loader is None  # no validation: best.pt follows last.pt
        if val_row is not None:
            improved = t.selection.update(epoch, val_row)
            stop_reason = t.selection.stop_reason()
        t.save_checkpoint("last", epoch, 0)
        if improved:
            t.save_checkpoint("best", epoch, 0, full=False)
        t.status.update(write=True, epoch=epoch, epochs_done=epoch, step=t.step, phase="training",
                        best_map=t.selection.best_map,
                        best={"metric": t.selection.describe_used(), "value": t.selection.best_value,
                              "epoch": t.selection.best_epoch})
    if t.ddp.enabled:  # rank 0 decides the early stop; every rank leaves the loop together
        flag = torch.tensor([float(stop_reason is not None)], device=t.device)
        dist.broadcast(flag, 0)
        stop_reason = stop_reason or ("early stop" if flag.item() > 0 else None)
    t.ddp.barrier()
    return stop_reason


# ---------------------------------------------------------------- logging and signals


def _setup_logging(run_dir: Path, enabled: bool) -> list[logging.Handler]:
    log.setLevel(logging.INFO)
    log.propagate = False
    if not enabled:
        return []
    formatter = logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S")
    handlers: list[logging.Handler] = [logging.FileHandler(runs.log_path(run_dir), encoding="utf-8"),
                                       logging.StreamHandler(sys.stdout)]
    for h in handlers:
        h.setFormatter(formatter)
        log.addHandler(h)
    return handlers


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
