"""detector.data.validation: each problem reported with its file and line or id; training applies exactly the reported fixes."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from detector.data import load_dataset, prepare_for_training
from detector.data.synthetic import write_synthetic
from detector.data.validation import box_problem, decode_problems


def tiny_image(path: Path, size=(64, 48)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (10, 200, 30)).save(path)


def find(ds, **match) -> list:
    found = [p for p in ds.problems if all(
        (v in getattr(p, k)) if k == "message" else getattr(p, k) == v for k, v in match.items())]
    assert found, f"no problem matching {match} in {[p.to_dict() for p in ds.problems]}"
    return found


@pytest.fixture(scope="module")
def broken_coco(tmp_path_factory):
    root = tmp_path_factory.mktemp("broken_coco")
    for name in ("ok.png", "big.png", "dup.png"):
        tiny_image(root / "images" / name)
    (root / "images" / "fake.jpg").write_bytes(b"this is not a JPEG")
    images = [
        {"id": 1, "file_name": "ok.png", "width": 64, "height": 48},
        {"id": 2, "file_name": "big.png", "width": 128, "height": 96},  # size differs from the file
        {"id": 3, "file_name": "fake.jpg", "width": 64, "height": 48},  # corrupt
        {"id": 4, "file_name": "missing.png", "width": 64, "height": 48},  # missing
        {"id": 1, "file_name": "dup.png", "width": 64, "height": 48},  # duplicate id
        {"id": 6, "file_name": "empty_ok.png"},
    ]
    tiny_image(root / "images" / "empty_ok.png")
    anns = [
        {"id": 10, "image_id": 1, "category_id": 1, "bbox": [5, 5, 10, 10]},  # good
        {"id": 11, "image_id": 1, "category_id": 1, "bbox": [5, 5, 0, 10]},  # zero width
        {"id": 12, "image_id": 1, "category_id": 1, "bbox": [50, 40, 30, 30]},  # outside: clipped
        {"id": 13, "image_id": 1, "category_id": 1, "bbox": [5, "x", 4, 4]},  # non-numeric
        {"id": 14, "image_id": 1, "category_id": 9, "bbox": [5, 5, 4, 4]},  # unknown class
        {"id": 15, "image_id": 99, "category_id": 1, "bbox": [5, 5, 4, 4]},  # unknown image
        {"id": 10, "image_id": 2, "category_id": 2, "bbox": [1, 1, 4, 4]},  # duplicate annotation id
        {"id": 16, "image_id": 1, "category_id": 2, "bbox": [100, 100, 5, 5]},  # entirely outside
        {"id": 17, "image_id": 1, "category_id": 2, "bbox": [float("nan"), 1, 5, 5]},  # NaN
        {"id": 18, "image_id": 1, "category_id": 2, "bbox": [1, 1, 5, 5], "iscrowd": 1},  # crowd region
    ]
    doc = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
    (root / "annotations.json").write_text(json.dumps(doc))  # json writes NaN as the bare word NaN
    return load_dataset(root)


def test_coco_problems_have_file_and_id(broken_coco):
    ds = broken_coco
    find(ds, file="images/fake.jpg", id=3, action="image left out", message="unreadable image")
    find(ds, file="annotations.json", id=4, message="image file not found: missing.png")
    find(ds, file="annotations.json", id=1, message="duplicate image id 1")
    find(ds, file="images/big.png", id=2, message="annotation says 128x96, the image file is 64x48")
    find(ds, file="images/ok.png", id=11, message="zero or negative size", action="box left out")
    find(ds, file="images/ok.png", id=12, message="extends outside the 64x48 image",
         action="box clipped to the image: [50, 40, 64, 48]")
    find(ds, file="images/ok.png", id=16, message="lies outside the 64x48 image", action="box left out")
    find(ds, file="images/ok.png", id=13, message="not four finite numbers", action="annotation left out")
    find(ds, file="images/ok.png", id=17, message="not four finite numbers", action="annotation left out")
    find(ds, file="images/ok.png", id=14, message="unknown category id 9")
    find(ds, file="images/ok.png", id=18, message="crowd region")
    find(ds, file="annotations.json", id=15, message="unknown image id 99")
    find(ds, file="annotations.json", id=10, message="duplicate annotation id 10")
    assert ds.usable and all(p.severity == "warning" for p in ds.problems)
    assert [r.file for r in ds.records] == ["images/ok.png", "images/big.png", "images/empty_ok.png"]
    assert ds.empty_images == 1


def test_training_applies_exactly_the_reported_fixes(broken_coco):
    records, fixes = prepare_for_training(broken_coco)
    ok = records[0]
    assert ok.boxes == ((5.0, 5.0, 15.0, 15.0), (50.0, 40.0, 64.0, 48.0))  # degenerate and outside left out, one clipped
    assert all(x2 > x1 and y2 > y1 for r in records for x1, y1, x2, y2 in r.boxes)
    assert len(records) == 3 and records[2].boxes == ()  # the empty image stays as a negative
    assert {f["action"] for f in fixes} >= {"box left out", "image left out", "annotation left out"}
    assert all(isinstance(f, dict) and json.dumps(f) for f in fixes)


def test_coco_json_syntax_error_is_an_error_with_its_line(tmp_path):
    tiny_image(tmp_path / "images" / "a.png")
    (tmp_path / "annotations.json").write_text('{"images": [\n  {"id": 1,\n  "file_name": "a.png"\n  ]\n}')
    ds = load_dataset(tmp_path)
    problem = find(ds, file="annotations.json", severity="error")[0]
    assert problem.line == 4 and not ds.usable and ds.report()["usable"] is False


def test_yolo_line_problems(tmp_path):
    tiny_image(tmp_path / "images" / "a.jpg", size=(100, 50))
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text(
        "0 0.5 0.5 0.2 0.2\n"  # good
        "0 0.5 0.5 0.2\n"  # wrong field count
        "1 0.95 0.5 0.2 0.2\n"  # extends past the right edge: values within [0, 1], box clipped
        "0 1.5 0.5 0.2 0.2\n"  # value outside [0, 1]
        "0 abc 0.5 0.2 0.2\n"  # non-numeric
        "0 nan 0.5 0.2 0.2\n"  # NaN
        "7 0.5 0.5 0.2 0.2\n"  # unknown class
        "0 0.5 0.5 0 0.2\n"  # zero width
    )
    (tmp_path / "labels" / "orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (tmp_path / "classes.txt").write_text("a\nb\n")
    ds = load_dataset(tmp_path)
    f = "labels/a.txt"
    find(ds, file=f, line=2, message="expected 5 fields", action="line left out")
    find(ds, file=f, line=3, message="extends outside the 100x50 image")
    find(ds, file=f, line=4, message="values outside [0, 1]", action="box left out")
    find(ds, file=f, line=5, message="not finite numbers")
    find(ds, file=f, line=6, message="not finite numbers")
    find(ds, file=f, line=7, message="unknown class id 7")
    find(ds, file=f, line=8, message="zero or negative size")
    find(ds, file="labels/orphan.txt", message="without a matching image")
    assert len(ds.problems) == 8 and ds.records[0].labels == (1, 2, 1, 1)


def test_voc_problems_have_the_object_line(tmp_path):
    tiny_image(tmp_path / "JPEGImages" / "a.jpg")
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "a.xml").write_text(
        "<annotation>\n<filename>a.jpg</filename>\n<size><width>64</width><height>48</height></size>\n"
        "<object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>80</xmax><ymax>10</ymax></bndbox></object>\n"
        "<object><name>dog</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>\n"
        "<object><name>cat</name><bndbox><xmin>one</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>\n"
        "</annotation>\n")
    (tmp_path / "Annotations" / "b.xml").write_text("<annotation><filename>nope.jpg</filename></annotation>")
    (tmp_path / "Annotations" / "c.xml").write_text("<annotation><filename>a.jpg</filename>\n<object>")
    (tmp_path / "labelmap.txt").write_text("cat:::\n")
    ds = load_dataset(tmp_path)
    find(ds, file="Annotations/a.xml", line=4, message="extends outside the 64x48 image")
    find(ds, file="Annotations/a.xml", line=5, message="unknown class 'dog'")
    find(ds, file="Annotations/a.xml", line=6, message="not four finite numbers")
    find(ds, file="Annotations/b.xml", message="image file not found: nope.jpg")
    find(ds, file="Annotations/c.xml", line=2, message="not well-formed XML")


def test_no_images_is_not_usable(tmp_path):
    (tmp_path / "annotations.json").write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    ds = load_dataset(tmp_path)
    assert not ds.usable and {p.message for p in ds.problems if p.severity == "error"} >= {"no usable images found"}


def test_decoding_problems_found_later_are_reported_the_same_way(tmp_path):
    tiny_image(tmp_path / "images" / "good.png")
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (1, 2, 3)).save(buf, format="PNG")
    (tmp_path / "images" / "truncated.png").write_bytes(buf.getvalue()[:60])  # header fine, pixels cut off
    doc = {"images": [{"id": 1, "file_name": "good.png"}, {"id": 2, "file_name": "truncated.png"}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}],
           "categories": [{"id": 1, "name": "a"}]}
    (tmp_path / "annotations.json").write_text(json.dumps(doc))
    ds = load_dataset(tmp_path)
    assert len(ds.records) == 2 and ds.problems == ()  # the header alone looks fine
    late = decode_problems(ds)
    assert [(p.file, p.id, p.action) for p in late] == [("images/truncated.png", 2, "image left out")]
    records, fixes = prepare_for_training(ds, decode=True)
    assert [r.file for r in records] == ["images/good.png"] and fixes[0]["stage"] == "decode"


def test_sub_hundredth_pixel_crossing_is_rounding_not_a_problem():
    assert box_problem((-0.00016, 58, 121, 179), 320, 240, file="labels/a.txt", line=1) is None


def test_a_real_crossing_is_reported_with_its_location_and_fix():
    p = box_problem((-3.0, 58, 121, 179), 320, 240, file="labels/a.txt", line=4)
    assert p is not None and p.line == 4 and p.file == "labels/a.txt"
    assert "outside the 320x240 image" in p.message and p.action.startswith("box clipped")


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with almost no pixel data (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def test_decompression_bomb_image_is_left_out_by_its_header(tmp_path):
    write_synthetic(tmp_path, images=2, seed=1, format="yolo", width=64, height=48)
    (tmp_path / "images" / "bomb.png").write_bytes(png_header_only(40_000, 40_000))  # 1.6 gigapixels
    ds = load_dataset(tmp_path)
    bomb = [p for p in ds.problems if p.file == "images/bomb.png"]
    assert len(bomb) == 1 and bomb[0].action == "image left out" and "large" in bomb[0].message
    assert len(ds.records) == 2 and ds.usable
    over_limit = tmp_path / "images" / "bomb.png"
    over_limit.write_bytes(png_header_only(10_000, 6_000))  # 60 MP: under PIL's guard, over ours
    ds = load_dataset(tmp_path)
    assert any(p.file == "images/bomb.png" and "over the limit" in p.message for p in ds.problems)
