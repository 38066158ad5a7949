"""Detection on images: batched inference, the class-name mapping, and exports (COCO results, CSV).

Boxes are [x1, y1, x2, y2] in original-image pixels (torchvision's postprocess maps them back
from the resized input).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from PIL import Image

from detector.checkpoints import LoadedModel
from detector.data.records import class_name
from detector.frames import xyxy_to_xywh
from detector.images import to_tensor


@dataclass(frozen=True)
class ImageDetections:
    """One named image's detections for people and files (pages, CLI, COCO results, CSV): numpy arrays
    and class names, every score kept (filter with `above`), boxes in original pixels. The model's own
    tensors for the stage-by-stage view are `detector.inspect.DetectionTensors`."""

    image: str  # the file name the user gave
    width: int
    height: int
    boxes: np.ndarray = field(repr=False)  # (N, 4) float32, [x1, y1, x2, y2]
    scores: np.ndarray = field(repr=False)  # (N,) float32, descending
    label_ids: np.ndarray = field(repr=False)  # (N,) int64, 1-based
    label_names: tuple[str, ...]  # (N,) class name per detection

    def above(self, threshold: float, classes: Iterable[str] | None = None) -> "ImageDetections":
        """The detections scoring at least `threshold`, optionally only of `classes`."""
        keep = self.scores >= threshold
        if classes is not None:
            wanted = set(classes)
            keep &= np.array([n in wanted for n in self.label_names], dtype=bool)
        idx = np.nonzero(keep)[0]
        return ImageDetections(self.image, self.width, self.height, self.boxes[idx], self.scores[idx],
                          self.label_ids[idx], tuple(self.label_names[i] for i in idx))

    def __len__(self) -> int:
        return len(self.scores)

    def to_json(self) -> list[dict]:
        """The CLI's per-detection list: box, label, label_id, score (plain Python, full precision:
        the float32 values exactly, so ties keep their order and mAP recomputed from it is `evaluate`'s)."""
        return [
            {"box": [float(v) for v in b], "label": n, "label_id": int(i), "score": float(s)}
            for b, n, i, s in zip(self.boxes, self.label_names, self.label_ids, self.scores)
        ]


@torch.inference_mode()
def detect(
    loaded: LoadedModel,
    images: Sequence[Image.Image],
    names: Sequence[str] | None = None,
    batch_size: int = 4,
    progress: Callable[[int, int], None] | None = None,
) -> list[ImageDetections]:
    """Run `loaded.model` on PIL images in batches; every detection the model returns is kept.

    The model's own box_score_thresh (0.05 for torchvision) is the floor; filter further with
    `ImageDetections.above`. `progress(done, total)` is called after each batch.
    """
    model = loaded.model
    device = next(model.parameters()).device
    names = list(names) if names is not None else [f"image-{i}" for i in range(len(images))]
    results: list[ImageDetections] = []
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        outputs = model([to_tensor(img).to(device) for img in batch])
        for img, name, out in zip(batch, names[start:start + batch_size], outputs):
            ids = out["labels"].cpu().numpy().astype(np.int64)
            results.append(ImageDetections(
                name, img.width, img.height, out["boxes"].cpu().numpy().astype(np.float32),
                out["scores"].cpu().numpy().astype(np.float32), ids,
                tuple(class_name(loaded.class_names, int(i)) for i in ids),
            ))
        if progress is not None:
            progress(min(start + batch_size, len(images)), len(images))
    return results


def coco_results(detections: Sequence[ImageDetections], image_ids: Sequence[int] | None = None,
                 category_ids: dict[str, int] | None = None) -> list[dict]:
    """COCO results format: [{image_id, category_id, bbox: [x, y, w, h], score}] (pycocotools loadRes).

    category_ids maps class names to the ground truth's category ids; by default the model's
    1-based label ids are used.
    """
    rows = []
    for k, det in enumerate(detections):
        image_id = int(image_ids[k]) if image_ids is not None else k + 1
        for bbox, score, lid, name in zip(xyxy_to_xywh(det.boxes).tolist(), det.scores, det.label_ids,
                                          det.label_names):
            if category_ids is not None and name not in category_ids:
                continue
            cat = category_ids[name] if category_ids is not None else int(lid)
            rows.append({"image_id": image_id, "category_id": int(cat), "bbox": bbox,
                         "score": float(score)})  # unrounded: rounding ties scores and changes AP
    return rows


def coco_results_json(detections: Sequence[ImageDetections], **kwargs) -> str:
    return json.dumps(coco_results(detections, **kwargs))


CSV_COLUMNS = ("image", "width", "height", "label", "label_id", "score", "x1", "y1", "x2", "y2")


def table_rows(detections: Sequence[ImageDetections]) -> list[dict]:
    """One flat row per detection (for pandas tables and CSV)."""
    rows = []
    for det in detections:
        for (x1, y1, x2, y2), score, lid, name in zip(det.boxes, det.scores, det.label_ids, det.label_names):
            rows.append({"image": det.image, "width": det.width, "height": det.height, "label": name,
                         "label_id": int(lid), "score": round(float(score), 4), "x1": round(float(x1), 1),
                         "y1": round(float(y1), 1), "x2": round(float(x2), 1), "y2": round(float(y2), 1)})
    return rows


def detections_csv(detections: Sequence[ImageDetections]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    writer.writerows(table_rows(detections))
    return buf.getvalue()
