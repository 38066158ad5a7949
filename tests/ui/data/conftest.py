"""A YOLO export with a malformed line, a box outside its image and a negative, loaded with its
problems by record: the data page's modules' tests read it."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from detector.data.loader import load_dataset
from detector.data.validation import problems_by_record


@pytest.fixture()
def yolo(tmp_path: Path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for name in "abc":
        Image.new("RGB", (20, 20)).save(tmp_path / "images" / f"{name}.png")
    (tmp_path / "labels" / "a.txt").write_text("0 0.5 0.5 0.4 0.4\n")
    (tmp_path / "labels" / "b.txt").write_text("0 0.5 0.5 0.5\n1 0.9 0.5 0.4 0.4\n")  # 4 fields; past the edge
    (tmp_path / "labels" / "c.txt").write_text("")  # a negative
    (tmp_path / "classes.txt").write_text("x\ny\n")
    ds = load_dataset(tmp_path)
    return ds, problems_by_record(ds)
