"""Dataset statistics: what the data page plots and what anchor choices depend on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detector.data.records import COCO_MEDIUM, COCO_SMALL, LoadedDataset


@dataclass(frozen=True)
class DatasetStatistics:
    """Counts and per-box arrays (original-image pixels) of a dataset's records, as annotated."""

    images: int
    boxes: int
    empty_images: int
    class_names: tuple[str, ...]
    boxes_per_class: tuple[int, ...]  # index = label - 1
    images_per_class: tuple[int, ...]
    widths: np.ndarray  # (N,) box widths in pixels
    heights: np.ndarray  # (N,) box heights in pixels
    labels: np.ndarray  # (N,) label ids 1..K
    image_sizes: np.ndarray  # (M, 2) image width, height
    size_buckets: dict[str, int]  # COCO small (< 32^2) / medium (< 96^2) / large, by box area

    @property
    def aspect_ratios(self) -> np.ndarray:
        """height / width per box (torchvision's aspect-ratio convention for anchors)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.widths > 0, self.heights / np.where(self.widths > 0, self.widths, 1), np.nan)


def dataset_statistics(dataset: LoadedDataset) -> DatasetStatistics:
    k = len(dataset.class_names)
    widths, heights, labels = [], [], []
    images_per_class = np.zeros(k, dtype=int)
    for r in dataset.records:
        for (x1, y1, x2, y2), label in zip(r.boxes, r.labels):
            widths.append(x2 - x1)
            heights.append(y2 - y1)
            labels.append(label)
        for label in set(r.labels):
            if 1 <= label <= k:
                images_per_class[label - 1] += 1
    w, h, lab = np.asarray(widths, float), np.asarray(heights, float), np.asarray(labels, int)
    area = np.clip(w, 0, None) * np.clip(h, 0, None)
    buckets = {
        "small": int((area < COCO_SMALL).sum()),
        "medium": int(((area >= COCO_SMALL) & (area < COCO_MEDIUM)).sum()),
        "large": int((area >= COCO_MEDIUM).sum()),
    }
    return DatasetStatistics(
        images=len(dataset.records),
        boxes=len(lab),
        empty_images=dataset.empty_images,
        class_names=dataset.class_names,
        boxes_per_class=tuple(int((lab == i + 1).sum()) for i in range(k)),
        images_per_class=tuple(int(v) for v in images_per_class),
        widths=w,
        heights=h,
        labels=lab,
        image_sizes=np.asarray([(r.width, r.height) for r in dataset.records], float).reshape(-1, 2),
        size_buckets=buckets,
    )
