"""Stored datasets: upload kept as uploaded, parsed records and a seeded split, listed by name,
reopened from JSON (as after a restart), resolvable as `--data`."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from detector.data import (
    DatasetError,
    list_datasets,
    load_dataset,
    open_dataset,
    resolve_dataset,
    split_indices,
    store_upload,
)
from detector.data.synthetic import write_synthetic
from detector.workspace import uploads_dir, workspace_root


def zip_folder(folder: Path, prefix: str = "") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, prefix + p.relative_to(folder).as_posix())
    return buf.getvalue()


@pytest.fixture(scope="module")
def coco_folder(tmp_path_factory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("store") / "coco", images=10, seed=2, width=64, height=48)


def test_store_upload_keeps_the_upload_and_survives_a_restart(coco_folder):
    data = zip_folder(coco_folder, prefix="my-export/")  # tools often wrap everything in one folder
    stored = store_upload("My Export.zip", data, seed=3)
    assert stored.name.startswith("my-export") and stored.dataset.format == "coco"
    assert (uploads_dir() / f"{stored.name}.zip").read_bytes() == data  # as uploaded
    assert len(stored.train_indices) == 8 and len(stored.val_indices) == 2
    assert sorted(stored.train_indices + stored.val_indices) == list(range(10))
    reopened = open_dataset(stored.name)  # from dataset.json alone, as a fresh process would
    assert reopened.dataset.records == load_dataset(coco_folder).records
    assert reopened.dataset.class_names == ("circle", "rectangle", "triangle")
    assert (reopened.train_indices, reopened.val_indices) == (stored.train_indices, stored.val_indices)
    assert (reopened.root / reopened.dataset.records[0].file).is_file()
    assert stored.name in [d.name for d in list_datasets()]
    info = next(d for d in list_datasets() if d.name == stored.name)
    assert info.images == 10 and info.usable and info.boxes == reopened.dataset.num_boxes
    second = store_upload("My Export.zip", data, seed=3)
    assert second.name != stored.name and second.train_indices == stored.train_indices  # same seed, same split


def test_split_by_seed_or_the_datasets_own(tmp_path):
    voc = load_dataset(write_synthetic(tmp_path / "voc", images=10, seed=2, format="voc", width=64, height=48))
    train, val, source = split_indices(voc, seed=1)
    assert (train, val) == (voc.splits["train"], voc.splits["val"]) and "own" in source
    coco = load_dataset(write_synthetic(tmp_path / "coco", images=10, seed=2, width=64, height=48))
    a, b = split_indices(coco, seed=1), split_indices(coco, seed=2)
    assert a[:2] != b[:2] and split_indices(coco, seed=1) == a and "seed 1" in a[2]


def test_folder_upload_and_resolve_by_name_or_path(coco_folder, tmp_path):
    files = {f"coco/{p.relative_to(coco_folder).as_posix()}": p.read_bytes() for p in coco_folder.rglob("*") if p.is_file()}
    stored = store_upload("coco", files)
    assert stored.root == (uploads_dir() / stored.name / "coco").resolve() and len(stored.dataset.records) == 10
    ds, train, val = resolve_dataset(stored.name)
    assert ds.records == stored.dataset.records and (train, val) == (stored.train_indices, stored.val_indices)
    ds2, train2, _ = resolve_dataset(str(coco_folder))
    assert ds2.records == ds.records and len(train2) == 8
    (tmp_path / "c.zip").write_bytes(zip_folder(coco_folder))
    ds3, _, _ = resolve_dataset(tmp_path / "c.zip")
    assert ds3.records == ds.records and ds3.root.is_relative_to(workspace_root())
    with pytest.raises(DatasetError, match="no stored dataset by that name"):
        resolve_dataset("no-such-dataset")
    with pytest.raises(DatasetError):
        store_upload("bad", {"../x.txt": b"1"})
