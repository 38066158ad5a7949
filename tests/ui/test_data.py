"""ui.data: the data page's problem table and filter, the image browser's record filter and the
folder-upload key, over a YOLO export with a malformed line, a box outside its image and a negative."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from detector.data.loader import load_dataset
from detector.data.validation import problems_by_record
from ui.data import browse_indices, filter_problems, folder_upload_key, problems_table


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


def test_browse_indices_filter_by_class_and_problem(yolo):
    ds, problems_of = yolo
    assert [r.file for r in ds.records] == ["images/a.png", "images/b.png", "images/c.png"]
    assert browse_indices(ds, problems_of, [], "all images") == [0, 1, 2]
    assert browse_indices(ds, problems_of, ["x"], "all images") == [0]
    assert browse_indices(ds, problems_of, ["y"], "all images") == [1]  # its x line was left out
    assert browse_indices(ds, problems_of, ["x", "y"], "all images") == [0, 1]
    assert browse_indices(ds, problems_of, [], "images with problems") == [1]
    assert browse_indices(ds, problems_of, [], "empty images (negatives)") == [2]
    assert browse_indices(ds, problems_of, [], "box clipped to the image") == [1]  # an action kind
    assert browse_indices(ds, problems_of, ["x"], "images with problems") == []


def test_filter_problems_by_severity_kind_and_text(yolo):
    ds, _ = yolo
    table = problems_table(ds.problems)
    assert list(table.columns) == ["severity", "file", "line", "id", "message", "action"] and len(table) == 2
    every = filter_problems(table, ["error", "warning"], ["line left out", "box clipped to the image"], "")
    assert list(every["line"]) == [1, 2] and str(every["line"].dtype) == "Int64" and str(every["id"].dtype) == "string"
    left_out = filter_problems(table, ["warning"], ["line left out"], "")
    assert list(left_out["message"]) == ["expected 5 fields (class cx cy w h), found 4"]
    assert list(filter_problems(table, ["warning"], ["line left out", "box clipped to the image"], "OUTSIDE")["line"]) == [2]
    assert list(filter_problems(table, ["warning"], ["line left out"], "b.TXT")["line"]) == [1]  # file names too
    assert filter_problems(table, ["error"], ["line left out", "box clipped to the image"], "").empty


def test_folder_upload_key_follows_the_content_not_the_order():
    files = {"shapes/images/a.png": b"a", "shapes/labels/a.txt": b"0 0.5 0.5 0.1 0.1\n"}
    key, hint = folder_upload_key(files, "yolo")
    assert hint == "shapes"
    assert folder_upload_key(dict(reversed(list(files.items()))), "yolo")[0] == key
    assert folder_upload_key({**files, "shapes/labels/a.txt": b""}, "yolo")[0] != key
    assert folder_upload_key(files, "coco")[0] != key  # stored once per format
    assert folder_upload_key({"a.png": b"a"}, "auto")[1] == "folder-upload"
