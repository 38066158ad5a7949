"""Datasets as real annotation tools export them (tests/unit/data/exports.py), folder and zip: the exact
records (images, negatives, every box within 0.01 px, class names in order, splits) and no warning."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image

from detector.cli import main as cli_main
from detector.data import load_dataset, prepare_for_training
from detector.data.synthetic import write_synthetic
from tests.unit.data.exports import BUILDERS, cvat_voc, labelimg_bndbox, voc_devkit_negatives, zip_folder


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    root = tmp_path_factory.mktemp("exports")
    return {name: build(root / name) for name, build in BUILDERS.items()}


def assert_exact(ds, export) -> None:
    assert ds.format == export.format
    assert ds.class_names == export.classes
    assert [p.to_dict() for p in ds.problems] == []  # clean data from a real writer: no warning at all
    assert ds.usable
    got = {r.file: r for r in ds.records}
    assert sorted(got) == sorted(export.boxes) and len(ds.records) == len(export.boxes)
    assert ds.empty_images == export.empty_images
    for file, objects in export.boxes.items():
        record = got[file]
        assert [ds.class_names[label - 1] for label in record.labels] == [cls for cls, _ in objects], file
        for box, (_, want) in zip(record.boxes, objects):
            assert max(abs(a - b) for a, b in zip(box, want)) < 0.01, (file, box, want)
    assert {k: len(v) for k, v in (ds.splits or {}).items()} == export.splits


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_export_folder_loads_exactly(exports, name):
    assert_exact(load_dataset(exports[name].root), exports[name])


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_export_zip_loads_exactly(exports, tmp_path, name):
    archive = zip_folder(exports[name].root, tmp_path / f"{name}.zip")
    assert_exact(load_dataset(archive), exports[name])


def test_coco_all_tasks_uses_the_instances_files_and_names_the_others(exports):
    ds = load_dataset(exports["coco_all_tasks"].root)
    ignored = {f.file: f.reason for f in ds.ignored_files}
    written = sorted(p.relative_to(exports["coco_all_tasks"].root).as_posix()
                     for p in (exports["coco_all_tasks"].root / "annotations").glob("*.json"))
    assert sorted(ignored) == [f for f in written if not f.startswith("annotations/instances_")]
    assert len(ignored) == 10  # the five other tasks of each subset
    assert "images only" in ignored["annotations/image_info_train.json"]
    assert "captions" in ignored["annotations/captions_train.json"]
    assert "panoptic" in ignored["annotations/panoptic_train.json"]
    assert "instances_train.json" in ignored["annotations/person_keypoints_train.json"]
    report = ds.report()
    assert report["ignored_files"] and all(set(f) == {"file", "reason"} for f in report["ignored_files"])
    assert [r.image_id for r in ds.records] == ["train/1", "train/2", "train/3", "val/4"]


def test_voc_negatives_without_xml_are_counted_in_the_report(exports):
    ds = load_dataset(exports["voc_devkit_negatives"].root)
    assert ds.notes == ("2 images without an XML file (listed in ImageSets/Main) kept as negative images",)
    assert ds.voc_coordinates[0] == "one-based"
    train = [ds.records[i].image_id for i in ds.splits["train"]]
    assert sorted(train) == ["000001", "000002", "000003"]


def test_voc_negatives_without_image_sets_come_from_jpegimages(tmp_path):
    export = voc_devkit_negatives(tmp_path / "v")
    base = tmp_path / "v" / export.base
    for p in sorted((base / "ImageSets").rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    (base / "ImageSets").rmdir()
    ds = load_dataset(tmp_path / "v")
    assert ds.empty_images == 2 and len(ds.records) == 5 and ds.problems == ()
    assert ds.notes == ("2 images without an XML file (in JPEGImages/) kept as negative images",)


def test_voc_listed_image_without_a_file_is_reported(tmp_path):
    export = voc_devkit_negatives(tmp_path / "v")
    main = tmp_path / "v" / export.base / "ImageSets" / "Main"
    (main / "val.txt").write_text((main / "val.txt").read_text() + "000099\n")
    ds = load_dataset(tmp_path / "v")
    [problem] = ds.problems
    assert problem.file == "ImageSets/Main/val.txt" and problem.line == 3 and problem.id == "000099"
    assert "no XML and no image" in problem.message and len(ds.records) == 5


def test_voc_coordinate_convention_is_decided_reported_and_forcible(exports, capsys):
    root = exports["cvat_voc"].root
    auto = load_dataset(root)
    convention, why = auto.voc_coordinates
    assert convention == "zero-based" and "Annotations/img_0.xml" in why and "xmin 0" in why
    assert auto.records[0].boxes[0] == (0.0, 0.0, 33.5, 20.25)
    forced = load_dataset(root, voc_coordinates="one-based")
    assert forced.voc_coordinates[0] == "one-based" and forced.records[0].boxes[0] == (-1.0, -1.0, 33.5, 20.25)
    assert any("extends outside" in p.message for p in forced.problems)  # the devkit reading is wrong here
    assert cli_main(["validate", str(root), "--json", "--voc-coordinates", "one-based"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["voc_coordinates"]["convention"] == "one-based" and "as asked" in report["voc_coordinates"]["reason"]
    assert cli_main(["validate", str(root), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["voc_coordinates"]["convention"] == "zero-based" and report["problems"] == []
    devkit = load_dataset(exports["voc_devkit_negatives"].root)
    assert devkit.voc_coordinates[0] == "one-based" and "whole number of at least 1" in devkit.voc_coordinates[1]
    label_studio = load_dataset(exports["label_studio_voc"].root)
    assert label_studio.voc_coordinates[0] == "zero-based" and "Label Studio" in label_studio.voc_coordinates[1]


def test_cvat_voc_forced_zero_based_on_whole_numbers(tmp_path):
    """A zero-based writer whose boxes happen to be whole numbers >= 1 cannot be told apart: force it."""
    export = cvat_voc(tmp_path / "c")
    xml = tmp_path / "c" / "Annotations" / "img_1.xml"
    for f in (tmp_path / "c" / "Annotations").glob("*.xml"):
        if f != xml:
            f.unlink()
    ds = load_dataset(tmp_path / "c")
    assert ds.voc_coordinates[0] == "one-based" and ds.records[0].boxes[0] == (11.0, 12.0, 50.0, 60.0)
    ds = load_dataset(tmp_path / "c", voc_coordinates="zero-based")
    assert ds.records[0].boxes[0] == export.boxes["JPEGImages/img_1.jpg"][0][1]


def test_labelimg_voc_is_read_zero_based_though_every_coordinate_is_a_whole_number_from_1(exports, tmp_path):
    """LabelImg (libs/label_file.py convert_points_to_bnd_box) writes int() of its zero-based canvas
    points and raises xmin and ymin to 1 first: every coordinate is a whole number >= 1, which the
    devkit rule alone reads as one-based. Its layout (an absolute <path>, <source> holding only
    <database>Unknown</database>) names it, so it is read zero-based, as LabelImg's own reader draws
    its boxes back."""
    export = exports["labelimg_voc"]
    written = [float(e.text) for xml in sorted((export.root / "photos").glob("*.xml"))
               for e in ET.parse(xml).getroot().iter() if e.tag in ("xmin", "ymin", "xmax", "ymax")]
    assert len(written) == 12 and all(v >= 1 and v == int(v) for v in written)
    ds = load_dataset(export.root)
    convention, why = ds.voc_coordinates
    assert convention == "zero-based" and "cat_001.xml was written by LabelImg" in why
    cat_001 = next(r for r in ds.records if r.file == "cat_001.jpg")
    # the cat was drawn from canvas (0.4, 0.0) to (40.7, 33.2): raised to 1, truncated, not shifted
    assert cat_001.boxes[0] == (1.0, 1.0, 40.0, 33.0) and cat_001.boxes[1] == (50.0, 20.0, 95.0, 71.0)
    assert labelimg_bndbox([(0.4, 0.0), (40.7, 33.2)]) == (1, 1, 40, 33)
    # forced one-based, every box moves a pixel up and left
    devkit = load_dataset(export.root, voc_coordinates="one-based")
    assert next(r for r in devkit.records if r.file == "cat_001.jpg").boxes[0] == (0.0, 0.0, 40.0, 33.0)
    # without its <path> (say, re-saved by another tool) the layout no longer names LabelImg: the
    # devkit rule decides, one-based, and only forcing reads it right
    copy = tmp_path / "edited"
    shutil.copytree(export.root, copy)
    for xml in (copy / "photos").glob("*.xml"):
        xml.write_text("".join(line for line in xml.read_text().splitlines(keepends=True) if "<path>" not in line))
    edited = load_dataset(copy)
    assert edited.voc_coordinates[0] == "one-based" and "whole number of at least 1" in edited.voc_coordinates[1]
    assert load_dataset(copy, voc_coordinates="zero-based").records == ds.records


def tiny_image(path: Path, size=(64, 48), color=(200, 40, 40)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


@pytest.fixture(scope="module")
def three_formats(tmp_path_factory):
    root = tmp_path_factory.mktemp("three")
    return {fmt: load_dataset(write_synthetic(root / fmt, images=12, seed=5, format=fmt, width=96, height=72))
            for fmt in ("coco", "voc", "yolo")}


def test_same_synthetic_data_in_three_formats_gives_the_same_records(three_formats):
    coco, voc, yolo = three_formats["coco"], three_formats["voc"], three_formats["yolo"]
    assert (coco.format, voc.format, yolo.format) == ("coco", "voc", "yolo")
    assert coco.class_names == voc.class_names == yolo.class_names == ("circle", "rectangle", "triangle")
    assert coco.num_boxes > 10 and coco.empty_images >= 1  # several objects and some negatives
    for other in (voc, yolo):
        assert len(other.records) == len(coco.records)
        for a, b in zip(coco.records, other.records):
            assert Path(a.file).name == Path(b.file).name
            assert (a.width, a.height, a.labels) == (b.width, b.height, b.labels)
            assert len(a.boxes) == len(b.boxes)
            for box_a, box_b in zip(a.boxes, b.boxes):
                assert max(abs(x - y) for x, y in zip(box_a, box_b)) < 0.01  # YOLO's rounding
    assert coco.problems == voc.problems == yolo.problems == ()
    assert len({len(r.labels) for r in coco.records}) > 1 and {l for r in coco.records for l in r.labels} == {1, 2, 3}


def test_roboflow_coco_split_folders_and_parent_category(tmp_path):
    cats = [{"id": 0, "name": "cells", "supercategory": "none"}, {"id": 1, "name": "rbc", "supercategory": "cells"},
            {"id": 2, "name": "wbc", "supercategory": "cells"}]
    for split, n in (("train", 3), ("valid", 2)):
        images = []
        for i in range(n):
            tiny_image(tmp_path / split / f"{split}{i}_jpg.rf.abc.jpg")
            images.append({"id": i, "file_name": f"{split}{i}_jpg.rf.abc.jpg", "width": 64, "height": 48})
        anns = [{"id": i, "image_id": i, "category_id": 1 + i % 2, "bbox": [1, 2, 10, 10], "iscrowd": 0} for i in range(n)]
        (tmp_path / split / "_annotations.coco.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    ds = load_dataset(tmp_path)
    assert ds.format == "coco" and ds.class_names == ("rbc", "wbc")
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 3, "val": 2}
    assert ds.records[0].boxes == ((1.0, 2.0, 11.0, 12.0),) and ds.records[0].labels == (1,)
    assert ds.problems == ()


def test_cvat_coco_with_subfolder_file_names(tmp_path):
    tiny_image(tmp_path / "images" / "cam1" / "frame_000.png")
    doc = {"images": [{"id": 5, "file_name": "cam1/frame_000.png", "width": 64, "height": 48}],
           "annotations": [{"id": 1, "image_id": 5, "category_id": 7, "bbox": [0, 0, 8, 6]}],
           "categories": [{"id": 7, "name": "car", "supercategory": ""}]}
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_default.json").write_text(json.dumps(doc))
    ds = load_dataset(tmp_path)
    assert ds.records[0].file == "images/cam1/frame_000.png" and ds.records[0].image_id == 5
    assert ds.class_names == ("car",) and ds.problems == ()


VOC_XML = """<annotation>
  <filename>{name}</filename>
  <size><width>64</width><height>48</height><depth>3</depth></size>
  <object><name>{cls}</name><bndbox><xmin>11</xmin><ymin>6</ymin><xmax>20</xmax><ymax>15</ymax></bndbox></object>
</annotation>
"""


def test_cvat_voc_label_map_order_and_one_based_boxes(tmp_path):
    tiny_image(tmp_path / "JPEGImages" / "a.jpg")
    tiny_image(tmp_path / "JPEGImages" / "b.jpg")
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "a.xml").write_text(VOC_XML.format(name="a.jpg", cls="zebra"))
    (tmp_path / "Annotations" / "b.xml").write_text(VOC_XML.format(name="b.jpg", cls="apple"))
    (tmp_path / "labelmap.txt").write_text("# label:color_rgb:parts:actions\nbackground:0,0,0::\nzebra:1,2,3::\napple:4,5,6::\n")
    (tmp_path / "ImageSets" / "Main").mkdir(parents=True)
    (tmp_path / "ImageSets" / "Main" / "default.txt").write_text("a\nb\n")
    ds = load_dataset(tmp_path)
    assert ds.format == "voc" and ds.class_names == ("zebra", "apple")  # the label map's order, not sorted
    assert ds.records[0].boxes == ((10.0, 5.0, 20.0, 15.0),) and ds.records[0].labels == (1,)
    assert ds.records[1].labels == (2,)
    (tmp_path / "labelmap.txt").unlink()
    assert load_dataset(tmp_path).class_names == ("apple", "zebra")  # no label map: sorted by name


def _yolo_label(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_roboflow_yolo_split_folders(tmp_path):
    for split in ("train", "valid"):
        tiny_image(tmp_path / split / "images" / f"{split}.jpg")
        _yolo_label(tmp_path / split / "labels" / f"{split}.txt", "1 0.5 0.5 0.25 0.5\n")
    tiny_image(tmp_path / "train" / "images" / "empty.jpg")  # no label file: a negative
    (tmp_path / "data.yaml").write_text("train: ../train/images\nval: ../valid/images\nnc: 2\nnames: ['cat', 'dog']\n")
    ds = load_dataset(tmp_path)
    assert ds.format == "yolo" and ds.class_names == ("cat", "dog")
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 2, "val": 1}
    rec = next(r for r in ds.records if r.file == "train/images/train.jpg")
    assert rec.labels == (2,) and rec.boxes == ((24.0, 12.0, 40.0, 36.0),)
    assert ds.empty_images == 1 and ds.problems == ()


def test_cvat_yolo_11_labels_beside_images(tmp_path):
    tiny_image(tmp_path / "obj_train_data" / "f1.png")
    _yolo_label(tmp_path / "obj_train_data" / "f1.txt", "0 0.5 0.5 0.5 0.5\n")
    (tmp_path / "obj.names").write_text("person\ncar\n")
    (tmp_path / "obj.data").write_text("classes = 2\ntrain = data/train.txt\nnames = data/obj.names\n")
    (tmp_path / "train.txt").write_text("data/obj_train_data/f1.png\n")
    ds = load_dataset(tmp_path)
    assert ds.format == "yolo" and ds.class_names == ("person", "car")
    assert ds.records[0].boxes == ((16.0, 12.0, 48.0, 36.0),) and ds.splits == {"train": (0,)}


def test_label_studio_yolo_and_same_folder_for_train_and_val(tmp_path):
    tiny_image(tmp_path / "images" / "x.jpg")
    _yolo_label(tmp_path / "labels" / "x.txt", "0 0.5 0.5 0.5 0.5\n")
    (tmp_path / "classes.txt").write_text("thing\n")
    (tmp_path / "notes.json").write_text(json.dumps({"categories": [{"id": 0, "name": "thing"}], "info": {}}))
    (tmp_path / "data.yaml").write_text("train: images\nval: images\nnames: {0: thing}\n")
    ds = load_dataset(tmp_path)
    assert ds.format == "yolo" and len(ds.records) == 1 and ds.report()["images"] == 1


def test_format_override(tmp_path):
    write_synthetic(tmp_path, images=2, seed=1, format="coco", width=64, height=48)
    write_synthetic(tmp_path, images=2, seed=1, format="yolo", width=64, height=48)  # same images/, adds labels/
    auto = load_dataset(tmp_path)
    forced = load_dataset(tmp_path, format="yolo")
    assert auto.format == "coco" and forced.format == "yolo"
    assert [r.labels for r in forced.records] == [r.labels for r in auto.records]
    with pytest.raises(ValueError, match="unknown format"):
        load_dataset(tmp_path, format="labelme")


def test_prepare_for_training_round_trips_clean_data(three_formats):
    records, fixes = prepare_for_training(three_formats["coco"])
    assert records == list(three_formats["coco"].records) and fixes == []


def test_ultralytics_yolo_images_train_labels_train(tmp_path):
    for split in ("train", "val"):
        tiny_image(tmp_path / "images" / split / f"{split}_0.jpg", size=(100, 50))
        _yolo_label(tmp_path / "labels" / split / f"{split}_0.txt", "0 0.25 0.5 0.1 0.2\n")
    (tmp_path / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames:\n  0: bolt\n")
    (tmp_path / "train.txt").write_text("images/train/train_0.jpg\n")  # CVAT's Ultralytics export adds this
    ds = load_dataset(tmp_path)
    assert ds.class_names == ("bolt",) and ds.splits == {"train": (0,), "val": (1,)}
    assert ds.records[0].boxes == ((20.0, 20.0, 30.0, 30.0),) and ds.records[0].labels == (1,)
