"""End-of-epoch validation: the model's own four losses on the validation set, weights and BatchNorm
statistics untouched, and COCO mAP through the one evaluation function (`evaluation.evaluate_model`),
as one "val" row of metrics.jsonl."""

from __future__ import annotations

import contextlib
from typing import Any, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader

from detector.evaluation import EvaluationUnavailable, evaluate_model
from detector.runs import LOSS_NAMES


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


def validation_row(model: nn.Module, loader: DataLoader, device: torch.device, class_names: Sequence[str],
                   dtype: torch.dtype | None, can_map: bool, epoch: int, step: int) -> dict[str, Any]:
    """metrics.jsonl's "val" row after `epoch`: the four validation losses and their sum (val_loss),
    mAP / mAP50 / mAP75 (None, with a `note`, where pycocotools is missing or cannot evaluate), the
    per-class AP and the number of images evaluated."""
    amp = dtype is not None
    row: dict[str, Any] = {"kind": "val", "epoch": epoch, "step": step,
                           **validation_losses(model, loader, device, amp, dtype)}
    row["val_loss"] = sum(row[f"val_{k}"] for k in LOSS_NAMES)
    row.update(mAP=None, mAP50=None, mAP75=None)
    if not can_map:
        row["note"] = "pycocotools is not installed here: mAP skipped"
        return row
    try:
        result = evaluate_model(model, loader, class_names, device, amp=amp)
    except EvaluationUnavailable as exc:
        row["note"] = str(exc)
        return row
    row.update(mAP=result.mAP, mAP50=result.mAP50, mAP75=result.mAP75, per_class=result.per_class,
               val_images=result.images)
    return row
