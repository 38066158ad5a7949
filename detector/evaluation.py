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

from detector.frames import xyxy_to_xywh


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
        for (x, y, w, h), label in zip(xyxy_to_xywh(gb).tolist(), gl):
            self._gt.append({
                "id": len(self._gt) + 1, "image_id": image_id, "category_id": int(label),
                "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0,
            })
        db = _as_array(boxes, (4,), np.float64)
        ds = _as_array(scores, (), np.float64)
        dl = _as_array(labels, (), np.int64)
        for bbox, score, label in zip(xyxy_to_xywh(db).tolist(), ds, dl):
            self._dt.append({"image_id": image_id, "category_id": int(label), "bbox": bbox, "score": float(score)})

    @property
    def images(self) -> int:
        return len(self._images)

    def run_cocoeval(self) -> Any | None:
        """pycocotools' COCOeval (bbox) after evaluate / accumulate / summarize, over everything
        processed since the last reset; None when there is no ground truth or no detection.

        Its `eval["precision"]` is [T iou thresholds, R recall points, K classes, A areas, M max
        dets] with `params.catIds` = label ids; `stats` the twelve summary figures.
        """
        try:
            from pycocotools.coco import COCO
            from pycocotools.cocoeval import COCOeval
        except ImportError:
            raise EvaluationUnavailable("pycocotools is not installed here: mAP skipped") from None
        if not self._images or not self._gt or not self._dt:
            return None
        gt = COCO()
        gt.dataset = {
            "images": list(self._images),
            "annotations": list(self._gt),
            "categories": [{"id": i + 1, "name": n} for i, n in enumerate(self.class_names)],
        }
        with contextlib.redirect_stdout(io.StringIO()):
            gt.createIndex()
            dt = gt.loadRes(list(self._dt))
            coco_eval = COCOeval(gt, dt, iouType="bbox")
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
        return coco_eval

    def present_labels(self) -> set[int]:
        """Label ids that have at least one ground-truth box."""
        return {g["category_id"] for g in self._gt}

    def evaluate(self) -> EvalResult:
        """COCO bbox metrics over everything processed since the last reset."""
        start = time.perf_counter()
        return self.result(self.run_cocoeval(), start)

    def result(self, coco_eval: Any | None, start: float | None = None) -> EvalResult:
        """The EvalResult of a `run_cocoeval()` over what was processed (None: its empty cases)."""
        start = time.perf_counter() if start is None else start
        names = list(self.class_names)
        if coco_eval is None:
            if not self._images or not self._gt:  # nothing to measure against
                return EvalResult(None, None, None, {n: None for n in names}, len(self._images), len(self._dt),
                                  len(self._gt))
            # ground truth but no detection: every AP is 0
            present = self.present_labels()
            per_class = {n: (0.0 if i + 1 in present else None) for i, n in enumerate(names)}
            return EvalResult(0.0, 0.0, 0.0, per_class, len(self._images), 0, len(self._gt))
        stats = [float(s) for s in coco_eval.stats]
        per_class = {name: class_ap(coco_eval, i + 1) for i, name in enumerate(names)}
        return EvalResult(
            mAP=_defined(stats[0]), mAP50=_defined(stats[1]), mAP75=_defined(stats[2]),
            per_class=per_class, images=len(self._images), detections=len(self._dt),
            ground_truth=len(self._gt), seconds=time.perf_counter() - start,
        )


# COCOeval's area ranges, in the order of `params.areaRngLbl`
AREAS = ("all", "small", "medium", "large")


def class_ap(coco_eval: Any, label: int, iou: float | None = None, area: str = "all") -> float | None:
    """One class's AP from an accumulated COCOeval, as pycocotools' summarize computes it.

    iou None: the mean over IoU 0.50:0.95; else that one threshold (0.5, 0.75, ...). area one of
    AREAS; 100 detections per image. None where undefined (no ground truth for it).
    """
    params = coco_eval.params
    k = list(params.catIds).index(label)
    a = list(params.areaRngLbl).index(area)
    precision = coco_eval.eval["precision"][:, :, k, a, -1]  # [T, R]
    if iou is not None:
        t = int(np.argmin(np.abs(np.asarray(params.iouThrs) - iou)))
        precision = precision[t]
    p = precision[precision > -1]
    return float(p.mean()) if p.size else None


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
    amp: bool = False,
) -> EvalResult:
    """Run `model` in eval mode over (images, targets) batches and compute COCO mAP.

    images: (3, H, W) float tensors in [0, 1]; targets carry `boxes` (xyxy, original pixels) and
    `labels`. The model's detections come back in the same frame (torchvision postprocess).
    amp: autocast on the model's device (the training loop's validation uses it on CUDA).
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    evaluator = CocoEvaluator(class_names)
    try:
        for images, targets in batches:
            with torch.inference_mode(), torch.autocast(device.type, enabled=amp):
                outputs = model([img.to(device, non_blocking=True) for img in images])
            for img, target, out in zip(images, targets, outputs):
                evaluator.process(img.shape[-1], img.shape[-2], target["boxes"], target["labels"],
                                  out["boxes"].float(), out["scores"].float(), out["labels"])
            if progress is not None:
                progress(evaluator.images)
    finally:
        model.train(was_training)
    return evaluator.evaluate()


@dataclass(frozen=True)
class EvaluationImages:
    """A dataset's images ready to evaluate a model on: labels are the MODEL's 1-based ids.

    Classes are matched by name; boxes of classes the model does not know are left out (listed in
    `classes_not_in_model`). Boxes xyxy in original pixels, fixed as validation says.
    """

    records: tuple[Any, ...]  # ImageRecords relative to `root`
    root: Any  # Path of the folder the files are relative to
    class_names: tuple[str, ...]  # the model's
    classes_not_in_model: tuple[str, ...]
    fixes: int  # validation fixes applied


def evaluation_images(spec: Any, split: str, model_class_names: Sequence[str]) -> EvaluationImages:
    """The images of DATASET `spec` (`split` val | train | all) with labels matched to the model's by name.

    Raises DatasetError for a dataset that cannot be read, ValueError when no class is shared.
    """
    from detector.data import prepare_for_training, resolve_dataset
    from detector.data.records import relabel_by_name

    if split not in ("val", "train", "all"):
        raise ValueError(f"split must be val, train or all, not {split!r}")
    dataset, train_idx, val_idx = resolve_dataset(spec)
    records, fixes = prepare_for_training(dataset)
    if split != "all" and len(records) == len(dataset.records):
        keep = set(val_idx if split == "val" else train_idx)
        records = [r for i, r in enumerate(records) if i in keep]
    model_names = list(model_class_names)
    mapped, missing = relabel_by_name(records, dataset.class_names, model_names, str(spec), "the model's classes")
    return EvaluationImages(tuple(mapped), dataset.root, tuple(model_names), missing, len(fixes))
