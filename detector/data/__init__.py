"""Datasets: one record type for COCO, Pascal VOC and YOLO; validation; safe archives; storage.

    load_dataset(path, format="auto") -> LoadedDataset      folder or zip, every problem reported
    prepare_for_training(dataset) -> (records, fixes)       the report's fixes applied
    DetectionDataset(records, root, train)                  torch Dataset for torchvision's models
    store_upload / open_dataset / list_datasets             named datasets in the workspace
    resolve_dataset(spec) -> (dataset, train, val)          `--data`: a path or a stored name
"""

from detector.data.loader import detect_format, load_dataset, load_folder
from detector.data.records import (
    COCO_MEDIUM,
    COCO_SMALL,
    DatasetError,
    DatasetRefused,
    ImageRecord,
    LoadedDataset,
    Problem,
)
from detector.data.store import (
    StoredDataset,
    StoredDatasetInfo,
    list_datasets,
    open_dataset,
    resolve_dataset,
    split_indices,
    store_upload,
)
from detector.data.validation import decode_problems, prepare_for_training


def __getattr__(name: str):
    """DetectionDataset and collate import torch: loaded on first use, so `validate` starts fast."""
    if name in ("DetectionDataset", "collate"):
        from detector.data import torchdata

        return getattr(torchdata, name)
    raise AttributeError(f"module 'detector.data' has no attribute {name!r}")

__all__ = [
    "COCO_MEDIUM", "COCO_SMALL", "DatasetError", "DatasetRefused", "DetectionDataset", "ImageRecord",
    "LoadedDataset", "Problem", "StoredDataset", "StoredDatasetInfo", "collate", "decode_problems",
    "detect_format", "list_datasets", "load_dataset", "load_folder", "open_dataset", "prepare_for_training",
    "resolve_dataset", "split_indices", "store_upload",
]
