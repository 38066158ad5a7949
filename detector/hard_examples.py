"""Hard examples of a finished run: its validation images ranked by loss or by per-image AP.

After training, the images the model gets most wrong say the most about it (the idea behind
online hard example mining): `score_validation_images` runs a run's checkpoint over its validation
split once, recording for each image the four Faster R-CNN losses (RPN objectness and box
regression, classifier and box regression of the second stage) and the COCO AP of that image
alone; `hardest` ranks them. Boxes are [x1, y1, x2, y2] in ORIGINAL image pixels; labels are
1-based into the checkpoint's class names.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

from detector import runs
from detector.runs import LOSS_NAMES
from detector.evaluation import CocoEvaluator, EvaluationUnavailable

RANKINGS = ("loss", "ap")


@dataclass(frozen=True)
class ScoredImage:
    """One validation image: its losses, its own AP, and what the model found on it."""

    file: str  # relative to `root`
    root: Path  # the dataset folder the file lives in
    width: int
    height: int
    losses: dict[str, float]  # the four training losses on this image alone
    ap: float | None  # COCO AP@[0.5:0.95] of this image alone (None: no ground truth, or no pycocotools)
    ap50: float | None  # AP at IoU 0.5
    gt_boxes: np.ndarray = field(repr=False)  # (G, 4)
    gt_labels: np.ndarray = field(repr=False)  # (G,)
    boxes: np.ndarray = field(repr=False)  # (D, 4) detections, best first
    scores: np.ndarray = field(repr=False)  # (D,)
    labels: np.ndarray = field(repr=False)  # (D,)

    @property
    def loss(self) -> float:
        """The sum of the four losses (the quantity training minimises)."""
        return float(sum(self.losses.values()))

    @property
    def path(self) -> Path:
        return self.root / self.file


@dataclass(frozen=True)
class ScoredRun:
    """Every scored validation image of a run, with the checkpoint that scored them."""

    checkpoint: Path
    class_names: tuple[str, ...]
    images: tuple[ScoredImage, ...]
    total_images: int  # validation images in the run's split (only the first `max_images` are scored)


@contextlib.contextmanager
def _losses_mode(model: nn.Module) -> Iterator[None]:
    """Training mode (where torchvision computes losses) with BatchNorm statistics frozen and
    gradients off; the sampling RNG is forked so scoring leaves the global stream alone."""
    was_training = model.training
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(0)  # the RPN and RoI samplers draw at random: the same draw every time
        model.train()
        for m in norms:
            m.eval()
        try:
            yield
        finally:
            model.train(was_training)


def _image_ap(class_names: tuple[str, ...], width: int, height: int, gt_boxes: np.ndarray, gt_labels: np.ndarray,
              boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> tuple[float | None, float | None]:
    if len(gt_boxes) == 0:
        return None, None
    evaluator = CocoEvaluator(class_names)
    evaluator.process(width, height, gt_boxes, gt_labels, boxes, scores, labels)
    try:
        result = evaluator.evaluate()
    except EvaluationUnavailable:
        return None, None
    return result.mAP, result.mAP50


def score_validation_images(run_dir: str | Path, device: str | torch.device = "cpu", max_images: int = 48,
                            progress: Callable[[int, int], None] | None = None) -> ScoredRun:
    """Run the run's checkpoint (best.pt, else last.pt) over its validation split, image by image.

    Raises runs.RunError when the run has no config, no checkpoint or no validation images.
    `progress(done, total)` is called after each image.
    """
    from detector.training_data import load_training_data
    from detector.checkpoints import CheckpointError, checkpoint_path_for, load_model
    from detector.train_config import TrainConfig

    run_dir = Path(run_dir)
    config_dict = runs.read_config(run_dir)
    if config_dict is None:
        raise runs.RunError(f"{run_dir}: no config.json")
    try:
        checkpoint = checkpoint_path_for(run_dir)
    except CheckpointError as exc:
        raise runs.RunError(str(exc)) from None
    # the run's own validation split, without decoding every image first (we decode each below)
    config = TrainConfig.from_dict(config_dict).replace(decode_check=False, max_val_images=None)
    data = load_training_data(config)
    if data.val is None or len(data.val) == 0:
        raise runs.RunError(f"{run_dir}: the run has no validation images")
    loaded = load_model(run_dir, device)
    model = loaded.model
    device = next(model.parameters()).device
    count = min(len(data.val), max_images)
    scored = []
    for i in range(count):
        image, target = data.val[i]
        record = data.val.records[i]
        img = image.to(device)
        gt = {"boxes": target["boxes"].to(device), "labels": target["labels"].to(device)}
        # the four losses of this image (training mode, weights and statistics untouched)
        with _losses_mode(model):
            out = model([img], [gt])
        losses = {k: float(out[k]) for k in LOSS_NAMES}
        losses = {k: (v if math.isfinite(v) else float("nan")) for k, v in losses.items()}
        # detections (eval mode), then the AP of this image alone
        with torch.inference_mode():
            det = model([img])[0]
        boxes = det["boxes"].float().cpu().numpy()
        scores = det["scores"].float().cpu().numpy()
        labels = det["labels"].cpu().numpy().astype(np.int64)
        gt_boxes = target["boxes"].numpy().astype(np.float32)
        gt_labels = target["labels"].numpy().astype(np.int64)
        width, height = int(image.shape[-1]), int(image.shape[-2])
        ap, ap50 = _image_ap(loaded.class_names, width, height, gt_boxes, gt_labels, boxes, scores, labels)
        scored.append(ScoredImage(record.file, Path(data.val.root), width, height, losses, ap, ap50,
                                  gt_boxes, gt_labels, boxes, scores, labels))
        if progress is not None:
            progress(i + 1, count)
    return ScoredRun(checkpoint, tuple(loaded.class_names), tuple(scored), len(data.val))


def hardest(images: tuple[ScoredImage, ...] | list[ScoredImage], by: str = "loss", k: int = 6) -> list[ScoredImage]:
    """The `k` hardest images: highest total loss (`by="loss"`) or lowest own AP (`by="ap"`;
    images without ground truth have no AP and are left out of that ranking)."""
    if by not in RANKINGS:
        raise ValueError(f"by must be one of {', '.join(RANKINGS)}, not {by!r}")
    if by == "loss":
        ranked = sorted(images, key=lambda s: -s.loss if math.isfinite(s.loss) else -math.inf)
    else:
        ranked = sorted((s for s in images if s.ap is not None), key=lambda s: (s.ap, -s.loss))
    return list(ranked[:k])


def validation_root(run_dir: str | Path) -> Path | None:
    """The folder the run's validation image files are relative to (snapshot `file`s too), or
    None when the run's dataset cannot be found any more."""
    from detector.data import resolve_dataset
    from detector.data.records import DatasetError

    try:
        config = runs.read_config(Path(run_dir)) or {}
    except runs.RunError:
        return None
    spec = config.get("val_data") or config.get("data")
    if not spec:
        return None
    try:
        dataset, _, _ = resolve_dataset(spec)
    except (DatasetError, OSError, ValueError):
        return None
    return Path(dataset.root)
