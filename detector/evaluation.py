"""COCO-style evaluation as an accumulator: reset / process / evaluate, over pycocotools.

One evaluator serves the training loop (per-epoch mAP), `python -m detector evaluate` and the pages.
Boxes are [x1, y1, x2, y2] in original image pixels; labels are 1-based indices into
`class_names` (0 is background). pycocotools is imported lazily: where it is missing (the GPU
machine), `EvaluationUnavailable` says so and training goes on without mAP.
"""

from __future__ import annotations

import contextlib
import io
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch


class EvaluationUnavailable(RuntimeError):
    """pycocotools is not installed: mAP cannot be computed here."""


def pycocotools_available() -> bool:
    try:
        import pycocotools.cocoeval  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class EvalResult:
    """COCO metrics as plain floats; None where undefined (no ground truth for it)."""

    mAP: float | None  # AP at IoU 0.50:0.95, all areas, 100 detections
    mAP50: float | None
    mAP75: float | None
    per_class: dict[str, float | None]  # AP 0.50:0.95 per class name
    images: int  # images evaluated
    detections: int  # detections submitted
    ground_truth: int  # ground-truth boxes
    seconds: float = 0.0  # time spent in pycocotools

    def as_dict(self) -> dict[str, Any]:
        return {"mAP": self.mAP, "mAP50": self.mAP50, "mAP75": self.mAP75, "per_class": dict(self.per_class),
                "images": self.images, "detections": self.detections, "ground_truth": self.ground_truth}


def _as_array(x: Any, shape_tail: tuple[int, ...], dtype: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x if x is not None else [], dtype=dtype)
    return arr.reshape((-1, *shape_tail))


@dataclass
class CocoEvaluator:
    """Collect ground truth and detections image by image, then compute COCO mAP.

    `process` takes one image at a time (boxes xyxy in original pixels); `evaluate` runs
    pycocotools' COCOeval (bbox) and returns an EvalResult with float figures.
    """

    class_names: Sequence[str]
    _images: list[dict[str, Any]] = field(default_factory=list, repr=False)
    _gt: list[dict[str, Any]] = field(default_factory=list, repr=False)
    _dt: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def reset(self) -> None:
        self._images.clear()
        self._gt.clear()
        self._dt.clear()

    def process(
        self,
        width: int,
        height: int,
        gt_boxes: Any,
        gt_labels: Any,
        boxes: Any,
        scores: Any,
        labels: Any,
    ) -> None:
        """Add one image: its size, ground truth and detections (xyxy, original pixels)."""
        image_id = len(self._images) + 1
        self._images.append({"id": image_id, "width": int(width), "height": int(height)})
        gb = _as_array(gt_boxes, (4,), np.float64)
        gl = _as_array(gt_labels, (), np.int64)
        for box, label in zip(gb, gl):
            w, h = float(box[2] - box[0]), float(box[3] - box[1])
            self._gt.append({
                "id": len(self._gt) + 1, "image_id": image_id, "category_id": int(label),
                "bbox": [float(box[0]), float(box[1]), w, h], "area": w * h, "iscrowd": 0,
            })
        db = _as_array(boxes, (4,), np.float64)
        ds = _as_array(scores, (), np.float64)
        dl = _as_array(labels, (), np.int64)
        for box, score, label in zip(db, ds, dl):
            self._dt.append({
                "image_id": image_id, "category_id": int(label),
                "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])],
                "score": float(score),
            })

    @property
    def images(self) -> int:
        return len(self._images)

    def evaluate(self) -> EvalResult:
        """COCO bbox metrics over everything processed since the last reset."""
        try:
            from pycocotools.coco import COCO
            from pycocotools.cocoeval import COCOeval
        except ImportError:
            raise EvaluationUnavailable("pycocotools is not installed here: mAP skipped") from None
        start = time.perf_counter()
        names = list(self.class_names)
        per_class_none: dict[str, float | None] = {n: None for n in names}
        if not self._images or not self._gt:  # nothing to measure against
            return EvalResult(None, None, None, per_class_none, len(self._images), len(self._dt), len(self._gt))
        if not self._dt:  # ground truth but no detection: every AP is 0
            present = {g["category_id"] for g in self._gt}
            per_class = {n: (0.0 if i + 1 in present else None) for i, n in enumerate(names)}
            return EvalResult(0.0, 0.0, 0.0, per_class, len(self._images), 0, len(self._gt))
        gt = COCO()
        gt.dataset = {
            "images": list(self._images),
            "annotations": list(self._gt),
            "categories": [{"id": i + 1, "name": n} for i, n in enumerate(names)],
        }
        with contextlib.redirect_stdout(io.StringIO()):
            gt.createIndex()
            dt = gt.loadRes(list(self._dt))
            coco_eval = COCOeval(gt, dt, iouType="bbox")
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
        stats = [float(s) for s in coco_eval.stats]
        # precision: [T iou thresholds, R recall points, K classes, A areas, M max dets]
        precision = coco_eval.eval["precision"]
        cat_ids = list(coco_eval.params.catIds)
        per_class = {}
        for i, name in enumerate(names):
            k = cat_ids.index(i + 1)
            p = precision[:, :, k, 0, -1]
            p = p[p > -1]
            per_class[name] = float(p.mean()) if p.size else None
        return EvalResult(
            mAP=_defined(stats[0]), mAP50=_defined(stats[1]), mAP75=_defined(stats[2]),
            per_class=per_class, images=len(self._images), detections=len(self._dt),
            ground_truth=len(self._gt), seconds=time.perf_counter() - start,
        )


def _defined(value: float) -> float | None:
    """pycocotools writes -1 for undefined figures."""
    return None if value < 0 else float(value)


@torch.inference_mode()
def evaluate_model(
    model: torch.nn.Module,
    batches: Iterable[tuple[Sequence[torch.Tensor], Sequence[dict[str, torch.Tensor]]]],
    class_names: Sequence[str],
    device: torch.device | str = "cpu",
    progress: Callable[[int], None] | None = None,
) -> EvalResult:
    """Run `model` in eval mode over (images, targets) batches and compute COCO mAP.

    images: (3, H, W) float tensors in [0, 1]; targets carry `boxes` (xyxy, original pixels) and
    `labels`. The model's detections come back in the same frame (torchvision postprocess).
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    evaluator = CocoEvaluator(class_names)
    try:
        for images, targets in batches:
            outputs = model([img.to(device) for img in images])
            for img, target, out in zip(images, targets, outputs):
                evaluator.process(img.shape[-1], img.shape[-2], target["boxes"], target["labels"],
                                  out["boxes"], out["scores"], out["labels"])
            if progress is not None:
                progress(evaluator.images)
    finally:
        model.train(was_training)
    return evaluator.evaluate()
