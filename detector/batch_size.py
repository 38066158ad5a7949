"""`--batch-size auto`: the largest training batch that fits the GPU, with headroom.

The search runs real training steps (forward, backward, an optimizer step) on the worst-case
images of the dataset, as the training loop will run them, and reads CUDA's out-of-memory error
as "does not fit":

1. double the batch from `start` until a step runs out of memory or the limit is reached;
2. bisect between the last batch that fitted and the first that did not;
3. leave headroom: from the peak memory each trial step allocated (a straight line through the
   two largest batches that fitted: fixed cost + cost per image), take the largest batch whose
   predicted peak stays under (1 - headroom) of the memory this process can have; without
   memory figures, (1 - headroom) of the largest batch that fitted.

Trial steps leave no trace: weights and buffers (BatchNorm statistics) are restored from a copy,
gradients cleared, the optimizer is a throwaway one, and the random streams are forked. The
search itself (`search_batch_size`) takes any `try_batch(b)` callable, so tests drive it on the
CPU through a seam that raises the real `torch.OutOfMemoryError`.
"""

from __future__ import annotations

import contextlib
import gc
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn

DEFAULT_HEADROOM = 0.2  # share of GPU memory left free: allocator fragmentation, batches that pad larger
DEFAULT_MAX_BATCH = 256
CPU_FALLBACK_BATCH = 4  # TrainConfig's default batch size: CPU memory cannot be probed by running out of it


class BatchSizeError(RuntimeError):
    """Not even the smallest batch fits: `str()` is the user message."""


@dataclass(frozen=True)
class Trial:
    """One trial step: its batch size, whether it fitted, and the peak bytes it allocated (None: unknown)."""

    batch_size: int
    fits: bool
    peak_bytes: int | None
    seconds: float


@dataclass(frozen=True)
class BatchSizeChoice:
    """What the search chose and why."""

    batch_size: int  # the batch to train with
    largest_fit: int  # the largest batch whose trial step fitted
    first_oom: int | None  # the smallest batch that ran out of memory (None: the limit came first)
    limit: int  # the largest batch considered (dataset size per process, or the cap)
    capacity_bytes: int | None  # memory this process can have (free + already reserved), None off CUDA
    predicted_peak_bytes: int | None  # predicted peak at `batch_size` (None: no memory figures)
    headroom: float
    trials: tuple[Trial, ...]
    seconds: float

    def describe(self) -> str:
        """One line for the log: what was chosen, from what."""
        why = (f"first out of memory at {self.first_oom}" if self.first_oom is not None
               else f"no out of memory up to the limit {self.limit}")
        mem = ""
        if self.predicted_peak_bytes is not None and self.capacity_bytes:
            mem = (f", predicted peak {self.predicted_peak_bytes / 2**30:.1f} of {self.capacity_bytes / 2**30:.1f} GiB"
                   f" ({self.headroom:.0%} left free)")
        return (f"batch size auto: {self.batch_size} (largest that fitted {self.largest_fit}, {why}{mem}; "
                f"{len(self.trials)} trial steps in {self.seconds:.1f} s)")

    def to_dict(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, "largest_fit": self.largest_fit, "first_oom": self.first_oom,
                "limit": self.limit, "capacity_bytes": self.capacity_bytes,
                "predicted_peak_bytes": self.predicted_peak_bytes, "headroom": self.headroom,
                "seconds": round(self.seconds, 3),
                "trials": [{"batch_size": t.batch_size, "fits": t.fits, "peak_bytes": t.peak_bytes,
                            "seconds": round(t.seconds, 3)} for t in self.trials]}


def search_batch_size(try_batch: Callable[[int], int | None], *, limit: int, start: int = 2,
                      capacity_bytes: int | None = None, headroom: float = DEFAULT_HEADROOM,
                      max_trials: int = 14) -> BatchSizeChoice:
    """Largest batch for which `try_batch(b)` runs without torch.OutOfMemoryError, less headroom.

    `try_batch(b)` runs one training step at batch size b and returns the peak bytes it allocated
    (None when unknown); it raises torch.OutOfMemoryError when b does not fit, having freed what
    it held. Raises BatchSizeError when not even one image fits.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    if not 0 <= headroom < 1:
        raise ValueError(f"headroom must be in [0, 1), not {headroom}")
    began = time.perf_counter()
    trials: list[Trial] = []

    def fits(b: int) -> bool:
        t0 = time.perf_counter()
        try:
            peak = try_batch(b)
        except torch.OutOfMemoryError:
            ok, peak = False, None
        else:
            ok = True
        if not ok:
            release_memory()
        trials.append(Trial(b, ok, peak, time.perf_counter() - t0))
        return ok

    # 1. double until out of memory or the limit
    lo, hi = 0, None  # lo fitted; hi did not
    b = max(1, min(start, limit))
    while len(trials) < max_trials:
        if fits(b):
            lo = b
            if b >= limit:
                break
            b = min(b * 2, limit)
        else:
            hi = b
            break
    if lo == 0:  # the first try did not fit: walk down to one image
        while hi is not None and hi > 1 and len(trials) < max_trials:
            b = hi // 2
            if fits(b):
                lo = b
                break
            hi = b
        if lo == 0:
            raise BatchSizeError("out of memory even at batch size 1: lower the image size (model_kwargs min_size / "
                                 "max_size) or the RPN / RoI sampling sizes, or train on a larger GPU")
    # 2. bisect between what fitted and what did not, to within an eighth
    while hi is not None and hi - lo > max(1, lo // 8) and len(trials) < max_trials:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    # 3. headroom: predicted peak under (1 - headroom) of capacity, else a share of the largest fit
    predicted = None
    ok = sorted({t.batch_size: t.peak_bytes for t in trials if t.fits and t.peak_bytes is not None}.items())
    if capacity_bytes and len(ok) >= 2 and ok[-1][0] > ok[-2][0]:
        (b1, p1), (b2, p2) = ok[-2], ok[-1]
        per_image = max((p2 - p1) / (b2 - b1), 1.0)
        fixed = p2 - per_image * b2
        chosen = int(math.floor(((1 - headroom) * capacity_bytes - fixed) / per_image))
        chosen = max(1, min(chosen, lo))
        predicted = int(fixed + per_image * chosen)
    else:
        chosen = lo if headroom == 0 else max(1, int(math.floor(lo * (1 - headroom))))
    return BatchSizeChoice(chosen, lo, hi, limit, capacity_bytes, predicted, headroom, tuple(trials),
                           time.perf_counter() - began)


def release_memory() -> None:
    """Free what a failed step left behind (collect its frames' tensors, return cached blocks)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@contextlib.contextmanager
def restored(model: nn.Module, device: torch.device):
    """Run trial steps on `model`, then put back its weights, buffers and random streams; grads cleared."""
    saved = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    was_training = model.training
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        model.zero_grad(set_to_none=True)
        model.load_state_dict(saved)
        model.train(was_training)
        release_memory()


# One training step at a given batch: (model, images, targets) -> None; the engine passes its own
# (autocast, loss, backward, optimizer step on a throwaway optimizer).
StepFn = Callable[[nn.Module, list[torch.Tensor], list[dict[str, torch.Tensor]]], None]


def trial_runner(model: nn.Module, samples: Sequence[tuple[torch.Tensor, dict]], step: StepFn,
                 device: torch.device) -> Callable[[int], int | None]:
    """`try_batch(b)` for `search_batch_size`: one step of `step` on b samples (cycled), on `device`.

    Returns the peak bytes allocated during the step on CUDA (None elsewhere). Out of memory is
    re-raised after the failed step's references are dropped.
    """
    if not samples:
        raise ValueError("no samples to try batches with")

    def try_batch(b: int) -> int | None:
        images = [samples[i % len(samples)][0].to(device) for i in range(b)]
        targets = [{k: v.to(device) for k, v in samples[i % len(samples)][1].items() if k in ("boxes", "labels")}
                   for i in range(b)]
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        failed = False
        try:
            step(model, images, targets)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
        except torch.OutOfMemoryError:
            failed = True  # leave the except block first: its traceback holds the step's tensors
        finally:
            model.zero_grad(set_to_none=True)
        del images, targets
        if failed:
            release_memory()
            raise torch.OutOfMemoryError(f"batch size {b} does not fit on {device}")
        return int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None

    return try_batch


def capacity_bytes(device: torch.device) -> int | None:
    """Memory this process can have on `device`: what is free plus what its allocator already holds."""
    if device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return int(free + torch.cuda.memory_reserved(device))


def worst_case_indices(sizes: Sequence[tuple[int, int]], min_size: int, max_size: int, count: int) -> list[int]:
    """Indices of the `count` images (width, height) largest after the model's resize (torchvision's rule:
    scale = min(min_size / short side, max_size / long side)), largest first."""
    def area(wh: tuple[int, int]) -> float:
        w, h = wh
        scale = min(min_size / min(w, h), max_size / max(w, h))
        return w * h * scale * scale

    order = sorted(range(len(sizes)), key=lambda i: -area(sizes[i]))
    return order[:max(1, count)]


def choose_batch_size(model: nn.Module, dataset: Any, step: StepFn, device: torch.device, limit: int,
                      headroom: float = DEFAULT_HEADROOM, samples: int = 8) -> BatchSizeChoice:
    """The training batch for `model` on `dataset` (a DetectionDataset): trial steps of `step` on the
    `samples` images largest after the model's resize, cycled to each batch size; the model comes
    back exactly as it was (`restored`)."""
    transform = model.transform
    sizes = [(r.width, r.height) for r in dataset.records]
    picked = [dataset[i] for i in worst_case_indices(sizes, int(transform.min_size[-1]), int(transform.max_size), samples)]
    with restored(model, device):
        return search_batch_size(trial_runner(model, picked, step, device), limit=min(limit, DEFAULT_MAX_BATCH),
                                 capacity_bytes=capacity_bytes(device), headroom=headroom)
